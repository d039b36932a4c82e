"""Text output shared by the commands: tables (``neuropod.text_table``), shapes, sizes and array
summaries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from neuropod.spec.dtypes import describe_array_dtype
from neuropod.spec.tensor_spec import Dim
from neuropod.text_table import table

__all__ = [
    "TENSOR_HEADER",
    "format_shape",
    "format_size",
    "one_line",
    "summarize",
    "table",
    "tensor_row",
    "tensor_table",
]

#: How many values of a string tensor a summary shows.
STRING_PREVIEW = 3

TENSOR_HEADER = ("output", "dtype", "shape", "summary")


def format_shape(shape: Iterable[Dim] | tuple[int, ...]) -> str:
    """A shape as Python writes a tuple, symbols unquoted: ``(batch, None, 3)``, ``(3,)``, ``()``."""
    items = [str(dim) for dim in shape]
    if len(items) == 1:
        return f"({items[0]},)"
    return f"({', '.join(items)})"


def format_size(size: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def summarize(array: np.ndarray) -> str:
    """Min, max and mean of a numeric array, or the first values of a string or bytes array."""
    if array.size == 0:
        return "empty"
    if array.dtype.kind in "UOS":
        # str() and bytes() drop numpy's scalar types, whose repr would name them
        head = array.flat[:STRING_PREVIEW]
        first = [bytes(item) if isinstance(item, bytes) else str(item) for item in head]
        more = ", ..." if array.size > STRING_PREVIEW else ""
        return "[" + ", ".join(repr(item) for item in first) + more + "]"
    if array.dtype.kind == "b":
        return f"true={int(np.count_nonzero(array))}/{array.size}"
    low, high = (array.min(), array.max())
    if array.dtype.kind in "iu":
        low, high = int(low), int(high)
    return f"min={_number(low)} max={_number(high)} mean={_number(array.mean(dtype=np.float64))}"


def tensor_row(name: str, array: np.ndarray) -> list[str]:
    """The ``name, dtype, shape, summary`` cells describing one tensor."""
    return [name, describe_array_dtype(array), format_shape(array.shape), summarize(array)]


def tensor_table(tensors: dict[str, np.ndarray]) -> str:
    """An ``output, dtype, shape, summary`` table of ``tensors``, in their order."""
    return table([tensor_row(name, array) for name, array in tensors.items()], TENSOR_HEADER, indent=0)


def one_line(text: str) -> str:
    """``text`` with its line breaks turned into spaces, for one-line messages."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{float(value):.6g}"
