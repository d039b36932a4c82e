"""The batch dimension: the symbol every input shares as its dim 0, along which data is split."""

from __future__ import annotations

from collections.abc import Sequence

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
    firsts = [spec.shape[0] if spec.shape else None for spec in inputs]
    if isinstance(firsts[0], str) and all(dim == firsts[0] for dim in firsts):
        return firsts[0]
    described = ", ".join(f"'{spec.name}' {_shape(spec)}" for spec in inputs)
    raise SpecError(
        f"Cannot run the model over a dataset: dim 0 of every input must be one shared symbol "
        f"(the batch dim, e.g. 'batch'), but the inputs are {described}. Give dim 0 of every "
        f"input the same symbol in the input spec"
    )


def _shape(spec: TensorSpec) -> str:
    return "(" + ", ".join(str(dim) for dim in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"
