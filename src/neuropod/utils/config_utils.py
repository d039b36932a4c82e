"""Reading and writing ``config.json`` and checking specs (original API)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from neuropod.errors import PackageError
from neuropod.package.config import ModelConfig
from neuropod.spec.tensor_spec import TensorSpec, parse_specs

__all__ = [
    "canonicalize_tensor_spec",
    "read_neuropod_config",
    "validate_neuropod_config",
    "validate_tensor_spec",
    "write_neuropod_config",
]


def validate_tensor_spec(spec: Iterable[Any]) -> None:
    """Check a list of ``{"name", "dtype", "shape"}`` specs.

    Args:
        spec: the specs (dicts or ``TensorSpec`` objects).

    Raises:
        SpecError: a dtype, shape item or name is malformed, or a name repeats.
    """
    parse_specs(spec, "tensor")


def canonicalize_tensor_spec(spec: Iterable[Any]) -> list[dict[str, Any]]:
    """Return the specs with canonical dtype names (``double`` -> ``float64``).

    Each shape is returned as given (a tuple stays a tuple), as the original returned it.

    Args:
        spec: ``{"name", "dtype", "shape"}`` dicts or ``TensorSpec`` objects.

    Returns:
        A new list of new dicts; ``spec`` is not modified.

    Raises:
        SpecError: a dtype, shape item or name is malformed, or a name repeats.
    """
    items = list(spec) if isinstance(spec, Iterator) else spec
    return [
        {
            "name": parsed.name,
            "dtype": parsed.dtype,
            "shape": item.shape if isinstance(item, TensorSpec) else item["shape"],
        }
        for item, parsed in zip(items, parse_specs(items, "tensor"), strict=True)
    ]


def validate_neuropod_config(config: Mapping[str, Any]) -> None:
    """Check a model config dict, as read from or written to ``config.json``.

    Args:
        config: ``name``, ``platform``, ``input_spec``, ``output_spec`` and
            ``input_tensor_device`` (a device for every input, and only for inputs);
            optionally ``custom_ops`` and ``platform_version_semver``.

    Raises:
        PackageError: a field is missing; the name or platform is not a string; a spec's name,
            dtype or shape is malformed; ``custom_ops`` is not a list of strings; or an input
            has no device, a device names no input, or is neither ``"GPU"`` nor ``"CPU"``.
            It is a ``ValueError``, as the original raised.
    """
    source = "The neuropod config"
    if not isinstance(config, Mapping):
        raise PackageError(f"{source} must be a dict, got {type(config).__name__}")
    if "input_tensor_device" not in config:
        raise PackageError(f"{source} lacks the field input_tensor_device")
    parsed = ModelConfig.from_json(dict(config), source=source)
    inputs = [spec.name for spec in parsed.inputs]
    devices = config["input_tensor_device"]
    # from_json reads an empty mapping as "all on the GPU" (configs older than devices); a
    # config being validated must name every device.
    missing = [name for name in inputs if name not in devices]
    if missing:
        raise PackageError(f"{source}: Input(s) {', '.join(map(repr, missing))} have no device")
    extra = sorted(str(name) for name in devices if name not in inputs)
    if extra:
        raise PackageError(
            f"{source}: input_tensor_device names tensor(s) {', '.join(map(repr, extra))} that "
            f"are not in the input spec (inputs: {', '.join(map(repr, sorted(inputs)))})"
        )


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
    """Write ``config.json`` into a package directory, exactly as the original wrote it.

    Args:
        neuropod_path: the package directory.
        model_name: the model's name.
        platform: the platform (``"python"``, ``"torchscript"``, ...).
        input_spec: the input specs.
        output_spec: the output specs.
        platform_version_semver: the framework versions the model needs (stored as given, as
            the original did; it is checked when the package is loaded).
        custom_ops: file names of the custom ops in ``0/ops``.
        input_tensor_device: ``{input: "GPU" or "CPU"}``; other inputs get the default.
        default_input_tensor_device: the device of inputs not in ``input_tensor_device``.
        **_ignored: the other packager arguments, accepted and ignored as the original did.

    Raises:
        SpecError: a spec, the name or a device is malformed.
    """
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
    """Read and check a package directory's ``config.json``.

    Args:
        neuropod_path: the package directory.

    Returns:
        The config, with canonical dtypes, shapes as lists, and a device for every input (GPU
        where a config older than devices names none, as the original did).

    Raises:
        PackageError: the file is missing, not JSON, or malformed.
    """
    return ModelConfig.read(Path(neuropod_path)).to_json()
