"""Checking tensors against specs: each rule's message, their order, and validation at ``infer``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from neuropod import TensorSpec, ValidationError, load_neuropod
from neuropod.packagers import create_placeholder_neuropod, create_python_neuropod
from neuropod.spec import TensorValidator

SPECS = [
    TensorSpec("x", "float32", ["batch", 4]),
    TensorSpec("y", "int64", ["batch", None]),
    TensorSpec("s", "string", ["batch"]),
]


def f32(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def i64(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.int64)


def strings(*items: str) -> np.ndarray:
    return np.array(items)


def error_of(tensors, specs=SPECS, direction="input", require_all=False) -> str:
    validator = TensorValidator(specs, direction, require_all=require_all)
    with pytest.raises(ValidationError) as info:
        validator(tensors)
    return str(info.value)


def test_valid_tensors_pass():
    validate = TensorValidator(SPECS, "input")
    validate({"x": f32(2, 4), "y": i64(2, 7), "s": strings("a", "b")})
    validate({"x": f32(1, 4), "y": i64(1, 1), "s": strings("a")})


def test_wrong_dtype():
    assert error_of({"x": i64(2, 4)}) == (
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type int64"
    )


def test_wrong_dtype_names_the_direction():
    assert error_of({"x": f32(2, 4).astype(np.float64)}, direction="output") == (
        "Tensor 'x' in the output spec is expected to be of type float32, but was of type float64"
    )


def test_wrong_byte_order_is_not_described_as_the_right_type():
    assert error_of({"x": f32(2, 4).astype(">f4")}) == (
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type float32 "
        "in non-native byte order ('>f4')"
    )


def test_wrong_rank():
    assert error_of({"x": f32(2, 4, 1)}) == (
        "Tensor 'x' in the input spec is expected to have 2 dimensions, but had 3 (shape (2, 4, 1))"
    )


def test_scalar_spec():
    validate = TensorValidator([TensorSpec("t", "float64", ())], "input")
    validate({"t": np.asarray(1.5)})
    assert error_of({"t": np.ones(1)}, specs=[TensorSpec("t", "float64", ())]) == (
        "Tensor 't' in the input spec is expected to have 0 dimensions, but had 1 (shape (1,))"
    )


def test_fixed_dim_mismatch():
    assert error_of({"x": f32(2, 5)}) == (
        "Dim 1 of tensor 'x' in the input spec is expected to be of size 4, but was of size 5"
    )


def test_symbol_mismatch_names_both_tensors():
    assert error_of({"x": f32(2, 4), "y": i64(3, 1)}) == (
        "All dims with symbol 'batch' should be the same size. Dim 0 of tensor 'y' in the input spec "
        "is expected to be of size 2 (as dim 0 of tensor 'x'), but was of size 3"
    )


def test_symbol_mismatch_within_one_tensor():
    specs = [TensorSpec("m", "float32", ["n", "n"])]
    TensorValidator(specs, "input")({"m": f32(3, 3)})
    assert error_of({"m": f32(3, 2)}, specs=specs) == (
        "All dims with symbol 'n' should be the same size. Dim 1 of tensor 'm' in the input spec "
        "is expected to be of size 3 (as dim 0 of tensor 'm'), but was of size 2"
    )


def test_symbol_is_set_by_the_first_present_tensor():
    # x is absent, so y sets 'batch' and s is compared with y
    assert error_of({"y": i64(3, 1), "s": strings("a")}) == (
        "All dims with symbol 'batch' should be the same size. Dim 0 of tensor 's' in the input spec "
        "is expected to be of size 3 (as dim 0 of tensor 'y'), but was of size 1"
    )


def test_symbols_are_per_call():
    validate = TensorValidator(SPECS, "input")
    validate({"x": f32(2, 4), "y": i64(2, 1)})
    validate({"x": f32(5, 4), "y": i64(5, 1)})


def test_unknown_names():
    assert error_of({"x": f32(2, 4), "z": f32(1), "a": f32(1)}) == (
        "Tensor name(s) 'a', 'z' are not found in the input spec (expected: 's', 'x', 'y')"
    )


def test_dtype_comes_before_rank():
    assert "expected to be of type float32" in error_of({"x": i64(2)})


def test_rank_comes_before_fixed_dims():
    assert "expected to have 2 dimensions" in error_of({"x": f32(5)})


def test_fixed_dims_come_before_symbols():
    assert error_of({"x": f32(2, 4), "y": i64(3, 1), "s": strings("a"), "z": f32(1)}).startswith(
        "All dims with symbol 'batch'"
    )
    specs = [TensorSpec("a", "float32", ["n"]), TensorSpec("b", "float32", ["n", 2])]
    assert error_of({"a": f32(1), "b": f32(3, 3)}, specs=specs) == (
        "Dim 1 of tensor 'b' in the input spec is expected to be of size 2, but was of size 3"
    )


def test_unknown_names_come_last():
    assert error_of({"z": f32(1), "x": f32(2, 4), "y": i64(3, 1)}).startswith("All dims with symbol 'batch'")


def test_tensors_are_checked_in_spec_order():
    # y (second in the spec) is bad in dtype, x (first) in a dim: x is reported
    assert error_of({"y": f32(2, 1), "x": f32(2, 3)}) == (
        "Dim 1 of tensor 'x' in the input spec is expected to be of size 4, but was of size 3"
    )


def test_missing_inputs_are_allowed_by_default():
    validate = TensorValidator(SPECS, "input")
    validate({})
    validate({"s": strings("a")})


def test_require_all():
    validate = TensorValidator(SPECS, "input", require_all=True)
    validate({"x": f32(1, 4), "y": i64(1, 1), "s": strings("a")})
    assert error_of({"x": f32(1, 4), "s": strings("a")}, require_all=True) == (
        "Tensor 'y' in the input spec is required, but was not provided"
    )


def test_unicode_arrays_are_strings():
    TensorValidator(SPECS, "input")({"s": np.array(["a", "bcd"], dtype="<U3")})


def test_object_arrays_of_str_are_strings():
    TensorValidator(SPECS, "input")({"s": np.array(["a", "bcd"], dtype=object)})


def test_object_arrays_of_other_things_are_not_strings():
    assert error_of({"s": np.array(["a", 1], dtype=object)}) == (
        "Tensor 's' in the input spec is expected to be of type string, but was of type "
        "object (holding int, str)"
    )
    assert error_of({"s": np.array([b"a"], dtype=object)}) == (
        "Tensor 's' in the input spec is expected to be of type string, but was of type bytes"
    )


def test_bytes_arrays_are_not_strings():
    assert error_of({"s": np.array([b"a"])}) == (
        "Tensor 's' in the input spec is expected to be of type string, but was of type bytes"
    )


BYTES_SPECS = [TensorSpec("b", "bytes", ["batch"])]


def byte_array(*items: bytes) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def test_object_arrays_of_bytes_and_s_arrays_are_bytes():
    validate = TensorValidator(BYTES_SPECS, "input")
    validate({"b": byte_array(b"\x00\xff", b"", b"a\x00")})
    validate({"b": np.array([b"ab", b"c"])})
    validate({"b": np.array([b"x"], dtype=np.bytes_).astype(object)})  # elements are np.bytes_
    validate({"b": np.empty(0, dtype=object)})


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (np.array(["a"]), "string"),
        (np.array(["a"], dtype=object), "string"),
        (np.array([b"a", "b"], dtype=object), "object (holding bytes, str)"),
        (np.array([b"a", None], dtype=object), "object (holding NoneType, bytes)"),
        (np.zeros(1, np.uint8), "uint8"),
    ],
)
def test_bytes_tensors_refuse_anything_else(value, got):
    assert error_of({"b": value}, specs=BYTES_SPECS, direction="output") == (
        f"Tensor 'b' in the output spec is expected to be of type bytes, but was of type {got}"
    )


def test_numbers_are_not_strings_and_strings_are_not_numbers():
    assert error_of({"s": f32(1)}) == (
        "Tensor 's' in the input spec is expected to be of type string, but was of type float32"
    )
    assert error_of({"x": np.array([["a"] * 4])}) == (
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type string"
    )


@pytest.mark.parametrize(
    ("value", "type_name"),
    [([[0.0] * 4], "list"), (None, "NoneType"), (1.0, "float"), ("a", "str")],
)
def test_values_must_be_arrays(value, type_name):
    assert error_of({"x": value}) == (
        f"Tensor 'x' in the input spec is expected to be a numpy array of type float32, "
        f"but was of type {type_name}"
    )


def test_numpy_scalars_are_not_arrays():
    specs = [TensorSpec("t", "float32", ())]
    assert error_of({"t": np.float32(1)}, specs=specs) == (
        "Tensor 't' in the input spec is expected to be a numpy array of type float32, "
        "but was a numpy scalar of type float32 (wrap it in np.asarray)"
    )


@pytest.mark.parametrize("value", [[("x", f32(1, 4))], None, f32(1, 4)])
def test_tensors_must_be_a_dict(value):
    assert error_of(value) == (
        f"The inputs must be a dict of tensor name to numpy array, but were of type {type(value).__name__}"
    )


def test_errors_are_value_and_runtime_errors():
    validate = TensorValidator(SPECS, "input")
    with pytest.raises(ValueError):
        validate({"x": i64(1)})
    with pytest.raises(RuntimeError):
        validate({"x": i64(1)})


# Through a loaded model.

INPUT_SPEC = [
    {"name": "x", "dtype": "float32", "shape": ["batch", 2]},
    {"name": "s", "dtype": "string", "shape": ["batch"]},
]
OUTPUT_SPEC = [{"name": "out", "dtype": "float64", "shape": ["batch", 3]}]


@pytest.fixture(scope="module")
def placeholder(tmp_path_factory):
    path = tmp_path_factory.mktemp("placeholder") / "model.zip"
    create_placeholder_neuropod(
        neuropod_path=path, model_name="placeholder", input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC, seed=0
    )
    return path


def test_infer_validates_inputs(placeholder):
    with load_neuropod(placeholder) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": np.zeros((2, 2), np.float64)})
    assert str(info.value) == (
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type float64"
    )


def test_infer_rejects_unknown_inputs(placeholder):
    with load_neuropod(placeholder) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": f32(2, 2), "extra": f32(1)})
    assert str(info.value) == "Tensor name(s) 'extra' are not found in the input spec (expected: 's', 'x')"


def test_infer_rejects_a_non_dict(placeholder):
    with load_neuropod(placeholder) as model, pytest.raises(ValidationError) as info:
        model.infer([f32(2, 2)])  # type: ignore[arg-type]
    assert str(info.value) == "The inputs must be a dict of tensor name to numpy array, but were of type list"


def test_infer_allows_missing_inputs_by_default(placeholder):
    with load_neuropod(placeholder) as model:
        out = model.infer({"x": f32(3, 2)})
    assert out["out"].shape == (3, 3)
    assert out["out"].dtype == np.float64


def test_require_all_inputs_option(placeholder):
    with load_neuropod(placeholder, require_all_inputs=True) as model:
        with pytest.raises(ValidationError) as info:
            model.infer({"x": f32(3, 2)})
        assert str(info.value) == "Tensor 's' in the input spec is required, but was not provided"
        assert model.infer({"x": f32(3, 2), "s": strings("a", "b", "c")})["out"].shape == (3, 3)


def test_infer_never_mutates_the_callers_dict(placeholder):
    x, s = f32(2, 2), strings("a", "b")
    inputs = {"x": x, "s": s}
    with load_neuropod(placeholder) as model:
        out = model.infer(inputs)
    assert out is not inputs
    assert list(inputs) == ["x", "s"]
    assert inputs["x"] is x and inputs["s"] is s
    assert s.dtype == np.dtype("<U1") and s.tolist() == ["a", "b"]
    assert not x.any()


def write_model_code(root, body: str) -> list[dict]:
    """Write a python model whose ``__call__`` body is ``body``; return its ``code_path_spec``."""
    package = root / "code" / "check_model"
    package.mkdir(parents=True)
    source = textwrap.dedent(
        """\
        import numpy as np


        def get_model(data_dir):
            def model(**inputs):
        {body}
            return model
        """
    ).format(body=textwrap.indent(textwrap.dedent(body), " " * 8))
    (package / "__init__.py").write_text(source)
    return [{"python_root": str(root / "code"), "dirs_to_package": ["check_model"]}]


def python_model(tmp_path, body: str, input_spec, output_spec):
    path = tmp_path / "model.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="check",
        input_spec=input_spec,
        output_spec=output_spec,
        code_path_spec=write_model_code(tmp_path, body),
        entrypoint_package="check_model",
        entrypoint="get_model",
    )
    return load_neuropod(path)


def test_infer_validates_outputs(tmp_path):
    spec = [{"name": "x", "dtype": "float32", "shape": [None]}]
    out_spec = [{"name": "out", "dtype": "float32", "shape": [None]}]
    with (
        python_model(tmp_path, "return {'out': inputs['x'].astype(np.float64)}", spec, out_spec) as model,
        pytest.raises(ValidationError) as info,
    ):
        model.infer({"x": f32(3)})
    assert str(info.value) == (
        "Tensor 'out' in the output spec is expected to be of type float32, but was of type float64"
    )


def test_infer_rejects_unknown_outputs(tmp_path):
    spec = [{"name": "x", "dtype": "float32", "shape": [None]}]
    out_spec = [{"name": "out", "dtype": "float32", "shape": [None]}]
    body = "return {'out': inputs['x'], 'debug': inputs['x']}"
    with python_model(tmp_path, body, spec, out_spec) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": f32(3)})
    assert str(info.value) == "Tensor name(s) 'debug' are not found in the output spec (expected: 'out')"


def test_output_symbols_are_checked_apart_from_input_symbols(tmp_path):
    spec = [{"name": "x", "dtype": "float32", "shape": ["n"]}]
    out_spec = [
        {"name": "a", "dtype": "float32", "shape": ["n"]},
        {"name": "b", "dtype": "float32", "shape": ["n"]},
    ]
    body = """\
        n = len(inputs['x'])
        return {'a': np.zeros(n + 1, np.float32), 'b': np.zeros(n + inputs['x'].size, np.float32)}
    """
    with python_model(tmp_path, body, spec, out_spec) as model:
        # 'n' is 1 in the inputs and 2 in the outputs: fine, outputs have symbols of their own
        out = model.infer({"x": f32(1)})
        assert out["a"].shape == out["b"].shape == (2,)
        with pytest.raises(ValidationError) as info:
            model.infer({"x": f32(2)})
    assert str(info.value) == (
        "All dims with symbol 'n' should be the same size. Dim 0 of tensor 'b' in the output spec "
        "is expected to be of size 3 (as dim 0 of tensor 'a'), but was of size 4"
    )


def test_a_placeholder_makes_bytes_outputs(tmp_path):
    path = tmp_path / "bytes-placeholder"
    spec = [{"name": "b", "dtype": "bytes", "shape": ["batch", 2]}]
    create_placeholder_neuropod(
        neuropod_path=path, model_name="bytes", input_spec=spec, output_spec=spec, seed=0
    )
    with load_neuropod(path) as model:
        sent = np.empty((3, 2), dtype=object)
        sent[...] = b"\x00\xff"
        out = model.infer({"b": sent})["b"]
    assert out.dtype == object and out.shape == (3, 2)
    assert all(type(item) is bytes and item.startswith(b"placeholder_") for item in out.flat)
