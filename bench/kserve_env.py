"""KServe's own virtual environment, shared by the serving benchmark and the KServe-client tests.

``kserve`` pins older pandas and python-dateutil than neuropod's environment holds, so installing it
there would downgrade them. It lives instead in ``kserve-venv`` under the bench cache
(``NEUROPOD_BENCH_CACHE``, by default ``.bench/`` at the repository root, git-ignored), created with
uv on first use and reused afterwards. ``bench/serve.py`` runs KServe's model server from it, and
``tests/serving/test_kserve_clients.py`` runs KServe's Python clients from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KSERVE_VERSION = "0.21.0"


def bench_cache() -> Path:
    """The folder the benchmarks cache tools and environments in (``NEUROPOD_BENCH_CACHE``)."""
    return Path(os.environ.get("NEUROPOD_BENCH_CACHE", ROOT / ".bench"))


def kserve_python(cache: Path | None = None) -> Path:
    """The Python of KServe's virtual environment, created on first use.

    Args:
        cache: the folder holding ``kserve-venv``; ``bench_cache()`` when left out.

    Returns:
        The environment's ``bin/python``, with ``kserve==KSERVE_VERSION`` installed.

    Raises:
        RuntimeError: creating the environment or installing KServe failed (the message holds the
            command and its output); nothing is cached then, so the next call tries again.
    """
    venv = (cache if cache is not None else bench_cache()) / "kserve-venv"
    python = venv / "bin" / "python"
    marker = venv / f".kserve-{KSERVE_VERSION}"
    if marker.exists():
        return python
    print(f"creating {venv} with kserve=={KSERVE_VERSION} ...", file=sys.stderr)
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    requirement = f"kserve=={KSERVE_VERSION}"
    if uv:
        steps = [
            [uv, "venv", "-q", "--clear", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "-q", "--python", str(python), requirement],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "-q", requirement],
        ]
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"Creating KServe's environment at {venv} failed: `{' '.join(command)}` exited with "
                f"{done.returncode}, expected 0. Its output:\n{done.stdout}{done.stderr}"
            )
    marker.touch()
    return python
