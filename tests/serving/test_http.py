"""The HTTP front end against real clients: tritonclient, curl, and plain HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest

from neuropod.serving import OPTIONS_FILE, Server
from tests.serving.helpers import build_model, error_of, request

pytest.importorskip("uvicorn")
httpclient = pytest.importorskip("tritonclient.http")
shm_utils = pytest.importorskip("tritonclient.utils.shared_memory")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    repository = root / "repository"
    repository.mkdir()
    adder = build_model(root, "adder")
    build_model(root, "strings", repository / "strings")
    build_model(root, "types", repository / "types")
    folder = repository / "flaky"
    folder.mkdir()
    build_model(root, "flaky", folder / "model.zip")
    (folder / OPTIONS_FILE).write_text(json.dumps({"concurrency": 2, "max_batch_size": 0}))
    with Server([adder], repository=repository, http_port=0, grpc_port=None) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()


def adder_inputs(binary: bool = True) -> tuple[list, np.ndarray, np.ndarray]:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.full((2, 3), 10, np.float32)
    inputs = [httpclient.InferInput("x", [2, 3], "FP32"), httpclient.InferInput("y", [2, 3], "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    inputs[1].set_data_from_numpy(y, binary_data=binary)
    return inputs, x, y


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "neuropod"
    assert {"binary_tensor_data", "system_shared_memory", "model_repository", "statistics"} <= set(
        metadata["extensions"]
    )


def test_model_ready_and_versions(client, server):
    assert client.is_model_ready("adder")
    assert client.is_model_ready("adder", "1")
    status, body = request(server.http_port, "GET", "/v2/models/adder/versions/1/ready")[::2]
    assert status == 200 and json.loads(body) == {"name": "adder", "ready": True}


def test_model_metadata_from_the_specs(client):
    metadata = client.get_model_metadata("adder")
    assert metadata["name"] == "adder"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "neuropod_python"
    assert metadata["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "y", "datatype": "FP32", "shape": [-1, -1]},
    ]
    assert metadata["parameters"]["neuropod_inputs"][0] == {
        "name": "x",
        "dtype": "float32",
        "shape": ["batch", None],
    }
    assert metadata["parameters"]["neuropod_platform"] == "python"


def _has_null(value) -> bool:
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return value is None


def test_model_config_is_triton_style_without_nulls(client):
    config = client.get_model_config("types")
    assert config["name"] == "types"
    assert config["backend"] == "neuropod"
    assert config["max_batch_size"] == 0
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("b", "TYPE_BOOL", [-1]),
        ("h", "TYPE_FP16", [-1]),
        ("u", "TYPE_UINT8", [-1]),
        ("d", "TYPE_FP64", [2, -1]),
    ]
    assert not _has_null(config)
    assert json.loads(config["parameters"]["neuropod_outputs"]["string_value"])[3]["shape"] == [2, None]


def test_infer_binary_by_default(client):
    inputs, x, y = adder_inputs()
    result = client.infer("adder", inputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), x + y)
    np.testing.assert_array_equal(result.as_numpy("diff"), x - y)


def test_infer_json_encoding(client):
    inputs, x, y = adder_inputs(binary=False)
    outputs = [httpclient.InferRequestedOutput("sum", binary_data=False)]
    result = client.infer("adder", inputs, outputs=outputs, request_id="r-1")
    response = result.get_response()
    assert response["id"] == "r-1"
    assert response["model_name"] == "adder"
    assert [o["name"] for o in response["outputs"]] == ["sum"]  # only what was asked
    assert response["outputs"][0]["data"] == (x + y).ravel().tolist()
    np.testing.assert_array_equal(result.as_numpy("sum"), x + y)


def test_infer_mixed_binary_outputs(client):
    inputs, x, y = adder_inputs(binary=True)
    outputs = [
        httpclient.InferRequestedOutput("diff", binary_data=True),
        httpclient.InferRequestedOutput("sum", binary_data=False),
    ]
    result = client.infer("adder", inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("diff"), x - y)
    np.testing.assert_array_equal(result.as_numpy("sum"), x + y)


@pytest.mark.parametrize("binary", [True, False])
def test_strings_as_bytes(client, binary):
    text = np.array(["héllo", "", "neuropod"], dtype=object)
    inputs = [httpclient.InferInput("text", [3], "BYTES")]
    inputs[0].set_data_from_numpy(text, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("upper", "length")]
    result = client.infer("strings", inputs, outputs=outputs)
    upper = result.as_numpy("upper")
    assert [item.decode() if isinstance(item, bytes) else item for item in upper] == ["HÉLLO", "", "NEUROPOD"]
    np.testing.assert_array_equal(result.as_numpy("length"), [5, 0, 8])


def test_every_numeric_type_round_trips(client):
    values = {
        "b": np.array([True, False, True]),
        "h": np.array([1.5, -2.0], np.float16),
        "u": np.array([0, 254], np.uint8),
        "d": np.arange(6, dtype=np.float64).reshape(2, 3),
    }
    for binary in (True, False):
        inputs = []
        for name, value in values.items():
            datatype = {"b": "BOOL", "h": "FP16", "u": "UINT8", "d": "FP64"}[name]
            inputs.append(httpclient.InferInput(name, list(value.shape), datatype))
            inputs[-1].set_data_from_numpy(value, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in values]
        result = client.infer("types", inputs, outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("b"), ~values["b"])
        np.testing.assert_array_equal(result.as_numpy("h"), values["h"] * 2)
        np.testing.assert_array_equal(result.as_numpy("u"), values["u"] + 1)
        np.testing.assert_array_equal(result.as_numpy("d"), values["d"] * 0.5)


def test_system_shared_memory(client):
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    key = f"/neuropod-test-{uuid.uuid4().hex[:8]}"
    handle = shm_utils.create_shared_memory_region("io", key, x.nbytes * 3)
    try:
        shm_utils.set_shared_memory_region(handle, [x, x * 3])
        client.register_system_shared_memory("io", key, x.nbytes * 3)
        status = client.get_system_shared_memory_status()
        assert {"name": "io", "key": key, "offset": 0, "byte_size": x.nbytes * 3} in status
        inputs = [httpclient.InferInput("x", [1, 4], "FP32"), httpclient.InferInput("y", [1, 4], "FP32")]
        inputs[0].set_shared_memory("io", x.nbytes)
        inputs[1].set_shared_memory("io", x.nbytes, offset=x.nbytes)
        output = httpclient.InferRequestedOutput("sum")
        output.set_shared_memory("io", x.nbytes, offset=2 * x.nbytes)
        result = client.infer("adder", inputs, outputs=[output])
        entry = result.get_output("sum")  # stock clients read the shape here, the data from the region
        assert entry["shape"] == [1, 4] and "data" not in entry
        # No "parameters": perf_analyzer would take them for binary output without a size.
        assert "parameters" not in entry
        written = shm_utils.get_contents_as_numpy(handle, np.float32, [1, 4], offset=2 * x.nbytes)
        np.testing.assert_array_equal(written, x * 4)
        client.unregister_system_shared_memory("io")
        assert client.get_system_shared_memory_status() == []
        assert os.path.exists(f"/dev/shm/{key.lstrip('/')}")  # the server never unlinks it
        # The CUDA variant is not offered, but its unregister and status answer as stock examples expect.
        client.unregister_cuda_shared_memory()
        assert client.get_cuda_shared_memory_status() == []
    finally:
        shm_utils.destroy_shared_memory_region(handle)


def test_statistics(client):
    adder_inputs_ = adder_inputs()[0]
    before = client.get_inference_statistics("adder")["model_stats"][0]
    client.infer("adder", adder_inputs_)
    stats = client.get_inference_statistics("adder")["model_stats"][0]
    assert stats["name"] == "adder" and stats["version"] == "1"
    assert stats["inference_count"] == before["inference_count"] + 1
    assert stats["execution_count"] == before["execution_count"] + 1
    success = stats["inference_stats"]["success"]
    assert success["count"] == before["inference_stats"]["success"]["count"] + 1 and success["ns"] > 0
    for phase in ("queue", "compute_input", "compute_infer", "compute_output", "fail"):
        assert set(stats["inference_stats"][phase]) == {"count", "ns"}
    every = client.get_inference_statistics()["model_stats"]
    assert {"adder", "strings", "types", "flaky"} <= {s["name"] for s in every}


def test_prometheus_metrics(client, server):
    client.infer("adder", adder_inputs()[0])
    status, headers, body = request(server.http_port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'neuropod_model_ready{model="adder",version="1"} 1' in text
    assert 'neuropod_inference_requests_total{model="adder",version="1",outcome="success"}' in text
    assert 'neuropod_inference_request_duration_seconds_bucket{model="adder",version="1",le="+Inf"}' in text
    assert "# TYPE neuropod_inference_queue_duration_seconds histogram" in text
    assert "neuropod_inference_compute_duration_seconds_count" in text


def test_repository_index_unload_load(client):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["strings"]["state"] == "READY" and index["adder"]["state"] == "READY"
    client.unload_model("strings")
    assert not client.is_model_ready("strings")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["strings"]["state"] == "UNAVAILABLE"
    client.load_model("strings")
    assert client.is_model_ready("strings")


def test_repository_finds_new_models(client, server, tmp_path):
    build_model(tmp_path, "adder", tmp_path / "late.zip")
    shutil.copy(tmp_path / "late.zip", server.core.repository.folder / "late.zip")
    assert "late" in {m["name"] for m in client.get_model_repository_index()}
    client.load_model("late")
    inputs, x, y = adder_inputs()
    np.testing.assert_array_equal(client.infer("late", inputs).as_numpy("sum"), x + y)
    client.unload_model("late")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_json_calls_and_an_error(server):
    base = f"http://127.0.0.1:{server.http_port}"
    out = curl(f"{base}/v2/health/ready")
    assert out.stdout.splitlines() == ['{"ready":true}', "200"] or out.stdout.splitlines()[-1] == "200"
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2]]},
                       {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}  # fmt: skip
    out = curl(
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(body),
        f"{base}/v2/models/adder/infer",
    )
    *text, code = out.stdout.splitlines()
    assert code == "200"
    outputs = {o["name"]: o for o in json.loads("".join(text))["outputs"]}
    assert outputs["sum"] == {"name": "sum", "datatype": "FP32", "shape": [1, 2], "data": [4.0, 6.0]}
    out = curl(f"{base}/v2/models/nope")
    *text, code = out.stdout.splitlines()
    assert code == "404"
    assert json.loads("".join(text))["error"] == "Request for unknown model: 'nope' is not found"


def test_requests_asking_to_upgrade_are_answered_as_http_1_1(server):
    # Java's HttpClient asks for HTTP/2 ("Upgrade: h2c") on plain-HTTP requests; curl --http2 too.
    import socket

    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]},
                       {"name": "y", "shape": [1, 1], "datatype": "FP32", "data": [2]}]}  # fmt: skip
    data = json.dumps(body).encode()
    head = (
        "POST /v2/models/adder/infer HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    after = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as connection:
        # The body split from its headers, then a second request on the same connection.
        connection.sendall(head)
        connection.sendall(data[:10])
        connection.sendall(data[10:] + after)
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < 2 or not received.endswith(b'{"ready":true}'):
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
    assert b'"data":[3.0]' in received
    if shutil.which("curl") is not None:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/adder/infer"
        *text, code = curl("--http2", "-X", "POST", "-d", data.decode(), url).stdout.splitlines()
        assert code == "200" and json.loads("".join(text))["outputs"][0]["data"] == [3.0]


def test_bearer_token(tmp_path):
    adder = build_model(tmp_path, "adder")
    with Server([adder], http_port=0, grpc_port=None, auth_token="s3cret") as server:
        port = server.http_port
        assert request(port, "GET", "/v2/health/ready")[0] == 200  # probes need no token
        status, message = error_of(port, "GET", "/v2/models/adder")
        assert status == 401 and "Bearer" in message
        status, message = error_of(port, "GET", "/v2/models/adder", headers={"Authorization": "Bearer wrong"})
        assert status == 401 and "wrong" in message
        assert request(port, "GET", "/v2/models/adder", headers={"Authorization": "Bearer s3cret"})[0] == 200
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        inputs, x, y = adder_inputs()
        result = client.infer("adder", inputs, headers={"Authorization": "Bearer s3cret"})
        np.testing.assert_array_equal(result.as_numpy("sum"), x + y)
        client.close()


def test_token_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPOD_SERVE_TOKEN", "from-env")
    adder = build_model(tmp_path, "adder")
    with Server([adder], http_port=0, grpc_port=None) as server:
        assert request(server.http_port, "GET", "/v2")[0] == 401
        assert request(server.http_port, "GET", "/v2", headers={"Authorization": "Bearer from-env"})[0] == 200


def test_cli_serves_until_sigterm(tmp_path):
    adder = build_model(tmp_path, "adder")
    command = [
        sys.executable,
        "-m",
        "neuropod.cli",
        "serve",
        str(adder),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        _serve_until_sigterm(process)


def _serve_until_sigterm(process: subprocess.Popen[str]) -> None:
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("gRPC on"):
                break
        assert lines[0] == "model adder: READY\n"
        port = int(next(line for line in lines if line.startswith("HTTP on")).rsplit(":", 1)[1])
        assert request(port, "GET", "/v2/models/adder/ready")[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_dynamic_batching_from_the_model_folder(tmp_path):
    folder = tmp_path / "repository" / "batched"
    folder.mkdir(parents=True)
    build_model(tmp_path, "adder", folder / "model.zip")
    options = {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_ms": 20}}
    (folder / OPTIONS_FILE).write_text(json.dumps(options))
    with Server(repository=tmp_path / "repository", http_port=0, grpc_port=None) as server:
        config = json.loads(request(server.http_port, "GET", "/v2/models/batched/config")[2])
        assert config["max_batch_size"] == 8
        assert config["input"][0]["dims"] == [-1]  # the batch dim is left out, as Triton does
        assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 20000}
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=4)
        pending = []
        for i in range(4):
            x = np.full((1, 3), i, np.float32)
            inputs = [httpclient.InferInput("x", [1, 3], "FP32"), httpclient.InferInput("y", [1, 3], "FP32")]
            inputs[0].set_data_from_numpy(x)
            inputs[1].set_data_from_numpy(x)
            pending.append((i, client.async_infer("batched", inputs)))
        for i, call in pending:
            np.testing.assert_array_equal(call.get_result().as_numpy("sum"), np.full((1, 3), 2 * i))
        stats = client.get_inference_statistics("batched")["model_stats"][0]
        assert stats["inference_count"] == 4
        client.close()
