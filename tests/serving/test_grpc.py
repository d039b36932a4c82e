"""The gRPC front end against tritonclient's gRPC client."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from neuropod.serving import Server
from tests.serving.helpers import build_model

grpcclient = pytest.importorskip("tritonclient.grpc")
shm_utils = pytest.importorskip("tritonclient.utils.shared_memory")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    repository = root / "repository"
    repository.mkdir()
    build_model(root, "strings", repository / "strings")
    build_model(root, "flaky", repository / "flaky")
    with Server([build_model(root, "adder")], repository=repository, http_port=None, grpc_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    client = grpcclient.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


def adder_inputs(x: np.ndarray, y: np.ndarray) -> list:
    inputs = [
        grpcclient.InferInput("x", list(x.shape), "FP32"),
        grpcclient.InferInput("y", list(y.shape), "FP32"),
    ]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(y)
    return inputs


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("adder")
    status, message = code_of(lambda: client.is_model_ready("adder", "2"))
    assert status == "StatusCode.NOT_FOUND"
    assert message == "Request for unknown model: 'adder' version 2 is not found"
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "neuropod" and "system_shared_memory" in server["extensions"]
    metadata = client.get_model_metadata("adder", as_json=True)
    assert metadata["platform"] == "neuropod_python"
    assert metadata["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": ["-1", "-1"]}


def test_model_config(client):
    config = client.get_model_config("adder", as_json=True)["config"]
    assert config["name"] == "adder"
    assert [(t["name"], t["data_type"]) for t in config["output"]] == [
        ("sum", "TYPE_FP32"),
        ("diff", "TYPE_FP32"),
    ]
    assert config["parameters"]["neuropod_platform"] == {"string_value": "python"}


def test_infer_raw_contents(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = client.infer("adder", adder_inputs(x, x * 10), request_id="g-1")
    assert result.get_response().id == "g-1"
    np.testing.assert_array_equal(result.as_numpy("sum"), x * 11)
    np.testing.assert_array_equal(result.as_numpy("diff"), x * -9)


def test_requested_outputs_subset(client):
    x = np.ones((1, 2), np.float32)
    result = client.infer("adder", adder_inputs(x, x), outputs=[grpcclient.InferRequestedOutput("diff")])
    assert [o.name for o in result.get_response().outputs] == ["diff"]
    np.testing.assert_array_equal(result.as_numpy("diff"), [[0, 0]])


def test_strings(client):
    text = np.array(["ünïcode", "b"], dtype=object)
    inputs = [grpcclient.InferInput("text", [2], "BYTES")]
    inputs[0].set_data_from_numpy(text)
    result = client.infer("strings", inputs)
    assert [item.decode() for item in result.as_numpy("upper")] == ["ÜNÏCODE", "B"]
    np.testing.assert_array_equal(result.as_numpy("length"), [7, 1])


def test_large_tensors_pass_the_default_4mb_limit(client):
    x = np.random.default_rng(0).random((1, 3_000_000), dtype=np.float32)  # 12 MB per input
    result = client.infer("adder", adder_inputs(x, x))
    np.testing.assert_array_equal(result.as_numpy("sum"), x + x)


def test_system_shared_memory(client):
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    key = f"/neuropod-grpc-{uuid.uuid4().hex[:8]}"
    handle = shm_utils.create_shared_memory_region("gio", key, x.nbytes * 3)
    try:
        shm_utils.set_shared_memory_region(handle, [x, x * 2])
        client.register_system_shared_memory("gio", key, x.nbytes * 3)
        status = client.get_system_shared_memory_status(as_json=True)
        assert status["regions"]["gio"]["key"] == key
        inputs = [grpcclient.InferInput("x", [1, 4], "FP32"), grpcclient.InferInput("y", [1, 4], "FP32")]
        inputs[0].set_shared_memory("gio", x.nbytes)
        inputs[1].set_shared_memory("gio", x.nbytes, offset=x.nbytes)
        outputs = [grpcclient.InferRequestedOutput("sum"), grpcclient.InferRequestedOutput("diff")]
        outputs[0].set_shared_memory("gio", x.nbytes, offset=2 * x.nbytes)
        result = client.infer("adder", inputs, outputs=outputs)
        written = shm_utils.get_contents_as_numpy(handle, np.float32, [1, 4], offset=2 * x.nbytes)
        np.testing.assert_array_equal(written, x * 3)
        np.testing.assert_array_equal(result.as_numpy("diff"), -x)  # raw contents keep their places
        client.unregister_system_shared_memory("gio")
        assert client.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}
        client.unregister_cuda_shared_memory()
    finally:
        shm_utils.destroy_shared_memory_region(handle)


def test_statistics_and_repository(client):
    x = np.ones((1, 1), np.float32)
    client.infer("adder", adder_inputs(x, x))
    stats = client.get_inference_statistics("adder", as_json=True)["model_stats"][0]
    assert stats["name"] == "adder" and int(stats["inference_count"]) >= 1
    assert int(stats["inference_stats"]["success"]["count"]) >= 1
    index = {m["name"]: m["state"] for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index == {"adder": "READY", "strings": "READY", "flaky": "READY"}
    client.unload_model("flaky")
    assert not client.is_model_ready("flaky")
    client.load_model("flaky")
    assert client.is_model_ready("flaky")


def code_of(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.status(), info.value.message()


def test_errors_are_status_codes(client):
    x = np.ones((1, 2), np.float32)
    status, message = code_of(lambda: client.infer("nope", adder_inputs(x, x)))
    assert status == "StatusCode.NOT_FOUND" and message == "Request for unknown model: 'nope' is not found"
    inputs = adder_inputs(x, x)
    inputs[1] = grpcclient.InferInput("y", [1, 2], "INT32")
    inputs[1].set_data_from_numpy(np.ones((1, 2), np.int32))
    status, message = code_of(lambda: client.infer("adder", inputs))
    assert status == "StatusCode.INVALID_ARGUMENT" and "expected to be of type float32" in message
    flaky = [grpcclient.InferInput("x", [1], "INT32")]
    flaky[0].set_data_from_numpy(np.array([-1], np.int32))
    status, message = code_of(lambda: client.infer("flaky", flaky))
    assert status == "StatusCode.INTERNAL" and "asked to fail" in message
    flaky[0].set_data_from_numpy(np.array([0], np.int32))
    np.testing.assert_array_equal(client.infer("flaky", flaky).as_numpy("y"), [0])  # recovered
    status, message = code_of(
        lambda: client.infer("adder", adder_inputs(x, x), outputs=[grpcclient.InferRequestedOutput("z")])
    )
    assert status == "StatusCode.INVALID_ARGUMENT" and "Output 'z'" in message
    status, _ = code_of(lambda: client.register_system_shared_memory("r", "/does-not-exist-np", 8))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert client.is_server_ready()


def test_wrong_raw_size_is_invalid_argument(client, server):
    import grpc

    from neuropod.protocol.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="adder")
        for name in ("x", "y"):
            tensor = request.inputs.add(name=name, datatype="FP32")
            tensor.shape.extend([1, 2])
        request.raw_input_contents.extend([b"\0" * 8, b"\0" * 7])
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "needs 8 bytes, but 7 were given" in info.value.details()
        del request.raw_input_contents[1]
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert "raw_input_contents has 1 entries" in info.value.details()


def test_bearer_token(tmp_path):
    with Server([build_model(tmp_path, "adder")], http_port=None, grpc_port=0, auth_token="tok") as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        assert client.is_server_live()  # health needs no token
        status, _ = code_of(lambda: client.get_model_metadata("adder"))
        assert status == "StatusCode.UNAUTHENTICATED"
        x = np.ones((1, 1), np.float32)
        result = client.infer("adder", adder_inputs(x, x), headers={"authorization": "Bearer tok"})
        np.testing.assert_array_equal(result.as_numpy("sum"), [[2]])
        client.close()


def test_malformed_infer_message_is_invalid_argument(client, server):
    import grpc

    with grpc.insecure_channel(server.grpc_address) as channel:
        model_infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for data in (b"\x0a\x05ab", b"\x0a\x01a" * 30_000 + b"\x3a\xff\xff\x7f"):
            with pytest.raises(grpc.RpcError) as info:
                model_infer(data)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid ModelInferRequest" in info.value.details()
    assert client.is_server_ready()


def test_grpc_threads(tmp_path):
    from neuropod.serving.server import default_grpc_threads

    assert default_grpc_threads() >= 2
    assert default_grpc_threads([3, 60]) == max(63, default_grpc_threads())
    adder = build_model(tmp_path, "adder")
    with pytest.raises(ValueError, match="grpc_threads must be at least 1"):
        Server([adder], grpc_threads=0)
    with Server([adder], http_port=None, grpc_port=0, grpc_threads=1) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        x = np.ones((1, 2), np.float32)
        for _ in range(3):  # one thread answers every call in turn
            assert client.is_server_ready()
            np.testing.assert_array_equal(client.infer("adder", adder_inputs(x, x)).as_numpy("sum"), 2 * x)
        client.close()
