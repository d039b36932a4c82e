"""Batch inference throughput: the batch runner vs a hand-written loop, and Ray Data vs local.

A small TorchScript MLP (32 -> 64 -> 64 -> 1, ReLU) runs over a dataset of float32 rows,
in batches of ``--batch-size`` rows:

- hand loop, memory: ``module(torch.from_numpy(x[i:i + b]))`` in a loop, outputs joined;
- runner, memory: ``neuropod.batch.run(model, {"x": x})``, outputs returned in memory;
- hand loop, npz: the same loop over ``.npz`` shards, each output shard saved as ``.npz``;
- runner, npz: ``neuropod.batch.run(model, folder, output=out)`` over the same shards;
- Ray engine: the runner with ``RayEngine(concurrency=2)`` over the same shards (Ray already
  started; actor start-up included, as every run pays it), and its rate from its first
  result on (the actors started), scaled to the whole dataset;
- Ray Data: ``infer_dataset`` over ``ray.data.from_numpy(x)``, 2 actors, materialized.

Runs alternate between the sides so that drift in the machine's speed hits them alike; the
table shows the median and the best of ``--repeats`` runs, rows/s of the best, and the ratio
of each row's best time to the hand loop's (or to the local runner's, for the Ray rows).

    python bench/batch.py [--rows 1000000] [--batch-size 4096] [--repeats 5] [--no-ray]

Target: the local runner within 1.1x of the hand-written loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from neuropod import load_neuropod
from neuropod.batch import Engine, Job, TaskResult, run
from neuropod.packagers import create_torchscript_neuropod

FEATURES = 32
SHARDS = 8


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.layers(x)}


def build(root: Path, rows: int) -> tuple[Path, Path, np.ndarray]:
    """The package, a folder of ``SHARDS`` npz shards, and the same rows in memory."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        module = torch.jit.script(MLP().eval())
    package = root / "mlp"
    create_torchscript_neuropod(
        neuropod_path=package,
        model_name="mlp",
        module=module,
        input_spec=[{"name": "x", "dtype": "float32", "shape": ("batch", FEATURES)}],
        output_spec=[{"name": "y", "dtype": "float32", "shape": ("batch", 1)}],
        package_as_zip=False,
    )
    x = np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)
    data = root / "data"
    data.mkdir()
    for i, part in enumerate(np.array_split(x, SHARDS)):
        np.savez(data / f"part-{i:02d}.npz", x=part)
    return package, data, x


def hand_loop(module: torch.jit.ScriptModule, x: np.ndarray, batch_size: int) -> np.ndarray:
    """What a user writes without neuropod: the framework called directly, batch by batch."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outputs.append(module(torch.from_numpy(x[start : start + batch_size]))["y"].numpy())
    return np.concatenate(outputs)


def hand_loop_files(module: torch.jit.ScriptModule, data: Path, out: Path, batch_size: int) -> None:
    out.mkdir()
    for shard in sorted(data.glob("*.npz")):
        with np.load(shard) as npz:
            x = npz["x"]
        np.savez(out / shard.name, y=hand_loop(module, x, batch_size))


class FirstResult(Engine):
    """Wraps an engine and notes when its first batch came back: the end of its start-up."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.rows_after_first = 0
        self.first_at = 0.0

    def map(self, job: Job) -> Iterator[TaskResult]:
        results = self.inner.map(job)
        first = next(results)
        self.first_at = time.perf_counter()
        self.rows_after_first = sum(t.stop - t.start for t in job.tasks) - (
            first.task.stop - first.task.start
        )
        yield first
        yield from results


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, batch = args.rows, args.batch_size

    with tempfile.TemporaryDirectory(prefix="neuropod-bench-") as tmp:
        root = Path(tmp)
        package, data, x = build(root, rows)
        module = torch.jit.load(str(package / "0" / "data" / "model.pt")).eval()
        model = load_neuropod(package)
        outs = iter(range(1_000_000))

        def fresh() -> Path:
            path = root / f"out-{next(outs)}"
            return path

        def runner_files() -> None:
            out = fresh()
            run(model, data, output=out, batch_size=batch, progress=False)
            shutil.rmtree(out)

        def hand_files() -> None:
            out = fresh()
            hand_loop_files(module, data, out, batch)
            shutil.rmtree(out)

        # Same results, before timing anything.
        expected = hand_loop(module, x, batch)
        outputs = run(model, {"x": x}, batch_size=batch, progress=False).outputs
        assert outputs is not None
        np.testing.assert_allclose(outputs["y"], expected)

        sides: dict[str, Callable[[], object]] = {
            "hand loop, memory": lambda: hand_loop(module, x, batch),
            "runner, memory": lambda: run(model, {"x": x}, batch_size=batch, progress=False),
            "hand loop, npz": hand_files,
            "runner, npz": runner_files,
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, side in sides.items():
                times[name].append(timed(side))

        if not args.no_ray:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            import ray

            from neuropod.integrations.ray import RayEngine, infer_dataset

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            engine = FirstResult(RayEngine(concurrency=2))
            steady: list[float] = []

            def ray_engine() -> None:
                out = fresh()
                run(package, data, output=out, batch_size=batch, engine=engine, progress=False)
                steady.append((time.perf_counter() - engine.first_at) / engine.rows_after_first * rows)
                shutil.rmtree(out)

            dataset = ray.data.from_numpy(np.array_split(x, SHARDS)).rename_columns({"data": "x"})

            def ray_data() -> None:
                infer_dataset(dataset, package, batch_size=batch, concurrency=2).materialize()

            ray_sides = {"Ray engine, npz, 2 actors": ray_engine, "Ray Data in memory, 2 actors": ray_data}
            ray_times: dict[str, list[float]] = {name: [] for name in ray_sides}
            for _ in range(min(args.repeats, 3)):
                for name, side in ray_sides.items():
                    ray_times[name].append(timed(side))
            times["Ray engine, npz, 2 actors"] = ray_times["Ray engine, npz, 2 actors"]
            times["  after its actors started"] = steady
            times["Ray Data in memory, 2 actors"] = ray_times["Ray Data in memory, 2 actors"]
            ray.shutdown()
        model.close()

    baselines = {
        "runner, memory": "hand loop, memory",
        "runner, npz": "hand loop, npz",
        "Ray engine, npz, 2 actors": "runner, npz",
        "  after its actors started": "runner, npz",
        "Ray Data in memory, 2 actors": "runner, memory",
    }
    medians = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    print(f"\n{rows:,} rows x {FEATURES} float32, batch {batch}, torch threads {torch.get_num_threads()}, ")
    print(f"{args.repeats} runs each (3 for Ray); rows/s and ratio from the best run, where noise adds least")
    print("ratio = best time / best time of the row named\n")
    header = f"{'':30} {'median s':>9} {'best s':>8} {'rows/s':>12}  ratio"
    print(header)
    print("-" * len(header))
    for name, seconds in best.items():
        base = baselines.get(name)
        ratio = f"{seconds / best[base]:.3f} x {base}" if base else ""
        print(f"{name:30} {medians[name]:9.3f} {seconds:8.3f} {rows / seconds:12,.0f}  {ratio}")


if __name__ == "__main__":
    main()
