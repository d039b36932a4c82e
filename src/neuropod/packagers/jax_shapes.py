"""The ``jax.export`` shapes of a JAX package's inputs, derived from the input spec."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from neuropod.errors import PackageError
from neuropod.package.config import per_input
from neuropod.spec.tensor_spec import TensorSpec


def symbolic_shapes(
    inputs: Sequence[TensorSpec], polymorphic_shapes: Mapping[str, str] | None = None
) -> list[tuple[Any, ...]]:
    """The ``jax.export`` shapes of the inputs, in one symbolic scope.

    A spec symbol keeps its name where ``jax.export`` can parse it (else it is renamed
    ``sym``, ``sym_1``, ...) and is shared by every input that uses it; a ``None`` dim becomes
    a fresh symbol named ``<tensor>_<dim>``.

    Args:
        inputs: the input specs.
        polymorphic_shapes: ``jax.export`` shape strings that replace some inputs' shapes.

    Returns:
        One tuple of ints and symbolic dims per input.

    Raises:
        PackageError: a shape in ``polymorphic_shapes`` is malformed, names an unknown input,
            or disagrees with the spec's rank or fixed sizes.
    """
    from jax import export

    overrides = per_input("polymorphic_shapes", polymorphic_shapes, inputs, PackageError)
    # A None dim's symbol must not take a spec symbol's name; the overrides may name it on
    # purpose (y: "batch, x_1" makes y's dim 1 that of x), but not a renamed spec symbol.
    taken = {dim for spec in inputs for dim in spec.shape if isinstance(dim, str)}
    in_overrides = {
        name
        for given in overrides.values()
        if isinstance(given, str)
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", given)
    }
    scope = export.SymbolicScope()
    spec_symbols: dict[str, Any] = {}

    def new_symbol(name: str) -> Any:
        taken.add(name)
        return export.symbolic_shape(name, scope=scope)[0]

    def spec_symbol(name: str) -> Any:
        if name not in spec_symbols:
            try:
                (dim,) = export.symbolic_shape(name, scope=scope)
            except Exception:
                dim = None
            if dim is None or str(dim) != name:
                # Not a jax.export identifier (e.g. "max", "batch-size"): use a fresh name.
                dim = new_symbol(_fresh("sym", taken | in_overrides))
            spec_symbols[name] = dim
        return spec_symbols[name]

    shapes = []
    for spec in inputs:
        override = overrides.get(spec.name)
        if override is not None:
            shapes.append(_override(spec, override, scope))
            continue
        shape: list[Any] = []
        for i, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str):
                shape.append(spec_symbol(dim))
            else:
                shape.append(new_symbol(_fresh(f"{_identifier(spec.name)}_{i}", taken)))
        shapes.append(tuple(shape))
    return shapes


def _override(spec: TensorSpec, given: str, scope: Any) -> tuple[Any, ...]:
    from jax import export

    if not isinstance(given, str):
        raise PackageError(
            f"polymorphic_shapes['{spec.name}'] must be a jax.export shape string such as "
            f"'batch, n', got {given!r}"
        )
    try:
        shape = tuple(export.symbolic_shape(given, scope=scope))
    except Exception as exc:
        raise PackageError(f"polymorphic_shapes['{spec.name}'] = {given!r} is malformed: {exc}") from exc
    if len(shape) != len(spec.shape) or any(
        isinstance(want, int) and got != want for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise PackageError(
            f"polymorphic_shapes['{spec.name}'] = {given!r} does not fit the spec's shape "
            f"{list(spec.shape)!r}: the rank and the fixed sizes must be the same"
        )
    return shape


def _identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() and c.isascii() else "_" for c in name)
    return cleaned if cleaned[:1].isalpha() else f"t{cleaned}"


def _fresh(base: str, taken: set[str]) -> str:
    name, n = base, 0
    while name in taken or name in {"max", "min", "mod", "floordiv"}:
        n += 1
        name = f"{base}_{n}"
    return name
