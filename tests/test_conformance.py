"""One suite for every backend: the same models, the same mistakes, the same answers.

Each backend contributes a ``BackendKind``: the platform whose reference models it builds
(``tests.models``: the addition and strings models, each with its platform's own packager),
and how to load a package. To add a backend (TensorFlow, JAX, ONNX, an out-of-process worker,
a remote client), append one ``BackendKind`` to ``KINDS``; every test below then runs against
it. A kind whose framework is not installed is skipped.

The reference models:
- addition: ``out = x + y`` (float32, shape ``("batch", None)``); ``y`` is optional and
  ``out = x`` without it.
- strings: ``out[i] = "<" + s[i] + ">"`` (string, shape ``("batch",)``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import InferenceError, ModelClosedError, NeuropodModel, TestDataMismatch, ValidationError
from neuropod.loader import load_neuropod
from neuropod.utils.eval_utils import load_test_data
from tests.models import (
    ADDITION_SPEC,
    FIXED_SPEC,
    STRING_SPEC,
    Builder,
    addition_builder,
    strings_builder,
)


@dataclass(frozen=True)
class BackendKind:
    """How the suite builds and opens models of one backend.

    Attributes:
        name: the test id.
        platform: the platform whose reference models (``tests.models``) the kind runs.
        load: opens a package; takes ``load_neuropod``'s options.
        exact: whether outputs are the model's results (``False``: random placeholder
            outputs, of which only type and shape are checked).
        requires: modules that must be importable, else the kind is skipped.
    """

    name: str
    platform: str
    load: Callable[..., NeuropodModel] = load_neuropod
    exact: bool = True
    requires: tuple[str, ...] = ()

    @property
    def build_addition(self) -> Builder:
        return addition_builder(self.platform)

    @property
    def build_strings(self) -> Builder | None:
        return strings_builder(self.platform)


KINDS = [
    BackendKind("torchscript", "torchscript", requires=("torch",)),
    BackendKind("python", "python"),
    BackendKind("pytorch", "pytorch", requires=("torch",)),
    BackendKind("placeholder", "placeholder", exact=False),
    BackendKind("tensorflow", "tensorflow", requires=("tensorflow",)),
    BackendKind("keras", "keras", requires=("keras",)),
    BackendKind("jax", "jax", requires=("jax",)),
    BackendKind("onnx", "onnx", requires=("onnx", "onnxruntime")),
]

# The same models again, each run in worker processes of its own. (The Keras models' classes
# reach the worker as code inside their packages: see tests/models/keras.py.)
KINDS += [
    dataclasses.replace(kind, name=f"{kind.name}-ope", load=functools.partial(load_neuropod, use_ope=True))
    for kind in list(KINDS)
]


# --- Fixtures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Packages:
    zip: Path
    directory: Path
    fixed: Path
    strings: Path | None


class Scratch:
    """Fresh neuropod paths and work directories under one temporary directory."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def build(self, builder: Builder, name: str, spec: dict[str, Any], **common: Any) -> Path:
        self.count += 1
        workdir = self.root / f"{name}-{self.count}-work"
        workdir.mkdir()
        path = self.root / f"{name}-{self.count}"
        builder(path, workdir, **spec, **common)
        return path


@pytest.fixture(scope="module", params=KINDS, ids=lambda kind: kind.name)
def kind(request: pytest.FixtureRequest) -> BackendKind:
    kind: BackendKind = request.param
    missing = [name for name in kind.requires if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{kind.name} needs {', '.join(missing)}")
    return kind


@pytest.fixture(scope="module")
def packages(kind: BackendKind, tmp_path_factory: pytest.TempPathFactory) -> Packages:
    scratch = Scratch(tmp_path_factory.mktemp(kind.name))
    return Packages(
        zip=scratch.build(kind.build_addition, "addition", ADDITION_SPEC),
        directory=scratch.build(kind.build_addition, "addition", ADDITION_SPEC, package_as_zip=False),
        fixed=scratch.build(kind.build_addition, "fixed", FIXED_SPEC),
        strings=None
        if kind.build_strings is None
        else scratch.build(kind.build_strings, "strings", STRING_SPEC),
    )


@pytest.fixture(scope="module")
def model(kind: BackendKind, packages: Packages):
    with kind.load(packages.zip) as opened:
        yield opened


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    return Scratch(tmp_path)


def _xy(batch: int = 2, width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(batch * width, dtype=np.float32).reshape(batch, width)
    return x, np.full((batch, width), 0.5, dtype=np.float32)


def _check_addition(kind: BackendKind, out: dict[str, np.ndarray], expected: np.ndarray) -> None:
    assert set(out) == {"out"}
    assert out["out"].dtype == np.float32
    if kind.exact:
        np.testing.assert_array_equal(out["out"], expected)
    else:
        assert out["out"].shape[0] == expected.shape[0]
        assert out["out"].ndim == 2


# --- Running -----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["zip", "directory"])
def test_addition(kind: BackendKind, packages: Packages, form: str) -> None:
    x, y = _xy()
    with kind.load(getattr(packages, form)) as model:
        _check_addition(kind, model.infer({"x": x, "y": y}), x + y)
        # a second call on the same model, with another batch size
        x, y = _xy(batch=5)
        _check_addition(kind, model.infer({"y": y, "x": x}), x + y)


def test_infer_stream_yields_the_one_response(kind: BackendKind, model: NeuropodModel) -> None:
    x, y = _xy()
    assert not model.decoupled
    [out] = model.infer_stream({"x": x, "y": y})
    _check_addition(kind, out, x + y)


def test_metadata(kind: BackendKind, model: NeuropodModel, packages: Packages) -> None:
    assert model.name == packages.zip.name
    assert model.inputs == [
        {"name": "x", "dtype": "float32", "shape": ["batch", None]},
        {"name": "y", "dtype": "float32", "shape": ["batch", None]},
    ]
    assert model.outputs == [{"name": "out", "dtype": "float32", "shape": ["batch", None]}]
    assert isinstance(model.platform, str) and model.platform


def test_missing_input_is_allowed_by_default(kind: BackendKind, model: NeuropodModel) -> None:
    x, _ = _xy()
    _check_addition(kind, model.infer({"x": x}), x)


def test_require_all_inputs(kind: BackendKind, packages: Packages) -> None:
    x, y = _xy()
    with kind.load(packages.zip, require_all_inputs=True) as model:
        with pytest.raises(ValidationError, match="Tensor 'y' in the input spec is required"):
            model.infer({"x": x})
        _check_addition(kind, model.infer({"x": x, "y": y}), x + y)


@pytest.mark.parametrize("dtype", [str, object])
def test_string_round_trip(kind: BackendKind, packages: Packages, dtype: type) -> None:
    if packages.strings is None:
        pytest.skip(f"{kind.name} has no string tensors")
    words = np.array(["héllo", "日本語", "", "a b"], dtype=dtype)
    with kind.load(packages.strings) as model:
        out = model.infer({"s": words})
    assert set(out) == {"out"}
    assert out["out"].dtype.kind == "U"
    assert out["out"].shape == (4,)
    if kind.exact:
        assert out["out"].tolist() == ["<héllo>", "<日本語>", "<>", "<a b>"]


# --- Validation, the same for every backend ------------------------------------------------


def _assert_validation_error(model: NeuropodModel, inputs: dict[str, np.ndarray], *fragments: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.infer(inputs)
    # code written for the original catches either
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_wrong_dtype(model: NeuropodModel) -> None:
    x, y = _xy()
    _assert_validation_error(
        model,
        {"x": x.astype(np.float64), "y": y},
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type float64",
    )


def test_wrong_rank(model: NeuropodModel) -> None:
    x, y = _xy()
    _assert_validation_error(
        model,
        {"x": x, "y": y[None]},
        "Tensor 'y' in the input spec is expected to have 2 dimensions, but had 3",
    )


def test_fixed_dim(kind: BackendKind, packages: Packages) -> None:
    x, y = _xy(width=3)
    with kind.load(packages.fixed) as model:
        _assert_validation_error(
            model,
            {"x": x, "y": y},
            "Dim 1 of tensor 'x' in the input spec is expected to be of size 2, but was of size 3",
        )
        x, y = _xy(width=2)
        _check_addition(kind, model.infer({"x": x, "y": y}), x + y)


def test_symbol_mismatch(model: NeuropodModel) -> None:
    x, _ = _xy(batch=2)
    _, y = _xy(batch=3)
    _assert_validation_error(
        model,
        {"x": x, "y": y},
        "All dims with symbol 'batch' should be the same size",
        "Dim 0 of tensor 'y'",
        "size 2",
        "size 3",
    )


def test_unknown_name(model: NeuropodModel) -> None:
    x, y = _xy()
    _assert_validation_error(
        model, {"x": x, "y": y, "z": y}, "Tensor name(s) 'z' are not found in the input spec"
    )


def test_validation_order_dtype_before_unknown_name(model: NeuropodModel) -> None:
    x, y = _xy()
    _assert_validation_error(model, {"x": x.astype(np.int64), "z": y}, "expected to be of type float32")


def test_caller_inputs_are_not_modified(kind: BackendKind, model: NeuropodModel, packages: Packages) -> None:
    x, y = _xy()
    inputs = {"x": x, "y": y}
    before = dict(inputs)
    model.infer(inputs)
    assert inputs.keys() == before.keys()
    assert all(inputs[name] is before[name] for name in inputs)
    np.testing.assert_array_equal(x, _xy()[0])
    np.testing.assert_array_equal(y, _xy()[1])
    if packages.strings is not None:
        words = np.array(["a", "b"])
        string_inputs = {"s": words}
        with kind.load(packages.strings) as strings:
            strings.infer(string_inputs)
        assert string_inputs["s"] is words
        assert words.dtype == np.dtype("<U1") and words.tolist() == ["a", "b"]


# --- Lifetime ------------------------------------------------------------------------------


def test_close_is_idempotent_and_final(kind: BackendKind, packages: Packages) -> None:
    x, y = _xy()
    model = kind.load(packages.zip)
    model.infer({"x": x, "y": y})
    model.close()
    model.close()
    with pytest.raises(ModelClosedError, match="closed"):
        model.infer({"x": x, "y": y})


def test_context_manager(kind: BackendKind, packages: Packages) -> None:
    x, y = _xy()
    with kind.load(packages.directory) as model:
        _check_addition(kind, model.infer({"x": x, "y": y}), x + y)
    with pytest.raises(ModelClosedError):
        model.infer({"x": x, "y": y})
    assert packages.directory.is_dir()  # closing a directory package leaves it in place


# --- The self-test at packaging ------------------------------------------------------------


def test_self_test_runs_and_persists_test_data(kind: BackendKind, scratch: Scratch) -> None:
    x, y = _xy()
    expected = {"out": x + y} if kind.exact else None
    path = scratch.build(
        kind.build_addition,
        "selftest",
        ADDITION_SPEC,
        package_as_zip=False,
        test_input_data={"x": x, "y": y},
        test_expected_out=expected,
    )
    data = load_test_data(path)
    assert data is not None
    assert set(data["test_input"]) == {"x", "y"}
    np.testing.assert_array_equal(data["test_input"]["x"], x)
    if kind.exact:
        np.testing.assert_array_equal(data["test_output"]["out"], x + y)
    else:
        assert data["test_output"] is None


def test_self_test_mismatch_fails_and_leaves_nothing(kind: BackendKind, scratch: Scratch) -> None:
    x, y = _xy()
    # Placeholder outputs are random: a shape no output can have is the sure mismatch.
    wrong = x - y if kind.exact else np.zeros((7, 7), np.float32)
    with pytest.raises(TestDataMismatch, match="out does not match expected value!"):
        scratch.build(
            kind.build_addition,
            "mismatch",
            ADDITION_SPEC,
            test_input_data={"x": x, "y": y},
            test_expected_out={"out": wrong},
        )
    # neither the package nor its staging directory is left behind
    assert [p.name for p in scratch.root.iterdir()] == [f"mismatch-{scratch.count}-work"]


def test_self_test_without_persisting(kind: BackendKind, scratch: Scratch) -> None:
    x, y = _xy()
    path = scratch.build(
        kind.build_addition,
        "unpersisted",
        ADDITION_SPEC,
        package_as_zip=False,
        test_input_data={"x": x, "y": y},
        persist_test_data=False,
    )
    assert load_test_data(path) is None


def test_self_test_failure_in_the_model_is_an_inference_error(kind: BackendKind, scratch: Scratch) -> None:
    if not kind.exact:
        pytest.skip("placeholder outputs do not depend on the inputs")
    x, _ = _xy(batch=2)
    _, y = _xy(batch=2, width=4)  # x + y cannot broadcast; the spec allows it ("batch", None)
    with pytest.raises(InferenceError) as info:
        scratch.build(kind.build_addition, "broken", ADDITION_SPEC, test_input_data={"x": x, "y": y})
    assert info.value.__cause__ is not None
    assert [p.name for p in scratch.root.iterdir()] == [f"broken-{scratch.count}-work"]
