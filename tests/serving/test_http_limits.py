"""HTTP connection limits against a real ``neuropod serve`` on loopback (issue 12, item 5):
slow headers and slow bodies are cut off with 408, idle connections close, and thousands of
connections that never send a request neither shut out other clients (HTTP or gRPC) nor leave
file descriptors behind."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuropod.errors import OptionError
from neuropod.serving import HttpLimits, Server
from tests.serving.helpers import build_model, request

pytest.importorskip("uvicorn")
grpcclient = pytest.importorskip("tritonclient.grpc")

#: The limits of the module's server: short, to keep the tests fast.
TIMEOUT = 0.5
CAP = 400
ATTACKERS = 2_000


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors() -> None:
    """The attackers' sockets live in this process: let it open them."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < ATTACKERS + 500:
        pytest.skip(f"the hard limit of open files ({hard}) is too low for {ATTACKERS} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_model(root, "flaky")
    return build_model(root, "adder")


class Served:
    """A ``neuropod serve`` process on loopback."""

    def __init__(self, process: subprocess.Popen[str], http_port: int, grpc_port: int):
        self.process = process
        self.http_port = http_port
        self.grpc_address = f"127.0.0.1:{grpc_port}"

    def fds(self) -> int:
        """How many file descriptors the server holds."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.http_port), timeout=10)


@contextlib.contextmanager
def serve(models: Path, *args: str, open_files: tuple[int, int] | None = None) -> Iterator[Served]:
    """``neuropod serve`` of the adder on free ports, with ``open_files`` as its
    ``RLIMIT_NOFILE`` (soft, hard) if given."""

    command = [sys.executable, "-m", "neuropod.cli", "serve", str(models), "--http-port", "0",
               "--grpc-port", "0", *args]  # fmt: skip
    if open_files is not None:
        # Set in a small launcher that then becomes the server: a preexec_fn would fork this
        # process, which other tests of the suite have made multithreaded (JAX warns then).
        launcher = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({}, {})); " \
            "os.execv(sys.executable, sys.argv[1:])".format(*open_files)  # fmt: skip
        command = [sys.executable, "-c", launcher, *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ports = {}
        for line in process.stdout:
            found = re.match(r"(HTTP|gRPC) on \S*:(\d+)", line)
            if found:
                ports[found[1]] = int(found[2])
            if len(ports) == 2:
                break
        else:
            pytest.fail(f"neuropod serve did not start: {process.communicate()[1]}")
        yield Served(process, ports["HTTP"], ports["gRPC"])
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def served(models) -> Iterator[Served]:
    with serve(
        models,
        "--http-header-timeout", str(TIMEOUT), "--http-body-timeout", str(TIMEOUT),
        "--http-body-min-rate", "1000", "--http-keep-alive-timeout", str(TIMEOUT),
        "--http-max-connections", str(CAP),
    ) as served:  # fmt: skip
        yield served


def read_until_closed(connection: socket.socket, limit: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed (seconds from
    now); fails if it is still open after ``limit`` seconds."""
    started = time.monotonic()
    connection.settimeout(limit)
    received = b""
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit} s (received {received!r})")
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def health_check(served: Served) -> tuple[int, float]:
    """``GET /v2/health/ready`` from a fresh connection: the status and how long it took."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    try:
        connection.request("GET", "/v2/health/ready")
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def infer_body(padding: int = 0) -> bytes:
    tensors = [{"name": name, "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]} for name in ("x", "y")]
    return json.dumps({"inputs": tensors}).encode() + b" " * padding


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(served):
    with served.connect() as attacker:
        received, closed_after = read_until_closed(attacker, 5)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert TIMEOUT * 0.8 <= closed_after <= TIMEOUT + 1.5


def test_headers_trickled_slowly_are_cut_off(served):
    with served.connect() as attacker:
        attacker.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        attacker.settimeout(0.05)
        received = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while not received and time.monotonic() - started < 5:
                attacker.sendall(b"X-Slow: 1\r\n")  # a header line every 50 ms, never the end
                with contextlib.suppress(TimeoutError):
                    received = attacker.recv(4096)
        received += read_until_closed(attacker, 2)[0]
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"headers did not arrive in time" in received
    assert elapsed <= TIMEOUT + 2


def test_the_next_request_on_a_kept_alive_connection_has_the_header_timeout_too(served):
    with served.connect() as attacker:
        attacker.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        attacker.settimeout(10)
        response = http.client.HTTPResponse(attacker)
        response.begin()
        response.read()
        assert response.status == 200
        attacker.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # the next request, then drips
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < TIMEOUT * 0.8:
                attacker.sendall(b"X-Slow: 1\r\n")  # keeps the keep-alive timeout from firing
                time.sleep(0.05)
        received, _ = read_until_closed(attacker, 3)
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert elapsed <= TIMEOUT + 2


def test_a_body_trickled_slowly_is_cut_off_with_408(served):
    with served.connect() as attacker:
        attacker.sendall(
            b"POST /v2/models/adder/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n"
        )
        started = time.monotonic()
        attacker.settimeout(0.05)
        received = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while not received and time.monotonic() - started < 5:
                attacker.sendall(b"0" * 10)  # 200 bytes/s, under the 1,000 the server asks for
                with contextlib.suppress(TimeoutError):
                    received = attacker.recv(4096)
        received += read_until_closed(attacker, 2)[0]
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"body arrived too slowly" in received
    assert elapsed <= TIMEOUT + 2


def test_a_body_that_keeps_up_the_minimum_rate_is_answered(served):
    body = infer_body(padding=1200)  # 1,200+ bytes over ~0.9 s: past the timeout, above 1,000 B/s
    head = (
        f"POST /v2/models/adder/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    with served.connect() as client:
        client.sendall(head)
        for start in range(0, len(body), 200):
            client.sendall(body[start : start + 200])
            time.sleep(0.13)
        client.settimeout(10)
        response = http.client.HTTPResponse(client)
        response.begin()
        answer = json.loads(response.read())
    assert response.status == 200, answer
    assert answer["outputs"][0]["data"] == [2.0, 4.0]


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(served):
    with served.connect() as client:
        client.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        client.settimeout(10)
        response = http.client.HTTPResponse(client)
        response.begin()
        response.read()
        assert response.status == 200
        received, closed_after = read_until_closed(client, 5)
    assert received == b""  # an idle connection closes without a word
    assert closed_after <= TIMEOUT + 1.5


def test_thousands_of_half_open_connections_leave_health_checks_and_grpc_answering(served):
    time.sleep(TIMEOUT + 0.5)  # the earlier tests' connections are gone
    baseline = served.fds()
    attackers = []
    try:
        for _ in range(ATTACKERS):
            attackers.append(served.connect())  # connect, then never send a byte
        for _ in range(5):
            status, took = health_check(served)
            assert status == 200
            assert took < 1.0, f"a health check took {took:.2f} s under attack"
        with grpcclient.InferenceServerClient(served.grpc_address) as client:
            assert client.is_server_ready(client_timeout=1.0)
        during = served.fds()
        assert during <= baseline + CAP + 20, (baseline, during)
    finally:
        for attacker in attackers:
            attacker.close()
    deadline = time.monotonic() + 5
    while served.fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.fds() <= baseline


def test_a_process_short_of_file_descriptors_keeps_answering(models):
    """Default options in a process whose soft limit is 512 files and hard limit 1,024: the limit
    is raised, HTTP connections are capped below it, and a flood of connections that never send
    a request leaves HTTP and gRPC answering."""
    with serve(models, open_files=(512, 1024)) as served:
        limits = Path(f"/proc/{served.process.pid}/limits").read_text()
        assert re.search(r"Max open files\s+1024\s+1024", limits), limits
        attackers = []
        try:
            for _ in range(1_500):
                attackers.append(served.connect())
            status, took = health_check(served)
            assert status == 200 and took < 1.0, took
            with grpcclient.InferenceServerClient(served.grpc_address) as client:
                assert client.is_server_ready(client_timeout=1.0)
            assert served.fds() < 1024 - 200  # descriptors left for gRPC and the models
        finally:
            for attacker in attackers:
                attacker.close()


def test_a_connection_past_the_cap_when_all_are_busy_is_answered_503(models):
    """Past the cap, an idle connection is closed for the newcomer; where every connection is
    answering a request, the newcomer is answered 503."""
    limits = HttpLimits(max_connections=2)
    with Server([models.parent / "flaky"], http_port=0, grpc_port=None, http_limits=limits) as server:
        port = server.http_port
        assert port is not None
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        idle.request("GET", "/v2/health/live")
        assert idle.getresponse().read()
        slow = [0, 0]
        body = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [800]}]}

        def call(i: int) -> None:
            slow[i] = request(port, "POST", "/v2/models/flaky/infer", body)[0]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.2)  # its request in, so that the next connection closes the idle one
        status, _, data = request(port, "GET", "/v2/health/ready")
        for thread in threads:
            thread.join()
        assert (status, slow) == (503, [200, 200]), data
        assert b"too many connections" in data
        assert server.http_guard is not None
        assert server.http_guard.closed["evicted"] == 1
        assert request(port, "GET", "/v2/health/ready")[0] == 200  # room again
        idle.close()


def test_limits_out_of_range_are_refused():
    with pytest.raises(OptionError, match=r"header_timeout must be a number of seconds > 0, got 0"):
        HttpLimits(header_timeout=0)
    with pytest.raises(OptionError, match=r"max_connections must be an int >= 1, got 1.5"):
        HttpLimits(max_connections=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="http_limits must be an HttpLimits"):
        Server(["x"], http_limits={"max_connections": 1})  # type: ignore[arg-type]
    result = subprocess.run(
        [sys.executable, "-m", "neuropod.cli", "serve", "x", "--http-body-min-rate", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--http-body-min-rate: expected a number of bytes per second > 0, got '0'" in result.stderr
