"""Tensor specs: the named, typed and shaped tensors that make up a problem definition."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from neuropod.errors import PackageError, SpecError
from neuropod.spec.dtypes import canonical_dtype

#: One item of a shape: ``None`` (any size), a positive size, or a symbol shared across tensors.
Dim = int | str | None

_SPEC_KEYS = {"name", "dtype", "shape"}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a problem definition.

    Args:
        name: the tensor's name, unique among the inputs (or the outputs) of a model.
        dtype: an element type; canonicalized through numpy (``"double"`` -> ``"float64"``).
        shape: ``None`` for each dim of any size, a positive int for a fixed size, or a string
            symbol whose size must agree wherever it appears in one call. ``()`` is a scalar.

    Raises:
        SpecError: the name, dtype or shape is malformed.

    >>> TensorSpec("x", "double", [None, "batch", 3])
    TensorSpec(name='x', dtype='float64', shape=(None, 'batch', 3))
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"A tensor name must be a non-empty string, got {self.name!r}")
        try:
            dtype = canonical_dtype(self.dtype)
        except SpecError as exc:
            raise SpecError(f"Tensor '{self.name}': {exc}") from None
        if not isinstance(self.shape, (list, tuple)):
            raise SpecError(
                f"Tensor '{self.name}': shape must be a list or tuple, "
                f"got {type(self.shape).__name__} {self.shape!r}"
            )
        for dim in self.shape:
            # bool is an int subclass, but True is not a size anyone means
            positive_int = isinstance(dim, int) and not isinstance(dim, bool) and dim > 0
            if not (dim is None or positive_int or (isinstance(dim, str) and dim)):
                raise SpecError(
                    f"Tensor '{self.name}': every shape item must be None, a positive int or a "
                    f"symbol name, got {dim!r} in {list(self.shape)!r}"
                )
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shape", tuple(self.shape))

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> TensorSpec:
        """Build a spec from the original's ``{"name", "dtype", "shape"}`` form."""
        if not isinstance(item, Mapping):
            raise SpecError(
                f"A tensor spec must be a dict with name, dtype and shape, got {item!r}"
            )
        missing = _SPEC_KEYS - item.keys()
        unknown = item.keys() - _SPEC_KEYS
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing {', '.join(sorted(missing))}")
            if unknown:
                problems.append(f"unknown {', '.join(sorted(map(str, unknown)))}")
            raise SpecError(
                f"Tensor spec {dict(item)!r} must have exactly the keys name, dtype and shape: "
                + "; ".join(problems)
            )
        return cls(item["name"], item["dtype"], item["shape"])

    def to_dict(self) -> dict[str, Any]:
        """The original's dict form, as written to ``config.json``."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @property
    def symbols(self) -> frozenset[str]:
        """The symbol names used in this spec's shape."""
        return frozenset(dim for dim in self.shape if isinstance(dim, str))


def parse_specs(items: Iterable[TensorSpec | Mapping[str, Any]], kind: str) -> tuple[TensorSpec, ...]:
    """Parse a list of specs (``TensorSpec`` or dicts) and check that names are unique.

    Args:
        items: the specs.
        kind: ``"input"`` or ``"output"``, for messages.

    Raises:
        SpecError: a spec is malformed or a name repeats.
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise SpecError(f"The {kind} spec must be a list of tensor specs, got {items!r}")
    specs = tuple(item if isinstance(item, TensorSpec) else TensorSpec.from_dict(item) for item in items)
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise SpecError(f"Tensor '{spec.name}' appears more than once in the {kind} spec")
        seen.add(spec.name)
    return specs


def refuse_dtypes(specs: Iterable[TensorSpec], dtypes: Iterable[str], reason: str) -> None:
    """Refuse specs of element types a platform cannot carry.

    Args:
        specs: the specs (inputs and outputs).
        dtypes: the element types refused.
        reason: the first half of the message, e.g. ``"JAX has no string tensors"``.

    Raises:
        PackageError: a spec has one of ``dtypes``; the message names every such tensor.
    """
    refused = frozenset(dtypes)
    named = list(dict.fromkeys(f"'{spec.name}' ({spec.dtype})" for spec in specs if spec.dtype in refused))
    if named:
        raise PackageError(f"{reason}, but the spec declares {', '.join(named)}")
