"""Scalars given where a tensor is expected: taken as 0-d arrays, as the original Neuropod did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_PYTHON_SCALARS = (bool, int, float, str, bytes)


def scalars_as_arrays(tensors: Any, *, python_scalars: bool = False) -> Any:
    """Return ``tensors`` with each numpy scalar (``np.float32(2.0)``) made a 0-d array.

    The caller's dict is never modified: a new dict is returned when something is converted,
    ``tensors`` itself otherwise (so the common call costs one type check per tensor). Anything
    that is not a dict is returned as is, for the validator to report.

    Args:
        tensors: tensor name -> value, as given to or returned by ``infer``.
        python_scalars: convert Python scalars (``2.0``, ``"a"``) too, for what a model returns.

    Returns:
        ``tensors``, or a new dict whose scalars are 0-d arrays.

    >>> scalars_as_arrays({"x": np.float32(2.0)})["x"].shape
    ()
    """
    if not isinstance(tensors, Mapping):
        return tensors
    converted = None
    for name, value in tensors.items():
        if type(value) is np.ndarray:
            continue
        if isinstance(value, np.generic) or (python_scalars and isinstance(value, _PYTHON_SCALARS)):
            if converted is None:
                converted = dict(tensors)
            converted[name] = np.asarray(value)
    return tensors if converted is None else converted
