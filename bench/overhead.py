"""What neuropod adds to a model call: raw framework vs ``NeuropodModel.infer``.

Both sides start from numpy arrays and end with numpy arrays, in one process, calls
interleaved so that drift in the machine's speed hits both alike. Prints median microseconds
per call and the ratio neuropod / raw.

    python bench/overhead.py [--quick]

Targets (issue 2): at most 5 us added at 4 elements; ratio at most 1.05 at 16M elements.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from neuropod import load_neuropod
from neuropod.packagers import create_torchscript_neuropod


class Addition(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": x + y}


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], calls: int, warmup: int
) -> tuple[float, float]:
    """Median seconds per call of two functions, called alternately."""
    for _ in range(warmup):
        first()
        second()
    a, b = [], []
    clock = time.perf_counter
    for _ in range(calls):
        start = clock()
        first()
        middle = clock()
        second()
        end = clock()
        a.append(middle - start)
        b.append(end - middle)
    return statistics.median(a), statistics.median(b)


def _saved(package: Path, tmp: str) -> Path:
    import zipfile

    with zipfile.ZipFile(package) as zf:
        zf.extract("0/data/model.pt", tmp)
    return Path(tmp, "0/data/model.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()

    spec = [{"name": n, "dtype": "float32", "shape": (None,)} for n in ("x", "y")]
    out_spec = [{"name": "out", "dtype": "float32", "shape": (None,)}]
    module = torch.jit.script(Addition())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "addition.zip")
        create_torchscript_neuropod(
            neuropod_path=path, model_name="addition", module=module, input_spec=spec, output_spec=out_spec
        )
        # The same module neuropod loads from the package, so both sides run identical code.
        raw_module = torch.jit.load(str(_saved(path, tmp)))
        with load_neuropod(path) as model:
            rows = []
            for label, size, calls, warmup in (
                ("4 elements", 4, 2000 if args.quick else 50000, 1000),
                ("16M elements", 16 * 1024 * 1024, 5 if args.quick else 40, 3),
            ):
                rng = np.random.default_rng(0)
                x = rng.random(size, dtype=np.float32)
                y = rng.random(size, dtype=np.float32)

                def raw() -> np.ndarray:
                    return raw_module(torch.from_numpy(x), torch.from_numpy(y))["out"].numpy()

                def wrapped() -> np.ndarray:
                    return model.infer({"x": x, "y": y})["out"]

                np.testing.assert_array_equal(raw(), wrapped())
                raw_s, wrapped_s = interleaved_medians(raw, wrapped, calls, warmup)
                rows.append((label, calls, raw_s * 1e6, wrapped_s * 1e6))

    print(f"TorchScript addition, torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    print(f"{'input':14s} {'calls':>7s} {'raw us':>11s} {'neuropod us':>12s} {'added us':>9s} {'ratio':>6s}")
    for label, calls, raw_us, wrapped_us in rows:
        print(
            f"{label:14s} {calls:7d} {raw_us:11.1f} {wrapped_us:12.1f} "
            f"{wrapped_us - raw_us:9.1f} {wrapped_us / raw_us:6.3f}"
        )


if __name__ == "__main__":
    main()
