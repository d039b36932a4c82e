"""Running uv, the resolver and installer behind requirement locking and environments."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from neuropod.errors import BackendUnavailable
from neuropod.errors import UvFailed as UvFailed  # re-exported: its old home

#: How many lines of uv's output an error quotes when uv printed no ``error:`` line.
TAIL_LINES = 20


def find_uv() -> str:
    """The uv executable: the ``uv`` Python package's binary if installed, else ``uv`` on ``PATH``.

    Returns:
        The path of the executable.

    Raises:
        BackendUnavailable: uv is not installed.
    """
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found is None:
        raise BackendUnavailable(
            "Locking requirements and building model environments need uv: "
            "pip install 'neuropod[envs]' (or put uv on PATH)"
        )
    return found


def run_uv(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
    offline: bool = False,
) -> str:
    """Run ``uv ARGS`` and return what it printed (stdout, then stderr).

    Args:
        args: uv's arguments, e.g. ``["pip", "compile", ...]``.
        cwd: the working directory.
        pass_fds: descriptors the uv process inherits (a build lock, so that a uv process
            orphaned by a killed application keeps the build locked until it exits).
        offline: forbid network access (uv's ``--offline``: its cache only).

    Returns:
        uv's output.

    Raises:
        UvFailed: uv exited with an error; its ``reason`` quotes uv.
        BackendUnavailable: uv is not installed.
    """
    command = [find_uv(), *args, "--no-progress"]
    if offline:
        command.append("--offline")
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        pass_fds=tuple(pass_fds),
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise UvFailed(error_reason(result.stderr or result.stdout), result.returncode)
    return output


def error_reason(output: str) -> str:
    """The part of uv's output that says why it failed: from its first ``error:`` line on.

    Args:
        output: what uv printed.

    Returns:
        The reason, as uv wrote it (its last lines when it wrote no ``error:`` line).
    """
    lines = [line.rstrip() for line in output.strip().splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            return "\n".join(line for line in lines[index:] if line)
    return "\n".join(lines[-TAIL_LINES:]) or "uv failed without saying why"
