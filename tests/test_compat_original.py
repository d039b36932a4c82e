"""Code written for the original Neuropod runs unchanged: its calls, its exceptions, its bytes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import PackageError, SpecError, ValidationError, load_neuropod
from neuropod.errors import VersionRangeError
from neuropod.packagers import create_python_neuropod
from neuropod.utils.config_utils import canonicalize_tensor_spec, validate_neuropod_config

# --- 1. config_utils.validate_neuropod_config and canonicalize_tensor_spec -------------------


def valid_config() -> dict[str, Any]:
    return {
        "name": "addition_model",
        "platform": "tensorflow",
        "input_spec": [{"name": "x", "dtype": "float32", "shape": (None, 2, "some_symbol")}],
        "output_spec": [{"name": "y", "dtype": "float32", "shape": (None, 2, "some_symbol")}],
        "input_tensor_device": {"x": "GPU"},
    }


def test_validate_neuropod_config_accepts_a_valid_config():
    config = valid_config()
    validate_neuropod_config(config)
    assert config == valid_config()


def test_validate_neuropod_config_accepts_the_optional_fields():
    config = valid_config()
    config.update(custom_ops=["op.so"], platform_version_semver="1.13.1")
    validate_neuropod_config(config)


def _set(config: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("name",), True, "field 'name' must be a string, got True"),
        (("platform",), 5, "field 'platform' must be a string, got 5"),
        (("input_tensor_device", "x"), "TPU", "The device of input 'x' must be 'GPU' or 'CPU', got 'TPU'"),
        (
            ("input_tensor_device", "y"),
            "CPU",
            "input_tensor_device names tensor(s) 'y' that are not in the input spec (inputs: 'x')",
        ),
        (("input_tensor_device",), {}, "Input(s) 'x' have no device"),
        (("input_spec", 0, "dtype"), "complex128", "'complex128' is not an allowed data type"),
        (("input_spec", 0, "name"), 5, "A tensor name must be a non-empty string, got 5"),
        (("input_spec", 0, "shape"), "123", "shape must be a list or tuple, got str '123'"),
        (
            ("input_spec", 0, "shape"),
            (None, 2, "some_symbol", True),
            "every shape item must be None, a positive int or a symbol name, got True",
        ),
        (("output_spec", 0, "dtype"), "complex128", "'complex128' is not an allowed data type"),
        (("custom_ops",), "op.so", "field 'custom_ops' must be a list of strings, got 'op.so'"),
        (("custom_ops",), [5], "field 'custom_ops' must be a list of strings, got [5]"),
    ],
)
def test_validate_neuropod_config_raises_value_error(path, value, message):
    config = valid_config()
    _set(config, path, value)
    with pytest.raises(ValueError) as info:
        validate_neuropod_config(config)
    assert isinstance(info.value, PackageError)
    assert str(info.value).startswith("The neuropod config")
    assert message in str(info.value)


def test_validate_neuropod_config_needs_the_devices():
    config = valid_config()
    del config["input_tensor_device"]
    with pytest.raises(PackageError, match=r"^The neuropod config lacks the field input_tensor_device$"):
        validate_neuropod_config(config)


@pytest.mark.parametrize("field", ["name", "platform", "input_spec", "output_spec"])
def test_validate_neuropod_config_names_a_missing_field(field):
    config = valid_config()
    del config[field]
    with pytest.raises(PackageError, match=f"^The neuropod config lacks the field\\(s\\) {field}$"):
        validate_neuropod_config(config)


def test_validate_neuropod_config_needs_a_dict():
    with pytest.raises(PackageError, match=r"^The neuropod config must be a dict, got list$"):
        validate_neuropod_config([])  # type: ignore[arg-type]


def test_canonicalize_tensor_spec_returns_shapes_as_given():
    given = [
        {"name": "x", "dtype": "string", "shape": (None, 2, "some_symbol")},
        {"name": "y", "dtype": "double", "shape": (None, 2)},
        {"name": "z", "dtype": np.int64, "shape": [None]},
    ]
    result = canonicalize_tensor_spec(given)
    assert result == [
        {"name": "x", "dtype": "string", "shape": (None, 2, "some_symbol")},
        {"name": "y", "dtype": "float64", "shape": (None, 2)},
        {"name": "z", "dtype": "int64", "shape": [None]},
    ]
    assert [type(item["shape"]) for item in result] == [tuple, tuple, list]
    assert canonicalize_tensor_spec(result) == result


def test_canonicalize_tensor_spec_takes_a_generator():
    specs = ({"name": n, "dtype": "float32", "shape": ()} for n in "ab")
    assert canonicalize_tensor_spec(specs) == [
        {"name": "a", "dtype": "float32", "shape": ()},
        {"name": "b", "dtype": "float32", "shape": ()},
    ]


def test_canonicalize_tensor_spec_still_checks_the_specs():
    with pytest.raises(SpecError, match="'complex128' is not an allowed data type"):
        canonicalize_tensor_spec([{"name": "x", "dtype": "complex128", "shape": ()}])


# --- 2. and 3. the python packager's layout, byte for byte -----------------------------------

MODEL_CODE = """\
from addition_model.helpers import add


def get_model(data_dir):
    return lambda x, y: {"out": add(x, y)}
"""

SPEC_IN = [
    {"name": "x", "dtype": "float32", "shape": (None,)},
    {"name": "y", "dtype": "float32", "shape": (None,)},
]
SPEC_OUT = [{"name": "out", "dtype": "float32", "shape": (None,)}]


@pytest.fixture
def python_root(tmp_path: Path) -> Path:
    """A python_root with a package, a subpackage lacking ``__init__.py``, and a top-level module."""
    root = tmp_path / "root"
    (root / "addition_model" / "nested").mkdir(parents=True)
    (root / "addition_model" / "model.py").write_text(MODEL_CODE)
    (root / "addition_model" / "helpers.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "addition_model" / "nested" / "data.txt").write_text("not code")
    (root / "top_level.py").write_text("VALUE = 1\n")
    return root


def package(root: Path, path: Path, dirs: list[str], **kwargs: Any) -> Path:
    create_python_neuropod(
        neuropod_path=path,
        model_name="addition_model",
        input_spec=SPEC_IN,
        output_spec=SPEC_OUT,
        code_path_spec=[{"python_root": str(root), "dirs_to_package": dirs}],
        entrypoint_package="addition_model.model",
        entrypoint="get_model",
        package_as_zip=False,
        **kwargs,
    )
    return path


def files_under(root: Path) -> dict[str, bytes]:
    found = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            found[Path(dirpath, name).relative_to(root).as_posix()] = Path(dirpath, name).read_bytes()
    return found


def test_an_empty_dir_to_package_packages_the_whole_python_root(python_root, tmp_path):
    path = package(python_root, tmp_path / "model", [""])
    code = {name for name in files_under(path) if name.startswith("0/code/")}
    assert code == {
        "0/code/__init__.py",
        "0/code/top_level.py",
        "0/code/addition_model/__init__.py",
        "0/code/addition_model/model.py",
        "0/code/addition_model/helpers.py",
        "0/code/addition_model/nested/__init__.py",
        "0/code/addition_model/nested/data.txt",
    }
    with load_neuropod(path) as model:
        out = model.infer({"x": np.ones(2, np.float32), "y": np.ones(2, np.float32)})
    np.testing.assert_array_equal(out["out"], [2, 2])


def test_dot_is_the_whole_python_root_too(python_root, tmp_path):
    whole = files_under(package(python_root, tmp_path / "empty", [""]))
    dot = files_under(package(python_root, tmp_path / "dot", ["."]))
    assert whole == dot


@pytest.mark.parametrize("bad", ["../elsewhere", "/abs", None, 3])
def test_dirs_to_package_outside_python_root_are_refused(python_root, tmp_path, bad):
    with pytest.raises(
        PackageError,
        match=rf"Each of dirs_to_package must be a directory relative to python_root .* \(\'\' for all "
        rf"of it\), got {bad!r}",
    ):
        package(python_root, tmp_path / "model", [bad])
    assert not (tmp_path / "model").exists()


def test_every_code_folder_gets_an_empty_init(python_root, tmp_path):
    files = files_under(package(python_root, tmp_path / "model", ["addition_model"]))
    inits = {name: data for name, data in files.items() if name.endswith("__init__.py")}
    assert inits == {
        "0/code/__init__.py": b"",
        "0/code/addition_model/__init__.py": b"",
        "0/code/addition_model/nested/__init__.py": b"",
    }


def test_a_package_without_code_has_no_code_folder(tmp_path):
    data = tmp_path / "weights.txt"
    data.write_text("1")
    (tmp_path / "root" / "addition_model").mkdir(parents=True)
    create_python_neuropod(
        neuropod_path=tmp_path / "model",
        model_name="m",
        input_spec=SPEC_IN,
        output_spec=SPEC_OUT,
        data_paths=[{"path": str(data), "packaged_name": "weights.txt"}],
        entrypoint_package="installed.module",
        entrypoint="get_model",
        package_as_zip=False,
    )
    assert not (tmp_path / "model" / "0" / "code").exists()


def test_backend_config_of_python_packages_is_one_sorted_line(python_root, tmp_path):
    path = package(python_root, tmp_path / "model", ["addition_model"])
    assert (path / "0" / "config.json").read_bytes() == (
        b'{"entrypoint": "get_model", "entrypoint_package": "addition_model.model"}'
    )


def _original_layout(root: Path, python_root: Path) -> None:
    """Write, by the original's rules (compat.md), the package it made of ``package()``'s call."""
    config = {
        "name": "addition_model",
        "platform": "python",
        "platform_version_semver": "*",
        "input_spec": [dict(item, shape=list(item["shape"])) for item in SPEC_IN],
        "output_spec": [dict(item, shape=list(item["shape"])) for item in SPEC_OUT],
        "custom_ops": [],
        "input_tensor_device": {"x": "GPU", "y": "GPU"},
    }
    (root / "0" / "ops").mkdir(parents=True)
    (root / "0" / "data").mkdir()
    (root / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True))
    backend = {"entrypoint_package": "addition_model.model", "entrypoint": "get_model"}
    (root / "0" / "config.json").write_text(json.dumps(backend, sort_keys=True))
    code = root / "0" / "code"
    for rel, data in files_under(python_root / "addition_model").items():
        target = code / "addition_model" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for dirpath, _dirnames, filenames in os.walk(code):
        if "__init__.py" not in filenames:
            Path(dirpath, "__init__.py").write_bytes(b"")


def test_manifest_hashes_match_the_originals_layout(python_root, tmp_path):
    ours = files_under(package(python_root, tmp_path / "model", ["addition_model"]))
    original = tmp_path / "original"
    _original_layout(original, python_root)
    theirs = files_under(original)
    manifest = json.loads(ours.pop("manifest.json"))
    assert ours == theirs
    expected = {name: hashlib.sha256(data).hexdigest() for name, data in theirs.items()}
    assert manifest == {"manifest_version": 1, "files": expected}
    text = json.dumps({"manifest_version": 1, "files": expected}, indent=4, sort_keys=True)
    assert (tmp_path / "model" / "manifest.json").read_text() == text


# --- 4. version ranges fail as RuntimeError too ----------------------------------------------


def test_an_invalid_range_is_a_runtime_error_when_packaging(python_root, tmp_path):
    with pytest.raises(RuntimeError) as info:
        package(python_root, tmp_path / "model", ["addition_model"], platform_version_semver="a.b.c")
    assert isinstance(info.value, VersionRangeError)
    assert isinstance(info.value, SpecError)
    assert "platform_version_semver 'a.b.c' is not a version range" in str(info.value)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("value", ["", "  ", 5])
def test_an_empty_or_non_string_range_is_a_runtime_error_when_packaging(python_root, tmp_path, value):
    with pytest.raises(
        VersionRangeError, match="platform_version_semver must be a version range such as"
    ):
        package(python_root, tmp_path / "model", ["addition_model"], platform_version_semver=value)


def _edit_config(path: Path, **fields: Any) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(fields)
    (path / "config.json").write_text(json.dumps(config))
    (path / "manifest.json").unlink()


def test_an_invalid_range_is_a_runtime_error_when_loading(python_root, tmp_path):
    path = package(python_root, tmp_path / "model", ["addition_model"])
    _edit_config(path, platform_version_semver="a.b.c")
    with pytest.raises(RuntimeError) as info:
        load_neuropod(path)
    assert isinstance(info.value, PackageError)
    assert str(info.value).startswith(f"{path}: platform_version_semver 'a.b.c' is not a version range")


def test_an_unsatisfied_range_is_a_runtime_error(python_root, tmp_path):
    try:
        importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("torch is not installed")
    path = package(python_root, tmp_path / "model", ["addition_model"])
    # The range is checked before the platform's backend is imported.
    _edit_config(path, platform="torchscript", platform_version_semver="< 1.0")
    with pytest.raises(RuntimeError, match=r"needs torch '< 1.0'") as info:
        load_neuropod(path)
    assert isinstance(info.value, ImportError)


# --- 5. numpy scalars are 0-d arrays ----------------------------------------------------------

SCALAR_CODE = """\
import numpy as np


def get_model(data_dir):
    def model(x, kind=None):
        kinds = {
            "numpy": np.float32(x * 2),
            "python": float(x * 2),
            "string": "two",
            "array": np.asarray(x * 2, np.float32),
        }
        return {"out": kinds[str(kind) if kind is not None else "array"]}

    return model
"""


@pytest.fixture
def scalar_model(tmp_path: Path) -> Path:
    root = tmp_path / "scalar-root"
    (root / "scalar").mkdir(parents=True)
    (root / "scalar" / "main.py").write_text(SCALAR_CODE)
    path = tmp_path / "scalar"
    create_python_neuropod(
        neuropod_path=path,
        model_name="scalar",
        input_spec=[
            {"name": "x", "dtype": "float32", "shape": ()},
            {"name": "kind", "dtype": "string", "shape": ()},
        ],
        output_spec=[{"name": "out", "dtype": "float32", "shape": ()}],
        code_path_spec=[{"python_root": str(root), "dirs_to_package": ["scalar"]}],
        entrypoint_package="scalar.main",
        entrypoint="get_model",
        package_as_zip=False,
    )
    return path


def test_numpy_scalar_inputs_are_0d_arrays(scalar_model):
    inputs = {"x": np.float32(2.0)}
    with load_neuropod(scalar_model) as model:
        out = model.infer(inputs)
    assert type(out["out"]) is np.ndarray
    assert out["out"].shape == ()
    assert out["out"] == 4.0
    assert type(inputs["x"]) is np.float32  # the caller's dict is untouched


def test_numpy_scalars_out_of_process(scalar_model):
    with load_neuropod(scalar_model, use_ope=True) as model:
        out = model.infer({"x": np.float32(2.0), "kind": np.str_("numpy")})
    assert type(out["out"]) is np.ndarray
    assert out["out"].shape == ()
    assert out["out"] == 4.0


@pytest.mark.parametrize("kind", ["numpy", "array"])
def test_numpy_scalar_outputs_are_0d_arrays(scalar_model, kind):
    with load_neuropod(scalar_model) as model:
        out = model.infer({"x": np.float32(2.0), "kind": np.str_(kind)})
    assert type(out["out"]) is np.ndarray
    assert out["out"].dtype == np.float32
    assert out["out"].shape == ()


def test_a_python_float_output_is_checked_as_a_float64_array(scalar_model):
    with load_neuropod(scalar_model) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": np.float32(2.0), "kind": np.array("python")})
    assert str(info.value) == (
        "Tensor 'out' in the output spec is expected to be of type float32, but was of type float64"
    )


def test_a_python_string_output_is_checked_as_a_string_array(scalar_model):
    with load_neuropod(scalar_model) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": np.float32(2.0), "kind": np.array("string")})
    assert str(info.value) == (
        "Tensor 'out' in the output spec is expected to be of type float32, but was of type string"
    )


def test_a_numpy_scalar_of_the_wrong_type_is_named(scalar_model):
    with load_neuropod(scalar_model) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": np.float64(2.0)})
    assert str(info.value) == (
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type float64"
    )


def test_a_numpy_scalar_for_a_tensor_of_rank_1_is_named(tmp_path, python_root):
    path = package(python_root, tmp_path / "model", ["addition_model"])
    with load_neuropod(path) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": np.float32(1.0), "y": np.ones(1, np.float32)})
    assert str(info.value) == (
        "Tensor 'x' in the input spec is expected to have 1 dimensions, but had 0 (shape ())"
    )


def test_python_scalar_inputs_are_still_refused(scalar_model):
    with load_neuropod(scalar_model) as model, pytest.raises(ValidationError) as info:
        model.infer({"x": 2.0})
    assert str(info.value) == (
        "Tensor 'x' in the input spec is expected to be a numpy array of type float32, "
        "but was of type float"
    )


# --- 6. files over 2 GiB ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_file_over_2_gib_is_zipped_with_zip64(python_root, tmp_path):
    # A sparse file costs no disk until read, but packaging copies, hashes and deflates every
    # byte: 12-30 s on two shared cores. Mocking the ZipFile would not show that real zips work.
    big = tmp_path / "big.bin"
    size = zipfile.ZIP64_LIMIT + (1 << 20)
    with open(big, "wb") as f:
        f.truncate(size)
    path = tmp_path / "model.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="big",
        input_spec=SPEC_IN,
        output_spec=SPEC_OUT,
        data_paths=[{"path": str(big), "packaged_name": "big.bin"}],
        code_path_spec=[{"python_root": str(python_root), "dirs_to_package": ["addition_model"]}],
        entrypoint_package="addition_model.model",
        entrypoint="get_model",
    )
    big.unlink()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("0/data/big.bin")
        assert info.file_size == size
        assert info.compress_size < size
        # Only the large entry carries zip64 fields: the others keep their usual bytes.
        small = zf.getinfo("0/code/addition_model/model.py")
        assert small.extra == b""
        assert info.extra != b""


# --- audit: the original's other utils ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "name", "dtype"),
    [
        ("double", "float64", np.float64),
        (np.float32, "float32", np.float32),
        ("int64", "int64", np.int64),
        ("string", "string", np.str_),
        (np.str_, "string", np.str_),
    ],
)
def test_dtype_utils(given, name, dtype):
    from neuropod.utils.dtype_utils import get_dtype, get_dtype_name

    assert get_dtype_name(given) == name
    assert get_dtype(given) == np.dtype(dtype)
    assert get_dtype(name) == np.dtype(dtype)


def test_dtype_utils_refuse_what_a_spec_cannot_hold():
    from neuropod.utils.dtype_utils import get_dtype, get_dtype_name

    for function in (get_dtype, get_dtype_name):
        with pytest.raises(SpecError, match="'complex128' is not an allowed data type"):
            function("complex128")


RANDOM_IN = [
    {"name": "in_string_vector", "dtype": "string", "shape": ("N",)},
    {"name": "in_int_matrix", "dtype": "int32", "shape": ("N", "M")},
    {"name": "in_float64_scalar", "dtype": "float64", "shape": ()},
]
RANDOM_OUT = [
    {"name": "out_string_vector", "dtype": "string", "shape": ("N",)},
    {"name": "out_int_matrix", "dtype": "int32", "shape": ("N", "M")},
    {"name": "out_float_matrix", "dtype": "float32", "shape": ("N", None)},
    {"name": "out_float_scalar", "dtype": "float32", "shape": ()},
]


def test_randomify_neuropod_writes_a_stub_that_honours_the_spec(tmp_path):
    from neuropod.utils.randomify import randomify_neuropod

    path = tmp_path / "stub"
    assert randomify_neuropod(path, RANDOM_IN, RANDOM_OUT) == path
    with load_neuropod(path) as model:
        assert model.name == "random_model"
        out = model.infer({"in_int_matrix": np.zeros((3, 2), np.int32), "in_float64_scalar": np.float64(1)})
        assert out["out_string_vector"].shape == (3,)
        assert out["out_int_matrix"].shape == (3, 2)
        assert out["out_float_matrix"].shape[0] == 3
        assert out["out_float_scalar"].shape == ()
        with pytest.raises(RuntimeError, match="are not found in the input spec"):
            model.infer({"bogus": np.zeros(1, np.float32)})
        with pytest.raises(ValueError, match="in the input spec is expected to have 2 dimensions, but had 1"):
            model.infer({"in_int_matrix": np.zeros(3, np.int32)})


def test_randomify_neuropod_refuses_an_existing_path(tmp_path):
    from neuropod.utils.randomify import randomify_neuropod

    with pytest.raises(PackageError, match="already exists"):
        randomify_neuropod(tmp_path, RANDOM_IN, RANDOM_OUT)
