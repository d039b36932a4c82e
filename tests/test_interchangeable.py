"""Models of every framework that solve one problem are interchangeable in one process."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from neuropod import load_neuropod

# (framework module that must be installed, platform); the models are tests.models' addition.
FRAMEWORKS = [
    ("torch", "torchscript"),
    ("tensorflow", "tensorflow"),
    ("keras", "keras"),
    ("jax", "jax"),
    ("onnxruntime", "onnx"),
]


@pytest.fixture(scope="module")
def packages(addition_package: Callable[..., Path]) -> dict[str, Path]:
    missing = [framework for framework, _ in FRAMEWORKS if importlib.util.find_spec(framework) is None]
    if missing:
        pytest.skip(f"needs every framework; missing: {', '.join(missing)}")
    return {platform: addition_package(platform) for _, platform in FRAMEWORKS}


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
