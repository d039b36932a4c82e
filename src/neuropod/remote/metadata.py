"""A remote model's config (name, platform, specs), rebuilt from the server's model metadata.

A neuropod server sends the exact specs, symbols included, in the metadata's ``parameters``
(``neuropod_platform``, ``neuropod_inputs``, ``neuropod_outputs``; see
``neuropod.serving.metadata``). Any other server of the protocol (Triton, KServe) is read from
its tensors: datatypes become spec dtypes and variable dims (``-1``) become ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neuropod.errors import PackageError, SpecError
from neuropod.package.config import ModelConfig
from neuropod.protocol.datatypes import datatype_to_spec_dtype
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.keys import NEUROPOD_INPUTS, NEUROPOD_OUTPUTS, NEUROPOD_PLATFORM
from neuropod.spec.tensor_spec import TensorSpec, parse_specs


def config_from_metadata(metadata: Mapping[str, Any], model: str, where: str) -> ModelConfig:
    """Build the config of a remote model.

    Args:
        metadata: the model metadata in the protocol's JSON form (``name``, ``platform``,
            ``inputs``, ``outputs``, optional ``parameters``), and ``decoupled`` where the
            server's model configuration says so.
        model: the model name of the URL, used when the metadata has none.
        where: the model and URL, for messages.

    Returns:
        The config: the served name, the package's platform (else the server's), the specs.

    Raises:
        PackageError: the metadata is malformed, or a tensor has a type neuropod cannot hold.
    """
    parameters = metadata.get("parameters") or {}
    try:
        if isinstance(parameters, Mapping) and NEUROPOD_INPUTS in parameters:
            inputs = parse_specs(parameters[NEUROPOD_INPUTS], "input")
            outputs = parse_specs(parameters.get(NEUROPOD_OUTPUTS, []), "output")
        else:
            inputs = _specs_of_tensors(metadata.get("inputs"), "input")
            outputs = _specs_of_tensors(metadata.get("outputs"), "output")
    except (SpecError, ProtocolError) as exc:
        raise PackageError(f"The server's metadata for {where} is not usable: {exc}") from None
    platform = parameters.get(NEUROPOD_PLATFORM) if isinstance(parameters, Mapping) else None
    name = metadata.get("name")
    return ModelConfig(
        name=name if isinstance(name, str) and name else model,
        platform=str(platform or metadata.get("platform") or "remote"),
        inputs=inputs,
        outputs=outputs,
        decoupled=metadata.get("decoupled") is True,
    )


def _specs_of_tensors(tensors: object, kind: str) -> tuple[TensorSpec, ...]:
    if not isinstance(tensors, Sequence) or isinstance(tensors, (str, bytes)):
        raise SpecError(f"its {kind}s must be a list of tensors, got {tensors!r}")
    specs = []
    for tensor in tensors:
        if not isinstance(tensor, Mapping) or not isinstance(tensor.get("shape"), Sequence):
            raise SpecError(f"an {kind} must have a name, a datatype and a shape, got {tensor!r}")
        # The protocol's -1 is "any size"; so is 0 here, which a spec cannot fix.
        shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in tensor["shape"])
        specs.append(
            TensorSpec(
                str(tensor.get("name", "")), datatype_to_spec_dtype(str(tensor.get("datatype"))), shape
            )
        )
    return parse_specs(specs, kind)
