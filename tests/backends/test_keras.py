"""The Keras backend and packager: spec inference, input and output structures, Keras backends.

Keras reads ``KERAS_BACKEND`` once, when it is first imported: this process runs whichever
backend that gave (TensorFlow by default), and the JAX and PyTorch backends run in subprocesses.
The reference models (``tests/models/keras.py``) are subclassed models whose classes live in
``keras_custom_models``, which every package ships, so that they load in any process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import BackendUnavailable, InferenceError, OptionError, PackageError
from neuropod.loader import load_neuropod
from neuropod.packagers import create_keras_neuropod
from tests.models import ADDITION_SPEC, STRING_SPEC

keras = pytest.importorskip("keras")
from tests.models.keras import CUSTOM_CODE, ON_TENSORFLOW, build_strings  # noqa: E402
from tests.models.keras_custom_models import KerasAddition, Scale  # noqa: E402

# Saving a model with weights calls np.array(variable), and Keras 3.15's variables implement
# __array__ without numpy 2's `copy` keyword (on every Keras backend).
ARRAY_COPY_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
pytestmark = pytest.mark.filterwarnings(ARRAY_COPY_WARNING + r":keras\.src\.backend\.\w+\.core")

XY_SPEC = ADDITION_SPEC["input_spec"]
OUT_SPEC = ADDITION_SPEC["output_spec"]


# --- Models ------------------------------------------------------------------------------


def functional_addition() -> Any:
    x = keras.Input(shape=(None,), name="x")
    y = keras.Input(shape=(None,), name="y")
    return keras.Model([x, y], keras.layers.Add(name="out")([x, y]))


def dense_model() -> Any:
    """``scores = features @ ones(4, 2)``: a model with weights."""
    features = keras.Input(shape=(4,), name="features")
    layer = keras.layers.Dense(2, name="scores", kernel_initializer="ones", bias_initializer="zeros")
    return keras.Model(features, layer(features))


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keras")


@pytest.fixture(scope="module")
def functional(root: Path) -> Path:
    path = root / "functional.zip"
    create_keras_neuropod(neuropod_path=path, model_name="functional", model=functional_addition())
    return path


@pytest.fixture(scope="module")
def dense(root: Path) -> Path:
    path = root / "dense.zip"
    create_keras_neuropod(neuropod_path=path, model_name="dense", model=dense_model())
    return path


def xy(batch: int = 2, width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(batch * width, dtype=np.float32).reshape(batch, width)
    return x, np.full((batch, width), 0.5, np.float32)


# --- Specs -------------------------------------------------------------------------------


def test_specs_are_inferred_from_the_model(functional: Path, dense: Path) -> None:
    with load_neuropod(functional) as model:
        assert model.platform == "keras"
        assert model.inputs == [
            {"name": "x", "dtype": "float32", "shape": ["batch_size", None]},
            {"name": "y", "dtype": "float32", "shape": ["batch_size", None]},
        ]
        assert model.outputs == [{"name": "out", "dtype": "float32", "shape": ["batch_size", None]}]
        x, y = xy()
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)
    with load_neuropod(dense) as model:
        assert model.inputs == [{"name": "features", "dtype": "float32", "shape": ["batch_size", 4]}]
        assert model.outputs == [{"name": "scores", "dtype": "float32", "shape": ["batch_size", 2]}]
        features = np.arange(12, dtype=np.float32).reshape(3, 4)
        out = model.infer({"features": features})["scores"]
        np.testing.assert_allclose(out, np.repeat(features.sum(axis=1, keepdims=True), 2, axis=1))


def test_dict_inputs_and_outputs_are_named_by_their_keys(root: Path) -> None:
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(3,), name="b")
    model = keras.Model(
        {"a": a, "b": b}, {"total": keras.layers.Add()([a, b]), "gap": keras.layers.Subtract()([a, b])}
    )
    path = root / "dicts.zip"
    x, y = xy()
    create_keras_neuropod(
        neuropod_path=path,
        model_name="dicts",
        model=model,
        test_input_data={"a": x, "b": y},
        test_expected_out={"total": x + y, "gap": x - y},
    )
    with load_neuropod(path) as loaded:
        assert [spec["name"] for spec in loaded.inputs] == ["a", "b"]
        assert sorted(spec["name"] for spec in loaded.outputs) == ["gap", "total"]


def test_list_outputs_are_named_by_their_layers(root: Path) -> None:
    x = keras.Input(shape=(3,), name="x")
    model = keras.Model(x, [keras.layers.Identity(name="same")(x), keras.layers.ReLU(name="relu")(x)])
    path = root / "list-out.zip"
    create_keras_neuropod(neuropod_path=path, model_name="list-out", model=model)
    with load_neuropod(path) as loaded:
        out = loaded.infer({"x": np.array([[-1.0, 0.0, 2.0]], np.float32)})
    assert set(out) == {"same", "relu"}
    np.testing.assert_array_equal(out["relu"], [[0.0, 0.0, 2.0]])


def test_sequential_model(root: Path) -> None:
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(1, name="logit")])
    path = root / "sequential.zip"
    features = np.ones((2, 4), np.float32)
    create_keras_neuropod(neuropod_path=path, model_name="seq", model=model)
    with load_neuropod(path) as loaded:
        assert [spec["name"] for spec in loaded.outputs] == ["logit"]
        np.testing.assert_allclose(loaded.infer({"features": features})["logit"], model(features), rtol=1e-6)


def test_one_input_and_output_may_take_the_spec_names(root: Path) -> None:
    path = root / "renamed.zip"
    spec_in = [{"name": "inputs", "dtype": "float32", "shape": (None, 4)}]
    spec_out = [{"name": "outputs", "dtype": "float32", "shape": (None, 2)}]
    create_keras_neuropod(
        neuropod_path=path,
        model_name="renamed",
        model=dense_model(),
        input_spec=spec_in,
        output_spec=spec_out,
    )
    with load_neuropod(path) as loaded:
        out = loaded.infer({"inputs": np.ones((1, 4), np.float32)})
    np.testing.assert_array_equal(out["outputs"], [[4.0, 4.0]])


def test_spec_names_must_match_the_model(root: Path) -> None:
    wrong = [{**XY_SPEC[0], "name": "a"}, XY_SPEC[1]]
    with pytest.raises(PackageError) as info:
        create_keras_neuropod(
            neuropod_path=root / "wrong.zip",
            model_name="wrong",
            model=functional_addition(),
            input_spec=wrong,
        )
    assert str(info.value) == (
        "The model's inputs are ['x', 'y'], but the input spec names ['a', 'y']: give the same names "
        "(or one tensor on each side)"
    )
    assert not (root / "wrong.zip").exists()


def test_subclassed_model_needs_specs(root: Path) -> None:
    with pytest.raises(PackageError, match=r"has no defined inputs .* pass input_spec and output_spec"):
        create_keras_neuropod(neuropod_path=root / "sub.zip", model_name="sub", model=KerasAddition())


def test_subclassed_model_with_an_optional_input(addition_package: Callable[..., Path]) -> None:
    x, y = xy()
    with load_neuropod(addition_package("keras", name="keras_addition.zip")) as model:
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)
        np.testing.assert_array_equal(model.infer({"x": x})["out"], x)


def test_functional_model_needs_every_input(functional: Path) -> None:
    x, _ = xy()
    with load_neuropod(functional) as model, pytest.raises(InferenceError, match="missing: 'y'"):
        model.infer({"x": x})


# --- Custom objects shipped as code ------------------------------------------------------


def scaled_model() -> Any:
    """``scaled = x * 3``, through the custom layer ``Scale``."""
    x = keras.Input(shape=(None,), name="x")
    return keras.Model(x, Scale(3.0, name="scaled")(x))


@pytest.fixture(scope="module")
def scaled(root: Path) -> Path:
    path = root / "scaled.zip"
    create_keras_neuropod(neuropod_path=path, model_name="scaled", model=scaled_model(), **CUSTOM_CODE)
    return path


FRESH_PROCESS = """
import importlib.util, json, sys
import numpy as np
from neuropod import load_neuropod

assert importlib.util.find_spec("keras_custom_models") is None, "the test module is importable"
with load_neuropod(sys.argv[1]) as model:
    out = model.infer({"x": np.arange(4, dtype=np.float32).reshape(2, 2)})["scaled"]
print(json.dumps({"out": out.tolist(), "modules": [m for m in sys.modules if "keras_custom_models" in m]}))
"""


def namespace_state() -> tuple[set[str], int]:
    return {name for name in sys.modules if name.startswith("_neuropod_code_")}, len(sys.meta_path)


def test_custom_layer_loads_in_a_fresh_process(scaled: Path, tmp_path: Path) -> None:
    # Run from an empty directory: keras_custom_models is importable from nowhere but the package.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(FRESH_PROCESS), str(scaled)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["out"] == [[0.0, 3.0], [6.0, 9.0]]
    # imported under the package's private name only, and forgotten when the model closed
    assert result["modules"] == []


def test_custom_layer_loads_in_a_worker(scaled: Path) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with load_neuropod(scaled, use_ope=True) as model:
        np.testing.assert_array_equal(model.infer({"x": x})["scaled"], x * 3)


def test_loading_leaves_the_registry_and_modules_of_the_process_alone(
    scaled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.models import keras_custom_models

    # The process holds a module under the name that the package's code uses.
    monkeypatch.setitem(sys.modules, "keras_custom_models", keras_custom_models)
    registry = keras.saving.get_custom_objects()
    before = dict(registry)
    state = namespace_state()
    x = np.ones((1, 2), np.float32)
    with load_neuropod(scaled) as model:
        np.testing.assert_array_equal(model.infer({"x": x})["scaled"], x * 3)
        assert registry.keys() == before.keys() and all(registry[k] is v for k, v in before.items())
        assert sys.modules["keras_custom_models"] is keras_custom_models
    assert namespace_state() == state


SHIFT = """
import keras


@keras.saving.register_keras_serializable(package="neuropod_tests_shift")
class Shift(keras.layers.Layer):
    def call(self, inputs):
        return inputs + {amount}
"""


def test_packages_ship_different_classes_of_one_registered_name(tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="neuropod_tests_shift")
    class Shift(keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            return inputs + 100.0

    try:
        x = keras.Input(shape=(2,), name="x")
        model = keras.Model(x, Shift(name="shifted")(x))
        paths = []
        for amount in (1, 2):
            code = tmp_path / f"code{amount}"
            (code / "shift").mkdir(parents=True)
            (code / "shift" / "__init__.py").write_text(SHIFT.format(amount=amount))
            paths.append(tmp_path / f"shift{amount}.zip")
            create_keras_neuropod(
                neuropod_path=paths[-1],
                model_name=f"shift{amount}",
                model=model,
                # The second ships its whole python_root ("" in dirs_to_package, as the original).
                code_path_spec=[
                    {"python_root": str(code), "dirs_to_package": ["shift" if amount == 1 else ""]}
                ],
                custom_object_modules=["shift"],
            )
        zeros = {"x": np.zeros((1, 2), np.float32)}
        with load_neuropod(paths[0]) as one, load_neuropod(paths[1]) as two:
            assert one.infer(zeros)["shifted"].tolist() == [[1.0, 1.0]]
            assert two.infer(zeros)["shifted"].tolist() == [[2.0, 2.0]]
    finally:
        keras.saving.get_custom_objects().pop("neuropod_tests_shift>Shift", None)


@pytest.mark.parametrize(
    ("code_path_spec", "modules", "message"),
    [
        pytest.param(
            [{"python_root": "ROOT", "dirs_to_package": ["absent"]}],
            ["absent"],
            r"Code directory .*absent \(from python_root .*\) does not exist",
            id="no-code-directory",
        ),
        pytest.param(
            [{"python_root": "ROOT", "dirs_to_package": [""]}],
            ["absent"],
            r"custom_object_modules names 'absent', which is neither in the code of code_path_spec "
            r"\(its top-level packages: present\) nor installed",
            id="whole-root-without-the-module",
        ),
        pytest.param(
            CUSTOM_CODE["code_path_spec"],
            [],
            r"code_path_spec ships code, but custom_object_modules names no module to import at load",
            id="code-without-modules",
        ),
        pytest.param(
            (),
            ["neuropod_no_such_layers"],
            r"custom_object_modules names 'neuropod_no_such_layers', which is neither in the code of "
            r"code_path_spec \(its top-level packages: none\) nor installed",
            id="module-nowhere",
        ),
        pytest.param(
            CUSTOM_CODE["code_path_spec"],
            ["keras_custom_models.absent"],
            r"custom_object_modules names 'keras_custom_models.absent', which the code of code_path_spec "
            r"does not hold",
            id="module-not-in-code",
        ),
        pytest.param(
            (),
            "keras_custom_models",
            r"custom_object_modules must be a list of module names such as \['my_layers'\], "
            r"got 'keras_custom_models'",
            id="one-string",
        ),
    ],
)
def test_custom_object_packaging_errors(
    tmp_path: Path, code_path_spec: Any, modules: Any, message: str
) -> None:
    (tmp_path / "code" / "present").mkdir(parents=True)
    code_path_spec = [
        {**spec, "python_root": str(tmp_path / "code")} if spec["python_root"] == "ROOT" else spec
        for spec in code_path_spec
    ]
    with pytest.raises(PackageError, match=message):
        create_keras_neuropod(
            neuropod_path=tmp_path / "bad.zip",
            model_name="bad",
            model=scaled_model(),
            code_path_spec=code_path_spec,
            custom_object_modules=modules,
        )
    assert not (tmp_path / "bad.zip").exists()


def package_with_module(tmp_path: Path, name: str, source: str) -> Path:
    """The dense model, packaged with a custom object module ``name`` holding ``source``."""
    (tmp_path / "code" / name).mkdir(parents=True)
    (tmp_path / "code" / name / "__init__.py").write_text(source)
    path = tmp_path / f"{name}.zip"
    create_keras_neuropod(
        neuropod_path=path,
        model_name=name,
        model=dense_model(),
        code_path_spec=[{"python_root": str(tmp_path / "code"), "dirs_to_package": [name]}],
        custom_object_modules=[name],
    )
    return path


@pytest.mark.parametrize("use_ope", [False, True], ids=["in-process", "ope"])
def test_custom_object_module_that_raises(tmp_path: Path, use_ope: bool) -> None:
    path = package_with_module(tmp_path, "broken_layers", "raise RuntimeError('no layers today')\n")
    state = namespace_state()
    with pytest.raises(PackageError) as info:
        load_neuropod(path, use_ope=use_ope)
    assert (
        f"{path}: custom_object_modules: importing broken_layers failed: RuntimeError: no layers today"
        in str(info.value)
    )
    if not use_ope:
        assert isinstance(info.value.__cause__, RuntimeError)
        assert namespace_state() == state  # a failed load leaves nothing behind


def test_custom_object_module_with_a_missing_dependency(tmp_path: Path) -> None:
    path = package_with_module(tmp_path, "needy_layers", "import neuropod_no_such_dependency\n")
    with pytest.raises(
        BackendUnavailable, match=r"cannot import what it needs .*neuropod_no_such_dependency"
    ):
        load_neuropod(path)


def test_unregistered_custom_class_names_the_fix(tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="neuropod_tests_unshipped")
    class Double(keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            return inputs * 2.0

    x = keras.Input(shape=(2,), name="x")
    path = tmp_path / "unshipped.zip"
    create_keras_neuropod(neuropod_path=path, model_name="unshipped", model=keras.Model(x, Double()(x)))
    # as in a process that never imported the class
    keras.saving.get_custom_objects().pop("neuropod_tests_unshipped>Double")
    with pytest.raises(PackageError) as info:
        load_neuropod(path)
    message = str(info.value)
    assert message.startswith(
        f"{path}: cannot load 0/data/model.keras (package the code that registers the model's custom "
        "classes with create_keras_neuropod(code_path_spec=..., custom_object_modules=[...])): "
    )
    assert "Could not locate class 'Double'" in message


# --- The original's forms ----------------------------------------------------------------


def test_tf1_session_form_needs_tf_keras(root: Path) -> None:
    with pytest.raises(PackageError) as info:
        create_keras_neuropod(
            neuropod_path=root / "sess.zip", model_name="sess", sess=object(), model=dense_model()
        )
    message = str(info.value)
    assert "TF1 session form" in message and "tf-keras" in message and keras.__version__ in message


def test_model_must_be_a_keras_model(root: Path) -> None:
    with pytest.raises(PackageError, match=r"model must be a keras.Model .*, got function"):
        create_keras_neuropod(neuropod_path=root / "fn.zip", model_name="fn", model=lambda x: x)


# --- Tensors -----------------------------------------------------------------------------


def test_awkward_inputs(functional: Path) -> None:
    x, y = xy(4, 6)
    readonly = y.copy()
    readonly.flags.writeable = False
    with load_neuropod(functional) as model:
        # (not an empty batch: Keras's Add fails on one, on its TensorFlow backend)
        for a, b in [(x, readonly), (x[:, ::2], readonly[:, :3])]:
            np.testing.assert_array_equal(model.infer({"x": a, "y": b})["out"], a + b)


@pytest.mark.skipif(not ON_TENSORFLOW, reason="strings need the TensorFlow backend of Keras")
@pytest.mark.parametrize("dtype", [str, object])
def test_strings(tmp_path: Path, dtype: type) -> None:
    assert build_strings is not None
    path = tmp_path / "keras_strings.zip"
    build_strings(path, tmp_path, **STRING_SPEC)
    with load_neuropod(path) as model:
        out = model.infer({"s": np.array(["héllo", "日本語", ""], dtype=dtype)})["out"]
    assert out.dtype.kind == "U"
    assert out.tolist() == ["<héllo>", "<日本語>", "<>"]


# --- Load options ------------------------------------------------------------------------


@pytest.mark.skipif(not ON_TENSORFLOW, reason="thread options belong to the TensorFlow backend")
def test_thread_options_after_tensorflow_started(functional: Path) -> None:
    import tensorflow as tf

    current = tf.config.threading.get_inter_op_parallelism_threads()
    with load_neuropod(functional, inter_op_threads=current):
        pass
    with pytest.raises(OptionError, match="inter_op_threads=5 cannot be applied"):
        load_neuropod(functional, inter_op_threads=5)


def test_visible_gpu_without_a_gpu_runs_on_the_cpu(
    functional: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if keras.distribution.list_devices("gpu"):
        pytest.skip("Keras sees a GPU")
    x, y = xy()
    with caplog.at_level(logging.WARNING), load_neuropod(functional, visible_gpu=0) as model:
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)
    assert "Keras sees no GPU; running on the CPU" in caplog.text


# --- Keras backends ----------------------------------------------------------------------

OTHER_BACKEND = """
import json, sys
from pathlib import Path
import numpy as np
import keras
from neuropod import OptionError, load_neuropod
from neuropod.packagers import create_keras_neuropod

assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
result = {}
features = np.arange(8, dtype=np.float32).reshape(2, 4)
with load_neuropod(sys.argv[2]) as model:  # packaged on another backend
    result["foreign"] = model.infer({"features": features})["scores"].tolist()

inputs = keras.Input(shape=(4,), name="features")
layer = keras.layers.Dense(2, name="scores", kernel_initializer="ones", bias_initializer="zeros")
path = Path(sys.argv[3]) / f"{sys.argv[1]}.zip"
create_keras_neuropod(
    neuropod_path=path,
    model_name="native",
    model=keras.Model(inputs, layer(inputs)),
    test_input_data={"features": features},
    test_expected_out={"scores": np.repeat(features.sum(axis=1, keepdims=True), 2, axis=1)},
)
with load_neuropod(path) as model:
    result["native"] = model.infer({"features": features})["scores"].tolist()
    result["inputs"] = model.inputs
try:
    load_neuropod(path, intra_op_threads=1)
except OptionError as exc:
    result["threads"] = str(exc)
print(json.dumps(result))
"""


def run_on_backend(backend: str, package: Path, workdir: Path) -> dict[str, Any]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [
            sys.executable,
            *("-W", "error", "-W", f"{ARRAY_COPY_WARNING}:keras.src.backend.{backend}.core"),
            *("-c", textwrap.dedent(OTHER_BACKEND), backend, str(package), str(workdir)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_keras_backends(backend: str, dense: Path, tmp_path: Path) -> None:
    pytest.importorskip(backend)
    result = run_on_backend(backend, dense, tmp_path)
    expected = [[6.0, 6.0], [22.0, 22.0]]
    assert result["foreign"] == expected
    assert result["native"] == expected
    assert result["inputs"] == [{"name": "features", "dtype": "float32", "shape": ["batch_size", 4]}]
    message = result["threads"]
    assert f"apply to the TensorFlow backend of Keras, but this process runs Keras on '{backend}'" in message
    # and the package written there runs here
    with load_neuropod(tmp_path / f"{backend}.zip") as model:
        out = model.infer({"features": np.arange(8, dtype=np.float32).reshape(2, 4)})
    assert out["scores"].tolist() == expected
