"""Tensor element types: the names a spec may use and the numpy type behind each."""

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
DTYPES = (*ORIGINAL_DTYPES, "bool", "float16")

STRING = "string"

_STRING_ALIASES = {"string", "str", "unicode"}


def canonical_dtype(dtype: Any) -> str:
    """Return the canonical name of ``dtype`` (``"double"`` -> ``"float64"``, ``np.str_`` -> ``"string"``).

    Raises:
        SpecError: ``dtype`` is not a type neuropod tensors can hold.
    """
    if isinstance(dtype, str) and dtype in _STRING_ALIASES:
        return STRING
    if dtype is None:  # numpy reads None as float64, which nobody writing a spec means
        raise SpecError(f"None is not a data type; expected one of: {', '.join(DTYPES)}")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise SpecError(
            f"{dtype!r} is not a data type; expected one of: {', '.join(DTYPES)}"
        ) from None
    if np_dtype.kind == "U":
        return STRING
    if np_dtype.name not in DTYPES:
        raise SpecError(
            f"{np_dtype.name!r} is not an allowed data type; expected one of: {', '.join(DTYPES)}"
        )
    return str(np_dtype.name)


def numpy_dtype(name: str) -> np.dtype | None:
    """The numpy dtype arrays of canonical type ``name`` must have (``None`` for strings)."""
    return None if name == STRING else np.dtype(name)


def describe_array_dtype(array: np.ndarray) -> str:
    """The spec name of an array's element type, for error messages."""
    if array.dtype.kind == "U":
        return STRING
    if not array.dtype.isnative:
        # '>f4' is named float32 too; without this the message would read "float32, but was float32"
        return f"{array.dtype.name} in non-native byte order ({array.dtype.str!r})"
    return str(array.dtype.name)
