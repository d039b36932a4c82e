"""The batch dim: the symbol in dim 0 of a model's tensors, and calls merged and split along it.

Dynamic batching (``neuropod.dynamic_batching``), the dataset runner (``neuropod.batch``) and
the Ray Serve deployment all cut or join tensors along dim 0; the rules they share live here:

- which symbol is the batch dim (``batch_symbol`` for cutting a dataset into batches,
  ``merge_symbol`` for merging calls, which also needs every output to keep the rows);
- which calls may merge (``merge_key``: the same inputs, with the same sizes past dim 0);
- merging calls (``merge``), checking that outputs have one row per input row
  (``output_without_rows``), and giving each call its own rows back (``split``).

>>> a, b = {"x": np.zeros((1, 3))}, {"x": np.ones((2, 3))}
>>> merge_key(a) == merge_key(b)
True
>>> [part["x"].shape for part in split(merge([a, b]), [rows(a), rows(b)])]
[(1, 3), (2, 3)]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from neuropod.errors import SpecError
from neuropod.spec.tensor_spec import TensorSpec


def batch_symbol(inputs: Sequence[TensorSpec]) -> str:
    """The symbol that dim 0 of every input shares, e.g. ``"batch"``.

    A dataset is cut into batches of rows along this symbol, so it must be the first dim of
    every input: then any slice of rows is a valid call.

    Args:
        inputs: a model's input specs.

    Returns:
        The symbol's name.

    Raises:
        SpecError: the model has no inputs, or dim 0 of the inputs is not one shared symbol.

    >>> batch_symbol([TensorSpec("x", "float32", ("batch", 3)), TensorSpec("y", "int64", ("batch",))])
    'batch'
    """
    if not inputs:
        raise SpecError("The model has no inputs, so there is nothing to split into batches")
    symbol = _leading_symbol(inputs[0])
    if symbol is not None and all(_leading_symbol(spec) == symbol for spec in inputs):
        return symbol
    described = ", ".join(f"'{spec.name}' {_shape(spec)}" for spec in inputs)
    raise SpecError(
        f"Cannot run the model over a dataset: dim 0 of every input must be one shared symbol "
        f"(the batch dim, e.g. 'batch'), but the inputs are {described}. Give dim 0 of every "
        f"input the same symbol in the input spec"
    )


def merge_symbol(model: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str:
    """The symbol along which calls of a model can be merged into one call and split back.

    Every input and output must start with it, and use it nowhere else in its shape: then
    calls joined along dim 0 make a valid call, and each output's rows follow its input rows.

    Args:
        model: the model's name, for messages.
        inputs: its input specs.
        outputs: its output specs.

    Returns:
        The symbol's name.

    Raises:
        SpecError: the model has no inputs, or a tensor does not start with the shared symbol.

    >>> x, y = TensorSpec("x", "float32", ("batch", 3)), TensorSpec("y", "float32", ("batch",))
    >>> merge_symbol("m", [x], [y])
    'batch'
    """
    if not inputs:
        raise SpecError(f"Model '{model}' cannot be batched: it has no inputs")
    symbol = _leading_symbol(inputs[0]) or ""
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            if not symbol or _leading_symbol(spec) != symbol or symbol in spec.shape[1:]:
                raise SpecError(
                    f"Model '{model}' cannot be batched: {kind} '{spec.name}' has shape "
                    f"{spec.shape!r}; dynamic batching needs every input and output to start with "
                    f"one shared batch symbol, used nowhere else in the shape, e.g. ('batch', 3)"
                )
    return symbol


def merge_key(inputs: Mapping[str, np.ndarray]) -> Hashable | None:
    """What calls must have in common to be merged: the same inputs, of the same sizes past dim 0.

    Args:
        inputs: a call's inputs.

    Returns:
        A key that is equal for calls that can merge; ``None`` for a call that merges with none
        (no inputs, or a scalar, which has no rows).
    """
    if not inputs or any(array.ndim == 0 for array in inputs.values()):
        return None
    # Not the dtypes: strings of different widths ('<U1', '<U5', object) join fine.
    return tuple(sorted((name, array.shape[1:]) for name, array in inputs.items()))


def rows(inputs: Mapping[str, np.ndarray]) -> int:
    """The rows of a call: dim 0 of its first tensor (0 for a call without tensors)."""
    return len(next(iter(inputs.values()))) if inputs else 0


def merge(calls: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The calls as one call: each tensor of the first call joined along dim 0 across all.

    Args:
        calls: calls of one ``merge_key``.

    Returns:
        The merged inputs (new arrays; the calls' are not modified).
    """
    return {name: np.concatenate([call[name] for call in calls]) for name in calls[0]}


def output_without_rows(outputs: Mapping[str, np.ndarray], count: int) -> str | None:
    """The name of the first output that does not have ``count`` rows in dim 0, or ``None``.

    A merged call must be answered with one row per input row, else its rows cannot be split.
    """
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != count:
            return name
    return None


def split(outputs: Mapping[str, np.ndarray], counts: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """The outputs of a merged call cut back into each call's rows.

    Args:
        outputs: the merged call's outputs, each with ``sum(counts)`` rows (see
            ``output_without_rows``).
        counts: the rows of each call, in the order they were merged.

    Returns:
        One dict of outputs per call; the arrays are views of ``outputs``.
    """
    parts = []
    start = 0
    for count in counts:
        end = start + count
        parts.append({name: array[start:end] for name, array in outputs.items()})
        start = end
    return parts


def _leading_symbol(spec: TensorSpec) -> str | None:
    first = spec.shape[0] if spec.shape else None
    return first if isinstance(first, str) else None


def _shape(spec: TensorSpec) -> str:
    return "(" + ", ".join(str(dim) for dim in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"
