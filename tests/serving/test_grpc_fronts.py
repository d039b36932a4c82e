"""Both gRPC front ends (pygrpc-native and grpcio) answer alike, against tritonclient's client.

The rest of the suite runs on the default (``auto``: native where installed); this module runs
the points where the two differ in how they are built on each of them explicitly.
"""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest

from neuropod.serving import Server
from neuropod.serving.grpc_fronts import native_available, resolve_front
from tests.serving.helpers import build_model

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

FRONTS = [
    "grpcio",
    pytest.param(
        "native", marks=pytest.mark.skipif(not native_available(), reason="pygrpc-native is not installed")
    ),
]
TOKEN = "s3cret"


@pytest.fixture(scope="module", params=FRONTS)
def server(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"models-{request.param}")
    models = [build_model(root, "adder"), build_model(root, "flaky")]
    with Server(
        models, http_port=None, grpc_port=0, auth_token=TOKEN, max_body_size=4096, grpc_front=request.param
    ) as server:
        assert server.grpc_front == request.param
        yield server


@pytest.fixture(scope="module")
def client(server):
    client = grpcclient.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


HEADERS = {"authorization": f"Bearer {TOKEN}"}


def adder_inputs(x: np.ndarray) -> list:
    inputs = [grpcclient.InferInput(name, list(x.shape), "FP32") for name in ("x", "y")]
    for item in inputs:
        item.set_data_from_numpy(x)
    return inputs


def flaky_input(value: int) -> list:
    item = grpcclient.InferInput("x", [1], "INT32")
    item.set_data_from_numpy(np.array([value], np.int32))
    return [item]


def failure(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return str(caught.value.status()), caught.value.message()


def test_infer_metadata_and_config(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = client.infer("adder", adder_inputs(x), headers=HEADERS, request_id="r1")
    assert result.get_response().id == "r1"
    np.testing.assert_array_equal(result.as_numpy("sum"), 2 * x)
    assert client.get_model_metadata("adder", headers=HEADERS, as_json=True)["platform"] == "neuropod_python"
    assert client.get_model_config("adder", headers=HEADERS, as_json=True)["config"]["name"] == "adder"
    statistics = client.get_inference_statistics("adder", headers=HEADERS, as_json=True)
    assert int(statistics["model_stats"][0]["inference_stats"]["success"]["count"]) == 1


def test_compressed_requests(server, client):
    x = np.ones((1, 8), np.float32)
    result = client.infer("adder", adder_inputs(x), headers=HEADERS, compression_algorithm="gzip")
    np.testing.assert_array_equal(result.as_numpy("diff"), 0 * x)

    def deflated():
        return client.infer("adder", adder_inputs(x), headers=HEADERS, compression_algorithm="deflate")

    if server.grpc_front == "grpcio":
        np.testing.assert_array_equal(deflated().as_numpy("diff"), 0 * x)
    else:  # a documented limit of pygrpc-native 0.5
        unsupported = "Content is compressed with `deflate` which isn't supported"
        assert failure(deflated) == ("StatusCode.UNIMPLEMENTED", unsupported)


def test_auth_and_errors(client):
    assert client.is_server_live() and client.is_server_ready()  # public
    assert failure(lambda: client.is_model_ready("adder"))[0] == "StatusCode.UNAUTHENTICATED"
    one = adder_inputs(np.ones((1, 1), np.float32))
    assert failure(lambda: client.infer("nope", one, headers=HEADERS)) == (
        "StatusCode.NOT_FOUND",
        "Request for unknown model: 'nope' is not found",
    )
    code, message = failure(lambda: client.infer("flaky", flaky_input(-1), headers=HEADERS))
    assert code == "StatusCode.INTERNAL" and "asked to fail" in message
    large = adder_inputs(np.ones((1, 2048), np.float32))
    code, message = failure(lambda: client.infer("adder", large, headers=HEADERS))
    assert code == "StatusCode.RESOURCE_EXHAUSTED" and "larger than max" in message


def test_methods_it_does_not_serve_answer_unimplemented(client):
    code, _ = failure(lambda: client.get_trace_settings(headers=HEADERS))
    assert code == "StatusCode.UNIMPLEMENTED"


def test_a_slow_call_holds_only_its_thread(client):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.infer, "flaky", flaky_input(1500), headers=HEADERS)
        time.sleep(0.2)
        started = time.monotonic()
        for _ in range(20):
            client.infer("adder", adder_inputs(np.ones((1, 1), np.float32)), headers=HEADERS)
        assert time.monotonic() - started < 1.0
        assert not slow.done()
        assert slow.result().as_numpy("y").tolist() == [3000]


def test_stop_drains_calls_in_flight(tmp_path):
    package = build_model(tmp_path, "flaky")
    for front in resolve_front("auto"), "grpcio":
        server = Server([package], http_port=None, grpc_port=0, grpc_front=front)
        server.start()
        client = grpcclient.InferenceServerClient(server.grpc_address)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(client.infer, "flaky", flaky_input(400))
            time.sleep(0.15)
            server.stop()
            assert call.result().as_numpy("y").tolist() == [800]
        assert failure(lambda: client.is_server_live())[0] == "StatusCode.UNAVAILABLE"  # noqa: B023
        client.close()


def test_front_choice():
    with pytest.raises(ValueError, match="grpc_front must be one of auto, native, grpcio, got 'fast'"):
        resolve_front("fast")
    assert resolve_front("grpcio") == "grpcio"
    assert resolve_front("auto") == ("native" if native_available() else "grpcio")
