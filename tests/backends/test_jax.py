"""The JAX platform: functions exported with jax.export, their parameters, and zero-copy inputs."""

from __future__ import annotations

import gc
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import InferenceError, OptionError, PackageError
from neuropod.loader import load_neuropod
from neuropod.packagers import create_jax_neuropod
from tests.models import ADDITION_SPEC

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax import export  # noqa: E402

from neuropod.backends.jax import CPU_ALIGNMENT, aligned_copy, to_jax  # noqa: E402
from tests.models.jax import add, build_addition  # noqa: E402

XY_SPEC = ADDITION_SPEC["input_spec"]
OUT_SPEC = ADDITION_SPEC["output_spec"]


# --- Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax")


@pytest.fixture(scope="module")
def addition(addition_package: Callable[..., Path]) -> Path:
    return addition_package("jax", name="jax_addition.zip")


def package(root: Path, name: str, fn: Callable[..., Any] | None = None, **kwargs: Any) -> Path:
    path = root / name
    kwargs.setdefault("input_spec", XY_SPEC)
    kwargs.setdefault("output_spec", OUT_SPEC)
    create_jax_neuropod(neuropod_path=path, model_name=name, fn=fn, **kwargs)
    return path


def spec_(name: str, dtype: str, shape: tuple[Any, ...]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def xy(batch: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(batch * width, dtype=np.float32).reshape(batch, width)
    return x, np.full((batch, width), 0.5, np.float32)


def read_exported(path: Path, name: str = "model.jax") -> Any:
    with zipfile.ZipFile(path) as archive:
        return export.deserialize(bytearray(archive.read(f"0/data/{name}")))


# --- Shapes ------------------------------------------------------------------------------


def test_one_package_serves_every_batch_size(addition: Path) -> None:
    with load_neuropod(addition) as model:
        assert model.platform == "jax"
        for batch, width in [(1, 1), (4, 3), (33, 7)]:
            x, y = xy(batch, width)
            out = model.infer({"x": x, "y": y})
            assert out["out"].dtype == np.float32
            np.testing.assert_array_equal(out["out"], x + y)


def test_optional_input_runs_its_own_program(addition: Path) -> None:
    x, _ = xy(2, 3)
    with load_neuropod(addition) as model:
        np.testing.assert_array_equal(model.infer({"x": x})["out"], x)
    assert len(read_exported(addition, "model.1.jax").in_avals) == 1


def test_spec_symbol_is_one_symbolic_dim_for_every_input(root: Path) -> None:
    shared = [
        {"name": "x", "dtype": "float32", "shape": ("batch", "n")},
        {"name": "y", "dtype": "float32", "shape": ("batch", "n")},
    ]
    # x + y traces only because both inputs have the same symbolic shape
    path = package(root, "shared.zip", lambda x, y: x + y, input_spec=shared)
    x_aval, y_aval = read_exported(path).in_avals
    assert str(x_aval.shape) == str(y_aval.shape) == "(batch, n)"
    with load_neuropod(path) as model:
        x, y = xy(3, 5)
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


def test_none_dims_become_independent_symbols(root: Path) -> None:
    with pytest.raises(PackageError) as info:
        package(root, "independent.zip", add)
    message = str(info.value)
    assert "x: (batch, x_1), y: (batch, y_1)" in message
    assert "incompatible shapes" in message
    assert "polymorphic_shapes" in message
    assert not (root / "independent.zip").exists()


def test_jax_export_checks_the_narrowed_shapes(addition: Path) -> None:
    # The spec's None dims accept any size; the exported (batch, d1) shapes do not.
    x, _ = xy(2, 3)
    _, y = xy(2, 4)
    with load_neuropod(addition) as model, pytest.raises(InferenceError) as info:
        model.infer({"x": x, "y": y})
    assert "do not match the polymorphic shapes specification" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_polymorphic_shapes_must_fit_the_spec(root: Path) -> None:
    with pytest.raises(PackageError, match=r"polymorphic_shapes\['x'\] = 'batch' does not fit"):
        package(root, "bad-poly.zip", add, polymorphic_shapes={"x": "batch", "y": "batch, n"})
    with pytest.raises(PackageError, match="tensor\\(s\\) 'z' that are not in the input spec"):
        package(root, "bad-poly2.zip", add, polymorphic_shapes={"z": "a"})


def test_symbols_that_jax_cannot_parse_are_renamed(root: Path) -> None:
    odd = [
        {"name": "x", "dtype": "float32", "shape": ("batch-size", "max")},
        {"name": "y", "dtype": "float32", "shape": ("batch-size", "max")},
    ]
    out = [{"name": "out", "dtype": "float32", "shape": ("batch-size", "max")}]
    path = package(root, "odd.zip", lambda x, y: x + y, input_spec=odd, output_spec=out)
    with load_neuropod(path) as model:
        x, y = xy(2, 2)
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


# --- Parameters --------------------------------------------------------------------------


def test_params_are_stored_beside_the_program(root: Path) -> None:
    import ml_dtypes

    weights = np.linspace(0, 1, 1_000_000, dtype=np.float32)
    params = {
        "w": jnp.asarray(weights),
        "layers": [np.float32(2.0), np.ones(3, ml_dtypes.bfloat16)],
        "bias": 1.5,
    }

    def fn(p: Any, x: Any) -> Any:
        return x * p["layers"][0] + p["bias"] + p["layers"][1].astype(jnp.float32).sum() + p["w"][0]

    spec = [{"name": "x", "dtype": "float32", "shape": ("batch",)}]
    out = [{"name": "out", "dtype": "float32", "shape": ("batch",)}]
    path = package(root, "params.zip", fn, params=params, input_spec=spec, output_spec=out)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        program = archive.getinfo("0/data/model.jax").file_size
        settings = json.loads(archive.read("0/config.json"))
    assert sorted(n for n in names if n.startswith("0/data/params/0")) == [
        f"0/data/params/00000{i}.npy" for i in range(4)
    ]
    assert program < 100_000  # the 4 MB weight is an argument, not a constant of the program
    assert settings == {"enable_x64": False, "has_params": True, "num_params": 4, "variants": []}
    with load_neuropod(path) as model:
        x = np.arange(4, dtype=np.float32)
        np.testing.assert_allclose(model.infer({"x": x})["out"], x * 2 + 1.5 + 3)


def test_exported_form(root: Path) -> None:
    params = {"scale": np.float32(3.0)}
    scope = export.SymbolicScope()
    (batch,) = export.symbolic_shape("b", scope=scope)
    exported = export.export(jax.jit(lambda p, x: {"out": x * p["scale"]}))(
        params, jax.ShapeDtypeStruct((batch, 2), np.float32)
    )
    spec = [{"name": "x", "dtype": "float32", "shape": ("batch", 2)}]
    out = [{"name": "out", "dtype": "float32", "shape": ("batch", 2)}]
    path = root / "exported.zip"
    create_jax_neuropod(
        neuropod_path=path, model_name="m", input_spec=spec, output_spec=out, exported=exported, params=params
    )
    with load_neuropod(path) as model:
        for n in (1, 6):
            x = np.ones((n, 2), np.float32)
            np.testing.assert_array_equal(model.infer({"x": x})["out"], x * 3)


def test_exported_form_must_match_the_spec(root: Path) -> None:
    exported = export.export(jax.jit(lambda x: x))(jax.ShapeDtypeStruct((2,), np.float32))
    kwargs: dict[str, Any] = {"neuropod_path": root / "mismatch.zip", "model_name": "m"}
    with pytest.raises(PackageError, match=r"takes 1 argument\(s\), but the spec needs \(x, y\)"):
        create_jax_neuropod(**kwargs, input_spec=XY_SPEC, output_spec=OUT_SPEC, exported=exported)
    one = [{"name": "x", "dtype": "int32", "shape": (2,)}]
    with pytest.raises(PackageError, match="input 'x' of the exported function is float32\\[2\\]"):
        create_jax_neuropod(**kwargs, input_spec=one, output_spec=one, exported=exported)


# --- Types and outputs -------------------------------------------------------------------


def test_64_bit_types(root: Path) -> None:
    spec = [{"name": "x", "dtype": "float64", "shape": (None,)}, {"name": "n", "dtype": "int64", "shape": ()}]
    out = [{"name": "out", "dtype": "float64", "shape": (None,)}]
    path = package(root, "x64.zip", lambda x, n: x * n + 1e-300, input_spec=spec, output_spec=out)
    with load_neuropod(path) as model:
        result = model.infer({"x": np.array([1.0, 2.0]), "n": np.array(3)})["out"]
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, [3.0, 6.0])


def test_tuple_and_single_outputs(root: Path) -> None:
    spec = [{"name": "x", "dtype": "int32", "shape": (None,)}]
    two = [spec_("a", "int32", (None,)), spec_("b", "bool", (None,))]
    path = package(root, "tuple.zip", lambda x: (x + 1, x > 1), input_spec=spec, output_spec=two)
    with load_neuropod(path) as model:
        out = model.infer({"x": np.arange(3, dtype=np.int32)})
    assert out["a"].tolist() == [1, 2, 3] and out["b"].tolist() == [False, False, True]
    single = package(root, "single.zip", lambda x: x * 2, input_spec=spec, output_spec=two[:1])
    with load_neuropod(single) as model:
        assert model.infer({"x": np.arange(3, dtype=np.int32)})["a"].tolist() == [0, 2, 4]


def test_outputs_must_match_the_spec(root: Path) -> None:
    with pytest.raises(PackageError, match=r"outputs \['sum'\], but the output spec has \['out'\]"):
        package(root, "names.zip", lambda x, y: {"sum": x})
    wrong = [{"name": "out", "dtype": "int32", "shape": ("batch", None)}]
    with pytest.raises(PackageError, match=r"output 'out' of the exported function is float32\[batch,x_1\]"):
        package(root, "dtype.zip", lambda x, y: x, output_spec=wrong)


def test_strings_and_bytes_are_refused(root: Path) -> None:
    spec = [{"name": "s", "dtype": "string", "shape": (None,)}]
    out = [{"name": "b", "dtype": "bytes", "shape": (None,)}]
    with pytest.raises(PackageError) as info:
        package(root, "strings.zip", lambda s: s, input_spec=spec, output_spec=out)
    assert str(info.value) == (
        "JAX has no string or bytes tensors, but the spec declares 's' (string), 'b' (bytes)"
    )


def test_needs_fn_or_exported(root: Path) -> None:
    with pytest.raises(PackageError, match="exactly one of fn="):
        package(root, "neither.zip", None)


# --- Loading and running -----------------------------------------------------------------


def test_missing_input_that_is_not_optional(root: Path) -> None:
    path = package(root, "required.zip", lambda x, y: x + y, polymorphic_shapes={"y": "batch, x_1"})
    x, _ = xy(2, 2)
    with load_neuropod(path) as model, pytest.raises(InferenceError, match="missing 'y'"):
        model.infer({"x": x})


def test_unknown_options(addition: Path, root: Path) -> None:
    with pytest.raises(OptionError, match="'intra_op_threads'"):
        load_neuropod(addition, intra_op_threads=1)
    with pytest.raises(OptionError, match="'bogus'"):
        package(root, "bogus.zip", add, bogus=1)


def test_same_inputs_give_the_same_bytes(root: Path) -> None:
    # The program records the call stack that traced each operation, so both come from one line.
    paths = [root / f"same-{i}" / "model.zip" for i in range(2)]
    for path in paths:
        build_addition(path, root, input_spec=XY_SPEC, output_spec=OUT_SPEC)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_visible_gpu_without_a_gpu_runs_on_the_cpu(addition: Path, caplog: pytest.LogCaptureFixture) -> None:
    try:
        has_gpu = bool(jax.devices("gpu"))
    except RuntimeError:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is visible")
    x, y = xy(2, 2)
    with caplog.at_level(logging.WARNING), load_neuropod(addition, visible_gpu=0) as model:
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)
    assert "JAX sees no GPU" in caplog.text


# --- Copies --------------------------------------------------------------------------------


def aligned_ones(n: int) -> np.ndarray:
    array = aligned_copy(np.ones(n, np.float32))
    assert array.ctypes.data % CPU_ALIGNMENT == 0
    return array


def test_large_aligned_inputs_and_outputs_are_not_copied(root: Path) -> None:
    spec = [spec_("x", "float32", (None,)), spec_("y", "float32", (None,))]
    out_spec = [spec_("out", "float32", (None,))]
    shared = {"y": "x_0"}
    path = package(root, "big.zip", add, input_spec=spec, output_spec=out_spec, polymorphic_shapes=shared)
    x, y = aligned_ones(16_000_000), aligned_ones(16_000_000)
    seen: dict[str, list[int]] = {}
    with load_neuropod(path) as model:
        backend = model._backend
        call, names = backend._program

        def spy(*args: Any) -> Any:
            seen["inputs"] = [arg.unsafe_buffer_pointer() for arg in args]
            result = call(*args)
            seen["output"] = [result["out"].unsafe_buffer_pointer()]
            return result

        backend._program = (spy, names)
        out = model.infer({"x": x, "y": y})["out"]
    # The arrays the compiled function received live in the caller's memory ...
    assert seen["inputs"] == [x.ctypes.data, y.ctypes.data]
    # ... and the caller gets JAX's output buffer itself, read-only.
    assert seen["output"] == [out.ctypes.data]
    assert not out.flags.writeable
    assert out[0] == 2.0 and out[-1] == 2.0


def test_unaligned_input_is_copied_once_into_aligned_memory() -> None:
    device = jax.devices("cpu")[0]
    unaligned = aligned_copy(np.ones(4_000_001, np.float32))[1:]
    converted = to_jax(unaligned, device)
    assert converted.unsafe_buffer_pointer() != unaligned.ctypes.data
    assert converted.unsafe_buffer_pointer() % CPU_ALIGNMENT == 0
    np.testing.assert_array_equal(np.asarray(converted), unaligned)


def test_aliased_memory_outlives_the_callers_array() -> None:
    device = jax.devices("cpu")[0]
    array = aligned_copy(np.full(1_000_000, 7, np.float32))
    converted = to_jax(array, device)
    assert converted.unsafe_buffer_pointer() == array.ctypes.data
    del array
    gc.collect()
    np.full(4_000_000, 3, np.float32)  # reuse of freed memory would show here
    assert float(converted[0]) == float(converted[-1]) == 7.0
