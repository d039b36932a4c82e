"""The one platform table, and the registry and version selection that read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuropod import registry
from neuropod.environments.versions import PLATFORM_DISTRIBUTIONS
from neuropod.platforms import BUILTIN_PLATFORMS, Platform


def test_every_row_is_keyed_by_its_name_and_names_a_backend_class():
    for name, platform in BUILTIN_PLATFORMS.items():
        assert platform.name == name
        module, _, cls = platform.backend.partition(":")
        assert module.startswith("neuropod.backends.") and cls.endswith("Backend")


def test_the_registry_and_version_selection_read_the_table():
    assert {name: p.backend for name, p in BUILTIN_PLATFORMS.items()} == registry.BUILTIN_BACKENDS
    assert {name: p.framework for name, p in BUILTIN_PLATFORMS.items()} == registry.FRAMEWORK_MODULES
    assert {name: p.extra for name, p in BUILTIN_PLATFORMS.items() if p.extra} == registry.EXTRAS
    assert {name: p.distributions for name, p in BUILTIN_PLATFORMS.items()} == PLATFORM_DISTRIBUTIONS


def test_the_python_platform_has_no_framework():
    assert BUILTIN_PLATFORMS["python"] == Platform("python", "neuropod.backends.python:PythonBackend")


def test_every_extra_is_declared_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert {p.extra for p in BUILTIN_PLATFORMS.values() if p.extra} <= set(extras)


@pytest.mark.parametrize("name", sorted(BUILTIN_PLATFORMS))
def test_each_row_names_the_options_its_backend_declares(name: str) -> None:
    platform = BUILTIN_PLATFORMS[name]
    if platform.framework is not None:
        pytest.importorskip(platform.framework)
    assert platform.declared_options() is registry.get_backend(name).declared_options()
    assert registry.declared_options(name) is platform.declared_options()
