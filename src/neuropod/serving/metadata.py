"""What the server tells clients about a model: protocol metadata and Triton's model config.

Both come from the package's specs. The protocol has no symbols, so a dim that is a symbol or
``None`` is ``-1``; the specs themselves, symbols included, travel in ``parameters`` so that a
client can rebuild them exactly:

- ``neuropod_platform``: the package's platform (``"torchscript"``, ``"python"``...);
- ``neuropod_inputs`` / ``neuropod_outputs``: the specs as the original's
  ``[{"name", "dtype", "shape"}]`` (symbols as strings, ``None`` as null).

In the model metadata these are JSON values; in the Triton config (whose parameters are
strings) they are JSON text under ``{"string_value": ...}``, and so they are in the gRPC model
metadata's ``properties`` (a ``map<string, string>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from neuropod.protocol.datatypes import datatype_to_config_type, spec_dtype_to_datatype
from neuropod.protocol.infer import VERSION as VERSION
from neuropod.protocol.keys import NEUROPOD_INPUTS, NEUROPOD_OUTPUTS, NEUROPOD_PLATFORM
from neuropod.serving.config_override import ConfigOverride
from neuropod.spec.tensor_spec import TensorSpec

#: The Triton config's ``backend`` of every model.
BACKEND = "neuropod"


def platform_name(platform: str) -> str:
    """The protocol's ``platform`` of a neuropod platform: ``torchscript`` -> ``neuropod_torchscript``."""
    return f"{BACKEND}_{platform}"


def protocol_dims(spec: TensorSpec) -> list[int]:
    """A spec's shape as the protocol's dims: fixed sizes, ``-1`` for symbols and ``None``."""
    return [dim if isinstance(dim, int) else -1 for dim in spec.shape]


def spec_parameters(
    platform: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> dict[str, Any]:
    """The ``parameters`` that carry the exact specs (see the module docstring)."""
    return {
        NEUROPOD_PLATFORM: platform,
        NEUROPOD_INPUTS: [spec.to_dict() for spec in inputs],
        NEUROPOD_OUTPUTS: [spec.to_dict() for spec in outputs],
    }


def string_parameters(parameters: dict[str, Any]) -> dict[str, str]:
    """Parameters as strings, for fields that hold only strings: JSON text but for strings."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in parameters.items()}


def metadata_properties(metadata: dict[str, Any]) -> dict[str, str]:
    """The gRPC model metadata's ``properties``: the metadata's ``parameters`` as strings."""
    return string_parameters(metadata.get("parameters") or {})


def model_metadata(
    name: str,
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    override: ConfigOverride | None = None,
    batched: bool = False,
) -> dict[str, Any]:
    """The protocol's model metadata (``GET /v2/models/{name}``).

    Args:
        name: the served name.
        platform: the package's platform.
        inputs: the input specs.
        outputs: the output specs.
        override: what the model's serving options set (dims).
        batched: the model batches (dim 0 of each spec is the batch dim).

    Returns:
        ``{"name", "versions", "platform", "inputs", "outputs", "parameters"}``.
    """

    def tensors(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "datatype": spec_dtype_to_datatype(s.dtype),
                "shape": _shape(s, override, batched),
            }
            for s in specs
        ]

    return {
        "name": name,
        "versions": [VERSION],
        "platform": platform_name(platform),
        "inputs": tensors(inputs),
        "outputs": tensors(outputs),
        "parameters": spec_parameters(platform, inputs, outputs),
    }


def model_config(
    name: str,
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_batch_size: int = 0,
    instances: int = 1,
    max_queue_delay_ms: float | None = None,
    sequence_batching: dict[str, Any] | None = None,
    override: ConfigOverride | None = None,
    decoupled: bool = False,
) -> dict[str, Any]:
    """Triton's model configuration, as ``GET /v2/models/{name}/config`` answers it.

    With ``max_batch_size > 0`` the dims leave out the first (batch) dim, as Triton's do.
    Absent fields are left out rather than null: perf_analyzer rejects ``null``.

    Args:
        name: the served name.
        platform: the package's platform.
        inputs: the input specs.
        outputs: the output specs.
        max_batch_size: the batch size clients may send (0: no batching dim).
        instances: how many instances run the model.
        max_queue_delay_ms: with dynamic batching, how long a request may wait for others.
        sequence_batching: a stateful model's ``sequence_batching`` section (see
            ``neuropod.serving.sequence_batching``).
        override: what the model's serving options set (input formats, dims, label files).
        decoupled: the model answers with a stream of responses: the configuration says
            ``model_transaction_policy {decoupled: true}``, which clients read before any call.

    Returns:
        The configuration as a JSON-ready dict (the ``ModelConfig`` message's JSON form).
    """

    batched = max_batch_size > 0
    formats = override.formats if override is not None else {}
    labels = override.label_files if override is not None else {}

    def tensors(specs: Sequence[TensorSpec], inputs: bool) -> list[dict[str, Any]]:
        out = []
        for spec in specs:
            shape = _shape(spec, override, batched)
            tensor = {
                "name": spec.name,
                "data_type": datatype_to_config_type(spec_dtype_to_datatype(spec.dtype)),
                "dims": shape[1:] if batched else shape,
            }
            if inputs:  # Triton always prints it, and image_client.py reads it
                tensor["format"] = formats.get(spec.name, "FORMAT_NONE")
            elif spec.name in labels:
                tensor["label_filename"] = labels[spec.name].name
            out.append(tensor)
        return out

    parameters = spec_parameters(platform, inputs, outputs)
    config: dict[str, Any] = {
        "name": name,
        "platform": platform_name(platform),
        "backend": BACKEND,
        "max_batch_size": max_batch_size,
        "input": tensors(inputs, True),
        "output": tensors(outputs, False),
        "instance_group": [{"name": name, "kind": "KIND_CPU", "count": instances}],
        "parameters": {key: {"string_value": text} for key, text in string_parameters(parameters).items()},
    }
    if decoupled:
        config["model_transaction_policy"] = {"decoupled": True}
    if max_queue_delay_ms is not None:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(max_queue_delay_ms * 1000)}
    if sequence_batching is not None:
        config["sequence_batching"] = sequence_batching
    return config


def _shape(spec: TensorSpec, override: ConfigOverride | None, batched: bool) -> list[int]:
    dims = protocol_dims(spec)
    fixed = None if override is None else override.dims.get(spec.name)
    if fixed is None:
        return dims
    return [dims[0], *fixed] if batched and dims else list(fixed)
