"""Property-based tests of specs and their validation: arbitrary specs, arbitrary tensors.

A spec of any values is a ``TensorSpec`` or raises ``SpecError``; any dict checked against any
specs passes or raises ``ValidationError``, and passes exactly when an independent reading of the
rules (dtype, rank, fixed dims, symbols, no unknown names) says it should.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuropod.errors import SpecError, ValidationError
from neuropod.spec import DTYPES, TensorSpec, TensorValidator, parse_specs
from neuropod.spec.dtypes import canonical_dtype
from neuropod.spec.elements import STRING_ARRAY_SLACK, STRING_EXPANSION, as_text
from tests.properties import bounded_allocation, examples, json_values

dtype_names = st.sampled_from(
    [*DTYPES, "double", "float", "int", "str", "unicode", "object", "bytes", "complex64", "M8", "m8[s]", "V8"]
) | st.sampled_from(
    ["f4,f4", "(2,)f4", "S3", "U3", ">f4", "<i8", "float128", "bfloat16", "", "xyz", ",", "f4,"]
)
dtypes = (
    dtype_names
    | st.sampled_from([np.float32, np.str_, np.bytes_, object, float, int, bool, str, bytes, complex, None])
    | json_values
    | st.builds(np.dtype, st.sampled_from(["f2", "f4", "u8", "i1", "?", "U5", "O"]))
)
dims = st.none() | st.integers(-2, 4) | st.sampled_from(["batch", "n", ""]) | st.booleans() | st.floats(0, 3)
spec_shapes = st.lists(dims, max_size=4) | st.tuples(dims, dims) | json_values


@given(name=st.text(max_size=3) | json_values, dtype=dtypes, shape=spec_shapes)
@example(name="x", dtype={"names": ["a"], "formats": ["f4"]}, shape=[])  # a structured dtype from a dict
@example(name="x", dtype={"a": 1}, shape=[])
@example(name="x", dtype=[1, 2], shape=[])
@example(name="x", dtype="(2,)f4", shape=[])
def test_a_spec_is_made_or_refused(name: Any, dtype: Any, shape: Any) -> None:
    try:
        spec = TensorSpec(name, dtype, shape)
    except SpecError:
        return
    assert spec.dtype in DTYPES and spec.name == name
    assert all(dim is None or isinstance(dim, str) or (type(dim) is int and dim > 0) for dim in spec.shape)
    assert TensorSpec.from_dict(spec.to_dict()) == spec


@given(dtype=dtypes)
@example(dtype={"": ""})  # numpy: ValueError
@example(dtype=",")  # numpy: SyntaxError
@example(dtype="(999999999999,)f4")  # numpy: ValueError
def test_a_dtype_is_canonical_or_refused(dtype: Any) -> None:
    try:
        name = canonical_dtype(dtype)
    except SpecError:
        return
    assert name in DTYPES and canonical_dtype(name) == name


@given(
    items=st.lists(
        st.fixed_dictionaries({"name": st.sampled_from(["x", "y"]), "dtype": dtypes, "shape": spec_shapes})
        | json_values,
        max_size=3,
    )
    | json_values
)
def test_spec_lists_parse_or_are_refused(items: Any) -> None:
    try:
        specs = parse_specs(items, "input")
    except SpecError:
        return
    assert len({spec.name for spec in specs}) == len(specs)


# --- validation -----------------------------------------------------------------------------------

valid_specs = st.lists(
    st.builds(
        TensorSpec,
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(DTYPES),
        st.lists(st.none() | st.integers(1, 3) | st.sampled_from(["n", "m"]), max_size=3),
    ),
    max_size=3,
    unique_by=lambda spec: spec.name,
)

array_dtypes = st.sampled_from(
    [
        "f2",
        "f4",
        "f8",
        ">f4",
        "i1",
        "i2",
        "i4",
        "i8",
        "u1",
        "u2",
        "u4",
        "u8",
        "?",
        "U3",
        "S3",
        "O",
        "c8",
        "M8[s]",
    ]
).map(np.dtype)


@st.composite
def values(draw: st.DrawFn) -> Any:
    """What a caller may pass as a tensor: arrays of any dtype and small shape, or anything else."""
    kind = draw(st.sampled_from(["array", "array", "array", "scalar", "other", "strings"]))
    if kind == "array":
        dtype = draw(array_dtypes)
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
        if dtype.kind == "O":
            items = draw(st.lists(st.text(max_size=2) | st.integers(), min_size=1, max_size=1))
            array = np.empty(shape, dtype=object)
            array.fill(items[0])
            return array
        return draw(hnp.arrays(dtype, shape))
    if kind == "scalar":
        return draw(st.sampled_from([np.float32(1), np.int64(2), np.str_("a")]))
    if kind == "strings":
        items = draw(st.lists(st.text(max_size=2), max_size=3) | st.lists(st.binary(max_size=2), max_size=3))
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array
    return draw(json_values)


def expected_to_pass(specs: list[TensorSpec], tensors: dict[Any, Any], require_all: bool) -> bool:
    """The validation rules, read independently of the validator."""
    names = {spec.name for spec in specs}
    if any(key not in names for key in tensors):
        return False
    sizes: dict[str, int] = {}
    for spec in specs:
        if spec.name not in tensors:
            if require_all:
                return False
            continue
        value = tensors[spec.name]
        if not isinstance(value, np.ndarray):
            return False
        if spec.dtype in ("string", "bytes"):
            kind, cls = ("U", str) if spec.dtype == "string" else ("S", bytes)
            fits = value.dtype.kind == kind or (
                value.dtype.kind == "O" and all(isinstance(item, cls) for item in value.flat)
            )
            if not fits:
                return False
        elif value.dtype != np.dtype(spec.dtype):
            return False
        if value.ndim != len(spec.shape):
            return False
        for size, dim in zip(value.shape, spec.shape, strict=True):
            if isinstance(dim, int) and size != dim:
                return False
            if isinstance(dim, str) and sizes.setdefault(dim, size) != size:
                return False
    return True


@given(
    specs=valid_specs,
    tensors=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]) | st.integers(0, 2), values(), max_size=4),
    require_all=st.booleans(),
)
def test_validation_passes_exactly_when_the_rules_say(
    specs: list[TensorSpec], tensors: dict[Any, Any], require_all: bool
) -> None:
    validator = TensorValidator(specs, "input", require_all=require_all)
    try:
        validator(tensors)
        passed = True
    except ValidationError:
        passed = False
    assert passed == expected_to_pass(specs, tensors, require_all)


@given(specs=valid_specs, tensors=json_values)
def test_validating_what_is_not_a_dict_is_refused(specs: list[TensorSpec], tensors: Any) -> None:
    validator = TensorValidator(specs, "output")
    try:
        validator(tensors)
    except ValidationError:
        return
    assert isinstance(tensors, dict) and not tensors


# --- string tensors from the wire -----------------------------------------------------------------


@st.composite
def skewed_elements(draw: st.DrawFn) -> list[bytes]:
    """Many short elements and a long one: a numpy str array is as wide as the longest for all."""
    short = draw(st.lists(st.text(max_size=4).map(str.encode), max_size=20))
    long = draw(st.integers(0, 200_000))
    padding = draw(st.integers(0, 20_000))
    return [*short, b"y" * long, *[b""] * padding]


@settings(max_examples=examples(0.25))
@given(items=st.lists(st.binary(max_size=6), max_size=20) | skewed_elements())
@example(items=[b"y" * 100_000, *[b""] * 10_000])  # 4 GB as a str array, from 140 kB sent
def test_sent_text_becomes_a_str_array_or_is_refused_for_its_width(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    with bounded_allocation(sum(map(len, items)) + 4 * len(items)):
        try:
            text = as_text(array, "s", sent=True)
        except ValidationError as exc:
            message = str(exc)
            if "as wide as the longest" not in message:
                assert "is not UTF-8 text" in message
                return
            width = len(items) * max(map(len, items))
            assert width * 4 > STRING_ARRAY_SLACK
            assert width > STRING_EXPANSION * (sum(map(len, items)) + len(items))
            return
    # numpy str arrays drop trailing NULs: a limit of string tensors (bytes tensors keep them)
    assert text.dtype.kind == "U" and text.tolist() == [item.decode("utf-8").rstrip("\x00") for item in items]
