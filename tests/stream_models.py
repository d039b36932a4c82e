"""A decoupled python model for the streaming tests (plain Python, no framework).

``counter`` takes ``n`` (int64, shape ``[1]``) and yields ``{"i": [k]}`` for ``k`` in
``range(n)``, each after ``delay`` (float32 seconds, shape ``[1]``, optional). Negative ``n``
misbehaves on purpose:

- ``-1``: one response, then an error;
- ``-2``: one response that breaks the output spec (float64 where int64 is declared);
- ``-3``: responses for ever (1 ms apart), until the stream is closed;
- ``-4``: waits until a ``-5`` request runs at the same time (so two requests run at once),
  then answers one response; ``-5`` wakes it and answers one;
- ``-6``: one response, then the process running the model dies.

When the model's generator ends or is closed, it appends ``closed <n>`` to the file named by
``NEUROPOD_TEST_STREAM_MARKER``, if set (read when the model is loaded).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from neuropod.packagers.python import create_python_neuropod

MARKER_VARIABLE = "NEUROPOD_TEST_STREAM_MARKER"

COUNTER_CODE = """
import os
import threading
import time

import numpy as np

_together = threading.Event()


def get_model(data_dir):
    marker = os.environ.get("NEUROPOD_TEST_STREAM_MARKER")

    def run(n, delay=None):
        count = int(n[0])
        pause = 0.0 if delay is None else float(delay[0])
        try:
            if count == -1:
                yield {"i": np.array([0], np.int64)}
                raise RuntimeError("asked to fail after one response")
            if count == -2:
                yield {"i": np.array([0.5])}
                return
            if count == -4:
                if not _together.wait(10):
                    raise RuntimeError("no other request ran at the same time")
                _together.clear()
                yield {"i": np.array([-4], np.int64)}
                return
            if count == -5:
                _together.set()
                yield {"i": np.array([-5], np.int64)}
                return
            if count == -6:
                yield {"i": np.array([0], np.int64)}
                os._exit(3)
            k = 0
            while count == -3 or k < count:
                time.sleep(0.001 if count == -3 else pause)
                yield {"i": np.array([k], np.int64)}
                k += 1
        finally:
            if marker:
                with open(marker, "a") as log:
                    log.write(f"closed {count}\\n")

    return run
"""

COUNTER_INPUTS = [
    {"name": "n", "dtype": "int64", "shape": [1]},
    {"name": "delay", "dtype": "float32", "shape": [1]},
]
COUNTER_OUTPUTS = [{"name": "i", "dtype": "int64", "shape": [1]}]


def build_counter(root: Path, target: Path, *, decoupled: bool = True, name: str = "counter") -> Path:
    """Write the counter package at ``target`` (its code under ``root``); return ``target``."""
    source = root / f"src_{name}" / f"stream_{name}"
    source.mkdir(parents=True, exist_ok=True)
    (source / "__init__.py").write_text("")
    (source / "main.py").write_text(textwrap.dedent(COUNTER_CODE))
    create_python_neuropod(
        neuropod_path=target,
        model_name=name,
        input_spec=COUNTER_INPUTS,
        output_spec=COUNTER_OUTPUTS,
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": [source.name]}],
        entrypoint_package=f"{source.name}.main",
        entrypoint="get_model",
        decoupled=decoupled,
    )
    return target
