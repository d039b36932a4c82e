"""Triton's extensions as unchanged Triton clients use them (issue 14): classification,
compressed HTTP bodies, Triton's error texts, the server's name and extensions, the model
configuration fields clients read, and repository loads with parameters."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from neuropod.packagers.python import create_python_neuropod
from neuropod.serving import Server
from neuropod.serving.core import EXTENSIONS
from neuropod.serving.options import OPTIONS_FILE
from tests.serving.helpers import build_model, error_of, request

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

LABELS = ["cat", "dog", "", "emu"]  # class 2 has no label

# scores: a batched classifier (max_batch_size 4 from its folder); flags: an output that
# cannot be ranked.
CLASSIFIER = """
import numpy as np

def get_model(data_dir):
    def run(x):
        return {"scores": x, "flags": x > 0.5, "counts": (x * 10).astype(np.int32)}
    return run
"""


def build_classifier(root: Path, target: Path) -> Path:
    source = root / "src_classifier" / "served_classifier"
    source.mkdir(parents=True, exist_ok=True)
    (source / "__init__.py").write_text("")
    (source / "main.py").write_text(textwrap.dedent(CLASSIFIER))
    create_python_neuropod(
        neuropod_path=target,
        model_name="classifier",
        input_spec=[{"name": "x", "dtype": "float32", "shape": ["batch", 4]}],
        output_spec=[
            {"name": "scores", "dtype": "float32", "shape": ["batch", 4]},
            {"name": "flags", "dtype": "bool", "shape": ["batch", 4]},
            {"name": "counts", "dtype": "int32", "shape": ["batch", 4]},
        ],
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["served_classifier"]}],
        entrypoint_package="served_classifier.main",
        entrypoint="get_model",
    )
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    repository = root / "repository"
    folder = repository / "classifier"
    folder.mkdir(parents=True)
    build_classifier(root, folder / "model.zip")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    config = {
        "max_batch_size": 4,
        "input": [{"name": "x", "format": "FORMAT_NCHW"}],
        "output": [{"name": "scores", "label_filename": "labels.txt"}],
    }
    (folder / OPTIONS_FILE).write_text(json.dumps({"config": config}))
    build_model(root, "adder", repository / "adder")
    with Server(
        repository=repository, http_port=0, grpc_port=0, max_body_size=1 << 20, server_name="triton-like"
    ) as server:
        yield server


X = np.array([[0.1, 0.7, 0.2, 0.7], [0.9, 0.0, 0.3, 0.4]], np.float32)


def http_inputs(x=X, binary=True):
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return [tensor]


def grpc_inputs(x=X):
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


def texts(array: np.ndarray) -> list:
    return [[item.decode() if isinstance(item, bytes) else item for item in row] for row in array.tolist()]


# The top 3 of each row, largest first, ties lower index first; class 2 has no label.
EXPECTED = [
    ["0.700000:1:dog", "0.700000:3:emu", "0.200000:2"],
    ["0.900000:0:cat", "0.400000:3:emu", "0.300000:2"],
]


def failure(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value.status()), info.value.message()


# --- item 9: the server's name and extensions -------------------------------------------------


def test_server_name_and_extensions(http, grpc):
    metadata = http.get_server_metadata()
    assert metadata["name"] == "triton-like"
    assert metadata["extensions"] == list(EXTENSIONS)
    assert "classification" in EXTENSIONS
    assert grpc.get_server_metadata(as_json=True)["name"] == "triton-like"


def test_server_name_must_not_be_empty(tmp_path):
    with pytest.raises(ValueError, match="server_name must not be empty"):
        Server([tmp_path], http_port=0, grpc_port=None, server_name=" ")
    result = subprocess.run(
        [sys.executable, "-m", "neuropod.cli", "serve", str(tmp_path), "--server-name", ""],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--server-name must not be empty" in result.stderr


# --- item 8: Triton's error texts -------------------------------------------------------------


def test_unknown_model(http, grpc):
    status, message = failure(lambda: http.infer("nope", http_inputs()))
    assert (status, message) == ("404", "Request for unknown model: 'nope' is not found")
    status, message = failure(lambda: grpc.infer("nope", grpc_inputs()))
    assert (status, message) == ("StatusCode.NOT_FOUND", "Request for unknown model: 'nope' is not found")
    status, message = failure(lambda: grpc.get_model_metadata("nope"))
    assert status == "StatusCode.NOT_FOUND" and message.startswith("Request for unknown model")


@pytest.mark.parametrize(
    ("version", "code", "status", "message"),
    [
        (
            "v",
            "StatusCode.INVALID_ARGUMENT",
            400,
            "failed to get model version from specified version string 'v' (details: not an integer), "
            "version should be an integral value > 0",
        ),
        (
            "-3",
            "StatusCode.INVALID_ARGUMENT",
            400,
            "invalid model version specified '-3' , version should be an integral value > 0",
        ),
        ("2", "StatusCode.NOT_FOUND", 404, "Request for unknown model: 'classifier' version 2 is not found"),
    ],
)
def test_version_strings(server, grpc, version, code, status, message):
    assert failure(lambda: grpc.infer("classifier", grpc_inputs(), model_version=version)) == (code, message)
    assert failure(lambda: grpc.get_model_config("classifier", version)) == (code, message)
    path = f"/v2/models/classifier/versions/{version}/infer"
    assert error_of(server.http_port, "POST", path, {"inputs": []}) == (status, message)
    assert grpc.infer("classifier", grpc_inputs(), model_version="1").as_numpy("scores").shape == (2, 4)


def test_typed_contents_beside_raw_contents(server):
    import grpc as grpc_module

    with grpc_module.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        message = service_pb2.ModelInferRequest(model_name="adder")
        for name in ("x", "y"):
            tensor = message.inputs.add(name=name, datatype="FP32", shape=[1, 2])
            message.raw_input_contents.append(np.ones(2, np.float32).tobytes())
        tensor.contents.fp32_contents.extend([5.0, 6.0])
        with pytest.raises(grpc_module.RpcError) as info:
            stub.ModelInfer(message)
    assert info.value.code() == grpc_module.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "contents field must not be specified when using raw_input_contents for 'y' for model 'adder'"
    )


# --- item 3: classification -------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False])
def test_classification_over_http(http, binary):
    outputs = [httpclient.InferRequestedOutput("scores", binary_data=binary, class_count=3)]
    result = http.infer("classifier", http_inputs(binary=binary), outputs=outputs)
    output = result.get_output("scores")
    assert output["datatype"] == "BYTES" and output["shape"] == [2, 3]
    assert texts(result.as_numpy("scores")) == EXPECTED


def test_classification_over_grpc(grpc):
    outputs = [
        grpcclient.InferRequestedOutput("scores", class_count=2),
        grpcclient.InferRequestedOutput("counts"),
    ]
    result = grpc.infer("classifier", grpc_inputs(), outputs=outputs)
    assert texts(result.as_numpy("scores")) == [row[:2] for row in EXPECTED]
    np.testing.assert_array_equal(result.as_numpy("counts"), (X * 10).astype(np.int32))


def test_classification_of_integers_without_labels_and_k_past_the_item(grpc):
    outputs = [grpcclient.InferRequestedOutput("counts", class_count=9)]
    result = grpc.infer("classifier", grpc_inputs(X[:1]), outputs=outputs)
    assert texts(result.as_numpy("counts")) == [["7:1", "7:3", "2:2", "1:0"]]


def test_classification_over_asyncio(server):
    aio_http = pytest.importorskip("tritonclient.http.aio")
    aio_grpc = pytest.importorskip("tritonclient.grpc.aio")

    async def both():
        client = aio_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            outputs = [aio_http.InferRequestedOutput("scores", class_count=1)]
            inputs = [aio_http.InferInput("x", [2, 4], "FP32")]
            inputs[0].set_data_from_numpy(X)
            over_http = await client.infer("classifier", inputs, outputs=outputs)
        finally:
            await client.close()
        channel = aio_grpc.InferenceServerClient(server.grpc_address)
        try:
            inputs = [aio_grpc.InferInput("x", [2, 4], "FP32")]
            inputs[0].set_data_from_numpy(X)
            outputs = [aio_grpc.InferRequestedOutput("scores", class_count=1)]
            over_grpc = await channel.infer("classifier", inputs, outputs=outputs)
        finally:
            await channel.close()
        return over_http.as_numpy("scores"), over_grpc.as_numpy("scores")

    for result in asyncio.run(both()):
        assert texts(result) == [row[:1] for row in EXPECTED]


def test_classification_of_a_model_that_does_not_batch(tmp_path):
    package = build_classifier(tmp_path, tmp_path / "classifier.zip")
    with Server([package], http_port=0, grpc_port=None) as server:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        outputs = [httpclient.InferRequestedOutput("scores", class_count=2)]
        result = client.infer("classifier", http_inputs(), outputs=outputs)
        client.close()
    # The whole output is one item: the top 2 of its 8 values, indexed row-major.
    assert result.as_numpy("scores").tolist() == [b"0.900000:4", b"0.700000:1"]


def test_classification_errors(server, http, grpc):
    outputs = [httpclient.InferRequestedOutput("flags", class_count=2)]
    status, message = failure(lambda: http.infer("classifier", http_inputs(), outputs=outputs))
    assert status == "400"
    assert message.startswith("class result not available for output due to unsupported type 'BOOL'")
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}],
        "outputs": [{"name": "scores", "parameters": {"classification": "two"}}],
    }
    status, message = error_of(server.http_port, "POST", "/v2/models/classifier/infer", body)
    assert status == 400 and message.startswith(
        "Unable to set 'classification': expected an unsigned integer"
    )
    body["outputs"] = [{"name": "scores", "parameters": {"classification": 2, "shared_memory_region": "r"}}]
    status, message = error_of(server.http_port, "POST", "/v2/models/classifier/infer", body)
    assert status == 400 and message.startswith(
        "Output can't set both 'shared_memory_region' and 'classification'"
    )
    body["outputs"] = [{"name": "scores", "parameters": {"classification": 0}}]  # 0: the values
    status, _, data = request(server.http_port, "POST", "/v2/models/classifier/infer", body)
    assert status == 200 and json.loads(data)["outputs"][0]["datatype"] == "FP32"

    outputs = [grpcclient.InferRequestedOutput("scores", class_count=-1)]
    status, message = failure(lambda: grpc.infer("classifier", grpc_inputs(), outputs=outputs))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message.startswith("invalid value for 'classification' parameter, expected >= 0")
    output = grpcclient.InferRequestedOutput("scores")
    output._output.parameters["classification"].string_param = "2"
    status, message = failure(lambda: grpc.infer("classifier", grpc_inputs(), outputs=[output]))
    assert message.startswith("invalid value type for 'classification' parameter, expected int64_param")
    output = grpcclient.InferRequestedOutput("scores", class_count=2)
    output._output.parameters["shared_memory_region"].string_param = "r"
    status, message = failure(lambda: grpc.infer("classifier", grpc_inputs(), outputs=[output]))
    assert message.startswith("output can't set both 'shared_memory_region' and 'classification'")


# --- item 6: compressed HTTP bodies -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
def test_compressed_requests_and_responses(http, algorithm, binary):
    result = http.infer(
        "classifier",
        http_inputs(binary=binary),
        outputs=[httpclient.InferRequestedOutput("scores", binary_data=binary)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("scores"), X)


def test_compressed_over_asyncio(server):
    aio_http = pytest.importorskip("tritonclient.http.aio")

    async def call():
        client = aio_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            inputs = [aio_http.InferInput("x", [2, 4], "FP32")]
            inputs[0].set_data_from_numpy(X)
            result = await client.infer(
                "classifier",
                inputs,
                request_compression_algorithm="gzip",
                response_compression_algorithm="deflate",
            )
        finally:
            await client.close()
        return result.as_numpy("scores")

    np.testing.assert_array_equal(asyncio.run(call()), X)


def test_response_encoding_follows_accept_encoding(server):
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    path = "/v2/models/classifier/infer"
    status, headers, data = request(
        server.http_port, "POST", path, body.encode(), {"Accept-Encoding": "deflate;q=0.5, gzip"}
    )
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(data))["outputs"][0]["data"] == [1, 2, 3, 4]
    status, headers, data = request(
        server.http_port, "POST", path, body.encode(), {"Accept-Encoding": "br, identity"}
    )
    assert "content-encoding" not in headers and json.loads(data)["model_name"] == "classifier"


def test_decompression_is_bounded(server):
    path = "/v2/models/classifier/infer"
    # 2 MiB of zeros, about 2 KiB compressed: over the server's 1 MiB limit once inflated.
    bomb = zlib.compress(b"0" * (2 << 20))
    status, message = error_of(server.http_port, "POST", path, bomb, headers={"Content-Encoding": "deflate"})
    assert status == 413
    assert message.startswith("Decompressed data size exceeds the maximum allowed value of 1048576 bytes")
    for encoding, data, expected in [
        (
            "br",
            b"{}",
            "Unsupported compression type 'br' (Content-Encoding); this server accepts gzip, deflate",
        ),
        ("gzip", b"not gzip at all", "The request body is not valid gzip data (Content-Encoding): "),
        ("deflate", zlib.compress(b'{"inputs": []}')[:-4], "The request body's deflate data is truncated"),
        (
            "gzip",
            gzip.compress(b"{}") + b"junk",
            "The request body has 4 bytes after the end of its gzip data",
        ),
    ]:
        status, message = error_of(
            server.http_port, "POST", path, data, headers={"Content-Encoding": encoding}
        )
        assert status == 400 and message.startswith(expected), message
