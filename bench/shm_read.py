"""What reading inputs from, and writing outputs to, client shared memory costs per tensor.

The server reads a region with ``preadv`` into a fresh array and writes with ``pwrite``
(``neuropod.serving.shm``), so that a client shrinking the object cannot kill it with SIGBUS.
This compares that with the mapping it replaced: a zero-copy view of an ``mmap`` (what a
model got before), the same view copied (what a model that copies its input pays anyway),
and a slice assignment into the mapping for outputs.

    python bench/shm_read.py [--repeat N]
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import time
import uuid
from collections.abc import Callable

import numpy as np

from neuropod.protocol.binary import tensor_from_raw
from neuropod.serving.shm import Region, SharedMemoryRegistry

SIZES = {"4 KB": 4096, "4 MB": 4 * 2**20}


def per_call(function: Callable[[], object], repeat: int) -> float:
    """The median seconds of one call, over ``repeat`` batches."""
    times = []
    for _ in range(repeat):
        calls = 0
        started = time.perf_counter()
        while calls < 20 or time.perf_counter() - started < 0.02:
            function()
            calls += 1
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


def paths(region: Region, mapping: mmap.mmap, size: int) -> dict[str, Callable[[], object]]:
    """Each way of reading or writing a tensor of ``size`` bytes, by name."""
    shape = [size // 4]
    output = memoryview(np.ones(size, np.uint8))
    return {
        "read: mmap view (before, zero-copy)": lambda: tensor_from_raw(
            memoryview(mapping)[:size], "FP32", shape
        ),
        "read: mmap view, copied": lambda: tensor_from_raw(memoryview(mapping)[:size], "FP32", shape).copy(),
        "read: preadv into a new array (now)": lambda: tensor_from_raw(
            region.read(0, size, "x"), "FP32", shape
        ),
        "write: into the mapping (before)": lambda: mapping.__setitem__(slice(size, 2 * size), output),
        "write: fstat + pwrite (now)": lambda: region.write(size, size, output, "y"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"{'tensor':>7}  {'path':<40}  {'µs per tensor':>14}")
    for label, size in SIZES.items():
        key = f"/np-bench-{uuid.uuid4().hex[:8]}"
        fd = os.open(f"/dev/shm{key}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        registry = SharedMemoryRegistry()
        try:
            os.ftruncate(fd, 2 * size)
            os.pwrite(fd, np.random.default_rng(0).bytes(size), 0)
            registry.register("r", key, 0, 2 * size)
            region = registry.get("r")
            mapping = mmap.mmap(fd, 2 * size)
            rows = paths(region, mapping, size)
            for name, function in rows.items():
                print(f"{label:>7}  {name:<40}  {per_call(function, args.repeat) * 1e6:14.1f}")
            del rows
            mapping.close()
        finally:
            registry.close()
            os.close(fd)
            os.unlink(f"/dev/shm{key}")


if __name__ == "__main__":
    main()
