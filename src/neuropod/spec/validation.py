"""Checking tensors against specs: the one place every backend's inputs and outputs pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.errors import ValidationError
from neuropod.spec.dtypes import describe_array_dtype, holds, numpy_dtype
from neuropod.spec.tensor_spec import TensorSpec


class TensorValidator:
    """Checks a dict of arrays against a list of specs, in the original Neuropod's order.

    For each spec'd tensor that is present: its type, then its rank, then each fixed dim, then
    each symbol's size against the first tensor that set it. Names that are not in the spec come
    last. Missing tensors are allowed unless ``require_all`` is set (a tensor given as ``None`` is
    not missing, but of the wrong type).

    Args:
        specs: the specs to check against.
        direction: ``"input"`` or ``"output"``, for messages.
        require_all: whether every spec'd tensor must be present.
    """

    def __init__(self, specs: Sequence[TensorSpec], direction: str, require_all: bool = False):
        self.direction = direction
        self.require_all = require_all
        self._names = frozenset(spec.name for spec in specs)
        # Pre-digested per spec so that a call does no parsing:
        # (name, numpy dtype or None for strings and bytes, dtype name, rank, fixed dims, symbol dims)
        self._checks = [
            (
                spec.name,
                numpy_dtype(spec.dtype),
                spec.dtype,
                len(spec.shape),
                tuple((i, dim) for i, dim in enumerate(spec.shape) if isinstance(dim, int)),
                tuple((i, dim) for i, dim in enumerate(spec.shape) if isinstance(dim, str)),
            )
            for spec in specs
        ]

    def __call__(self, tensors: Mapping[str, Any]) -> None:
        """Raise ``ValidationError`` for the first way ``tensors`` breaks the spec."""
        if type(tensors) is not dict and not isinstance(tensors, Mapping):
            raise ValidationError(
                f"The {self.direction}s must be a dict of tensor name to numpy array, "
                f"but were of type {type(tensors).__name__}"
            )
        where = self.direction
        symbol_sizes: dict[str, tuple[int, int, str]] = {}
        present = 0
        for name, dtype, dtype_name, rank, fixed, symbolic in self._checks:
            tensor = tensors.get(name, _MISSING)
            if tensor is _MISSING:
                if self.require_all:
                    raise ValidationError(
                        f"Tensor '{name}' in the {where} spec is required, but was not provided"
                    )
                continue
            present += 1
            if type(tensor) is not np.ndarray and not isinstance(tensor, np.ndarray):
                if isinstance(tensor, np.generic):
                    # "expected an array of float64, but was float64" would puzzle anyone
                    got = f"a numpy scalar of type {type(tensor).__name__} (wrap it in np.asarray)"
                else:
                    got = f"of type {type(tensor).__name__}"
                raise ValidationError(
                    f"Tensor '{name}' in the {where} spec is expected to be a numpy array of "
                    f"type {dtype_name}, but was {got}"
                )
            if dtype is None:
                if not holds(tensor, dtype_name):
                    raise ValidationError(
                        f"Tensor '{name}' in the {where} spec is expected to be of type "
                        f"{dtype_name}, but was of type {describe_array_dtype(tensor)}"
                    )
            elif tensor.dtype is not dtype and tensor.dtype != dtype:  # builtin dtypes are singletons
                raise ValidationError(
                    f"Tensor '{name}' in the {where} spec is expected to be of type "
                    f"{dtype_name}, but was of type {describe_array_dtype(tensor)}"
                )
            shape = tensor.shape
            if len(shape) != rank:
                raise ValidationError(
                    f"Tensor '{name}' in the {where} spec is expected to have {rank} "
                    f"dimensions, but had {len(shape)} (shape {shape})"
                )
            for i, size in fixed:
                if shape[i] != size:
                    raise ValidationError(
                        f"Dim {i} of tensor '{name}' in the {where} spec is expected to be of "
                        f"size {size}, but was of size {shape[i]}"
                    )
            for i, symbol in symbolic:
                seen = symbol_sizes.get(symbol)
                if seen is None:
                    symbol_sizes[symbol] = (shape[i], i, name)
                elif seen[0] != shape[i]:
                    size, first_dim, first_name = seen
                    raise ValidationError(
                        f"All dims with symbol '{symbol}' should be the same size. Dim {i} of "
                        f"tensor '{name}' in the {where} spec is expected to be of size {size} "
                        f"(as dim {first_dim} of tensor '{first_name}'), but was of size {shape[i]}"
                    )
        if present != len(tensors):
            extra = sorted(str(key) for key in tensors if key not in self._names)
            if extra:
                raise ValidationError(
                    f"Tensor name(s) {', '.join(repr(n) for n in extra)} are not found in the "
                    f"{where} spec (expected: {', '.join(repr(n) for n in sorted(self._names))})"
                )


_MISSING = object()
