"""Tensor specs: construction, canonical dtypes, malformed specs and the original's dict form."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neuropod import SpecError, TensorSpec
from neuropod.spec import DTYPES, canonical_dtype, parse_specs

ALLOWED = (
    "float32, float64, string, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool, float16, "
    "bytes"
)


def spec_error(*args: object) -> str:
    with pytest.raises(SpecError) as info:
        TensorSpec(*args)  # type: ignore[arg-type]
    return str(info.value)


def test_spec_is_a_frozen_value():
    spec = TensorSpec("x", "float32", [None, 3])
    assert spec == TensorSpec("x", "float32", (None, 3))
    assert hash(spec) == hash(TensorSpec("x", "float32", (None, 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.dtype = "int64"  # type: ignore[misc]


def test_repr_reads_like_the_constructor_call():
    spec = TensorSpec("x", "double", [None, "batch", 3])
    assert repr(spec) == "TensorSpec(name='x', dtype='float64', shape=(None, 'batch', 3))"
    assert eval(repr(spec), {"TensorSpec": TensorSpec}) == spec


def test_shape_list_becomes_tuple():
    assert TensorSpec("x", "int64", [1, None, "n"]).shape == (1, None, "n")


def test_empty_shape_is_a_scalar():
    assert TensorSpec("x", "float32", ()).shape == ()
    assert TensorSpec("x", "float32", []).shape == ()


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("float32", "float32"),
        ("double", "float64"),
        ("float", "float64"),
        (np.float32, "float32"),
        (np.dtype("float64"), "float64"),
        ("f4", "float32"),
        ("int8", "int8"),
        ("uint64", "uint64"),
        ("string", "string"),
        ("str", "string"),
        (str, "string"),
        (np.str_, "string"),
        ("bool", "bool"),
        (np.bool_, "bool"),
        ("float16", "float16"),
        (np.float16, "float16"),
        ("bytes", "bytes"),
        (bytes, "bytes"),
        (np.bytes_, "bytes"),
        ("S8", "bytes"),
        (str, "string"),
    ],
)
def test_dtype_is_canonicalized(given, canonical):
    assert TensorSpec("x", given, ()).dtype == canonical
    assert canonical_dtype(given) == canonical


def test_every_original_dtype_keeps_its_name():
    original = ["float32", "float64", "string", "int8", "int16", "int32", "int64"]
    original += ["uint8", "uint16", "uint32", "uint64"]
    for name in original:
        assert TensorSpec("x", name, ()).dtype == name
    assert list(DTYPES[: len(original)]) == original


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        ("nope", f"Tensor 'x': 'nope' is not a data type; expected one of: {ALLOWED}"),
        ("", f"Tensor 'x': '' is not a data type; expected one of: {ALLOWED}"),
        (None, f"Tensor 'x': None is not a data type; expected one of: {ALLOWED}"),
        (3, f"Tensor 'x': 3 is not a data type; expected one of: {ALLOWED}"),
        ("complex64", f"Tensor 'x': 'complex64' is not an allowed data type; expected one of: {ALLOWED}"),
        (object, f"Tensor 'x': 'object' is not an allowed data type; expected one of: {ALLOWED}"),
        ("binary", f"Tensor 'x': 'binary' is not a data type; expected one of: {ALLOWED}"),
    ],
)
def test_bad_dtype(dtype, message):
    assert spec_error("x", dtype, ()) == message


@pytest.mark.parametrize("item", [0, -1, True, False, 1.5, "", [2], np.int64(2)])
def test_bad_shape_item(item):
    assert spec_error("x", "float32", [None, item]) == (
        f"Tensor 'x': every shape item must be None, a positive int or a symbol name, "
        f"got {item!r} in {[None, item]!r}"
    )


@pytest.mark.parametrize(
    ("shape", "described"),
    [("batch", "str 'batch'"), (3, "int 3"), (None, "NoneType None"), ({"a": 1}, "dict {'a': 1}")],
)
def test_shape_must_be_a_list_or_tuple(shape, described):
    assert spec_error("x", "float32", shape) == f"Tensor 'x': shape must be a list or tuple, got {described}"


@pytest.mark.parametrize("name", ["", None, 3])
def test_name_must_be_a_non_empty_string(name):
    assert spec_error(name, "float32", ()) == f"A tensor name must be a non-empty string, got {name!r}"


def test_spec_errors_are_value_errors():
    with pytest.raises(ValueError):
        TensorSpec("x", "nope", ())


def test_dict_form_round_trip():
    item = {"name": "x", "dtype": "double", "shape": ("batch", None, 2)}
    spec = TensorSpec.from_dict(item)
    assert spec == TensorSpec("x", "float64", ("batch", None, 2))
    assert spec.to_dict() == {"name": "x", "dtype": "float64", "shape": ["batch", None, 2]}
    assert TensorSpec.from_dict(spec.to_dict()) == spec


def test_symbols():
    assert TensorSpec("x", "float32", ["batch", None, 3, "n", "batch"]).symbols == {"batch", "n"}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"name": "x", "dtype": "float32"}, "missing shape"),
        ({"name": "x"}, "missing dtype, shape"),
        ({"name": "x", "dtype": "float32", "shape": [], "device": "GPU"}, "unknown device"),
        ({"name": "x", "type": "float32", "shape": []}, "missing dtype; unknown type"),
    ],
)
def test_dict_form_needs_exactly_name_dtype_shape(item, problem):
    with pytest.raises(SpecError) as info:
        TensorSpec.from_dict(item)
    assert str(info.value) == (
        f"Tensor spec {item!r} must have exactly the keys name, dtype and shape: {problem}"
    )


def test_dict_form_must_be_a_dict():
    with pytest.raises(SpecError) as info:
        TensorSpec.from_dict(["x", "float32", []])  # type: ignore[arg-type]
    assert str(info.value) == (
        "A tensor spec must be a dict with name, dtype and shape, got ['x', 'float32', []]"
    )


def test_parse_specs_mixes_dicts_and_specs():
    specs = parse_specs(
        [{"name": "x", "dtype": "double", "shape": [None]}, TensorSpec("y", "int32", [2])], "input"
    )
    assert specs == (TensorSpec("x", "float64", (None,)), TensorSpec("y", "int32", (2,)))


def test_parse_specs_accepts_any_iterable():
    specs = parse_specs((TensorSpec(n, "float32", ()) for n in "ab"), "output")
    assert [s.name for s in specs] == ["a", "b"]
    assert parse_specs([], "input") == ()


@pytest.mark.parametrize("kind", ["input", "output"])
def test_parse_specs_rejects_duplicate_names(kind):
    items = [
        {"name": "x", "dtype": "float32", "shape": []},
        {"name": "y", "dtype": "float32", "shape": []},
        {"name": "x", "dtype": "int64", "shape": [1]},
    ]
    with pytest.raises(SpecError) as info:
        parse_specs(items, kind)
    assert str(info.value) == f"Tensor 'x' appears more than once in the {kind} spec"


@pytest.mark.parametrize("items", [{"name": "x", "dtype": "float32", "shape": []}, "x", b"x", 3, None])
def test_parse_specs_needs_a_list(items):
    with pytest.raises(SpecError) as info:
        parse_specs(items, "input")
    assert str(info.value) == f"The input spec must be a list of tensor specs, got {items!r}"


def test_parse_specs_reports_the_bad_item():
    items = [{"name": "x", "dtype": "float32", "shape": []}, {"name": "y", "dtype": "quad", "shape": []}]
    with pytest.raises(SpecError) as info:
        parse_specs(items, "input")
    assert str(info.value) == f"Tensor 'y': 'quad' is not a data type; expected one of: {ALLOWED}"
