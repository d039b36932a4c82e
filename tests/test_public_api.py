"""The public surface: ``neuropod.__all__``, the original's import paths, and a light ``import neuropod``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import neuropod


def test_all_is_pinned_and_sorted():
    assert neuropod.__all__ == [
        "BackendUnavailable",
        "InferenceError",
        "InferenceTimeout",
        "IntegrityError",
        "ModelClosedError",
        "NeuropodError",
        "NeuropodModel",
        "OptionError",
        "PackageError",
        "SpecError",
        "TensorSpec",
        "TestDataMismatch",
        "UnsafeArchiveError",
        "ValidationError",
        "WorkerCrashed",
        "__version__",
        "load_neuropod",
    ]
    assert neuropod.__all__ == sorted(neuropod.__all__)


def test_everything_in_all_exists():
    for name in neuropod.__all__:
        assert getattr(neuropod, name) is not None, name


def test_version_is_a_string():
    assert isinstance(neuropod.__version__, str)


def test_original_loader_path():
    from neuropod.loader import load_neuropod

    assert load_neuropod is neuropod.load_neuropod


@pytest.mark.parametrize(
    "name",
    ["create_torchscript_neuropod", "create_python_neuropod", "create_pytorch_neuropod"],
)
def test_original_packager_paths_are_keyword_only(name):
    import neuropod.packagers

    packager = getattr(neuropod.packagers, name)
    parameters = inspect.signature(packager).parameters.values()
    assert {p.kind for p in parameters} == {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD}
    names = {p.name for p in parameters}
    assert {"neuropod_path", "model_name", "input_spec", "output_spec"} <= names


def test_pytorch_packager_is_the_python_packager():
    from neuropod.packagers import create_python_neuropod, create_pytorch_neuropod

    assert create_pytorch_neuropod is create_python_neuropod


def test_original_eval_utils_paths():
    from neuropod.utils import eval_utils
    from neuropod.utils.eval_utils import (
        check_output_matches_expected,
        load_and_test_neuropod,
        load_test_data,
        save_test_data,
    )

    assert sorted(eval_utils.__all__) == [
        "check_output_matches_expected",
        "load_and_test_neuropod",
        "load_test_data",
        "save_test_data",
    ]
    assert all(
        callable(f)
        for f in (check_output_matches_expected, load_and_test_neuropod, load_test_data, save_test_data)
    )


def test_original_config_utils_paths():
    from neuropod.utils import config_utils
    from neuropod.utils.config_utils import (
        canonicalize_tensor_spec,
        read_neuropod_config,
        validate_neuropod_config,
        validate_tensor_spec,
        write_neuropod_config,
    )

    assert sorted(config_utils.__all__) == [
        "canonicalize_tensor_spec",
        "read_neuropod_config",
        "validate_neuropod_config",
        "validate_tensor_spec",
        "write_neuropod_config",
    ]
    assert all(
        callable(f)
        for f in (
            canonicalize_tensor_spec,
            read_neuropod_config,
            validate_neuropod_config,
            validate_tensor_spec,
            write_neuropod_config,
        )
    )


def test_original_registry_path():
    from neuropod.registry import register_backend

    assert callable(register_backend)


def test_errors_derive_from_the_builtins_the_original_raised():
    assert issubclass(neuropod.ValidationError, ValueError)
    assert issubclass(neuropod.ValidationError, RuntimeError)
    assert issubclass(neuropod.SpecError, ValueError)
    assert issubclass(neuropod.PackageError, ValueError)
    assert issubclass(neuropod.IntegrityError, neuropod.PackageError)
    assert issubclass(neuropod.UnsafeArchiveError, neuropod.PackageError)
    assert issubclass(neuropod.TestDataMismatch, ValueError)
    assert issubclass(neuropod.OptionError, TypeError)
    assert issubclass(neuropod.BackendUnavailable, ImportError)
    assert issubclass(neuropod.InferenceError, RuntimeError)
    assert issubclass(neuropod.ModelClosedError, RuntimeError)
    for name in neuropod.__all__:
        value = getattr(neuropod, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, neuropod.NeuropodError), name


HEAVY = ["torch", "tensorflow", "jax", "onnxruntime", "grpc", "ray"]


def test_import_neuropod_imports_no_framework():
    code = (
        "import json, sys\n"
        "import neuropod, neuropod.packagers, neuropod.loader, neuropod.registry\n"
        "import neuropod.utils.eval_utils, neuropod.utils.config_utils\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.partition('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
