"""Every way a request can go wrong over HTTP: a clear {"error"} with the right status, and a
server that stays healthy afterwards."""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from multiprocessing import shared_memory

import numpy as np
import pytest

from neuropod.serving import OPTIONS_FILE, Server
from tests.serving.helpers import build_model, error_of, request

pytest.importorskip("uvicorn")

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    repository = root / "repository"
    repository.mkdir()
    build_model(root, "strings", repository / "strings.zip")
    build_model(root, "flaky", repository / "flaky.zip")
    broken = repository / "broken"
    broken.mkdir()
    (broken / OPTIONS_FILE).write_text('{"options": {"no_such_option": 1}}')
    build_model(root, "adder", broken / "model.zip")
    with Server([build_model(root, "adder")], repository=repository, http_port=0, grpc_port=None,
                max_body_size=LIMIT) as server:  # fmt: skip
        yield server


@pytest.fixture
def port(server):
    yield server.http_port
    assert request(server.http_port, "GET", "/v2/health/ready")[0] == 200  # still healthy


def infer(port: int, body, model: str = "adder", headers: dict[str, str] | None = None) -> tuple[int, str]:
    return error_of(port, "POST", f"/v2/models/{model}/infer", body, headers=headers)


def adder_request(**x_fields) -> dict:
    x = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2], **x_fields}
    return {"inputs": [x, {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}


def binary_body(header: dict, data: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + data, {"Inference-Header-Content-Length": str(len(text))}


def test_malformed_json(port):
    status, message = infer(port, b'{"inputs": [')
    assert status == 400 and "JSON is malformed" in message
    status, message = infer(port, b"[1, 2]")
    assert status == 400 and "must be a JSON object" in message
    status, message = infer(port, {"outputs": []})
    assert status == 400 and "'inputs'" in message


def test_unknown_model_and_paths(port):
    status, message = infer(port, adder_request(), model="nope")
    assert status == 404 and message == "Request for unknown model: 'nope' is not found"
    assert error_of(port, "GET", "/v2/models/adder/versions/7")[0] == 404
    assert error_of(port, "GET", "/v2/nothing/here")[0] == 404
    status, message = error_of(port, "GET", "/v2/models/adder/infer")
    assert status == 405 and "use POST" in message


def test_unknown_tensors(port):
    body = adder_request()
    body["inputs"][0]["name"] = "z"
    status, message = infer(port, body)
    assert status == 400 and "'z'" in message and "not found in the input spec" in message
    body = adder_request()
    body["outputs"] = [{"name": "nope"}]
    status, message = infer(port, body)
    assert status == 400 and "Output 'nope' is not an output of model 'adder'" in message


def test_wrong_dtype_and_shape_are_validation_errors(port):
    status, message = infer(port, adder_request(datatype="INT32"))
    assert status == 400
    assert message == "Tensor 'x' in the input spec is expected to be of type float32, but was of type int32"
    status, message = infer(port, adder_request(shape=[2], data=[1, 2]))
    assert status == 400 and "expected to have 2 dimensions" in message
    status, message = infer(port, adder_request(shape=[1, 3], data=[1, 2]))
    assert status == 400 and "needs 3 elements, but data has 2" in message
    status, message = infer(port, adder_request(data=[1, "a"]))
    assert status == 400 and "FP32 data must hold numbers" in message
    status, message = infer(port, adder_request(datatype="BF16"))
    assert status == 400 and "Datatype 'BF16' is not supported" in message
    status, message = infer(port, adder_request(shape=[1, -2]))
    assert status == 400 and "non-negative integers" in message


def test_wrong_binary_sizes(port):
    header = adder_request(parameters={"binary_data_size": 8})
    del header["inputs"][0]["data"]
    body, headers = binary_body(header, b"\0" * 4)
    status, message = infer(port, body, headers=headers)
    assert status == 400 and "binary_data_size is 8, but only 4 bytes" in message
    header["inputs"][0]["parameters"]["binary_data_size"] = 4
    status, message = infer(port, *_swap(binary_body(header, b"\0" * 4)))
    assert status == 400 and "needs 8 bytes, but 4 were given" in message
    header["inputs"][0]["parameters"]["binary_data_size"] = 8
    status, message = infer(port, *_swap(binary_body(header, b"\0" * 12)))
    assert status == 400 and "4 bytes of binary data follow" in message
    status, message = infer(port, b"{}", headers={"Inference-Header-Content-Length": "99"})
    assert status == 400 and "Inference-Header-Content-Length is 99, but the body has 2 bytes" in message
    status, message = infer(port, b"{}", headers={"Inference-Header-Content-Length": "x"})
    assert status == 400 and "must be a non-negative integer" in message


def _swap(pair):
    body, headers = pair
    return body, "adder", headers


def test_bad_bytes(port):
    header = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]
    }
    body, headers = binary_body(header, struct.pack("<I", 2) + b"\xff\xfe")
    status, message = infer(port, body, model="strings", headers=headers)
    assert status == 400 and "not UTF-8 text" in message
    body, headers = binary_body(header, struct.pack("<I", 9) + b"ab")
    status, message = infer(port, body, model="strings", headers=headers)
    assert status == 400 and "claims 9 bytes, but only 2 are left" in message
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [1]}]}
    status, message = infer(port, body, model="strings")
    assert status == 400 and "must hold JSON strings" in message


def test_oversized_body(port):
    status, message = infer(port, b"x" * (LIMIT + 1))
    assert status == 413 and f"at most {LIMIT}" in message


def test_model_failure_is_500_and_the_model_recovers(port):
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [-1]}]}
    status, message = infer(port, body, model="flaky")
    assert status == 500 and "asked to fail" in message and "RuntimeError" in message
    body["inputs"][0]["data"] = [4]
    status, _, data = request(port, "POST", "/v2/models/flaky/infer", body)
    assert status == 200 and json.loads(data)["outputs"][0]["data"] == [8]


def test_model_that_failed_to_load(port):
    status, message = infer(port, adder_request(), model="broken")
    assert status == 503 and "no_such_option" in message
    status, message = error_of(port, "POST", "/v2/repository/models/broken/load")
    assert status == 400
    assert message.startswith("load failed for model 'broken': version 1 is at UNAVAILABLE state: ")
    index = {m["name"]: m for m in json.loads(request(port, "POST", "/v2/repository/index")[2])}
    assert index["broken"]["state"] == "UNAVAILABLE" and "no_such_option" in index["broken"]["reason"]
    status, message = error_of(port, "POST", "/v2/repository/models/ghost/load")
    assert status == 404


@pytest.fixture
def region():
    memory = shared_memory.SharedMemory(f"np-{uuid.uuid4().hex[:8]}", create=True, size=64)
    yield memory
    memory.close()
    memory.unlink()


def test_bad_shared_memory(port, region):
    def register(name, **body):
        return error_of(port, "POST", f"/v2/systemsharedmemory/region/{name}/register", body)

    status, message = register("a", key="/no-such-region-x", byte_size=8)
    assert status == 400 and "cannot open shared memory object" in message
    status, message = register("a", key=f"/{region.name}", offset=60, byte_size=8)
    assert status == 400 and "does not fit" in message
    status, message = register("a", key=f"/{region.name}", byte_size=-1)
    assert status == 400 and "byte_size must be an int >= 0" in message
    status, message = register("a", key="../etc/passwd", byte_size=8)
    assert status == 400 and "POSIX shared memory name" in message
    assert (
        request(
            port, "POST", "/v2/systemsharedmemory/region/ok/register", {"key": region.name, "byte_size": 16}
        )[0]
        == 200
    )
    try:
        status, message = register("ok", key=region.name, byte_size=16)
        assert status == 400 and "already registered" in message
        body = adder_request(parameters={"shared_memory_region": "missing", "shared_memory_byte_size": 8})
        del body["inputs"][0]["data"]
        status, message = infer(port, body)
        assert status == 404 and "'missing' is not registered" in message
        body["inputs"][0]["parameters"] = {"shared_memory_region": "ok", "shared_memory_byte_size": 8,
                                           "shared_memory_offset": 12}  # fmt: skip
        status, message = infer(port, body)
        assert status == 400 and "does not fit region 'ok' of 16 bytes" in message
        body["inputs"][0]["parameters"]["shared_memory_offset"] = 0
        body["outputs"] = [
            {"name": "sum", "parameters": {"shared_memory_region": "ok", "shared_memory_byte_size": 4}}
        ]
        status, message = infer(port, body)
        assert status == 400 and "more than the 4 bytes of shared memory" in message
        assert error_of(port, "GET", "/v2/systemsharedmemory/region/missing/status")[0] == 404
    finally:
        request(port, "POST", "/v2/systemsharedmemory/unregister")
    region.buf[:4] = b"live"  # the server unmapped, never unlinked, the client's region


def test_drain_on_stop(tmp_path):
    server = Server([build_model(tmp_path, "flaky")], http_port=0, grpc_port=None).start()
    results = []

    def slow_call():
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [400]}]}
        results.append(request(server.http_port, "POST", "/v2/models/flaky/infer", body)[0])

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.15)  # the call is running
    server.stop()
    caller.join()
    assert results == [200]
    server.stop()  # idempotent


def test_out_of_process_crash_is_500_and_the_model_recovers(tmp_path):
    folder = tmp_path / "repository" / "crashy"
    folder.mkdir(parents=True)
    build_model(tmp_path, "flaky", folder / "model.zip")
    (folder / OPTIONS_FILE).write_text(json.dumps({"options": {"use_ope": True, "instances": 2}}))
    with Server(repository=tmp_path / "repository", http_port=0, grpc_port=None) as server:
        port = server.http_port
        config = json.loads(request(port, "GET", "/v2/models/crashy/config")[2])
        assert config["instance_group"][0]["count"] == 2
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [-2]}]}
        status, message = infer(port, body, model="crashy")
        assert status == 500 and "exited with status 3" in message
        body["inputs"][0]["data"] = [3]
        status, _, data = request(port, "POST", "/v2/models/crashy/infer", body)
        assert status == 200 and json.loads(data)["outputs"][0]["data"] == [6]
        assert request(port, "GET", "/v2/health/ready")[0] == 200


def test_an_error_naming_a_lone_surrogate_is_still_answered(port):
    # json.loads reads the escape into a str that orjson cannot write: the error is written by
    # the standard library, escaped as it came (found by tests/protocol/test_properties.py).
    body = b'{"inputs": [{"name": "\\ud800", "datatype": "FP32", "shape": [1]}]}'
    status, message = infer(port, body)
    assert status == 400 and message == "Tensor '\ud800' has no 'data' (nor parameter binary_data_size)"


def test_json_numbers_out_of_range(port):
    status, message = infer(port, adder_request(data=[1, 1e39]))
    assert status == 400 and "Tensor 'x'" in message and "FP32" in message
    x = {"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 2**70]}
    status, message = infer(port, {"inputs": [x]})
    assert status == 400 and ("INT64" in message or "malformed" in message)  # orjson: no 70-bit ints


def test_non_finite_json_numbers_as_tritons_clients_write_them(port):
    # perf_analyzer's random JSON data holds NaN; Python's json writes and reads it too.
    body = json.dumps(adder_request(data=[float("nan"), float("-inf")])).encode()
    assert b"NaN" in body and b"-Infinity" in body
    status, _, data = request(port, "POST", "/v2/models/adder/infer", body)
    assert status == 200 and b"NaN" in data
    outputs = {output["name"]: output["data"] for output in json.loads(data)["outputs"]}
    assert np.isnan(outputs["sum"][0]) and outputs["sum"][1] == float("-inf")
    status, message = infer(port, b'{"inputs": [NaN')
    assert status == 400 and "JSON is malformed" in message
