"""Models and a tiny HTTP client for the serving tests (plain Python models, no framework)."""

from __future__ import annotations

import http.client
import json
import textwrap
from pathlib import Path
from typing import Any

from neuropod.packagers.python import create_python_neuropod
from tests.models.python import BYTES

# Each model: (input spec, output spec, code of get_model(data_dir) returning the callable).
MODELS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], str]] = {
    "adder": (
        [
            {"name": "x", "dtype": "float32", "shape": ["batch", None]},
            {"name": "y", "dtype": "float32", "shape": ["batch", None]},
        ],
        [
            {"name": "sum", "dtype": "float32", "shape": ["batch", None]},
            {"name": "diff", "dtype": "float32", "shape": ["batch", None]},
        ],
        """
        def get_model(data_dir):
            return lambda x, y: {"sum": x + y, "diff": x - y}
        """,
    ),
    "strings": (
        [{"name": "text", "dtype": "string", "shape": [None]}],
        [
            {"name": "upper", "dtype": "string", "shape": [None]},
            {"name": "length", "dtype": "int64", "shape": [None]},
        ],
        """
        import numpy as np

        def get_model(data_dir):
            def run(text):
                return {
                    "upper": np.array([t.upper() for t in text.tolist()]),
                    "length": np.array([len(t) for t in text.tolist()], dtype=np.int64),
                }
            return run
        """,
    ),
    "flaky": (
        [{"name": "x", "dtype": "int32", "shape": [None]}],
        [{"name": "y", "dtype": "int32", "shape": [None]}],
        """
        import os
        import time

        def get_model(data_dir):
            def run(x):
                if x.size and x[0] == -1:
                    raise RuntimeError("asked to fail")
                if x.size and x[0] == -2:
                    os._exit(3)  # a crash: kills the process running the model
                if x.size and x[0] > 0:
                    time.sleep(x[0] / 1000)  # milliseconds, for the drain tests
                return {"y": x * 2}
            return run
        """,
    ),
    "types": (
        [
            {"name": "b", "dtype": "bool", "shape": [None]},
            {"name": "h", "dtype": "float16", "shape": [None]},
            {"name": "u", "dtype": "uint8", "shape": [None]},
            {"name": "d", "dtype": "float64", "shape": [2, None]},
        ],
        [
            {"name": "b", "dtype": "bool", "shape": [None]},
            {"name": "h", "dtype": "float16", "shape": [None]},
            {"name": "u", "dtype": "uint8", "shape": [None]},
            {"name": "d", "dtype": "float64", "shape": [2, None]},
        ],
        """
        def get_model(data_dir):
            return lambda b, h, u, d: {"b": ~b, "h": h * 2, "u": u + 1, "d": d * 0.5}
        """,
    ),
    # Declares two outputs but produces only o_int: a model may leave optional outputs out.
    "partial": (
        [{"name": "x", "dtype": "int64", "shape": [None]}],
        [
            {"name": "o_int", "dtype": "int64", "shape": [None]},
            {"name": "o_bool", "dtype": "bool", "shape": [None]},
        ],
        """
        def get_model(data_dir):
            return lambda x: {"o_int": x * 2}
        """,
    ),
    # Returns float64 where its spec says float32: the model's fault, not the request's.
    "malformed": (
        [{"name": "x", "dtype": "float32", "shape": [None]}],
        [{"name": "y", "dtype": "float32", "shape": [None]}],
        """
        import numpy as np

        def get_model(data_dir):
            return lambda x: {"y": x.astype(np.float64)}
        """,
    ),
    # out = b"<" + s + b">" over arbitrary bytes (tests.models' bytes model).
    "bytes": (
        [{"name": "s", "dtype": "bytes", "shape": [None]}],
        [{"name": "out", "dtype": "bytes", "shape": [None]}],
        BYTES,
    ),
    "wide_ints": (
        [
            {"name": "u64", "dtype": "uint64", "shape": [None]},
            {"name": "i64", "dtype": "int64", "shape": [None]},
        ],
        [
            {"name": "u64", "dtype": "uint64", "shape": [None]},
            {"name": "i64", "dtype": "int64", "shape": [None]},
        ],
        """
        def get_model(data_dir):
            return lambda u64, i64: {"u64": u64, "i64": i64}
        """,
    ),
}


def build_model(root: Path, name: str, target: Path | None = None) -> Path:
    """Write package ``name`` of ``MODELS`` under ``root`` (or at ``target``); return its path."""
    inputs, outputs, code = MODELS[name]
    module = f"served_{name}"
    source = root / f"src_{name}" / module
    source.mkdir(parents=True, exist_ok=True)
    (source / "__init__.py").write_text("")
    (source / "main.py").write_text(textwrap.dedent(code))
    path = target if target is not None else root / name
    create_python_neuropod(
        neuropod_path=path,
        model_name=name,
        input_spec=inputs,
        output_spec=outputs,
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": [module]}],
        entrypoint_package=f"{module}.main",
        entrypoint="get_model",
    )
    return path


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on loopback: ``(status, lower-cased headers, body)``."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_of(port: int, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, str]:
    """The status and ``error`` message of a request expected to fail."""
    status, headers, data = request(port, method, path, body, **kwargs)
    assert headers["content-type"] == "application/json", data
    message = json.loads(data)["error"]
    assert isinstance(message, str) and message
    return status, message
