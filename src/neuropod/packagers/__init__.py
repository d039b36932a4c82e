"""Packagers: turn a trained model into a neuropod package (the original's import path).

Every packager is keyword-only and takes the common arguments of ``CommonArgs``.
"""

from neuropod.packagers.jax import create_jax_neuropod
from neuropod.packagers.keras import create_keras_neuropod
from neuropod.packagers.ludwig import create_ludwig_neuropod
from neuropod.packagers.onnx import create_onnx_neuropod
from neuropod.packagers.placeholder import create_placeholder_neuropod
from neuropod.packagers.python import create_python_neuropod, create_pytorch_neuropod
from neuropod.packagers.tensorflow import create_tensorflow_neuropod
from neuropod.packagers.torchscript import create_torchscript_neuropod

__all__ = [
    "create_jax_neuropod",
    "create_keras_neuropod",
    "create_ludwig_neuropod",
    "create_onnx_neuropod",
    "create_placeholder_neuropod",
    "create_python_neuropod",
    "create_pytorch_neuropod",
    "create_tensorflow_neuropod",
    "create_torchscript_neuropod",
]
