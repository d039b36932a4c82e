"""Models of every framework that solve one problem are interchangeable in one process."""

from __future__ import annotations

import importlib
import importlib.util
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from neuropod import load_neuropod

ADDITION_SPEC = {
    "input_spec": [
        {"name": "x", "dtype": "float32", "shape": ("batch", None)},
        {"name": "y", "dtype": "float32", "shape": ("batch", None)},
    ],
    "output_spec": [{"name": "out", "dtype": "float32", "shape": ("batch", None)}],
}

# (framework module that must be installed, platform); the builders are the conformance suite's.
FRAMEWORKS = [
    ("torch", "torchscript"),
    ("tensorflow", "tensorflow"),
    ("keras", "keras"),
    ("jax", "jax"),
    ("onnxruntime", "onnx"),
]


def _build_addition(platform: str):
    conformance = importlib.import_module("tests.test_conformance")
    kind = next(kind for kind in conformance.KINDS if kind.name == platform)
    if kind.builders_from:
        return importlib.import_module(kind.builders_from).build_addition
    return kind.build_addition


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    missing = [framework for framework, _ in FRAMEWORKS if importlib.util.find_spec(framework) is None]
    if missing:
        pytest.skip(f"needs every framework; missing: {', '.join(missing)}")
    built = {}
    for _, platform in FRAMEWORKS:
        root = tmp_path_factory.mktemp(platform)
        path = root / "addition.zip"
        (root / "work").mkdir()
        _build_addition(platform)(path, root / "work", **ADDITION_SPEC)
        built[platform] = path
    return built


def test_every_framework_runs_interleaved_in_one_process(packages: dict[str, Path]) -> None:
    rng = np.random.default_rng(0)
    with ExitStack() as stack:
        models = {name: stack.enter_context(load_neuropod(path)) for name, path in packages.items()}
        assert {model.platform for model in models.values()} == {
            "torchscript",
            "tensorflow",
            "keras",
            "jax",
            "onnx",
        }
        for batch in (1, 3, 7, 3):
            x = rng.random((batch, 5), dtype=np.float32)
            y = rng.random((batch, 5), dtype=np.float32)
            # One loop, no knowledge of which framework is behind each model.
            for name, model in models.items():
                out = model.infer({"x": x, "y": y})
                assert set(out) == {"out"}, name
                np.testing.assert_allclose(out["out"], x + y, rtol=1e-6, err_msg=name)
