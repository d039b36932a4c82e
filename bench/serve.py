"""Serving throughput and latency: NVIDIA's perf_analyzer against ``neuropod serve`` and KServe.

Both servers serve the same two identity models (``out = x``, FP32 rows): ``small`` of 4
elements and ``large`` of 1,048,576 (4 MB). Every case runs perf_analyzer (through
``scripts/perf_analyzer.sh``, which fetches it and the C library it needs) against one server,
the two servers one after the other for each case:

- protocols: HTTP with binary tensors, HTTP with JSON tensors, gRPC;
- concurrency 1 and 8;
- with and without system shared memory (neuropod only: KServe has no shared-memory extension,
  so its rows without shared memory are the reference for ours with it).

A stateful row, ``sequence`` (neuropod only): the ``small`` model made stateful (``out = x +
state``, the state kept by the server between the requests of a sequence, with START, END and
CORRID control inputs), measured by perf_analyzer in its sequence mode (each concurrent
connection runs its own sequences of ``--sequence-length`` requests), to compare with the
stateless ``small`` rows: what the sequence scheduler costs per request.

A third server, ``floor`` (``bench/serve_floor.py``), is neuropod's own server answering every
inference from a cache: no decoding, model or encoding. It measures what the front ends
(uvicorn, and pygrpc-native or grpcio) and perf_analyzer cost by themselves on this machine,
the ceiling for any server built on them; the table gives each neuropod row as a share of it.

neuropod's gRPC runs on pygrpc-native where the ``grpc-native`` extra is installed (the
default front end then); the server ``grpcio`` is neuropod with ``--grpc-front grpcio``, for
its gRPC rows only, to show what the native front gains.

Prints one table (throughput, p50/p99 latency, ratio to KServe) and writes it as JSON to
``.bench/serve-results.json``::

    python bench/serve.py [--quick] [--servers neuropod,grpcio,kserve,floor]
                          [--protocols http-binary,grpc] [--sizes small,large,sequence]
                          [--concurrency 1,8] [--shm no,yes] [--plot serve.svg]
                          [--streaming 100]

With neuropod among the servers, a second table measures streaming (``--streaming N``, 0 to
skip): a decoupled model answering each request with N responses of 4 floats, its requests sent
one after the other on one gRPC ``ModelStreamInfer`` stream, against the same number of
responses fetched by unary ``ModelInfer`` calls to ``small``, one after the other. Both use
tritonclient's Python gRPC client, in this process, so the rows show responses per second as a
Python client sees them (perf_analyzer measures a decoupled model's first response only).

KServe runs from its own virtual environment (``.bench/kserve-venv``, created on first use by
``bench/kserve_env.py``) through ``bench/serve_kserve_model.py``. perf_analyzer keeps every
request's tensors in memory, so each measurement window is a bounded number of requests
(``--measurement-mode count_windows``), fewer for 4 MB tensors.

perf_analyzer 2.58-2.60 sends one element in place of a whole tensor with
``--input-tensor-format json`` when the model configuration has ``max_batch_size`` 0, so both
servers report ``max_batch_size`` 8 and perf_analyzer sends batches of one row. KServe's JSON
answers carry ``"parameters": null``, which perf_analyzer reads as binary outputs and then
fails ("non-existing object member 'binary_data_size'"): its HTTP JSON rows fail, a gap of
KServe's that the table shows as it is. perf_analyzer's random JSON data holds ``NaN``, which
the servers must accept as Triton does.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from kserve_env import KSERVE_VERSION, bench_cache, kserve_python
from svg_chart import Panel, write_svg

ROOT = Path(__file__).resolve().parent.parent
CACHE = bench_cache()
PERF_ANALYZER = ROOT / "scripts" / "perf_analyzer.sh"

SIZES = {"small": 4, "large": 1 << 20}
PROTOCOLS = ("http-binary", "http-json", "grpc")
MAX_BATCH_SIZE = 8
#: The address space perf_analyzer may use.
PERF_ANALYZER_MEMORY = 16 << 30

IDENTITY = """
    def get_model(data_dir):
        def identity(x):
            return {"out": x}

        return identity
"""

#: The stateful model of the ``sequence`` rows, its name and the length of perf_analyzer's sequences.
SEQUENCE = "sequence"
SEQUENCE_LENGTH = 20
ACCUMULATE = """
    def get_model(data_dir):
        def accumulate(x, acc, start, end, corrid):
            total = x + acc
            return {"out": total, "acc_out": total}

        return accumulate
"""
#: The decoupled model of the streaming rows: ``n`` responses of 4 floats.
STREAMER = """
    import numpy as np


    def get_model(data_dir):
        def stream(n):
            row = np.ones(4, np.float32)
            for _ in range(int(n[0])):
                yield {"out": row}

        return stream
"""
STREAM_MODEL = "stream"


@dataclass(frozen=True)
class Case:
    server: str
    protocol: str
    size: str
    concurrency: int
    shm: bool

    @property
    def reference(self) -> Case:
        """The KServe case this one is compared with."""
        return Case("kserve", self.protocol, self.size, self.concurrency, False)

    @property
    def floor(self) -> Case:
        """The floor case of this one."""
        return Case("floor", self.protocol, self.size, self.concurrency, False)


@dataclass
class Result:
    case: Case
    infer_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    error: str = ""


# --- The servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(http_url: str, models: list[str], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            for name in models:
                with urllib.request.urlopen(f"{http_url}/v2/models/{name}/ready", timeout=2) as answer:
                    if answer.status != 200:
                        raise OSError(answer.status)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise RuntimeError(f"the server at {http_url} was not ready within 180 s; see {log}")


@contextmanager
def running(
    command: list[str], name: str, http_port: int, logs: Path, models: list[str] | None = None
) -> Iterator[None]:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{http_port}", models or list(SIZES), process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def build_repository(root: Path, *, stateful: bool = False, streaming: bool = False) -> Path:
    """A repository folder with the two identity models, each reporting ``max_batch_size``, with
    ``stateful`` the ``sequence`` model and with ``streaming`` the decoupled model of the streaming
    rows."""
    from neuropod.packagers import create_python_neuropod

    repository = root / "repository"
    code = root / "code" / "identity"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(IDENTITY))
    for name, elements in SIZES.items():
        folder = repository / name
        folder.mkdir(parents=True)
        spec = [{"name": "x", "dtype": "float32", "shape": ("batch", elements)}]
        create_python_neuropod(
            neuropod_path=folder / f"{name}.zip",
            model_name=name,
            input_spec=spec,
            output_spec=[{**spec[0], "name": "out"}],
            code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["identity"]}],
            entrypoint_package="identity",
            entrypoint="get_model",
        )
        options = {"package": f"{name}.zip", "max_batch_size": MAX_BATCH_SIZE}
        (folder / "neuropod-serve.json").write_text(json.dumps(options))
    if stateful:
        build_stateful(repository / SEQUENCE, root / "code")
    if streaming:
        streamer = root / "code" / "streamer"
        streamer.mkdir(parents=True)
        (streamer / "__init__.py").write_text(textwrap.dedent(STREAMER))
        create_python_neuropod(
            neuropod_path=repository / f"{STREAM_MODEL}.zip",
            model_name=STREAM_MODEL,
            input_spec=[{"name": "n", "dtype": "int64", "shape": (1,)}],
            output_spec=[{"name": "out", "dtype": "float32", "shape": (4,)}],
            code_path_spec=[{"python_root": str(streamer.parent), "dirs_to_package": ["streamer"]}],
            entrypoint_package="streamer",
            entrypoint="get_model",
            decoupled=True,
        )
    return repository


def build_stateful(folder: Path, code_root: Path) -> None:
    """The ``sequence`` model: 4 floats, ``out = x + acc`` with ``acc`` the server-kept state."""
    from neuropod.packagers import create_python_neuropod

    code = code_root / "accumulate"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(ACCUMULATE))
    folder.mkdir(parents=True)

    def spec(name: str, dtype: str = "float32", width: int = SIZES["small"]) -> dict[str, object]:
        return {"name": name, "dtype": dtype, "shape": ("batch", width)}

    create_python_neuropod(
        neuropod_path=folder / f"{SEQUENCE}.zip",
        model_name=SEQUENCE,
        input_spec=[
            spec("x"),
            spec("acc"),
            spec("start", "int32", 1),
            spec("end", "int32", 1),
            spec("corrid", "uint64", 1),
        ],
        output_spec=[spec("out"), spec("acc_out")],
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["accumulate"]}],
        entrypoint_package="accumulate",
        entrypoint="get_model",
    )
    flag = {"int32_false_true": [0, 1]}
    batching = {
        "max_sequence_idle_microseconds": 5_000_000,
        "control_input": [
            {"name": "start", "control": [{"kind": "CONTROL_SEQUENCE_START", **flag}]},
            {"name": "end", "control": [{"kind": "CONTROL_SEQUENCE_END", **flag}]},
            {"name": "corrid", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_UINT64"}]},
        ],
        "state": [
            {
                "input_name": "acc",
                "output_name": "acc_out",
                "data_type": "TYPE_FP32",
                "dims": [SIZES["small"]],
            }
        ],
    }
    options = {"package": f"{SEQUENCE}.zip", "max_batch_size": MAX_BATCH_SIZE, "sequence_batching": batching}
    (folder / "neuropod-serve.json").write_text(json.dumps(options))


@contextmanager
def neuropod_server(root: Path, logs: Path) -> Iterator[tuple[int, int]]:
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "neuropod.cli", "serve",
        "--repository", str(build_repository(root / "neuropod", stateful=True, streaming=True)),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip
    with running(command, "neuropod-serve", http_port, logs, [*SIZES, SEQUENCE]):
        yield http_port, grpc_port


@contextmanager
def grpcio_server(root: Path, logs: Path) -> Iterator[tuple[int, int]]:
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "neuropod.cli", "serve",
        "--repository", str(build_repository(root / "grpcio")),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--grpc-front", "grpcio",
    ]  # fmt: skip
    with running(command, "neuropod-serve-grpcio", http_port, logs):
        yield http_port, grpc_port


@contextmanager
def floor_server(root: Path, logs: Path) -> Iterator[tuple[int, int]]:
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, str(ROOT / "bench" / "serve_floor.py"),
        "--repository", str(build_repository(root / "floor")),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip
    with running(command, "floor", http_port, logs):
        yield http_port, grpc_port


def kserve_configs(folder: Path) -> Path:
    """Triton ``ModelConfigResponse`` messages for KServe's added model-configuration call."""
    from tritonclient.grpc import model_config_pb2, service_pb2

    folder.mkdir(parents=True, exist_ok=True)
    for name, elements in SIZES.items():
        tensor = {"data_type": model_config_pb2.TYPE_FP32, "dims": [elements]}
        config = model_config_pb2.ModelConfig(
            name=name,
            platform="kserve",
            max_batch_size=MAX_BATCH_SIZE,
            input=[model_config_pb2.ModelInput(name="x", **tensor)],
            output=[model_config_pb2.ModelOutput(name="out", **tensor)],
        )
        reply = service_pb2.ModelConfigResponse(config=config)
        (folder / f"{name}.pb").write_bytes(reply.SerializeToString())
    return folder


@contextmanager
def kserve_server(root: Path, logs: Path) -> Iterator[tuple[int, int]]:
    http_port, grpc_port = free_port(), free_port()
    command = [
        str(kserve_python()), str(ROOT / "bench" / "serve_kserve_model.py"),
        *(f"--model={name}:{elements}" for name, elements in SIZES.items()),
        "--config-dir", str(kserve_configs(root / "kserve-config")),
        "--http_port", str(http_port), "--grpc_port", str(grpc_port),
        # KServe logs every request at INFO when it configures logging; unconfigured, it does not.
        "--configure_logging", "False",
    ]  # fmt: skip
    with running(command, "kserve", http_port, logs):
        yield http_port, grpc_port


# --- Measuring ----------------------------------------------------------------------------------


def _bound_memory() -> None:
    # perf_analyzer keeps every response; past this it fails alone rather than wake the OOM killer.
    resource.setrlimit(resource.RLIMIT_AS, (PERF_ANALYZER_MEMORY, PERF_ANALYZER_MEMORY))


def request_count(case: Case, quick: bool) -> int:
    """Requests per measurement window: perf_analyzer holds every one's tensors in memory."""
    if case.size in ("small", SEQUENCE):
        return 300 if quick else 1000
    if case.protocol == "http-json" and not case.shm:
        return 4 if quick else 8
    if case.protocol == "grpc" and case.concurrency > 1:
        return 15 if quick else 20  # 40 runs past PERF_ANALYZER_MEMORY against a fast server
    return 15 if quick else 40


def measure(case: Case, ports: tuple[int, int], quick: bool, work: Path) -> Result:
    """One perf_analyzer run, tried again once with looser bounds if it does not stabilize, or
    with half the requests per window if it runs out of memory."""
    count = request_count(case, quick)
    result = _perf_analyzer(case, ports, count, work, stability=50, trials=6)
    if "stable measurement" in result.error or result.error.startswith("exit status"):
        result = _perf_analyzer(case, ports, count, work, stability=100, trials=10)
    elif "of memory" in result.error:
        result = _perf_analyzer(case, ports, max(count // 2, 4), work, stability=50, trials=6)
    return result


def _perf_analyzer(
    case: Case, ports: tuple[int, int], count: int, work: Path, *, stability: int, trials: int
) -> Result:
    http_port, grpc_port = ports
    grpc = case.protocol == "grpc"
    report = work / "perf.csv"
    report.unlink(missing_ok=True)
    command = [
        str(PERF_ANALYZER), "-m", case.size,
        "-u", f"127.0.0.1:{grpc_port if grpc else http_port}", "-i", "grpc" if grpc else "http",
        "--concurrency-range", str(case.concurrency),
        "--measurement-mode", "count_windows",
        "--measurement-request-count", str(count),
        "--stability-percentage", str(stability), "--max-trials", str(trials),
        "-f", str(report),
    ]  # fmt: skip
    if case.protocol == "http-json":
        command += ["--input-tensor-format", "json", "--output-tensor-format", "json"]
    if case.shm:
        command += ["--shared-memory", "system", "--output-shared-memory-size", str(SIZES[case.size] * 4)]
    if case.size == SEQUENCE:  # perf_analyzer reads sequence_batching from the config: sequence mode
        command += ["--sequence-length", str(SEQUENCE_LENGTH)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=400, preexec_fn=_bound_memory)
    except subprocess.TimeoutExpired:
        return Result(case, error="perf_analyzer ran past 400 s")
    if done.returncode in (-6, -9) or "bad_alloc" in done.stderr:
        return Result(case, error=f"perf_analyzer ran out of its {PERF_ANALYZER_MEMORY >> 30} GiB of memory")
    if done.returncode != 0 or not report.exists():
        lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        reasons = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
        return Result(case, error=(reasons[-1] if reasons else f"exit status {done.returncode}")[:300])
    with report.open() as file:
        row = next(csv.DictReader(file))
    return Result(case, float(row["Inferences/Second"]), float(row["p50 latency"]), float(row["p99 latency"]))


@dataclass
class StreamResult:
    how: str
    responses: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.responses / self.seconds


def measure_streaming(grpc_port: int, per_request: int, quick: bool) -> list[StreamResult]:
    """Responses per second: N per request on one stream, against unary calls one at a time."""
    import queue

    import numpy as np
    import tritonclient.grpc as grpcclient

    requests = 20 if quick else 100
    total = requests * per_request
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        count = grpcclient.InferInput("n", [1], "INT64")
        count.set_data_from_numpy(np.array([per_request], np.int64))
        answers: queue.SimpleQueue[object] = queue.SimpleQueue()
        client.start_stream(lambda result, error: answers.put(error or result))
        started = time.perf_counter()
        for _ in range(requests):
            client.async_stream_infer(STREAM_MODEL, [count])
            for _ in range(per_request):
                answer = answers.get(timeout=60)
                if isinstance(answer, Exception):
                    raise RuntimeError(f"the stream failed: {answer}")
        streamed = time.perf_counter() - started
        client.stop_stream()
        x = grpcclient.InferInput("x", [1, SIZES["small"]], "FP32")
        x.set_data_from_numpy(np.ones((1, SIZES["small"]), np.float32))
        unary_calls = min(total, 500 if quick else 2000)
        started = time.perf_counter()
        for _ in range(unary_calls):
            client.infer("small", [x])
        unary = time.perf_counter() - started
    finally:
        client.close()
    return [
        StreamResult(f"gRPC stream, decoupled, {per_request} responses/request", total, streamed),
        StreamResult("gRPC unary ModelInfer, 1 response/call", unary_calls, unary),
    ]


def streaming_table(results: list[StreamResult]) -> str:
    rows = [("how", "responses", "seconds", "responses/s"), ("---", "---", "---", "---")]
    rows += [(r.how, str(r.responses), f"{r.seconds:.2f}", f"{r.per_s:,.0f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


# --- The table ----------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    """The results as a Markdown table, with a note for each failed case."""
    by_case = {result.case: result for result in results}
    head = ("server", "protocol", "model", "conc.", "shm", "infer/s", "p50 us", "p99 us")
    head += ("vs KServe", "of floor")
    rows = [head, tuple("---" for _ in head)]
    for result in results:
        case = result.case
        label = {"small": "4 floats", "large": "4 MB", SEQUENCE: "4 floats, sequences"}[case.size]
        cells = [case.server, case.protocol, label]
        cells += [str(case.concurrency), _yes(case.shm)]
        if result.error or result.infer_per_s is None:
            rows.append((*cells, "failed", "", "", "", ""))
            continue
        reference = by_case.get(case.reference)
        ratio = ""
        if case.server != "kserve" and reference is not None:
            if reference.infer_per_s:
                ratio = f"{result.infer_per_s / reference.infer_per_s:.1f}x" + ("*" if case.shm else "")
            else:
                ratio = "(KServe failed)"
        floor = by_case.get(case.floor)
        share = ""
        if case.server in ("neuropod", "grpcio") and floor is not None and floor.infer_per_s:
            share = f"{result.infer_per_s / floor.infer_per_s:.0%}"
        throughput = result.infer_per_s
        cells += [f"{throughput:,.0f}" if throughput >= 10 else f"{throughput:.1f}"]
        cells += [f"{result.p50_us:,.0f}", f"{result.p99_us:,.0f}", ratio, share]
        rows.append(tuple(cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    notes = [
        "* compared with KServe without shared memory (KServe has no shared-memory extension)",
        "floor: neuropod's server answering from a cache (bench/serve_floor.py); "
        "'of floor': neuropod's throughput as a share of it",
        f"4 floats, sequences: the 4 floats model made stateful (server-kept state, control inputs), "
        f"perf_analyzer's sequence mode with {SEQUENCE_LENGTH} requests per sequence",
    ]
    for r in results:
        if r.error:
            where = f"{r.case.server} {r.case.protocol} {r.case.size} c={r.case.concurrency}"
            notes.append(f"failed: {where}{' shm' if r.case.shm else ''}: {r.error}")
    return "\n".join([*lines, "", *notes])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller measurement windows")
    parser.add_argument("--servers", default="neuropod,grpcio,kserve,floor")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--shm", default="no,yes", help="no, yes or both (neuropod only)")
    parser.add_argument("--plot", metavar="OUT.svg", help="also draw the table as an SVG bar chart")
    parser.add_argument(
        "--streaming", type=int, default=100, help="responses per streamed request (0: no streaming rows)"
    )
    args = parser.parse_args()
    servers = args.servers.split(",")
    shm = [flag == "yes" for flag in args.shm.split(",")]
    cases = [
        Case(server, protocol, size, int(concurrency), with_shm)
        for size in args.sizes.split(",")
        for protocol in args.protocols.split(",")
        for concurrency in args.concurrency.split(",")
        for with_shm in shm
        for server in servers
        if not (with_shm and (server != "neuropod" or protocol == "http-json"))
        and not (size == SEQUENCE and (server != "neuropod" or with_shm))
        and not (server == "grpcio" and protocol != "grpc")
    ]
    subprocess.run([str(PERF_ANALYZER), "--setup"], check=True)
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    streamed: list[StreamResult] = []
    with tempfile.TemporaryDirectory(prefix="neuropod-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        ports = {}
        if "neuropod" in servers:
            ports["neuropod"] = stack.enter_context(neuropod_server(work, logs))
        if "grpcio" in servers:
            ports["grpcio"] = stack.enter_context(grpcio_server(work, logs))
        if "kserve" in servers:
            ports["kserve"] = stack.enter_context(kserve_server(work, logs))
        if "floor" in servers:
            ports["floor"] = stack.enter_context(floor_server(work, logs))
        for case in cases:
            result = measure(case, ports[case.server], args.quick, work)
            results.append(result)
            shown = f"{result.infer_per_s:.1f} infer/s" if not result.error else f"failed: {result.error}"
            print(f"{case.server:8} {case.protocol:11} {case.size:5} c={case.concurrency} "
                  f"shm={_yes(case.shm):3} {shown}", file=sys.stderr, flush=True)  # fmt: skip
        if "neuropod" in servers and args.streaming > 0:
            streamed = measure_streaming(ports["neuropod"][1], args.streaming, args.quick)
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"kserve {KSERVE_VERSION}, perf_analyzer {os.environ.get('PERF_ANALYZER_VERSION', '2.60.0')}, "
          f"{'quick' if args.quick else 'full'} windows\n")  # fmt: skip
    print(table(results))
    if streamed:
        print(f"\nStreaming (neuropod, tritonclient's Python gRPC client)\n\n{streaming_table(streamed)}")
    output = CACHE / "serve-results.json"
    rows = [{**asdict(r.case), **{k: v for k, v in asdict(r).items() if k != "case"}} for r in results]
    output.write_text(json.dumps(rows, indent=1))
    print(f"\n(results in {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output})")
    if args.plot:
        print(f"(chart in {plot(results, args.plot)})")


def plot(results: list[Result], path: str) -> Path:
    """The table as a chart: infer/s of each server (and of neuropod with shared memory) per case."""
    panels = []
    for size, label in (("small", "4 floats"), ("large", "4 MB")):
        chosen = [r for r in results if r.case.size == size]
        rows = list(dict.fromkeys(f"{r.case.protocol}, c={r.case.concurrency}" for r in chosen))
        series: dict[str, list[float | None]] = {}
        for result in chosen:
            name = result.case.server + (" + shm" if result.case.shm else "")
            values = series.setdefault(name, [None] * len(rows))
            values[rows.index(f"{result.case.protocol}, c={result.case.concurrency}")] = result.infer_per_s
        if rows:
            panels.append(Panel(f"inferences per second, {label} per request", rows, series))
    return write_svg(path, "Serving throughput with perf_analyzer (bench/serve.py)", panels)


if __name__ == "__main__":
    main()
