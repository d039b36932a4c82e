"""Stub models with random outputs (the original's ``neuropod.utils.randomify``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from neuropod.packagers.placeholder import create_placeholder_neuropod

__all__ = ["randomify_neuropod"]


def randomify_neuropod(
    output_path: str | os.PathLike[str], input_spec: Iterable[Any], output_spec: Iterable[Any]
) -> str | os.PathLike[str]:
    """Write a package named ``random_model`` that returns random outputs matching ``output_spec``.

    The original built a TensorFlow 1 graph of random ops; this writes a placeholder package
    (platform ``python``, numpy only; see ``create_placeholder_neuropod``), so it needs no
    framework. Output dims with a symbol that an input also has take that input's size.

    Args:
        output_path: where to write the package (a zip; it must not exist).
        input_spec: the input specs.
        output_spec: the output specs.

    Returns:
        ``output_path``.

    Raises:
        SpecError: a spec is malformed.
        PackageError: ``output_path`` exists.
    """
    create_placeholder_neuropod(
        neuropod_path=output_path,
        model_name="random_model",
        input_spec=input_spec,
        output_spec=output_spec,
    )
    return output_path
