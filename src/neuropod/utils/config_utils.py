"""Reading and writing ``config.json`` and checking specs (original API)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neuropod.package.config import ModelConfig
from neuropod.spec.tensor_spec import parse_specs

__all__ = [
    "canonicalize_tensor_spec",
    "read_neuropod_config",
    "validate_tensor_spec",
    "write_neuropod_config",
]


def validate_tensor_spec(spec: Iterable[Any]) -> None:
    """Check a list of ``{"name", "dtype", "shape"}`` specs.

    Raises:
        SpecError: a dtype, shape item or name is malformed, or a name repeats.
    """
    parse_specs(spec, "tensor")


def canonicalize_tensor_spec(spec: Iterable[Any]) -> list[dict[str, Any]]:
    """Return the specs with canonical dtype names (``double`` -> ``float64``)."""
    return [item.to_dict() for item in parse_specs(spec, "tensor")]


def write_neuropod_config(
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    platform: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    platform_version_semver: str = "*",
    custom_ops: Sequence[str] | None = None,
    input_tensor_device: Mapping[str, str] | None = None,
    default_input_tensor_device: str = "GPU",
    **_ignored: Any,
) -> None:
    """Write ``config.json`` into a package directory, exactly as the original wrote it."""
    ModelConfig.build(
        name=model_name,
        platform=platform,
        input_spec=input_spec,
        output_spec=output_spec,
        platform_version_semver=platform_version_semver,
        custom_ops=custom_ops or (),
        input_tensor_device=input_tensor_device,
        default_input_tensor_device=default_input_tensor_device,
    ).write(Path(neuropod_path))


def read_neuropod_config(neuropod_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a package directory's ``config.json``; return it as a dict."""
    return ModelConfig.read(Path(neuropod_path)).to_json()
