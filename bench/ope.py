"""What out-of-process execution costs: in-process vs ``use_ope=True`` vs a multiprocessing Pipe.

Python-platform models (numpy), so every column runs the same code on the same arrays:

- add: ``x + y`` on 4 float32 elements (the fixed cost of a call);
- image: a 1200x1920x3 uint8 image, the original Neuropod's benchmark shape, reduced to its
  per-channel mean (``image``), or returned as it is (``image echo``: the output travels too);
- 64 MB: 16M float32 reduced to their sum (``64 MB sum``), or doubled (``64 MB x2``: a 64 MB
  output that the worker must copy into shared memory).

Each is run in process, out of process with ordinary input arrays, out of process with inputs
from ``model.allocate`` (zero-copy), and over a ``multiprocessing`` Pipe to a process running
the same function (pickles both ways). Blocks of calls alternate between the variants so that
drift in the machine's speed hits all alike; the table shows median milliseconds per call.

Then a GIL-bound model (a pure-Python loop of about 2 ms) called from 2 threads: in process,
and out of process with 1 and 2 instances (calls per second).

Last, what ``sandbox=True`` costs (see docs/sandbox.md): the same models out of process with
and without the sandbox, per call (it should add nothing: the namespaces are set up once, when
the worker starts) and per start (``load_neuropod`` until the worker is ready), medians of
alternating loads.

    python bench/ope.py [--quick] [--sandbox-only] [--plot ope.svg]

Targets (issue 4): at most 30 us added for add; OPE / in-process at most 1.10 for image and
64 MB with allocated inputs; 2 instances at least 1.8x the throughput of 1 on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from svg_chart import Panel, write_svg

from neuropod import NeuropodModel, load_neuropod
from neuropod.packagers import create_python_neuropod

# The models, as plain functions: the packages' code and the Pipe worker's.
CODE = '''
import numpy as np

def add(x, y):
    return {"out": x + y}

def image_mean(image):
    return {"mean": image.mean(axis=(0, 1), dtype=np.float32)}

def image_echo(image):
    return {"image": image}

def total(x):
    return {"sum": np.asarray(x.sum(dtype=np.float64))}

def double(x):
    return {"y": x * 2}

def spin(n):
    total = 0
    for i in range(int(n[0])):
        total += i
    return {"total": np.array([total], np.int64)}
'''
FUNCTIONS = ("add", "image_mean", "image_echo", "total", "double", "spin")
# The packages' entrypoints: get_add(data_dir) returns add, and so on.
ENTRYPOINTS = "".join(f"\ndef get_{name}(data_dir):\n    return {name}\n" for name in FUNCTIONS)

F32 = "float32"
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # label, function, spec, inputs
    (
        "add (4 x f32)",
        "add",
        {
            "input_spec": [{"name": n, "dtype": F32, "shape": (None,)} for n in ("x", "y")],
            "output_spec": [{"name": "out", "dtype": F32, "shape": (None,)}],
        },
        {"x": np.arange(4, dtype=np.float32), "y": np.ones(4, np.float32)},
    ),
    (
        "image mean",
        "image_mean",
        {
            "input_spec": [{"name": "image", "dtype": "uint8", "shape": (1200, 1920, 3)}],
            "output_spec": [{"name": "mean", "dtype": F32, "shape": (3,)}],
        },
        {"image": np.random.default_rng(0).integers(0, 255, (1200, 1920, 3), dtype=np.uint8)},
    ),
    (
        "image echo",
        "image_echo",
        {
            "input_spec": [{"name": "image", "dtype": "uint8", "shape": (1200, 1920, 3)}],
            "output_spec": [{"name": "image", "dtype": "uint8", "shape": (1200, 1920, 3)}],
        },
        {"image": np.random.default_rng(1).integers(0, 255, (1200, 1920, 3), dtype=np.uint8)},
    ),
    (
        "64 MB sum",
        "total",
        {
            "input_spec": [{"name": "x", "dtype": F32, "shape": (None,)}],
            "output_spec": [{"name": "sum", "dtype": "float64", "shape": ()}],
        },
        {"x": np.random.default_rng(2).standard_normal(16 * 1024 * 1024, dtype=np.float32)},
    ),
    (
        "64 MB x2",
        "double",
        {
            "input_spec": [{"name": "x", "dtype": F32, "shape": (None,)}],
            "output_spec": [{"name": "y", "dtype": F32, "shape": (None,)}],
        },
        {"x": np.random.default_rng(3).standard_normal(16 * 1024 * 1024, dtype=np.float32)},
    ),
]
SPIN_SPEC = {
    "input_spec": [{"name": "n", "dtype": "int64", "shape": (1,)}],
    "output_spec": [{"name": "total", "dtype": "int64", "shape": (1,)}],
}


def package(root: Path, function: str, spec: dict[str, Any]) -> Path:
    code = root / "code" / "models"
    if not code.exists():
        code.mkdir(parents=True)
        (code / "__init__.py").write_text(textwrap.dedent(CODE) + ENTRYPOINTS)
    path = root / function
    create_python_neuropod(
        neuropod_path=path,
        model_name=function,
        entrypoint_package="models",
        entrypoint=f"get_{function}",
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["models"]}],
        package_as_zip=False,
        **spec,
    )
    return path


def pipe_worker(conn: Connection) -> None:
    """The Pipe baseline's process: the same functions, arrays pickled both ways."""
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(CODE), namespace)
    while True:
        try:
            function, inputs = conn.recv()
        except EOFError:
            return
        conn.send(namespace[function](**inputs))


def medians(calls: dict[str, Callable[[], object]], count: int, blocks: int = 5) -> dict[str, float]:
    """Median seconds per call of each function: ``count`` calls each, in blocks taken in turn.

    Blocks rather than single calls in turn: switching between processes at every call would
    measure cold caches and scheduler placement rather than the calls.
    """
    per_block = max(count // blocks, 1)
    times: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    for _ in range(blocks):
        for name, call in calls.items():
            for _ in range(min(per_block // 10 + 1, 50)):  # warm-up
                call()
            for _ in range(per_block):
                start = clock()
                call()
                times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(
    path: Path, inputs: dict[str, np.ndarray], pipe: Callable[[], object], count: int
) -> dict[str, float]:
    """Median seconds per call of the four variants of one case."""
    with load_neuropod(path) as local, load_neuropod(path, use_ope=True) as remote:
        shared = {name: remote.allocate(name, array.shape) for name, array in inputs.items()}
        for name, array in inputs.items():
            shared[name][...] = array
        calls = {
            "in-process": lambda: local.infer(inputs),
            "OPE": lambda: remote.infer(inputs),
            "OPE allocate": lambda: remote.infer(shared),
            "Pipe": pipe,
        }
        return medians(calls, count)


def sandbox_cost(path: Path, inputs: dict[str, np.ndarray], count: int, starts: int) -> dict[str, float]:
    """Median seconds per call and per start of one case, out of process without and with the sandbox."""
    result: dict[str, float] = {}
    with load_neuropod(path, use_ope=True) as plain, load_neuropod(path, use_ope=True, sandbox=True) as boxed:
        shared = {}
        for label, model in (("OPE", plain), ("OPE sandbox", boxed)):
            shared[label] = {name: model.allocate(name, array.shape) for name, array in inputs.items()}
            for name, array in inputs.items():
                shared[label][name][...] = array
        calls = {
            "OPE": lambda: plain.infer(inputs),
            "OPE sandbox": lambda: boxed.infer(inputs),
            "OPE allocate": lambda: plain.infer(shared["OPE"]),
            "OPE allocate sandbox": lambda: boxed.infer(shared["OPE sandbox"]),
        }
        result.update(medians(calls, count))
    times: dict[str, list[float]] = {"start": [], "start sandbox": []}
    for _ in range(starts):
        for label, options in (("start", {}), ("start sandbox", {"sandbox": True})):
            begin = time.perf_counter()
            load_neuropod(path, use_ope=True, **options).close()
            times[label].append(time.perf_counter() - begin)
    result.update({label: statistics.median(values) for label, values in times.items()})
    return result


def sandbox_table(root: Path, quick: bool) -> None:
    """Print what sandbox=True costs per call and per start."""
    rows = []
    for label, function, spec, inputs in CASES[:2]:
        path = root / function
        if not path.exists():
            path = package(root, function, spec)
        count = (300 if quick else 20000) if function == "add" else (10 if quick else 60)
        rows.append((label, sandbox_cost(path, inputs, count, 3 if quick else 10)))
    print("\nsandbox=True: median ms per call, and per start (load_neuropod until the worker is ready)\n")
    keys = ["OPE", "OPE sandbox", "OPE allocate", "OPE allocate sandbox", "start", "start sandbox"]
    print("| case | " + " | ".join(keys) + " | added per call, us | added per start, ms |")
    print("|" + "---|" * (len(keys) + 3))
    for label, m in rows:
        cells = [label, *(f"{m[k] * 1e3:.3f}" for k in keys[:4]), *(f"{m[k] * 1e3:.0f}" for k in keys[4:])]
        cells.append(f"{(m['OPE sandbox'] - m['OPE']) * 1e6:.0f}")
        cells.append(f"{(m['start sandbox'] - m['start']) * 1e3:.0f}")
        print("| " + " | ".join(cells) + " |")


def throughput(model: NeuropodModel, n: np.ndarray, threads: int, seconds: float) -> float:
    """Calls per second of ``threads`` threads calling ``model`` for ``seconds``."""
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def run(index: int) -> None:
        while time.monotonic() < stop:
            model.infer({"n": n})
            counts[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.monotonic() - start)


def plot(rows: list[tuple[str, dict[str, float]]], rates: dict[str, float], path: str) -> Path:
    """The tables as a chart: ms per call of each variant per case (log axis), then calls/s."""
    variants = ("in-process", "OPE", "OPE allocate", "Pipe")
    per_call = Panel(
        "median ms per call (log axis)",
        [label for label, _ in rows],
        {variant: [m[variant] * 1e3 for _, m in rows] for variant in variants},
        log=True,
    )
    gil = Panel(
        "GIL-bound model from 2 threads, calls per second", list(rates), {"calls/s": list(rates.values())}
    )
    return write_svg(path, "Out-of-process execution (bench/ope.py)", [per_call, gil])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--sandbox-only", action="store_true", help="only what sandbox=True costs")
    parser.add_argument("--plot", metavar="OUT.svg", help="also draw the tables as an SVG bar chart")
    args = parser.parse_args()
    if args.sandbox_only:
        with tempfile.TemporaryDirectory() as tmp:
            sandbox_table(Path(tmp), args.quick)
        return
    rounds = {"add (4 x f32)": 300 if args.quick else 20000}

    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    pipe_process = context.Process(target=pipe_worker, args=(child_end,), daemon=True)
    pipe_process.start()
    child_end.close()

    def over_pipe(function: str, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
        def call() -> object:
            parent_end.send((function, inputs))
            return parent_end.recv()

        return call

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, function, spec, inputs in CASES:
            path = package(root, function, spec)
            count = rounds.get(label, 10 if args.quick else 60)
            rows.append((label, measure(path, inputs, over_pipe(function, inputs), count)))

        print("\nMedian ms per call; added = OPE - in-process, in us\n")
        header = ["case", "in-process", "OPE", "OPE allocate", "Pipe"]
        header += ["added", "added alloc", "OPE/in", "alloc/in"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for label, m in rows:
            base, ope, alloc = m["in-process"], m["OPE"], m["OPE allocate"]
            cells = [label, *(f"{m[k] * 1e3:.3f}" for k in ("in-process", "OPE", "OPE allocate", "Pipe"))]
            cells += [f"{(ope - base) * 1e6:.0f}", f"{(alloc - base) * 1e6:.0f}"]
            cells += [f"{ope / base:.2f}", f"{alloc / base:.2f}"]
            print("| " + " | ".join(cells) + " |")

        spin_path = package(root, "spin", SPIN_SPEC)
        seconds = 1.0 if args.quick else 4.0
        with load_neuropod(spin_path) as local:
            n = np.array([20_000], np.int64)
            start = time.perf_counter()
            for _ in range(20):
                local.infer({"n": n})
            per_call = (time.perf_counter() - start) / 20
            n = np.array([int(20_000 * 0.002 / per_call)], np.int64)  # about 2 ms a call
            results = {"in-process, 2 threads": throughput(local, n, 2, seconds)}
        for instances in (1, 2):
            with load_neuropod(spin_path, use_ope=True, instances=instances) as remote:
                throughput(remote, n, 2, 0.2)  # warm-up
                results[f"OPE instances={instances}, 2 threads"] = throughput(remote, n, 2, seconds)
        print(f"\nGIL-bound model ({int(n[0])} loop steps, about 2 ms), calls per second\n")
        print("| variant | calls/s | vs OPE instances=1 |")
        print("|---|---|---|")
        one = results["OPE instances=1, 2 threads"]
        for variant, rate in results.items():
            print(f"| {variant} | {rate:.0f} | {rate / one:.2f}x |")
        if args.plot:
            print(f"\n(chart in {plot(rows, results, args.plot)})")

        sandbox_table(root, args.quick)

    parent_end.close()
    pipe_process.join(5)


if __name__ == "__main__":
    main()
