"""Shared test settings and fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.models import ADDITION_SPEC, build_addition

# Keep framework start-up quiet and deterministic in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Property-based tests (tests/*/test_properties.py): a bounded run by default, so that the whole
# suite stays fast; HYPOTHESIS_PROFILE=thorough runs 25 times as many examples to hunt bugs
# (with --timeout 0: so many outlive the 300 s limit per test).
# No deadline: the machine running the suite may be loaded, and a slow example is not a bug.
# Tests that set a fixed max_examples keep it in either profile (tests.properties.examples scales).
_HYPOTHESIS_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("neuropod", max_examples=200, **_HYPOTHESIS_SETTINGS)
settings.register_profile("thorough", max_examples=5000, **_HYPOTHESIS_SETTINGS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "neuropod"))


@pytest.fixture(scope="session")
def addition_package(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Builds the addition model (``out = x + y``, ``y`` optional) into a fresh folder.

    ``addition_package(platform="python", name="addition.zip", spec=ADDITION_SPEC, **options)``
    returns the package's path. ``spec`` is ``input_spec``/``output_spec`` (see
    ``tests.models.addition_spec`` for other dtypes and shapes); ``options`` go to the
    platform's packager, e.g. ``package_as_zip=False`` for a folder.
    """

    def build(
        platform: str = "python",
        name: str = "addition.zip",
        spec: dict[str, Any] = ADDITION_SPEC,
        **options: Any,
    ) -> Path:
        root = tmp_path_factory.mktemp(f"{platform}-addition")
        workdir = root / "work"
        workdir.mkdir()
        path = root / name
        build_addition(platform, path, workdir, **spec, **options)
        return path

    return build
