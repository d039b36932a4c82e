"""The protocol's gRPC messages and service, and tensors in them.

The messages and the ``inference.GRPCInferenceService`` stubs are the modules generated from
Triton's ``grpc_service.proto`` that the ``tritonclient[grpc]`` package ships
(``service_pb2``, ``service_pb2_grpc``, ``model_config_pb2``): one generated copy of the
official proto, the same one every tritonclient user has, so that server and clients cannot
drift apart. They are re-exported here; nothing imports them but this module.

Tensors travel as raw contents (``raw_input_contents`` / ``raw_output_contents``, one entry per
tensor, in order), which is what tritonclient sends and reads; typed contents
(``fp32_contents``...) are accepted on input too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from neuropod.protocol.binary import object_array, tensor_from_raw, tensor_to_raw
from neuropod.protocol.datatypes import array_datatype, datatype_to_numpy
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.tensors import check_shape

try:
    from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The gRPC protocol needs the generated messages of tritonclient; install them with "
        "pip install 'neuropod[serve]'"
    ) from exc

#: Largest message the protocol allows either way (clients send up to 2 GB).
MAX_MESSAGE_SIZE = 2**31 - 1

#: Channel and server options that lift grpc's 4 MB default limits to ``MAX_MESSAGE_SIZE``.
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
]

# Typed contents field of each datatype (the proto packs the small ints into int/uint).
_CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Parameter = bool | int | float | str


def get_parameters(parameters: Mapping[str, Any]) -> dict[str, Parameter]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict of values."""
    out: dict[str, Parameter] = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def set_parameters(target: Any, parameters: Mapping[str, Parameter]) -> None:
    """Fill a protobuf ``map<string, InferParameter>`` from a dict of values.

    Raises:
        ProtocolError: a value is not a bool, int, float or str.
    """
    for key, value in parameters.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            raise ProtocolError(
                f"Parameter {key!r}: gRPC parameters are bool, int, float or str, got {value!r}"
            )


def tensor_from_message(tensor: Any, raw: bytes | bytearray | memoryview | None) -> np.ndarray:
    """The array of an ``InferInputTensor`` (or ``InferOutputTensor``).

    Args:
        tensor: the message, with name, datatype and shape.
        raw: its entry of ``raw_input_contents`` / ``raw_output_contents``, or ``None`` to read
            the message's typed ``contents``.

    Returns:
        The array; for raw contents a view of ``raw``.

    Raises:
        ProtocolError: a negative dim, an unknown datatype, or data that does not fit the shape.
    """
    name = tensor.name
    shape = check_shape(tuple(tensor.shape), name)
    datatype = tensor.datatype
    if raw is not None:
        return tensor_from_raw(raw, datatype, shape, name=name)
    dtype = datatype_to_numpy(datatype)
    field = _CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise ProtocolError(
            f"Tensor '{name}': {datatype} data must be sent as raw contents (it has no typed field)"
        )
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise ProtocolError(
            f"Tensor '{name}': shape {list(shape)} needs {count} elements, but {field} has {len(values)}"
        )
    if dtype is None:  # BYTES: the elements as sent (see neuropod.spec.elements)
        return object_array(list(values)).reshape(shape)
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except OverflowError:
        raise ProtocolError(f"Tensor '{name}': {field} holds values out of {datatype}'s range") from None


def tensor_to_message(tensor: Any, name: str, array: np.ndarray, datatype: str | None = None) -> memoryview:
    """Fill an ``InferOutputTensor`` (or ``InferInputTensor``) and return its raw contents.

    Args:
        tensor: the message to fill with name, datatype and shape.
        name: the tensor's name.
        array: its value.
        datatype: the datatype to send (default: the array's).

    Returns:
        The raw contents (a view of a numeric array, see ``tensor_to_raw``), for
        ``neuropod.protocol.grpc_framing.join_raw_contents``.

    Raises:
        ProtocolError: the array has no protocol datatype.
    """
    if datatype is None:
        datatype = array_datatype(array)
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(array.shape)
    return tensor_to_raw(array, datatype)


__all__ = [
    "MAX_MESSAGE_SIZE",
    "MESSAGE_SIZE_OPTIONS",
    "get_parameters",
    "model_config_pb2",
    "service_pb2",
    "service_pb2_grpc",
    "set_parameters",
    "tensor_from_message",
    "tensor_to_message",
]
