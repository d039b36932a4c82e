"""Packagers: turn a trained model into a neuropod package (the original's import path).

Every packager is keyword-only and takes the common arguments of ``CommonArgs``.
"""

from neuropod.packagers.placeholder import create_placeholder_neuropod
from neuropod.packagers.python import create_python_neuropod, create_pytorch_neuropod
from neuropod.packagers.torchscript import create_torchscript_neuropod

__all__ = [
    "create_placeholder_neuropod",
    "create_python_neuropod",
    "create_pytorch_neuropod",
    "create_torchscript_neuropod",
]
