"""Python models for the out-of-process tests (``test_ope.py``, ``test_ope_failures.py``, beside this file).

``BEHAVIOUR`` is one model whose input ``mode`` picks what it does, so that one package covers
every way a worker can fail; the others are small models with one purpose each.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.packagers import create_python_neuropod

#: Every dtype, a scalar, strings, bytes, and an output that views its input (``echo``).
MIXED_SPEC: dict[str, Any] = {
    "input_spec": [
        {"name": "f32", "dtype": "float32", "shape": (None, None)},
        {"name": "f16", "dtype": "float16", "shape": (None,)},
        {"name": "f64", "dtype": "float64", "shape": (None,)},
        {"name": "u8", "dtype": "uint8", "shape": (None, None, 3)},
        {"name": "i64", "dtype": "int64", "shape": ()},
        {"name": "flag", "dtype": "bool", "shape": (None,)},
        {"name": "s", "dtype": "string", "shape": (None,)},
        {"name": "b", "dtype": "bytes", "shape": (None,)},
    ],
    "output_spec": [
        {"name": "f32", "dtype": "float32", "shape": (None, None)},
        {"name": "f16", "dtype": "float16", "shape": (None,)},
        {"name": "f64", "dtype": "float64", "shape": (None,)},
        {"name": "u8", "dtype": "uint8", "shape": (None, None, 3)},
        {"name": "i64", "dtype": "int64", "shape": ()},
        {"name": "flag", "dtype": "bool", "shape": (None,)},
        {"name": "s", "dtype": "string", "shape": (None,)},
        {"name": "b", "dtype": "bytes", "shape": (None,)},
        {"name": "echo", "dtype": "float32", "shape": (None, None)},
    ],
}
MIXED = """
    import numpy as np

    def get_model(data_dir):
        def mixed(f32=None, f16=None, f64=None, u8=None, i64=None, flag=None, s=None, b=None):
            out = {}
            if f32 is not None:
                out["f32"] = f32 * 2
                out["echo"] = f32
            if f16 is not None:
                out["f16"] = f16 + np.float16(1)
            if f64 is not None:
                out["f64"] = np.cumsum(f64)
            if u8 is not None:
                out["u8"] = u8[::-1].copy()
            if i64 is not None:
                out["i64"] = np.asarray(i64 + 1)
            if flag is not None:
                out["flag"] = ~flag
            if s is not None:
                out["s"] = np.array(["<" + str(item) + ">" for item in s], dtype=object)
            if b is not None:
                out["b"] = np.empty(b.shape, dtype=object)
                out["b"][...] = [b"<" + bytes(item) + b">" for item in b]
            return out
        return mixed
"""

BEHAVIOUR_SPEC: dict[str, Any] = {
    "input_spec": [
        {"name": "mode", "dtype": "string", "shape": (1,)},
        {"name": "x", "dtype": "float32", "shape": (None,)},
    ],
    "output_spec": [
        {"name": "pid", "dtype": "int64", "shape": ()},
        {"name": "value", "dtype": "string", "shape": (1,)},
        {"name": "start", "dtype": "float64", "shape": ()},
        {"name": "end", "dtype": "float64", "shape": ()},
        {"name": "out", "dtype": "float32", "shape": (None,)},
    ],
}
BEHAVIOUR = """
    import ctypes
    import json
    import os
    import time

    import numpy as np

    class ModelSpecificError(Exception):
        pass

    def get_model(data_dir):
        if os.environ.get("NEUROPOD_TEST_EXIT_AT_LOAD"):
            os._exit(7)
        # Patched at load, read at every call: models sharing a process would see each other's.
        with open(os.path.join(data_dir, "owner.txt")) as owner:
            json.neuropod_test_owner = owner.read()

        def behave(mode, x=None):
            mode = str(mode[0])
            start = time.monotonic()
            value = ""
            if mode == "raise":
                raise ZeroDivisionError("the model divided by zero")
            if mode == "raise-own":
                raise ModelSpecificError("a class only the worker knows")
            if mode == "exit":
                os._exit(3)
            if mode == "segfault":
                ctypes.string_at(0)
            if mode == "sleep":
                time.sleep(60)
            if mode == "hog":
                np.ones(4 * 1024**3, dtype=np.uint8)
            if mode == "spin":  # holds the GIL for about 0.3 s
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    pass
            if mode == "owner":
                value = json.neuropod_test_owner
            if mode == "env":
                value = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
            return {
                "pid": np.array(os.getpid(), np.int64),
                "value": np.array([value]),
                "start": np.array(start),
                "end": np.array(time.monotonic()),
                "out": (x if x is not None else np.zeros(0, np.float32)) + 1,
            }
        return behave
"""


def build_python_model(
    path: Path, source: str, spec: dict[str, Any], *, owner: str = "", **common: Any
) -> Path:
    """Package ``source`` (a module whose ``get_model`` is the entrypoint) at ``path``."""
    root = path.parent / f"{path.name}-code"
    (root / "model").mkdir(parents=True)
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "main.py").write_text(textwrap.dedent(source))
    owner_file = path.parent / f"{path.name}-owner.txt"
    owner_file.write_text(owner)
    create_python_neuropod(
        neuropod_path=path,
        model_name=path.stem,
        code_path_spec=[{"python_root": str(root), "dirs_to_package": ["model"]}],
        entrypoint_package="model.main",
        entrypoint="get_model",
        data_paths=[{"path": str(owner_file), "packaged_name": "owner.txt"}],
        **spec,
        **common,
    )
    return path


def mode(name: str, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inputs of the behaviour model."""
    inputs = {"mode": np.array([name])}
    if x is not None:
        inputs["x"] = x
    return inputs


def process_gone(pid: int, within: float) -> bool:
    """Whether process ``pid`` has exited within ``within`` seconds (a zombie counts as gone).

    A killed process's main thread turns zombie before its other threads have finished
    exiting, and its descriptors stay open until the last one has: that is when it is gone.
    """
    deadline = time.monotonic() + within
    while True:
        state = process_state(pid)
        if state is None or (state == "Z" and _threads(pid) <= 1):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from ``/proc`` (``"Z"`` for a zombie), ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def children(pid: int | None = None) -> dict[int, str]:
    """The child processes of ``pid`` (default: this process) and their states."""
    parent = os.getpid() if pid is None else pid
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found[int(entry)] = fields[0]
    return found


def open_fds() -> set[str]:
    """What this process's descriptors point at (pipes and sockets by inode)."""
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue
    return links


def shared_mappings() -> list[str]:
    """This process's mappings of neuropod's shared-memory blocks."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        return [line for line in maps if "memfd:neuropod" in line]
