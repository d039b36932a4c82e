"""Inference requests and responses in gRPC messages, and the model metadata message.

The one reader and writer of the gRPC form, for both sides: the server reads
``ModelInferRequest`` and writes ``ModelInferResponse``, the remote backend the other way
round. Messages travel encoded, so that raw contents are neither copied into nor out of
protobuf objects (see ``neuropod.protocol.grpc_framing``): input arrays view the received
message, outputs are appended from the arrays' memory.

A server reads a request in two steps, ``split_request`` then ``read_request``, so that it can
find the model (and start its statistics) before the tensors are read.

``ModelStreamInfer`` carries the same ``ModelInferRequest`` messages, read the same way; its
answers are ``ModelStreamInferResponse`` messages, each an ``error_message`` or a
``ModelInferResponse`` (``encode_stream_response``, ``encode_stream_error``,
``decode_stream_response``).

The model metadata is Triton's ``ModelMetadataResponse`` plus the Open Inference Protocol's
``map<string, string> properties = 6``, which Triton's generated message lacks: it is
appended to the encoding as fields of its own, as a spec-compiled message would write it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from google.protobuf import json_format

from neuropod.protocol.classification import CLASSIFICATION, class_count
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.grpc import (
    get_parameters,
    service_pb2,
    set_parameters,
    tensor_from_message,
    tensor_to_message,
)
from neuropod.protocol.grpc_framing import (
    RAW_INPUT_FIELD,
    RAW_OUTPUT_FIELD,
    Buffer,
    embedded_fields,
    join_raw_contents,
    length_delimited,
    raw_contents_parts,
    split_raw_contents,
    varint,
)
from neuropod.protocol.infer import (
    InferRequest,
    InferResponse,
    OutputTensor,
    RequestedOutput,
    SharedMemoryInput,
)
from neuropod.protocol.keys import FINAL_RESPONSE, SHARED_MEMORY_REGION
from neuropod.protocol.sequence import check_grpc_types
from neuropod.protocol.tensors import check_shape

#: Field number of the protocol's ``ModelMetadataResponse.properties``.
PROPERTIES_FIELD = 6

_LENGTH_DELIMITED = 2
_STREAM_FIELDS = service_pb2.ModelStreamInferResponse.DESCRIPTOR.fields_by_name
_ERROR_MESSAGE_FIELD: int = _STREAM_FIELDS["error_message"].number
_INFER_RESPONSE_FIELD: int = _STREAM_FIELDS["infer_response"].number
_METADATA_FIELDS = ("name", "versions", "platform", "inputs", "outputs")


#: ``split_request(data) -> (message, raws)``: parse an encoded ``ModelInferRequest`` for
#: ``read_request``, leaving its raw contents in ``data`` (``message.model_name`` names the
#: model); raises ``ProtocolError`` for an invalid encoding. A partial, not a function: it is
#: on every call's path, and a partial adds no Python frame.
split_request: Callable[[bytes], tuple[Any, list[Buffer]]] = functools.partial(
    split_raw_contents, message_type=service_pb2.ModelInferRequest, field=RAW_INPUT_FIELD
)


def read_request(message: Any, raws: list[Buffer]) -> InferRequest:
    """The request that ``split_request`` parsed.

    Raises:
        ProtocolError: no inputs, a duplicate input, raw contents that do not match the inputs,
            typed contents beside raw contents, or a tensor whose data does not fit its shape
            and datatype.
    """
    raw_count = len(raws)
    used = 0
    inputs: dict[str, np.ndarray | SharedMemoryInput] = {}
    for tensor in message.inputs:
        name = tensor.name
        parameters = get_parameters(tensor.parameters) if tensor.parameters else {}
        value: np.ndarray | SharedMemoryInput
        if SHARED_MEMORY_REGION in parameters:
            value = SharedMemoryInput(tensor.datatype, check_shape(tuple(tensor.shape), name), parameters)
        elif raw_count:
            if tensor.HasField("contents"):
                # Triton's text, which its examples check: dropping the contents would answer
                # from data other than what the client meant.
                raise ProtocolError(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"'{name}' for model '{message.model_name}'"
                )
            if used >= raw_count:
                raise ProtocolError(
                    f"raw_input_contents has {raw_count} entries, fewer than the inputs that need data"
                )
            value = tensor_from_message(tensor, raws[used])
            used += 1
        else:
            value = tensor_from_message(tensor, None)
        if name in inputs:
            raise ProtocolError(f"Input '{name}' is given more than once")
        inputs[name] = value
    if not inputs:
        raise ProtocolError("The request has no inputs")
    if used != raw_count:
        raise ProtocolError(
            f"raw_input_contents has {raw_count} entries, but {used} inputs take their data from it"
        )
    outputs = [_requested_output(output) for output in message.outputs] if message.outputs else None
    request_parameters = None
    if message.parameters:
        request_parameters = get_parameters(message.parameters)
        check_grpc_types(message.parameters, request_parameters)
    return InferRequest(
        inputs,
        outputs=outputs,
        id=message.id or None,
        parameters=request_parameters,
        model_name=message.model_name,
        model_version=message.model_version,
    )


def _requested_output(output: Any) -> RequestedOutput:
    parameters = get_parameters(output.parameters)
    count = 0
    if CLASSIFICATION in parameters:
        count = class_count(parameters[CLASSIFICATION], grpc=True)
        if SHARED_MEMORY_REGION in parameters:
            raise ProtocolError(
                f"output can't set both '{SHARED_MEMORY_REGION}' and '{CLASSIFICATION}' "
                f"(output '{output.name}')"
            )
    return RequestedOutput(output.name, None, parameters, count)


def encode_response(response: InferResponse) -> bytes:
    """Encode a ``ModelInferResponse``: one raw contents entry per output, in order.

    An output held in shared memory has its region's parameters and an empty entry.

    Raises:
        ProtocolError: an output has no protocol datatype.
    """
    return b"".join(_response_parts(response))


def encode_stream_response(response: InferResponse) -> bytes:
    """Encode a ``ModelStreamInferResponse`` holding ``response`` (see ``encode_response``).

    Raises:
        ProtocolError: an output has no protocol datatype.
    """
    return b"".join(length_delimited(_INFER_RESPONSE_FIELD, _response_parts(response)))


def encode_stream_error(
    error: str,
    id: str | None,
    model_name: str = "",
    model_version: str = "",
    final: bool | None = None,
) -> bytes:
    """Encode a ``ModelStreamInferResponse`` reporting an error, as Triton does: the message in
    ``error_message``, and an ``infer_response`` holding only the request's id, model and, when
    ``final`` is given, ``triton_final_response``."""
    message = service_pb2.ModelStreamInferResponse(error_message=error)
    answer = message.infer_response
    answer.id = id or ""
    answer.model_name = model_name
    answer.model_version = model_version
    if final is not None:
        answer.parameters[FINAL_RESPONSE].bool_param = final
    data: bytes = message.SerializeToString()
    return data


def decode_stream_response(data: Buffer) -> tuple[str, InferResponse]:
    """Read an encoded ``ModelStreamInferResponse``, as a client receives it.

    Returns:
        ``(error_message, response)``: an empty message for a success, and the response (for
        an error, one without outputs that carries the request's id).

    Raises:
        ProtocolError: the message is not valid.
    """
    fields = embedded_fields(data)
    error = fields.get(_ERROR_MESSAGE_FIELD)
    return (
        "" if error is None else bytes(error).decode("utf-8", "replace"),
        decode_response(fields.get(_INFER_RESPONSE_FIELD, b"")),
    )


def _response_parts(response: InferResponse) -> list[Buffer]:
    message = service_pb2.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    contents: list[Buffer] = []
    for output in response.outputs:
        tensor = message.outputs.add()
        if output.shared_memory is not None:
            tensor.name = output.name
            tensor.datatype = output.datatype
            tensor.shape.extend(output.array.shape)
            set_parameters(tensor.parameters, output.shared_memory)
            contents.append(b"")
        else:
            contents.append(tensor_to_message(tensor, output.name, output.array, output.datatype))
    if response.parameters:
        set_parameters(message.parameters, response.parameters)
    return raw_contents_parts(message, RAW_OUTPUT_FIELD, contents)


def encode_request(request: InferRequest) -> bytes:
    """Encode a ``ModelInferRequest``, as a client sends it: inputs as raw contents.

    Raises:
        ProtocolError: an input has no protocol datatype, or is a shared-memory reference.
    """
    message = service_pb2.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id or ""
    )
    raws = []
    for name, value in request.inputs.items():
        if isinstance(value, SharedMemoryInput):
            raise ProtocolError(f"Input '{name}': a client sends arrays, not shared-memory references")
        raws.append(tensor_to_message(message.inputs.add(), name, value))
    for output in request.outputs or ():
        parameters = output.parameters
        if output.class_count:
            parameters = {**parameters, CLASSIFICATION: output.class_count}
        set_parameters(message.outputs.add(name=output.name).parameters, parameters)
    set_parameters(message.parameters, request.parameters)
    return join_raw_contents(message, RAW_INPUT_FIELD, raws)


def decode_response(data: Buffer) -> InferResponse:
    """Read an encoded ``ModelInferResponse``, as a client receives it.

    Returns:
        The response; outputs sent as raw contents view ``data`` (read-only for ``bytes``).

    Raises:
        ProtocolError: the message is not valid, or an output does not fit its shape.
    """
    message, contents = split_raw_contents(data, service_pb2.ModelInferResponse, RAW_OUTPUT_FIELD)
    outputs = []
    for i, tensor in enumerate(message.outputs):
        array = tensor_from_message(tensor, contents[i] if i < len(contents) else None)
        outputs.append(OutputTensor(tensor.name, array, tensor.datatype, binary=True))
    parameters = get_parameters(message.parameters) if message.parameters else None
    return InferResponse(outputs, message.model_name, message.model_version, message.id or None, parameters)


def encode_model_metadata(metadata: Mapping[str, Any], properties: Mapping[str, str]) -> bytes:
    """Encode a ``ModelMetadataResponse`` with the protocol's ``properties``.

    Args:
        metadata: the metadata in its JSON form (``name``, ``versions``, ``platform``,
            ``inputs``, ``outputs``; other keys are left out).
        properties: the ``properties`` map.

    Returns:
        The encoded message.
    """
    fields = {key: metadata[key] for key in _METADATA_FIELDS if key in metadata}
    parts = [json_format.ParseDict(fields, service_pb2.ModelMetadataResponse()).SerializeToString()]
    key = varint((PROPERTIES_FIELD << 3) | _LENGTH_DELIMITED)
    for name, value in properties.items():
        entry = _string_field(1, name) + _string_field(2, value)
        parts.append(key + varint(len(entry)) + entry)
    return b"".join(parts)


def _string_field(number: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return varint((number << 3) | _LENGTH_DELIMITED) + varint(len(data)) + data


__all__ = [
    "PROPERTIES_FIELD",
    "decode_response",
    "decode_stream_response",
    "encode_model_metadata",
    "encode_request",
    "encode_response",
    "encode_stream_error",
    "encode_stream_response",
    "read_request",
    "split_request",
]
