"""What version selection costs: preparing an environment, and a model's first call inside one.

Two python-platform models run the same numpy code: ``plain`` has no requirements; ``demo``
needs ``npdemo_lib==1.0``, a wheel written to a temporary find-links folder beside a repack of
the installed numpy, so nothing comes from the network. Rows:

- packaging ``demo``: ``create_python_neuropod`` with requirements (``uv pip compile``);
- environment, cold: built in an empty environment cache, once with an empty uv cache too
  (uv unpacks every wheel) and once with uv's cache warm (uv links the files it has);
- environment, warm: the environment is cached (no uv at all);
- load + first call: ``load_neuropod`` then one ``infer``, for ``plain`` in process, in a worker
  with the application's environment (``use_ope=True``) and in a cached environment of its
  own (``environment="isolated"``), and for ``demo`` (which needs its environment);
- a call: the median of 200 calls once loaded, in each of those places.

    python bench/environments.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests.environments.test_environments import (
    DEMO_CODE,
    NUMPY_CODE,
    local_requirements,
    package_model,
    repack_installed,
    write_wheel,
)

from neuropod.environments import prepare_environment
from neuropod.loader import load_neuropod

X = np.ones(4, np.float32)
CALLS = 200


def timed(action: Callable[[], Any], repeat: int, before: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds per run of ``action``; ``before`` runs untimed ahead of each."""
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


@contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def first_call(path: Path, **options: Any) -> None:
    with load_neuropod(path, **options) as model:
        model.infer({"x": X})


def call_latency(path: Path, **options: Any) -> list[float]:
    with load_neuropod(path, **options) as model:
        model.infer({"x": X})
        return timed(lambda: model.infer({"x": X}), CALLS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each row (default 5)")
    args = parser.parse_args()
    repeat = args.repeat

    with tempfile.TemporaryDirectory(prefix="neuropod-bench-envs-") as tmp:
        root = Path(tmp)
        wheels = root / "wheels"
        wheels.mkdir()
        write_wheel(
            wheels, "npdemo_lib", "1.0", {"npdemo_lib/__init__.py": b"def version():\n    return '1.0'\n"}
        )
        repack_installed(wheels, "numpy")
        requirements = local_requirements(wheels, "npdemo_lib==1.0")
        counter = iter(range(1_000_000))

        def package_demo() -> Path:
            return package_model(root / f"demo-{next(counter)}", DEMO_CODE, requirements)

        rows: list[tuple[str, list[float]]] = []
        rows.append(("packaging demo (uv pip compile)", timed(package_demo, repeat)))
        demo = package_demo()
        plain = package_model(root / "plain", NUMPY_CODE, None)

        fresh = iter(range(1_000_000))

        def prepare_cold(uv_cache: bool) -> None:
            number = next(fresh)
            caches = {"env_cache": root / f"envs-{number}"}
            if uv_cache:
                prepare_environment(demo, **caches)
            else:
                with environment_variable("UV_CACHE_DIR", str(root / f"uv-cache-{number}")):
                    prepare_environment(demo, **caches)

        rows.append(("environment, cold (empty uv cache)", timed(lambda: prepare_cold(False), repeat)))
        rows.append(("environment, cold (warm uv cache)", timed(lambda: prepare_cold(True), repeat)))
        cache = root / "envs"
        prepare_environment(demo, env_cache=cache)
        prepare_environment(plain, env_cache=cache, force=True)
        rows.append(
            ("environment, warm (cached)", timed(lambda: prepare_environment(demo, env_cache=cache), repeat))
        )

        places: list[tuple[str, Path, dict[str, Any]]] = [
            ("plain, in process", plain, {}),
            ("plain, worker (use_ope=True)", plain, {"use_ope": True}),
            ("plain, cached environment", plain, {"environment": "isolated", "env_cache": cache}),
            ("demo, cached environment", demo, {"env_cache": cache}),
        ]
        for name, path, options in places:
            rows.append(
                (f"load + first call: {name}", timed(lambda p=path, o=options: first_call(p, **o), repeat))
            )
        for name, path, options in places:
            rows.append((f"a call: {name}", call_latency(path, **options)))

    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  {'median':>10}  {'min':>10}  {'runs':>5}")
    for name, times in rows:
        median, fastest = _format(statistics.median(times)), _format(min(times))
        print(f"{name:{width}}  {median:>10}  {fastest:>10}  {len(times):>5}")


def _format(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


if __name__ == "__main__":
    main()
