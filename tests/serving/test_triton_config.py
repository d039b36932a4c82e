"""Triton's model configuration as clients read it, set from a model's serving options, and
repository loads with a ``config`` override or uploaded files (issue 14 items 4 and 5)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from neuropod.errors import OptionError
from neuropod.package.limits import ExtractionLimits
from neuropod.serving import ModelOptions, Server
from neuropod.serving.config_override import parse_config
from neuropod.serving.load_parameters import write_files
from neuropod.serving.options import OPTIONS_FILE, read_model_folder
from tests.serving.helpers import build_model, error_of

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

# The adder's specs: x, y, sum, diff, each ["batch", None].
ADDER_CONFIG = {
    "max_batch_size": 8,
    "input": [{"name": "x", "format": "FORMAT_NHWC", "dims": [3]}, {"name": "y", "format": "format_nchw"}],
    "output": [{"name": "sum", "label_filename": "labels.txt", "dims": [3]}],
}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packages")
    return build_model(root, "adder", root / "adder.zip")


@pytest.fixture(scope="module")
def server(tmp_path_factory, package):
    repository = tmp_path_factory.mktemp("repository")
    folder = repository / "configured"
    folder.mkdir()
    (folder / "model.zip").write_bytes(package.read_bytes())
    (folder / "labels.txt").write_text("small\nmedium\nlarge\n")
    (folder / OPTIONS_FILE).write_text(json.dumps({"config": ADDER_CONFIG}))
    (repository / "plain.zip").write_bytes(package.read_bytes())
    with Server(repository=repository, http_port=0, grpc_port=0) as server:
        yield server


def adder_inputs(module, rows: int = 2):
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    inputs = [module.InferInput("x", [rows, 3], "FP32"), module.InferInput("y", [rows, 3], "FP32")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(x)
    return inputs, x


# --- item 4: the model configuration fields clients read -------------------------------------


def test_config_fields_over_http(http):
    config = http.get_model_config("configured")
    assert config["max_batch_size"] == 8
    assert [(t["name"], t["format"], t["dims"]) for t in config["input"]] == [
        ("x", "FORMAT_NHWC", [3]),
        ("y", "FORMAT_NCHW", [-1]),
    ]
    assert config["output"][0] == {
        "name": "sum",
        "data_type": "TYPE_FP32",
        "dims": [3],
        "label_filename": "labels.txt",
    }
    assert "label_filename" not in config["output"][1]
    metadata = http.get_model_metadata("configured")
    assert metadata["inputs"][0]["shape"] == [-1, 3]  # the batch dim in front, as Triton's
    # A model without a config says FORMAT_NONE, as Triton does (image_client.py reads it).
    assert {t["format"] for t in http.get_model_config("plain")["input"]} == {"FORMAT_NONE"}


def test_config_fields_over_grpc_and_classification_labels(grpc):
    config = grpc.get_model_config("configured", as_json=True)["config"]
    assert (
        config["input"][0]["format"] == "FORMAT_NHWC"
        and config["output"][0]["label_filename"] == "labels.txt"
    )
    inputs, _ = adder_inputs(grpcclient)
    outputs = [grpcclient.InferRequestedOutput("sum", class_count=2)]
    result = grpc.infer("configured", inputs, outputs=outputs)
    assert result.as_numpy("sum").tolist() == [
        [b"4.000000:2:large", b"2.000000:1:medium"],
        [b"10.000000:2:large", b"8.000000:1:medium"],
    ]


def test_options_in_code_set_the_config(package):
    options = ModelOptions(config={"max_batch_size": 4, "input": [{"name": "x", "format": "FORMAT_NCHW"}]})
    assert options.max_batch_size == 4
    with Server([package], http_port=0, grpc_port=None, model_options={"adder": options}) as server:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        config = client.get_model_config("adder")
        client.close()
    assert config["max_batch_size"] == 4 and config["input"][0]["format"] == "FORMAT_NCHW"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "ModelOptions: config must be a JSON object, got list"),
        (
            {"inputs": []},
            "ModelOptions: config: unknown field(s) 'inputs'; this server sets: input, max_batch_size",
        ),
        ({"max_batch_size": -1}, "ModelOptions: config 'max_batch_size' must be an integer >= 0, got -1"),
        ({"input": {}}, "ModelOptions: config 'input' must be a list of objects, got {}"),
        ({"input": [{"format": "FORMAT_NCHW"}]}, "each config 'input' entry needs a 'name' string"),
        ({"input": [{"name": "x", "format": "NCHW"}]}, "'format' must be one of FORMAT_NONE, FORMAT_NHWC"),
        ({"input": [{"name": "x", "dims": [3, "a"]}]}, "'dims' must be a list of integers >= -1"),
        ({"input": [{"name": "x", "optional": True}]}, "config input 'x': unknown field(s) 'optional'"),
        ({"output": [{"name": "y", "label_filename": ""}]}, "'label_filename' must be a file name, got ''"),
        ({"name": 3}, "config 'name' must be a string, got 3"),
    ],
)
def test_config_mistakes(config, message):
    with pytest.raises(OptionError) as info:
        ModelOptions(config=config)
    assert message in str(info.value)


def test_config_and_max_batch_size_must_agree():
    with pytest.raises(
        OptionError, match="max_batch_size is 2 but config's max_batch_size is 4; give it once"
    ):
        ModelOptions(max_batch_size=2, config={"max_batch_size": 4})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "other"}, "config: 'name' is 'other', but the model is served as 'adder'"),
        (
            {"input": [{"name": "z", "format": "FORMAT_NCHW"}]},
            "config: the model has no input 'z' (inputs: x, y)",
        ),
        (
            {"output": [{"name": "x", "label_filename": "l.txt"}]},
            "the model has no output 'x' (outputs: sum, diff)",
        ),
        (
            {"max_batch_size": 4, "input": [{"name": "x", "dims": [2, 2]}]},
            "config: dims [2, 2] of 'x' contradict its spec's shape ['batch', None] without the batch dim",
        ),
        (
            {"output": [{"name": "sum", "label_filename": "missing.txt"}]},
            "label_filename of output 'sum' cannot be",
        ),
    ],
)
def test_config_that_does_not_fit_the_model(package, config, message):
    options = {"adder": ModelOptions(config=config)}
    with (
        pytest.raises(OptionError) as info,
        Server([package], http_port=0, grpc_port=None, model_options=options),
    ):
        pass
    assert message in str(info.value)


def test_label_file_outside_the_model_folder(tmp_path, package):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.zip").write_bytes(package.read_bytes())
    config = {"output": [{"name": "sum", "label_filename": "../labels.txt"}]}
    (folder / OPTIONS_FILE).write_text(json.dumps({"config": config}))
    with pytest.raises(OptionError) as info:
        read_model_folder(folder)
    assert str(info.value).startswith(f"{folder / OPTIONS_FILE}: config output 'sum': 'label_filename'")
    assert "is outside the model's folder" in str(info.value)
    assert parse_config({}, "x") == parse_config({"input": [], "output": []}, "x")


# --- item 5: repository loads with parameters ------------------------------------------------


def failure(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value.status()), info.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_with_a_config_override(http, grpc, protocol):
    client = http if protocol == "http" else grpc
    override = {"max_batch_size": 2, "input": [{"name": "x", "format": "FORMAT_NCHW"}]}
    client.load_model("plain", config=json.dumps(override))
    config = http.get_model_config("plain")
    assert config["max_batch_size"] == 2 and config["input"][0]["format"] == "FORMAT_NCHW"
    client.load_model("plain")  # without a config: the folder's own again
    assert http.get_model_config("plain")["max_batch_size"] == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_uploaded_files(http, grpc, package, protocol):
    client = http if protocol == "http" else grpc
    module = httpclient if protocol == "http" else grpcclient
    name = f"uploaded_{protocol}"
    files = {"file:1/model.zip": package.read_bytes(), "file:labels.txt": b"a\nb\nc\n"}
    config = {"output": [{"name": "diff", "label_filename": "labels.txt"}]}
    client.load_model(name, config=json.dumps(config), files=files)
    assert client.is_model_ready(name)
    inputs, x = adder_inputs(module, rows=1)
    outputs = [module.InferRequestedOutput("sum"), module.InferRequestedOutput("diff", class_count=1)]
    result = client.infer(name, inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), x + x)
    assert result.as_numpy("diff").tolist() == [b"0.000000:0:a"]
    client.unload_model(name)
    client.load_model(name)  # again, from the files uploaded before
    assert client.is_model_ready(name)


def test_load_failures(server, http, grpc, package):
    status, message = failure(lambda: http.load_model("ghost"))
    assert status == "404" and message.startswith(
        "failed to load 'ghost', failed to poll from model repository"
    )
    status, message = failure(lambda: grpc.load_model("ghost"))
    assert status == "StatusCode.NOT_FOUND"
    assert message.startswith("failed to load 'ghost', failed to poll from model repository")
    status, message = failure(lambda: http.load_model("plain", config='{"inputs": []}'))
    assert status == "400"
    assert message.startswith("load failed for model 'plain': version 1 is at UNAVAILABLE state: ")
    assert "load parameter 'config': config: unknown field(s) 'inputs'" in message
    status, message = failure(lambda: grpc.load_model("plain", config="{not json"))
    assert message.startswith("Load parameter 'config' must be JSON text of a model configuration")
    http.load_model("plain")
    port = server.http_port
    for parameters, expected in [
        ({"bogus": "1"}, "unrecognized load parameter 'bogus'."),
        ({"config": {}}, "Load parameter 'config' must be a JSON string, got {}"),
        (
            {"file:1/model.zip": "not base64!"},
            "Load parameter 'file:1/model.zip' must hold base64 file contents",
        ),
        ([], "The load request's 'parameters' must be a JSON object, got []"),
    ]:
        path = "/v2/repository/models/plain/load"
        status_code, message = error_of(port, "POST", path, {"parameters": parameters})
        assert status_code == 400 and message.startswith(expected), message
    for key, expected in [
        ("file:../x.zip", "Invalid file parameter 'file:../x.zip': expected 'file:<path relative"),
        ("file:/abs.zip", "Invalid file parameter 'file:/abs.zip'"),
        (
            "file:2/model.zip",
            "Invalid file parameter 'file:2/model.zip': models served by neuropod have version 1",
        ),
        ("file:", "Invalid file parameter 'file:'"),
    ]:
        body = {"parameters": {key: base64.b64encode(b"data").decode()}}
        status_code, message = error_of(port, "POST", "/v2/repository/models/evil/load", body)
        assert status_code == 400 and expected in message, message


def test_grpc_load_parameter_types(server):
    import grpc as grpc_module
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc_module.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for key, kind, expected in [
            (
                "config",
                "bytes_param",
                "invalid value type for load parameter 'config', expected string_param.",
            ),
            (
                "file:m.zip",
                "string_param",
                "invalid value type for load parameter 'file:m.zip', expected bytes_param.",
            ),
            ("other", "bool_param", "unrecognized load parameter 'other'."),
        ]:
            message = service_pb2.RepositoryModelLoadRequest(model_name="plain")
            value = b"x" if kind == "bytes_param" else True if kind == "bool_param" else "x"
            setattr(message.parameters[key], kind, value)
            with pytest.raises(grpc_module.RpcError) as info:
                stub.RepositoryModelLoad(message)
            assert info.value.code() == grpc_module.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith(expected)


def test_uploads_are_held_to_the_package_limits(tmp_path):
    from neuropod.errors import BadRequest

    with pytest.raises(BadRequest, match="2 files were uploaded, more than the limit of 1"):
        write_files({"file:a": b"1", "file:b": b"2"}, ExtractionLimits(max_files=1))
    with pytest.raises(BadRequest, match="The uploaded files hold 6 bytes, more than the limit of 5"):
        write_files({"file:a": b"123", "file:b": b"456"}, ExtractionLimits(max_bytes=5))


def test_uploads_need_a_name_a_path_can_carry(server):
    import grpc as grpc_module
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc_module.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for name, expected in [
            ("", "Model name cannot be empty. Please enter a valid name to deploy."),
            ("a/b", "invalid model name 'a/b', model name must not contain path traversal characters"),
            ("..", "invalid model name '..', model name must not contain path traversal characters"),
        ]:
            message = service_pb2.RepositoryModelLoadRequest(model_name=name)
            message.parameters["file:model.zip"].bytes_param = b"zip"
            with pytest.raises(grpc_module.RpcError) as info:
                stub.RepositoryModelLoad(message)
            assert info.value.code() == grpc_module.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == expected
