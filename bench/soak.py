"""Soak ``neuropod serve``: many clients, valid and invalid requests, HTTP and gRPC, for a while.

Starts ``neuropod serve`` on an adder model it packages itself (``sum = x + y``, FP32 rows of
4; a plain-Python model, so the server's own work dominates), or uses a server already running
(``--url``, which must serve that model: ``--write-model DIR`` writes it). Then ``--clients``
clients (half HTTP, half gRPC; each one connection, one request at a time) send a random mix of
requests for ``--seconds``:

- valid: inference (the answer is checked), health, metadata;
- invalid: a tensor whose data does not fit its shape, malformed JSON, an unknown model, a
  wrong method (HTTP); a wrong datatype, an unknown model (gRPC). Each must get its own 4xx
  status or gRPC code.

Prints, per kind of request, how many went out, how many were answered other than expected
(must be 0), and the p50/p99 latency; and the server's resident memory and open file
descriptors (from ``/proc``) before the clients start, just before they stop, and once their
connections are closed. Exits 1 if any answer was unexpected::

    python bench/soak.py [--clients 64] [--seconds 60] [--url http://127.0.0.1:8000
                          --grpc 127.0.0.1:8001 --pid PID]

The clients run in a few processes of threads (``--processes``, default 4): lighter than a
process each, so that on a small machine they leave the server its share of the CPUs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.text_table import table

MODEL = "soak_adder"
ROWS = 4
ADDER = """
    def get_model(data_dir):
        return lambda x, y: {"sum": x + y}
"""


@dataclass
class Tally:
    """What one kind of request got: how many, how many unexpected answers, the latencies."""

    count: int = 0
    unexpected: int = 0
    latencies: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.count += other.count
        self.unexpected += other.unexpected
        self.latencies += other.latencies
        self.examples += other.examples[: max(0, 3 - len(self.examples))]


# --- The server --------------------------------------------------------------------------------


def write_model(folder: Path) -> Path:
    """Package the adder model in ``folder``; return its path."""
    from neuropod.packagers.python import create_python_neuropod

    source = folder / "src" / "soak_adder_model"
    source.mkdir(parents=True, exist_ok=True)
    (source / "__init__.py").write_text("")
    (source / "main.py").write_text(textwrap.dedent(ADDER))
    path = folder / MODEL
    spec = [{"name": name, "dtype": "float32", "shape": ["batch", ROWS]} for name in ("x", "y")]
    create_python_neuropod(
        neuropod_path=path,
        model_name=MODEL,
        input_spec=spec,
        output_spec=[{"name": "sum", "dtype": "float32", "shape": ["batch", ROWS]}],
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["soak_adder_model"]}],
        entrypoint_package="soak_adder_model.main",
        entrypoint="get_model",
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/v2/models/{MODEL}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not serve {MODEL} within 120 s")


@contextmanager
def own_server(work: Path) -> Iterator[tuple[str, str, int]]:
    """``neuropod serve`` of the adder on free ports: ``(http_url, grpc_address, pid)``."""
    model = write_model(work)
    http_port, grpc_port = free_port(), free_port()
    log = work / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "neuropod.cli", "serve", str(model),
             "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_ready(url, process, log)
        yield url, f"127.0.0.1:{grpc_port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        text = log.read_text(errors="replace")
        if process.returncode != 0 or "Traceback" in text:
            print(f"the server exited with {process.returncode}; its log:\n{text[-4000:]}", file=sys.stderr)


def process_usage(pid: int | None) -> tuple[str, str]:
    """The resident memory (MiB) and open descriptors of process ``pid``, as text."""
    if pid is None:
        return "n/a", "n/a"
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return f"{rss_kib / 1024:.1f}", str(len(os.listdir(f"/proc/{pid}/fd")))
    except (OSError, StopIteration):
        return "gone", "gone"


# --- The clients -------------------------------------------------------------------------------

Call = Callable[[], str | None]  # None: answered as expected; else what was wrong


def _pair(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([rng.random() for _ in range(ROWS)], dtype=np.float32).reshape(1, ROWS)
    return x, np.full((1, ROWS), 2.0, dtype=np.float32)


class HttpClient:
    """One keep-alive HTTP connection and its requests."""

    def __init__(self, url: str, rng: random.Random):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.rng = rng
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        prefix = f"/v2/models/{MODEL}"
        self.calls: list[tuple[str, float, Call]] = [
            ("http infer", 5, self.infer),
            ("http health", 1, lambda: self.expect("GET", "/v2/health/ready", None, 200)),
            ("http metadata", 1, lambda: self.expect("GET", prefix, None, 200)),
            ("http bad shape", 1, lambda: self.expect("POST", f"{prefix}/infer", self.bad_shape(), 400)),
            ("http bad json", 1, lambda: self.expect("POST", f"{prefix}/infer", b'{"inputs": [', 400)),
            ("http no model", 1, lambda: self.expect("POST", "/v2/models/nope/infer", self.body(), 404)),
            ("http bad method", 1, lambda: self.expect("GET", f"{prefix}/infer", None, 405)),
        ]

    def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        try:
            self.connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = self.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request opens a new connection
            raise

    def body(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> bytes:
        if x is None or y is None:
            x, y = _pair(self.rng)
        tensors = [
            {"name": name, "datatype": "FP32", "shape": list(a.shape), "data": a.ravel().tolist()}
            for name, a in (("x", x), ("y", y))
        ]
        return json.dumps({"inputs": tensors}).encode()

    def bad_shape(self) -> bytes:
        body = json.loads(self.body())
        body["inputs"][0]["shape"] = [1, ROWS + 1]
        return json.dumps(body).encode()

    def expect(self, method: str, path: str, body: bytes | None, status: int) -> str | None:
        got, data = self.send(method, path, body)
        return None if got == status else f"{method} {path}: {got} (expected {status}): {data[:200]!r}"

    def infer(self) -> str | None:
        x, y = _pair(self.rng)
        status, data = self.send("POST", f"/v2/models/{MODEL}/infer", self.body(x, y))
        if status != 200:
            return f"infer: {status}: {data[:200]!r}"
        out = json.loads(data)["outputs"][0]["data"]
        return None if np.allclose(out, (x + y).ravel()) else f"infer: wrong sum {out}"


class GrpcClient:
    """One gRPC channel and its requests."""

    def __init__(self, address: str, rng: random.Random):
        import grpc

        from neuropod.protocol.grpc import service_pb2, service_pb2_grpc

        self.grpc = grpc
        self.pb = service_pb2
        self.rng = rng
        # A connection of its own: channels of one process share theirs by default.
        self.channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.calls: list[tuple[str, float, Call]] = [
            ("grpc infer", 5, self.infer),
            ("grpc ready", 1, self.ready),
            (
                "grpc bad dtype",
                1,
                lambda: self.expect_code(self.request(datatype="INT32"), "INVALID_ARGUMENT"),
            ),
            ("grpc no model", 1, lambda: self.expect_code(self.request(model="nope"), "NOT_FOUND")),
        ]

    def request(self, model: str = MODEL, datatype: str = "FP32", x: Any = None, y: Any = None) -> Any:
        if x is None or y is None:
            x, y = _pair(self.rng)
        pb = self.pb
        inputs = [
            pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=[1, ROWS])
            for name in "xy"
        ]
        return pb.ModelInferRequest(
            model_name=model, inputs=inputs, raw_input_contents=[x.tobytes(), y.tobytes()]
        )

    def infer(self) -> str | None:
        x, y = _pair(self.rng)
        try:
            answer = self.stub.ModelInfer(self.request(x=x, y=y), timeout=30)
        except self.grpc.RpcError as exc:
            return f"infer: {exc.code().name}: {exc.details()}"
        out = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32)
        return None if np.allclose(out, (x + y).ravel()) else f"infer: wrong sum {out}"

    def ready(self) -> str | None:
        try:
            ready = self.stub.ServerReady(self.pb.ServerReadyRequest(), timeout=30).ready
        except self.grpc.RpcError as exc:
            return f"ServerReady: {exc.code().name}: {exc.details()}"
        return None if ready else "ServerReady: not ready"

    def expect_code(self, request: Any, code: str) -> str | None:
        try:
            self.stub.ModelInfer(request, timeout=30)
        except self.grpc.RpcError as exc:
            got = exc.code().name
            return None if got == code else f"ModelInfer: {got} (expected {code}): {exc.details()}"
        return f"ModelInfer: OK (expected {code})"


def run_client(client: HttpClient | GrpcClient, deadline: float, tallies: dict[str, Tally]) -> None:
    names = [name for name, _, _ in client.calls]
    weights = [weight for _, weight, _ in client.calls]
    calls = {name: call for name, _, call in client.calls}
    rng = client.rng
    while time.monotonic() < deadline:
        name = rng.choices(names, weights)[0]
        tally = tallies.setdefault(name, Tally())
        started = time.perf_counter()
        try:
            wrong = calls[name]()
        except Exception as exc:  # a failed connection is an unexpected answer too
            wrong = f"{type(exc).__name__}: {exc}"
        tally.latencies.append(time.perf_counter() - started)
        tally.count += 1
        if wrong is not None:
            tally.unexpected += 1
            if len(tally.examples) < 3:
                tally.examples.append(wrong)


def client_process(
    kinds: list[str],
    url: str,
    grpc_address: str | None,
    seed: int,
    ready: Any,
    go: Any,
    seconds: float,
    results: Any,
) -> None:
    """Run one client thread per entry of ``kinds`` ("http" or "grpc") once ``go`` is set."""
    clients: list[HttpClient | GrpcClient] = []
    for i, kind in enumerate(kinds):
        rng = random.Random(seed * 1000 + i)
        clients.append(HttpClient(url, rng) if kind == "http" else GrpcClient(grpc_address or "", rng))
    ready.release()
    go.wait()
    deadline = time.monotonic() + seconds
    per_thread: list[dict[str, Tally]] = [{} for _ in clients]
    threads = [
        threading.Thread(target=run_client, args=(client, deadline, tallies))
        for client, tallies in zip(clients, per_thread, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        if isinstance(client, HttpClient):
            client.connection.close()
        else:
            client.channel.close()
    merged: dict[str, Tally] = {}
    for tallies in per_thread:
        for name, tally in tallies.items():
            merged.setdefault(name, Tally()).add(tally)
    results.put(merged)


# --- Main --------------------------------------------------------------------------------------


def soak(
    url: str, grpc_address: str | None, pid: int | None, clients: int, seconds: float, processes: int
) -> int:
    kinds = ["http" if i % 2 == 0 or grpc_address is None else "grpc" for i in range(clients)]
    processes = max(1, min(processes, clients))
    context = multiprocessing.get_context("spawn")  # grpc must not be forked
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    workers = [
        context.Process(
            target=client_process,
            args=(kinds[p::processes], url, grpc_address, p, ready, go, seconds, results),
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    before = process_usage(pid)
    go.set()
    time.sleep(max(0.0, seconds - 0.5))
    at_end = process_usage(pid)  # the clients still connected
    total: dict[str, Tally] = {}
    for _ in workers:
        for name, tally in results.get().items():
            total.setdefault(name, Tally()).add(tally)
    for worker in workers:
        worker.join()
    time.sleep(1.0)  # the server closes the connections the clients left
    after = process_usage(pid)

    rows = []
    for name in sorted(total):
        tally = total[name]
        p50, p99 = np.percentile(np.array(tally.latencies) * 1000, [50, 99]) if tally.latencies else (0, 0)
        rows.append([name, f"{tally.count:,}", f"{tally.count / seconds:,.0f}", str(tally.unexpected),
                     f"{p50:.2f}", f"{p99:.2f}"])  # fmt: skip
    print(f"\n{clients} clients ({kinds.count('http')} HTTP, {kinds.count('grpc')} gRPC) for {seconds:g} s")
    print(table(rows, ["kind", "requests", "per s", "unexpected", "p50 ms", "p99 ms"], right=range(1, 6)))
    print()
    print(
        table(
            [["before", *before], ["end of the run", *at_end], ["clients gone", *after]],
            ["server", "RSS MiB", "open fds"],
            right=[1, 2],
        )
    )
    unexpected = sum(tally.unexpected for tally in total.values())
    for name, tally in sorted(total.items()):
        for example in tally.examples:
            print(f"unexpected ({name}): {example}", file=sys.stderr)
    print(f"\n{'FAILED' if unexpected else 'OK'}: {unexpected} unexpected answers")
    return 1 if unexpected else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64, help="clients at once, half HTTP, half gRPC")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients run")
    parser.add_argument("--processes", type=int, default=4, help="processes the clients run in")
    parser.add_argument("--url", help="an HTTP server already serving the soak model (default: start one)")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="its gRPC address (with --url; else HTTP only)")
    parser.add_argument("--pid", type=int, help="its process id, for its memory and descriptors (with --url)")
    parser.add_argument("--write-model", metavar="DIR", help="only package the soak model in DIR and exit")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.processes < 1:
        parser.error("--clients and --processes must be >= 1, --seconds > 0")
    if args.write_model:
        print(write_model(Path(args.write_model)))
        return
    if args.url:
        wait_ready(args.url.rstrip("/"), None, None)
        sys.exit(soak(args.url.rstrip("/"), args.grpc, args.pid, args.clients, args.seconds, args.processes))
    with (
        tempfile.TemporaryDirectory(prefix="neuropod-soak-") as work,
        own_server(Path(work)) as (url, grpc, pid),
    ):
        code = soak(url, grpc, pid, args.clients, args.seconds, args.processes)
    sys.exit(code)


if __name__ == "__main__":
    main()
