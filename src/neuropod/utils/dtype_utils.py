"""Element type names and numpy dtypes (the original's ``neuropod.utils.dtype_utils``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from neuropod.spec.dtypes import BYTES, STRING, canonical_dtype, numpy_dtype

__all__ = ["get_dtype", "get_dtype_name"]


def get_dtype_name(arg: Any) -> str:
    """The spec name of a dtype: ``"double"`` -> ``"float64"``, ``np.str_`` -> ``"string"``.

    Args:
        arg: anything numpy reads as a dtype, or ``"string"``.

    Returns:
        One of the spec dtype names (``neuropod.spec.DTYPES``).

    Raises:
        SpecError: ``arg`` is not a type neuropod tensors can hold (the original returned
            numpy's name, and the spec check failed later).
    """
    return canonical_dtype(arg)


def get_dtype(arg: Any) -> np.dtype:
    """The numpy dtype of a spec dtype name (``"string"`` is numpy's unicode ``str``).

    ``"bytes"`` is ``object``: arrays of arbitrary bytes are object arrays of ``bytes``, since
    numpy's fixed-width ``S`` arrays strip trailing NUL bytes (see docs/bytes.md).

    Args:
        arg: a spec dtype name, or anything numpy reads as a dtype.

    Returns:
        The numpy dtype.

    Raises:
        SpecError: ``arg`` is not a type neuropod tensors can hold.
    """
    name = canonical_dtype(arg)
    if name == STRING:
        return np.dtype(np.str_)
    return np.dtype(object) if name == BYTES else np.dtype(numpy_dtype(name))
