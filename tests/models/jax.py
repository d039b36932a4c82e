"""The reference model on the jax platform: a function exported with ``jax.export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuropod.packagers import create_jax_neuropod


def add(x: Any, y: Any) -> dict[str, Any]:
    """``out = x + y``, or ``x`` when ``y`` is left out."""
    return {"out": x if y is None else x + y}


def _none_dims_shared(input_spec: list[dict[str, Any]]) -> dict[str, str]:
    """Export shapes where the None dims at one position are one symbol, as addition needs."""
    shapes = {}
    for spec in input_spec:
        dims = [f"d{i}" if dim is None else str(dim) for i, dim in enumerate(spec["shape"])]
        if None in spec["shape"]:
            shapes[spec["name"]] = ", ".join(dims)
    return shapes


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model, with ``y`` optional (a second exported program)."""
    create_jax_neuropod(
        neuropod_path=path,
        model_name=path.name,
        fn=add,
        optional_inputs=["y"],
        polymorphic_shapes=_none_dims_shared(kwargs["input_spec"]),
        **kwargs,
    )


#: JAX has no string tensors.
build_strings = None
