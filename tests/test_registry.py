"""Which backend runs a platform, load options, and the model object in front of every backend."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from neuropod import (
    BackendUnavailable,
    InferenceError,
    ModelClosedError,
    OptionError,
    ValidationError,
    load_neuropod,
    registry,
)
from neuropod.backends.base import Backend
from neuropod.options import Options, int_at_least, option, optional
from neuropod.package import ModelConfig, Package, PackageBuilder
from neuropod.registry import register_backend

SPEC = [{"name": "x", "dtype": "float32", "shape": [None]}]


class EchoBackend(Backend):
    """Returns its inputs, times ``scale``; remembers what it was given."""

    instances: ClassVar[list[EchoBackend]] = []

    def __init__(self, package: Package, *, visible_gpu: int | None = None, scale: float = 1.0):
        super().__init__(package, visible_gpu=visible_gpu)
        self.scale = scale
        self.closed = 0
        EchoBackend.instances.append(self)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value * np.float32(self.scale) for name, value in inputs.items()}

    def close(self) -> None:
        self.closed += 1


class MutatingBackend(Backend):
    """Treats its inputs dict as its own, as a backend may."""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs.pop("x")
        inputs["scratch"] = x
        return {"x": x}


class FailingBackend(Backend):
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ZeroDivisionError("boom")


@dataclass(frozen=True)
class TypedOptions(Options):
    where = "platform 'typed'"

    threads: int | None = option(None, optional(int_at_least(1)))


class TypedBackend(Backend):
    """Declares its options; remembers what it was given."""

    load_options = TypedOptions
    given: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, package: Package, *, visible_gpu: int | None = None, **options: Any):
        super().__init__(package, visible_gpu=visible_gpu)
        TypedBackend.given.append(options)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(inputs)


class RaisingOnLoadBackend(Backend):
    def __init__(self, package: Package, *, visible_gpu: int | None = None):
        raise OSError("cannot load")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise AssertionError("never loaded")


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Keep this module's registrations from leaking into other tests."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_resolved", {})
    EchoBackend.instances.clear()
    TypedBackend.given.clear()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Make zips extract under ``tmp_path/tmp``, so that a test can see they are cleaned up."""
    extract_root = tmp_path / "tmp"
    extract_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(extract_root))
    return extract_root


def package(path: Path, platform: str, package_as_zip: bool = True) -> Path:
    """A package of ``platform`` holding nothing but its config, written by the package layer."""
    config = ModelConfig.build(name="echo", platform=platform, input_spec=SPEC, output_spec=SPEC)
    with PackageBuilder(path, package_as_zip=package_as_zip) as builder:
        builder.write_config(config)
        return builder.finish()


X = np.array([1.0, 2.0], np.float32)


def test_builtin_platforms_are_known():
    assert {"python", "torchscript"} <= set(registry.platforms())
    assert registry.platforms() == sorted(registry.platforms())


def test_unknown_platform(tmp_path, private_tmp):
    path = package(tmp_path / "model.zip", "nope")
    with pytest.raises(BackendUnavailable) as info:
        load_neuropod(path)
    assert str(info.value) == (
        f"No backend for platform 'nope'; known platforms: {', '.join(registry.platforms())}. "
        f"Register one with neuropod.registry.register_backend or the 'neuropod.backends' "
        f"entry point group"
    )
    assert isinstance(info.value, ImportError)
    assert list(private_tmp.iterdir()) == []


def test_register_a_backend_class(tmp_path):
    register_backend("echo", EchoBackend)
    assert "echo" in registry.platforms()
    with load_neuropod(package(tmp_path / "model.zip", "echo")) as model:
        assert model.platform == "echo"
        assert model.name == "echo"
        np.testing.assert_array_equal(model.infer({"x": X})["x"], X)


@pytest.fixture
def backend_module(tmp_path, monkeypatch):
    """An importable module ``neuropod_test_backends`` holding a Backend subclass ``Doubler``."""
    root = tmp_path / "modules"
    root.mkdir()
    (root / "neuropod_test_backends.py").write_text(
        textwrap.dedent(
            """\
            import numpy as np

            from neuropod.backends.base import Backend


            class Doubler(Backend):
                def infer(self, inputs):
                    return {name: value * np.float32(2) for name, value in inputs.items()}


            class NotABackend:
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(root))
    yield "neuropod_test_backends"
    sys.modules.pop("neuropod_test_backends", None)


def test_register_a_backend_by_module_and_class_name(tmp_path, backend_module):
    register_backend("doubler", f"{backend_module}:Doubler")
    assert backend_module not in sys.modules  # imported on first use, not when registered
    with load_neuropod(package(tmp_path / "model", "doubler", package_as_zip=False)) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["x"], 2 * X)


def test_registering_again_replaces_the_backend(tmp_path, backend_module):
    path = package(tmp_path / "model.zip", "echo")
    register_backend("echo", EchoBackend)
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["x"], X)
    register_backend("echo", f"{backend_module}:Doubler")
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["x"], 2 * X)


def test_register_a_backend_for_a_builtin_platform(tmp_path):
    register_backend("python", EchoBackend)
    with load_neuropod(package(tmp_path / "model.zip", "python")) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["x"], X)


def test_backend_from_an_entry_point(tmp_path, backend_module, monkeypatch):
    found = [EntryPoint(name="plugin", value=f"{backend_module}:Doubler", group="neuropod.backends")]
    monkeypatch.setattr(registry, "entry_points", lambda group: found if group == "neuropod.backends" else [])
    assert "plugin" in registry.platforms()
    with load_neuropod(package(tmp_path / "model.zip", "plugin")) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["x"], 2 * X)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "no_such_module_for_neuropod:Backend",
            "The backend for platform 'broken' cannot be imported (No module named "
            "'no_such_module_for_neuropod')",
        ),
        ("neuropod_test_backends:Missing", "Module neuropod_test_backends has no backend class 'Missing'"),
        (
            "neuropod_test_backends:NotABackend",
            "The backend for platform 'broken' ('neuropod_test_backends:NotABackend') is not a "
            "neuropod Backend subclass",
        ),
        (dict, "The backend for platform 'broken' (<class 'dict'>) is not a neuropod Backend subclass"),
    ],
)
def test_broken_registrations(tmp_path, backend_module, private_tmp, ref, message):
    register_backend("broken", ref)
    with pytest.raises(BackendUnavailable) as info:
        load_neuropod(package(tmp_path / "model.zip", "broken"))
    assert str(info.value) == message
    assert list(private_tmp.iterdir()) == []


def test_missing_framework_says_how_to_install_it(tmp_path, monkeypatch):
    # None in sys.modules makes the import fail as if torch were not installed
    monkeypatch.setitem(sys.modules, "neuropod.backends.torchscript", None)
    with pytest.raises(BackendUnavailable) as info:
        load_neuropod(package(tmp_path / "model.zip", "torchscript"))
    assert str(info.value) == (
        "The backend for platform 'torchscript' cannot be imported (import of "
        "neuropod.backends.torchscript halted; None in sys.modules); install it with: "
        "pip install 'neuropod[torch]'"
    )
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize("platform", ["", None, 3])
def test_register_backend_needs_a_platform_name(platform):
    with pytest.raises(ValueError) as info:
        register_backend(platform, EchoBackend)  # type: ignore[arg-type]
    assert str(info.value) == f"platform must be a non-empty string, got {platform!r}"


# Load options


def test_backend_options_reach_the_backend(tmp_path):
    register_backend("echo", EchoBackend)
    with load_neuropod(package(tmp_path / "model.zip", "echo"), scale=3.0, visible_gpu=0) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["x"], 3 * X)
    (backend,) = EchoBackend.instances
    assert backend.scale == 3.0
    assert backend.visible_gpu == 0


def test_unknown_option_is_an_error_naming_it(tmp_path, private_tmp):
    register_backend("echo", EchoBackend)
    path = package(tmp_path / "model.zip", "echo")
    with pytest.raises(OptionError) as info:
        load_neuropod(path, bogus=1, also_bogus=2, scale=2.0)
    assert str(info.value) == (
        "load_neuropod() got unknown option(s) 'also_bogus', 'bogus' for platform 'echo'; "
        "accepted options: visible_gpu, use_ope, require_all_inputs, scale, environment, env_cache, "
        "env_progress, worker_prefix, worker_socket, worker_python"
    )
    assert isinstance(info.value, TypeError)
    assert EchoBackend.instances == []
    assert list(private_tmp.iterdir()) == []


def test_a_declared_option_is_checked_and_passed_as_given(tmp_path):
    register_backend("typed", TypedBackend)
    path = package(tmp_path / "model.zip", "typed")
    with load_neuropod(path, threads=2):
        pass
    with load_neuropod(path):
        pass
    assert TypedBackend.given == [{"threads": 2}, {}]  # defaults are the backend's to apply
    with pytest.raises(OptionError) as info:
        load_neuropod(path, threads=0)
    assert str(info.value) == "threads must be None or an int >= 1, got 0"


def test_a_declared_option_is_checked_before_a_worker_starts(tmp_path, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr("neuropod.worker.backend.WorkerSession", refuse)
    register_backend("typed", TypedBackend)
    path = package(tmp_path / "model.zip", "typed")
    with pytest.raises(OptionError, match=r"^threads must be None or an int >= 1, got 'many'$"):
        load_neuropod(path, use_ope=True, threads="many")
    with pytest.raises(OptionError, match=r"^load_neuropod\(\) got unknown option\(s\) 'thread' for"):
        load_neuropod(path, use_ope=True, thread=1)


def test_a_backend_that_cannot_be_imported_here_leaves_its_options_to_its_worker(tmp_path):
    # It may run in an isolated environment that has it; here the worker cannot import it
    # either, and says so (not that the option is unknown).
    register_backend("elsewhere", "no_such_module_for_neuropod:Backend")
    path = package(tmp_path / "model.zip", "elsewhere")
    with pytest.raises(BackendUnavailable):
        load_neuropod(path, use_ope=True, its_option=1)
    with pytest.raises(OptionError, match="'instances'"):
        load_neuropod(path, use_ope=False, instances=2)


def test_declared_options_of_builtins_import_no_framework():
    code = (
        "import sys\n"
        "from neuropod.registry import declared_options\n"
        "for platform in ('torchscript', 'tensorflow', 'keras', 'onnx', 'jax', 'python'):\n"
        "    print(platform, declared_options(platform).names())\n"
        "heavy = {'torch', 'tensorflow', 'keras', 'onnxruntime', 'jax'} & set(sys.modules)\n"
        "print('imported:', sorted(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "torchscript ('intra_op_threads', 'inter_op_threads')"
    assert lines[3] == "onnx ('providers', 'intra_op_threads', 'inter_op_threads')"
    assert lines[5] == "python ()"
    assert lines[-1] == "imported: []"


def test_a_registered_backend_replaces_a_builtin_declaration():
    register_backend("onnx", TypedBackend)
    assert registry.declared_options("onnx") is TypedOptions


def test_undeclared_options_come_from_init():
    declaration = EchoBackend.declared_options()
    assert declaration.names() == ("scale",)
    assert EchoBackend.declared_options() is declaration
    assert MutatingBackend.declared_options().names() == ()


def test_unknown_option_of_a_builtin_backend(tmp_path):
    with pytest.raises(
        OptionError, match=r"^load_neuropod\(\) got unknown option\(s\) 'bogus' for platform 'python'"
    ):
        load_neuropod(package(tmp_path / "model.zip", "python"), bogus=True)


@pytest.mark.parametrize("visible_gpu", [True, False, -1, 1.5, "0"])
def test_visible_gpu_must_be_none_or_an_index(tmp_path, visible_gpu):
    # checked before the package is even opened
    with pytest.raises(OptionError) as info:
        load_neuropod(tmp_path / "does-not-exist.zip", visible_gpu=visible_gpu)
    assert str(info.value) == f"visible_gpu must be None (CPU) or a GPU index >= 0, got {visible_gpu!r}"


def test_visible_gpu_defaults_to_the_cpu(tmp_path):
    register_backend("echo", EchoBackend)
    with load_neuropod(package(tmp_path / "model.zip", "echo")):
        pass
    assert EchoBackend.instances[0].visible_gpu is None


def test_backend_that_fails_to_load_leaves_no_extracted_files(tmp_path, private_tmp):
    register_backend("fragile", RaisingOnLoadBackend)
    with pytest.raises(OSError, match="cannot load"):
        load_neuropod(package(tmp_path / "model.zip", "fragile"))
    assert list(private_tmp.iterdir()) == []


# The model in front of the backend


def test_backend_may_not_mutate_the_callers_dict(tmp_path):
    register_backend("mutating", MutatingBackend)
    inputs = {"x": X}
    with load_neuropod(package(tmp_path / "model.zip", "mutating")) as model:
        out = model.infer(inputs)
    assert inputs == {"x": X}
    np.testing.assert_array_equal(out["x"], X)


def test_inputs_are_validated_before_the_backend_runs(tmp_path):
    register_backend("failing", FailingBackend)
    with load_neuropod(package(tmp_path / "model.zip", "failing")) as model, pytest.raises(ValidationError):
        model.infer({"x": X.astype(np.float64)})


def test_backend_errors_become_inference_errors(tmp_path):
    register_backend("failing", FailingBackend)
    with (
        load_neuropod(package(tmp_path / "model.zip", "failing")) as model,
        pytest.raises(InferenceError) as info,
    ):
        model.infer({"x": X})
    assert str(info.value) == "Model 'echo' (failing) failed: ZeroDivisionError: boom"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert isinstance(info.value, RuntimeError)


def test_close_is_idempotent_and_closes_the_backend_once(tmp_path, private_tmp):
    register_backend("echo", EchoBackend)
    model = load_neuropod(package(tmp_path / "model.zip", "echo"))
    assert repr(model) == "<NeuropodModel 'echo' platform='echo' open>"
    model.close()
    model.close()
    (backend,) = EchoBackend.instances
    assert backend.closed == 1
    assert repr(model) == "<NeuropodModel 'echo' platform='echo' closed>"
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(ModelClosedError) as info:
        model.infer({"x": X})
    assert str(info.value) == "Model 'echo' is closed"


def test_context_manager_closes(tmp_path):
    register_backend("echo", EchoBackend)
    with load_neuropod(package(tmp_path / "model.zip", "echo")) as model:
        pass
    assert EchoBackend.instances[0].closed == 1
    with pytest.raises(ModelClosedError):
        model.infer({"x": X})


def test_allocate_and_seal_default_to_plain_arrays(tmp_path):
    register_backend("echo", EchoBackend)
    with load_neuropod(package(tmp_path / "model.zip", "echo")) as model:
        array = model.allocate("x", (3,))
        assert type(array) is np.ndarray and array.dtype == np.float32 and array.shape == (3,)
        assert model.seal("x", X) is X


def test_model_exposes_its_specs(tmp_path):
    register_backend("echo", EchoBackend)
    path = package(tmp_path / "model.zip", "echo")
    with load_neuropod(path) as model:
        assert model.inputs == SPEC
        assert model.outputs == SPEC
        assert [spec.name for spec in model.input_specs] == ["x"]
        assert model.path == path
