"""Tensor element types: the names a spec may use and the numpy type behind each.

Two element types have no fixed size: ``string`` (text: numpy ``str`` arrays, or object arrays
of ``str``) and ``bytes`` (arbitrary bytes, NULs and non-UTF-8 included: object arrays of
``bytes``; numpy ``S`` arrays are accepted as input, though numpy strips their trailing NULs).
``VARIABLE_LENGTH`` maps each to the Python type of its elements.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuropod.errors import SpecError

#: The element types of the original Neuropod, in its order.
ORIGINAL_DTYPES = (
    "float32",
    "float64",
    "string",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
)

#: Every element type a spec may name.
DTYPES = (*ORIGINAL_DTYPES, "bool", "float16", "bytes")

#: Text: each element a ``str``.
STRING = "string"
#: Arbitrary bytes: each element a ``bytes``.
BYTES = "bytes"

#: The element types whose elements vary in size -> the Python type of an element.
VARIABLE_LENGTH: dict[str, type] = {STRING: str, BYTES: bytes}
#: The numpy kind of each variable-length type's fixed-width arrays (``U`` str, ``S`` bytes).
FIXED_WIDTH_KIND = {STRING: "U", BYTES: "S"}

_ALIASES = {"string": STRING, "str": STRING, "unicode": STRING, "bytes": BYTES}
_KINDS = {kind: name for name, kind in FIXED_WIDTH_KIND.items()}


def canonical_dtype(dtype: Any) -> str:
    """Return the canonical name of ``dtype`` (``"double"`` -> ``"float64"``, ``np.str_`` -> ``"string"``,
    ``bytes`` or ``np.bytes_`` -> ``"bytes"``).

    Raises:
        SpecError: ``dtype`` is not a type neuropod tensors can hold.
    """
    if isinstance(dtype, str) and dtype in _ALIASES:
        return _ALIASES[dtype]
    if dtype is None:  # numpy reads None as float64, which nobody writing a spec means
        raise SpecError(f"None is not a data type; expected one of: {', '.join(DTYPES)}")
    try:
        np_dtype = np.dtype(dtype)
    except Exception:  # numpy's parser raises TypeError, ValueError ({"": ""}), even SyntaxError (",")
        raise SpecError(f"{dtype!r} is not a data type; expected one of: {', '.join(DTYPES)}") from None
    variable = _KINDS.get(np_dtype.kind)
    if variable is not None:
        return variable
    if np_dtype.name not in DTYPES:
        raise SpecError(
            f"{np_dtype.name!r} is not an allowed data type; expected one of: {', '.join(DTYPES)}"
        )
    return str(np_dtype.name)


def numpy_dtype(name: str) -> np.dtype | None:
    """The numpy dtype arrays of canonical type ``name`` must have (``None`` for strings and bytes)."""
    return None if name in VARIABLE_LENGTH else np.dtype(name)


def holds(array: np.ndarray, name: str) -> bool:
    """Whether ``array`` holds elements of the variable-length type ``name``.

    ``U`` arrays hold strings and ``S`` arrays bytes; an object array holds either when every
    element is a ``str`` (or every element a ``bytes``), so an empty one holds both.
    """
    kind = array.dtype.kind
    if kind == FIXED_WIDTH_KIND[name]:
        return True
    cls = VARIABLE_LENGTH[name]
    return kind == "O" and all(isinstance(item, cls) for item in array.flat)


def element_type(array: np.ndarray) -> str | None:
    """The variable-length spec type an array holds (``"string"``, ``"bytes"``), else ``None``."""
    kind = array.dtype.kind
    if kind != "O":
        return _KINDS.get(kind)
    return next((name for name in VARIABLE_LENGTH if holds(array, name)), None)


def describe_array_dtype(array: np.ndarray) -> str:
    """The spec name of an array's element type, for error messages."""
    kind = array.dtype.kind
    if kind in _KINDS:
        return _KINDS[kind]
    if kind == "O":
        held = element_type(array) if array.size else None
        if held is not None:
            return held
        kinds = sorted({type(item).__name__ for item in array.flat})
        if not kinds:
            return "object"
        return f"object (holding {', '.join(kinds[:4])}{', ...' if len(kinds) > 4 else ''})"
    if not array.dtype.isnative:
        # '>f4' is named float32 too; without this the message would read "float32, but was float32"
        return f"{array.dtype.name} in non-native byte order ({array.dtype.str!r})"
    return str(array.dtype.name)
