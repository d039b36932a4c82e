"""The reference models that the suites share, each built with its platform's own packager.

- addition: ``out = x + y`` (float32, shape ``("batch", None)`` unless told otherwise); ``y``
  is optional and ``out = x`` without it.
- strings: ``out[i] = "<" + s[i] + ">"`` (string, shape ``("batch",)``); not every platform
  has strings.

``build_addition(platform, path, workdir, **spec)`` and ``build_strings(...)`` write one
package; ``workdir`` is an empty scratch folder for the model's code and data. A platform's
builders live in ``tests/models/<platform>.py``, imported on first use so that only the tests
that build a framework's models import that framework. The ``addition_package`` fixture of
``tests/conftest.py`` builds the addition model into a fresh folder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: ``build(neuropod_path, workdir, input_spec=..., output_spec=..., **packager_options)``.
Builder = Callable[..., None]


def addition_spec(dtype: str = "float32", shape: tuple[Any, ...] = ("batch", None)) -> dict[str, Any]:
    """The addition model's specs: inputs ``x`` and ``y`` and output ``out``, all alike.

    Args:
        dtype: the dtype of all three tensors.
        shape: the shape of all three tensors.

    Returns:
        ``input_spec`` and ``output_spec``, as the packagers take them.
    """
    return {
        "input_spec": [
            {"name": "x", "dtype": dtype, "shape": shape},
            {"name": "y", "dtype": dtype, "shape": shape},
        ],
        "output_spec": [{"name": "out", "dtype": dtype, "shape": shape}],
    }


ADDITION_SPEC = addition_spec()
FIXED_SPEC = addition_spec(shape=("batch", 2))
STRING_SPEC: dict[str, Any] = {
    "input_spec": [{"name": "s", "dtype": "string", "shape": ("batch",)}],
    "output_spec": [{"name": "out", "dtype": "string", "shape": ("batch",)}],
}
#: The strings model over arbitrary bytes: ``out = b"<" + s + b">"``.
BYTES_SPEC: dict[str, Any] = {
    "input_spec": [{"name": "s", "dtype": "bytes", "shape": ("batch",)}],
    "output_spec": [{"name": "out", "dtype": "bytes", "shape": ("batch",)}],
}
#: Bytes that any text handling would damage: NULs (leading, inner, trailing), bytes that are
#: not UTF-8, an empty element, and UTF-8 for contrast.
RAW_BYTES = (b"\x00\xff\xd8\xff\xe0", b"a\x00b\x00\x00", b"", b"\x80", "é".encode())


def byte_array(items: Any) -> Any:
    """An object array of ``bytes`` (``np.array`` would make an S array, dropping trailing NULs)."""
    import numpy as np

    items = list(items)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _module(platform: str) -> Any:
    return importlib.import_module(f"{__name__}.{platform}")


def addition_builder(platform: str) -> Builder:
    """The builder of the addition model on ``platform`` (imports its framework)."""
    builder: Builder = _module(platform).build_addition
    return builder


def strings_builder(platform: str) -> Builder | None:
    """The builder of the strings model on ``platform``, or ``None`` where it has no strings."""
    builder: Builder | None = _module(platform).build_strings
    return builder


def build_addition(platform: str, path: Path, workdir: Path, **kwargs: Any) -> None:
    """Writes the addition model of ``platform`` to ``path`` (``kwargs``: specs and packager options)."""
    addition_builder(platform)(path, workdir, **kwargs)
