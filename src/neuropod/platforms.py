"""The built-in platforms, one row each: what runs them, and what installs their framework.

The registry (which backend class runs a platform, which load options it declares, which extra
to suggest when its framework is missing), ``neuropod platforms`` and version selection (which
installed distribution provides the framework that ``platform_version_semver`` is checked
against) all read this one table. Nothing here imports a framework: the backend and its options
declaration are named as ``"module:Class"`` strings, imported on first use.

>>> BUILTIN_PLATFORMS["torchscript"].extra
'torch'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuropod.options import Options

__all__ = ["BUILTIN_PLATFORMS", "Platform"]


@dataclass(frozen=True)
class Platform:
    """A built-in platform.

    Args:
        name: the platform's name in a package's config, e.g. ``"torchscript"``.
        backend: the backend class that runs it, as ``"module:Class"`` (imported on first use).
        framework: the module its framework is imported as; ``None`` when numpy alone runs it.
        extra: the optional dependency group of neuropod that installs the framework.
        distributions: the distributions that may provide the framework, in the order they
            are looked for (the first installed one gives the version).
        options: the declaration of the backend's load options, as ``"module:Class"``; it
            imports no framework, so that options are checked before a worker starts.
    """

    name: str
    backend: str
    framework: str | None = None
    extra: str | None = None
    distributions: tuple[str, ...] = ()
    options: str = "neuropod.options:NoOptions"

    def declared_options(self) -> type[Options]:
        """The declaration named by ``options``, imported (without the backend or its framework)."""
        module, _, name = self.options.partition(":")
        declaration: type[Options] = getattr(importlib.import_module(module), name)
        return declaration


_ONNXRUNTIMES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
_TENSORFLOWS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tf-nightly")

_OPTIONS = "neuropod.backends.options"

BUILTIN_PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        Platform("jax", "neuropod.backends.jax:JaxBackend", "jax", "jax", ("jax",)),
        Platform(
            "keras",
            "neuropod.backends.keras:KerasBackend",
            "keras",
            "keras",
            ("keras",),
            f"{_OPTIONS}:KerasOptions",
        ),
        Platform(
            "onnx",
            "neuropod.backends.onnx:OnnxBackend",
            "onnxruntime",
            "onnx",
            _ONNXRUNTIMES,
            f"{_OPTIONS}:OnnxOptions",
        ),
        # Runs arbitrary Python code: there is no framework to install or to check.
        Platform("python", "neuropod.backends.python:PythonBackend"),
        Platform(
            "tensorflow",
            "neuropod.backends.tensorflow:TensorFlowBackend",
            "tensorflow",
            "tensorflow",
            _TENSORFLOWS,
            f"{_OPTIONS}:TensorFlowOptions",
        ),
        Platform(
            "torchscript",
            "neuropod.backends.torchscript:TorchScriptBackend",
            "torch",
            "torch",
            ("torch",),
            f"{_OPTIONS}:TorchScriptOptions",
        ),
    )
}
