"""A hostile client against a real server (issue 12): shared memory that shrinks or points
elsewhere, inputs that numpy cannot represent, RPCs without the token, and signals at any
moment. Each answer is a clean 400 / INVALID_ARGUMENT (or 401), and the server lives on."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neuropod.serving import Server
from tests.serving.helpers import build_model, error_of, request

pytest.importorskip("uvicorn")
grpc = pytest.importorskip("grpc")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from neuropod.protocol.grpc import service_pb2, service_pb2_grpc  # noqa: E402

GiB = 2**30


@pytest.fixture(scope="module")
def adder(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("models"), "adder")


class Served:
    """A ``neuropod serve`` process on loopback."""

    def __init__(self, process: subprocess.Popen[str], http_port: int, grpc_port: int):
        self.process = process
        self.http_port = http_port
        self.grpc_address = f"127.0.0.1:{grpc_port}"


def start_serve(adder: Path, *args: str) -> tuple[subprocess.Popen[str], Served | None]:
    """Start ``neuropod serve`` on free ports; the second item is ``None`` if it exited first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "neuropod.cli", "serve", str(adder), "--http-port", "0",
         "--grpc-port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    ports = {}
    for line in process.stdout:
        found = re.match(r"(HTTP|gRPC) on \S*:(\d+)", line)
        if found:
            ports[found[1]] = int(found[2])
        if len(ports) == 2:
            return process, Served(process, ports["HTTP"], ports["gRPC"])
    return process, None


@contextlib.contextmanager
def serve(adder: Path) -> Iterator[Served]:
    process, served = start_serve(adder)
    try:
        assert served is not None, process.communicate()[1]
        yield served
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr  # alive until told to stop: no SIGBUS
    assert "Traceback" not in stderr, stderr


@contextlib.contextmanager
def shm_object(size: int) -> Iterator[tuple[str, int]]:
    """A POSIX shared-memory object: ``(key, fd)``."""
    key = f"/np-hostile-{uuid.uuid4().hex[:8]}"
    fd = os.open(f"/dev/shm{key}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        yield key, fd
    finally:
        os.close(fd)
        os.unlink(f"/dev/shm{key}")


def register(port: int, region: str, key: str, byte_size: int, offset: int = 0) -> tuple[int, bytes]:
    status, _, body = request(
        port, "POST", f"/v2/systemsharedmemory/region/{region}/register",
        {"key": key, "offset": offset, "byte_size": byte_size},
    )  # fmt: skip
    return status, body


def shm_infer_body(region: str, out_region: str | None = None, out_offset: int = 0) -> dict:
    """adder's request with x at offset 0 and y at offset 8 of ``region`` (FP32 [1, 2] each)."""
    inputs = [
        {"name": name, "shape": [1, 2], "datatype": "FP32",
         "parameters": {"shared_memory_region": region, "shared_memory_byte_size": 8,
                        "shared_memory_offset": offset}}
        for name, offset in (("x", 0), ("y", 8))
    ]  # fmt: skip
    body: dict = {"inputs": inputs}
    if out_region is not None:
        body["outputs"] = [
            {"name": "sum", "parameters": {"shared_memory_region": out_region, "shared_memory_byte_size": 8,
                                           "shared_memory_offset": out_offset}}
        ]  # fmt: skip
    return body


# --- item 1: an object that shrinks under the server ---------------------------------------


def test_a_shrunk_object_is_a_400_not_a_sigbus(adder):
    with serve(adder) as served, shm_object(4096) as (key, fd):
        port = served.http_port
        os.pwrite(fd, np.array([1, 2, 3, 4], np.float32).tobytes(), 0)
        assert register(port, "in", key, 16)[0] == 200
        assert register(port, "out", key, 8, offset=2048)[0] == 200
        status, _, body = request(port, "POST", "/v2/models/adder/infer", shm_infer_body("in", "out"))
        assert status == 200, body
        assert np.frombuffer(os.pread(fd, 8, 2048), np.float32).tolist() == [4, 6]

        os.ftruncate(fd, 0)
        status, message = error_of(port, "POST", "/v2/models/adder/infer", shm_infer_body("in"))
        assert status == 400
        assert f"shared memory object '{key}' of region 'in' has shrunk to 0 bytes" in message

        os.ftruncate(fd, 1024)  # the inputs fit again, the output's window does not
        status, message = error_of(port, "POST", "/v2/models/adder/infer", shm_infer_body("in", "out"))
        assert status == 400 and "region 'out' has shrunk to 1024 bytes" in message

        client = grpcclient.InferenceServerClient(served.grpc_address)
        try:
            os.ftruncate(fd, 0)
            inputs = [grpcclient.InferInput(name, [1, 2], "FP32") for name in ("x", "y")]
            inputs[0].set_shared_memory("in", 8)
            inputs[1].set_shared_memory("in", 8, offset=8)
            with pytest.raises(InferenceServerException) as info:
                client.infer("adder", inputs)
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert "has shrunk to 0 bytes" in info.value.message()
        finally:
            client.close()
        assert request(port, "GET", "/v2/health/live")[0] == 200


def test_an_object_resized_during_requests_never_kills_the_server(adder):
    with serve(adder) as served, shm_object(4096) as (key, fd):
        port = served.http_port
        assert register(port, "in", key, 16)[0] == 200
        assert register(port, "out", key, 8, offset=2048)[0] == 200
        stop = threading.Event()

        def resize() -> None:
            while not stop.is_set():
                os.ftruncate(fd, random.choice((0, 12, 2050, 4096)))

        resizer = threading.Thread(target=resize)
        resizer.start()
        statuses = set()
        try:
            for _ in range(200):
                status, _, body = request(port, "POST", "/v2/models/adder/infer", shm_infer_body("in", "out"))
                statuses.add(status)
                assert status in (200, 400), body
        finally:
            stop.set()
            resizer.join()
        assert 400 in statuses


def test_a_region_unregistered_while_a_request_holds_it_is_a_400():
    from neuropod.serving.errors import BadRequest
    from neuropod.serving.shm import SharedMemoryRegistry

    registry = SharedMemoryRegistry()
    with shm_object(64) as (key, _):
        registry.register("r", key, 0, 64)
        region = registry.get("r")  # what a request in flight holds
        registry.unregister("r")
        registry.unregister("r")  # unknown: no error
        with pytest.raises(BadRequest, match=r"^Tensor 'x': shared memory region 'r' was unregistered$"):
            region.read(0, 8, "x")
        with pytest.raises(BadRequest, match=r"^Tensor 'y': shared memory region 'r' was unregistered$"):
            region.write(0, 8, memoryview(b"12345678"), "y")
        region.close()  # idempotent
    registry.close()


# --- item 3: what a key may open, and how much of it ----------------------------------------


@pytest.fixture
def server(adder):
    with Server([adder], http_port=0, grpc_port=0) as server:
        yield server


def test_a_key_that_is_a_symbolic_link_is_refused(server, tmp_path):
    target = tmp_path / "secret"
    target.write_bytes(b"do not read or overwrite me")
    link = Path(f"/dev/shm/np-hostile-link-{uuid.uuid4().hex[:8]}")
    link.symlink_to(target)
    try:
        status, message = error_of(
            server.http_port,
            "POST",
            "/v2/systemsharedmemory/region/r/register",
            {"key": link.name, "byte_size": 8},
        )
        assert status == 400
        assert message == f"Region 'r': cannot open shared memory object '{link.name}': it is a symbolic link"
    finally:
        link.unlink()
    assert target.read_bytes() == b"do not read or overwrite me"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_key_that_is_not_a_regular_file_is_refused(server, kind):
    path = Path(f"/dev/shm/np-hostile-{kind}-{uuid.uuid4().hex[:8]}")
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    try:
        status, message = error_of(
            server.http_port,
            "POST",
            "/v2/systemsharedmemory/region/r/register",
            {"key": path.name, "byte_size": 8},
        )
    finally:
        path.unlink() if kind == "fifo" else path.rmdir()
    assert status == 400
    expected = "is not a shared memory object" if kind == "fifo" else "Is a directory"
    assert message.startswith("Region 'r': ") and expected in message


def test_a_small_window_of_a_huge_sparse_object_is_neither_mapped_nor_read_whole(adder):
    with serve(adder) as served, shm_object(9 * GiB) as (key, fd):
        port = served.http_port
        os.pwrite(fd, np.array([1, 2, 3, 4], np.float32).tobytes(), 8 * GiB)
        assert register(port, "in", key, 24, offset=8 * GiB)[0] == 200
        assert register(port, "out", key, 24, offset=4 * GiB)[0] == 200
        status, _, body = request(port, "POST", "/v2/models/adder/infer", shm_infer_body("in", "out", 16))
        assert status == 200, body
        assert np.frombuffer(os.pread(fd, 8, 4 * GiB + 16), np.float32).tolist() == [4, 6]
        maps = Path(f"/proc/{served.process.pid}/maps").read_text()
        assert key not in maps
        rss_kib = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{served.process.pid}/status").read_text())[1])
        assert rss_kib < GiB // 1024


# --- item 11: client faults are 400, never a 500 with a traceback ---------------------------


def _adder_json(shape: list[int]) -> dict:
    return {"inputs": [{"name": n, "shape": shape, "datatype": "FP32", "data": []} for n in ("x", "y")]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_adder_json([0, 2**62]), "shape [0, 4611686018427387904] is too large"),
        (_adder_json([0] * 65), "shape has 65 dimensions; a tensor may have at most 64"),
        (b"[" * 100_000 + b"]" * 100_000, "nests arrays or objects too deeply"),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests arrays or objects too deeply"),
    ],
    ids=["huge-shape", "rank-65", "nested-100000", "nested-in-object"],
)
def test_json_that_numpy_cannot_hold_is_a_400(server, caplog, body, expected):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    with caplog.at_level(logging.ERROR, "neuropod.serving"):
        status, message = error_of(server.http_port, "POST", "/v2/models/adder/infer", data)
    assert status == 400 and expected in message
    assert not caplog.records


@pytest.mark.parametrize(
    ("shape", "expected"),
    [([0, 2**62], "shape [0, 4611686018427387904] is too large"), ([0] * 65, "shape has 65 dimensions")],
)
@pytest.mark.parametrize("data", ["raw", "typed", "shm"])
def test_grpc_shapes_that_numpy_cannot_hold_are_invalid_argument(server, caplog, shape, expected, data):
    tensors = []
    for name in ("x", "y"):
        tensor = service_pb2.ModelInferRequest().InferInputTensor(name=name, datatype="FP32", shape=shape)
        if data == "shm":
            tensor.parameters["shared_memory_region"].string_param = "r"
            tensor.parameters["shared_memory_byte_size"].int64_param = 0
        tensors.append(tensor)
    message = service_pb2.ModelInferRequest(model_name="adder", inputs=tensors)
    if data == "raw":
        message.raw_input_contents.extend([b"", b""])
    with (
        grpc.insecure_channel(server.grpc_address) as channel,
        caplog.at_level(logging.ERROR, "neuropod.serving"),
    ):
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=service_pb2.ModelInferRequest.SerializeToString,
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            infer(message)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in info.value.details()
    assert not caplog.records


def test_a_nul_byte_in_a_key_is_a_400(server, caplog):
    with caplog.at_level(logging.ERROR, "neuropod.serving"):
        status, message = error_of(
            server.http_port,
            "POST",
            "/v2/systemsharedmemory/region/r/register",
            {"key": "/a\0b", "byte_size": 8},
        )
        assert status == 400 and "key must be a POSIX shared memory name" in message
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            with pytest.raises(InferenceServerException) as info:
                client.register_system_shared_memory("r", "/a\0b", 8)
        finally:
            client.close()
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert not caplog.records


def test_a_model_returning_outputs_that_break_its_spec_is_a_500(tmp_path):
    with Server([build_model(tmp_path, "malformed")], http_port=0, grpc_port=0) as server:
        x = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}
        status, message = error_of(server.http_port, "POST", "/v2/models/malformed/infer", {"inputs": [x]})
        assert status == 500
        assert message.startswith("Model 'malformed' returned outputs that break its spec: ")
        assert "float32" in message
        x["shape"], x["data"] = [1, 2], [[1, 2]]  # the client's mistake stays a 400
        status, message = error_of(server.http_port, "POST", "/v2/models/malformed/infer", {"inputs": [x]})
        assert status == 400 and "input" in message
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            tensor = grpcclient.InferInput("x", [2], "FP32")
            tensor.set_data_from_numpy(np.ones(2, np.float32))
            with pytest.raises(InferenceServerException) as info:
                client.infer("malformed", [tensor])
        finally:
            client.close()
        assert info.value.status() == "StatusCode.INTERNAL"
        assert "returned outputs that break its spec" in info.value.message()


# --- item 13: the token guards every route and RPC but server health ------------------------

TOKEN = "s3cret"
HTTP_ROUTES = [
    ("GET", "/v2"),
    ("GET", "/v2/models/adder"),
    ("GET", "/v2/models/adder/ready"),
    ("GET", "/v2/models/adder/versions/1/ready"),
    ("GET", "/v2/models/no-such-model/ready"),
    ("GET", "/v2/models/adder/config"),
    ("GET", "/v2/models/adder/stats"),
    ("GET", "/v2/models/stats"),
    ("POST", "/v2/models/adder/infer"),
    ("GET", "/metrics"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("POST", "/v2/systemsharedmemory/region/r/register"),
    ("POST", "/v2/systemsharedmemory/unregister"),
    ("GET", "/v2/cudasharedmemory/status"),
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/adder/load"),
    ("POST", "/v2/repository/models/adder/unload"),
    ("GET", "/v2/health/other"),
    ("GET", "/v2/no-such-path"),
]


@pytest.fixture(scope="module")
def guarded(adder):
    with Server([adder], http_port=0, grpc_port=0, auth_token=TOKEN) as server:
        yield server


@pytest.mark.parametrize(("method", "path"), HTTP_ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", TOKEN])
def test_every_http_route_but_health_needs_the_token(guarded, method, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    status, message = error_of(guarded.http_port, method, path, b"{}", headers=headers)
    assert status == 401, message


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_server_health_needs_no_token(guarded, path):
    assert request(guarded.http_port, "GET", path)[0] == 200


def _rpcs() -> list[str]:
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    return [m.name for m in service.methods if not m.client_streaming and not m.server_streaming]


@pytest.mark.parametrize("rpc", _rpcs())
def test_every_rpc_but_server_health_needs_the_token(guarded, rpc):
    from neuropod.serving.grpc_service import InferenceServicer

    method = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[rpc]
    message_type = getattr(service_pb2, method.input_type.name)
    with grpc.insecure_channel(guarded.grpc_address) as channel:
        call = channel.unary_unary(
            f"/inference.GRPCInferenceService/{rpc}",
            request_serializer=message_type.SerializeToString,
            response_deserializer=lambda data: data,
        )
        for metadata in (None, (("authorization", "Bearer wrong"),)):
            if rpc in ("ServerLive", "ServerReady"):
                call(message_type(), metadata=metadata)
                continue
            with pytest.raises(grpc.RpcError) as info:
                call(message_type(name="adder") if "name" in message_type.DESCRIPTOR.fields_by_name
                     else message_type(), metadata=metadata)  # fmt: skip
            # The RPCs this server does not implement tell nothing either way.
            expected = (
                grpc.StatusCode.UNAUTHENTICATED
                if rpc in vars(InferenceServicer)
                else grpc.StatusCode.UNIMPLEMENTED
            )
            assert info.value.code() == expected, info.value.details()


def test_the_stream_rpc_needs_the_token(guarded):
    message = service_pb2.ModelInferRequest(model_name="adder", id="one")
    for name in ("x", "y"):
        tensor = message.inputs.add(name=name, datatype="FP32", shape=[1, 1])
        tensor.contents.fp32_contents.append(1.0)
    with grpc.insecure_channel(guarded.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for metadata in (None, (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as info:
                list(stub.ModelStreamInfer(iter([message]), metadata=metadata, timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        [reply] = stub.ModelStreamInfer(iter([message]), metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert not reply.error_message and reply.infer_response.id == "one"


def test_model_ready_with_the_token(guarded):
    client = grpcclient.InferenceServerClient(guarded.grpc_address)
    try:
        assert client.is_model_ready("adder", headers={"authorization": f"Bearer {TOKEN}"})
    finally:
        client.close()


# --- item 14: SIGTERM at any moment stops the server ----------------------------------------

DRAIN_TIMEOUT = 5.0
PROCESSES = 16
AT_ONCE = 4


def _terminate_at_random(adder: Path, seed: int) -> str | None:
    """Start a server, send it bursts of SIGTERM at random moments; a failure's text or None."""
    rng = random.Random(seed)
    early = seed % 4 == 0  # some while it loads, the rest while it serves
    process = subprocess.Popen(
        [sys.executable, "-m", "neuropod.cli", "serve", str(adder), "--http-port", "0", "--grpc-port",
         "0", "--drain-timeout", str(DRAIN_TIMEOUT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        if early:
            time.sleep(rng.uniform(0.5, 2.0))
        else:
            for line in process.stdout:
                if line.startswith("gRPC on"):
                    break
            time.sleep(rng.uniform(0, 0.6))
        first = time.monotonic()
        for _ in range(rng.randint(1, 6)):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0, 0.03))
        limit = DRAIN_TIMEOUT + (60 if early else 2)  # an early one first finishes loading
        try:
            process.wait(max(0.0, limit - (time.monotonic() - first)))
        except subprocess.TimeoutExpired:
            return f"seed {seed}: still running {limit} s after SIGTERM"
        stderr = process.stderr.read() if process.stderr else ""
        if process.returncode not in (0, -signal.SIGTERM) or "Traceback" in stderr:
            return f"seed {seed}: exit code {process.returncode}: {stderr}"
        return None
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_sigterm_at_random_moments_always_stops_the_server(adder):
    failures: list[str | None] = [None] * PROCESSES
    seeds = iter(range(PROCESSES))

    def worker() -> None:
        for seed in seeds:
            failures[seed] = _terminate_at_random(adder, seed)

    threads = [threading.Thread(target=worker) for _ in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [f for f in failures if f] == []
