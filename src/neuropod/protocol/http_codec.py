"""Inference requests and responses in HTTP bodies: JSON, with the binary tensor extension.

The one reader and writer of the HTTP form, for both sides: a server decodes requests and
encodes responses (``neuropod serve``, the Ray Serve deployment), a client encodes requests
and decodes responses (the remote backend). A body is a JSON document, optionally followed by
the binary tensors that its entries' ``binary_data_size`` announce; the JSON part's length
travels in the ``Inference-Header-Content-Length`` HTTP header (``None`` here: all JSON).

Encoding gives ``(json_header, raws)``: the JSON part, and the tensors' bytes to send after it
(views of the arrays, not copies); the body is their concatenation.

>>> header, raws = encode_request(InferRequest({"x": np.arange(2, dtype=np.int32)}), binary=False)
>>> header
b'{"inputs":[{"name":"x","datatype":"INT32","shape":[2],"data":[0,1]}],"parameters":{"binary_data_output":false}}'
>>> decode_request(header, None).inputs
{'x': array([0, 1], dtype=int32)}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neuropod.protocol import json_codec
from neuropod.protocol.binary import BinaryReader, split_body
from neuropod.protocol.classification import CLASSIFICATION, class_count
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.infer import (
    InferRequest,
    InferResponse,
    OutputTensor,
    RequestedOutput,
    SharedMemoryInput,
)
from neuropod.protocol.keys import (
    BINARY_DATA,
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    SHARED_MEMORY_REGION,
)
from neuropod.protocol.tensors import parameters_of, parse_shape, read_tensor, write_tensor

Buffer = bytes | bytearray | memoryview
Encoded = tuple[bytes, list[memoryview]]


def decode_request(body: Buffer, header_length: int | None) -> InferRequest:
    """Read an inference request.

    Args:
        body: the whole body.
        header_length: the ``Inference-Header-Content-Length`` value (``None``: all JSON).

    Returns:
        The request; inputs with binary data view ``body``.

    Raises:
        ProtocolError: the body breaks the protocol (malformed JSON, no inputs, a tensor that
            does not fit its shape, a duplicate input, a malformed parameter...).
    """
    header, binary = split_body(body, header_length)
    request = _load_object(header, "request")
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise ProtocolError("The request must have 'inputs': a non-empty list of tensors")
    reader = BinaryReader(binary)
    inputs: dict[str, np.ndarray | SharedMemoryInput] = {}
    value: np.ndarray | SharedMemoryInput
    for entry in entries:
        # read_tensor checks the parameters; only a region's name is looked for here.
        parameters = entry.get("parameters") if type(entry) is dict else None
        if type(parameters) is dict and SHARED_MEMORY_REGION in parameters:
            name, value = _shared_memory_input(entry, parameters)
        else:
            name, value = read_tensor(entry, reader)
        if name in inputs:
            raise ProtocolError(f"Input '{name}' is given more than once")
        inputs[name] = value
    reader.finish()
    parameters = parameters_of(request, "request")
    binary_default = parameters.get(BINARY_DATA_OUTPUT, False)
    if not isinstance(binary_default, bool):
        raise ProtocolError(f"Parameter {BINARY_DATA_OUTPUT} must be true or false, got {binary_default!r}")
    return InferRequest(
        inputs,
        outputs=_requested_outputs(request.get("outputs")),
        id=request.get("id"),
        binary_data_output=binary_default,
        parameters=parameters,
    )


def encode_response(response: InferResponse) -> Encoded:
    """Write an inference response.

    Outputs held in shared memory are sent as name, datatype and shape alone.

    Returns:
        ``(json_header, raws)``; with no raws the header is the whole body.

    Raises:
        ProtocolError: an output has no protocol datatype.
    """
    entries, raws, non_finite = _write_tensors(response.outputs)
    document: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = entries
    return json_codec.dumps(document, allow_nan=non_finite), raws


def encode_request(request: InferRequest, *, binary: bool) -> Encoded:
    """Write an inference request, as a client sends it.

    Args:
        request: the request; its inputs must be arrays.
        binary: send the inputs as binary data rather than inline JSON.

    Returns:
        ``(json_header, raws)``; with no raws the header is the whole body.

    Raises:
        ProtocolError: an input has no protocol datatype, or is a shared-memory reference.
    """
    tensors = []
    for name, value in request.inputs.items():
        if isinstance(value, SharedMemoryInput):
            raise ProtocolError(f"Input '{name}': a client sends arrays, not shared-memory references")
        tensors.append(OutputTensor(name, value, binary=binary))
    entries, raws, non_finite = _write_tensors(tensors)
    document: dict[str, Any] = {}
    if request.id is not None:
        document["id"] = request.id
    document["inputs"] = entries
    if request.outputs is not None:
        document["outputs"] = [_requested_entry(output) for output in request.outputs]
    document["parameters"] = {**request.parameters, BINARY_DATA_OUTPUT: request.binary_data_output}
    return json_codec.dumps(document, allow_nan=non_finite), raws


def decode_response(body: Buffer, header_length: int | None) -> InferResponse:
    """Read an inference response, as a client receives it.

    Args:
        body: the whole body (a ``bytearray`` gives writable arrays).
        header_length: the ``Inference-Header-Content-Length`` value (``None``: all JSON).

    Returns:
        The response; outputs with binary data view ``body``.

    Raises:
        ProtocolError: the body breaks the protocol.
    """
    header, binary = split_body(body, header_length)
    document = _load_object(header, "response")
    entries = document.get("outputs")
    if not isinstance(entries, list):
        raise ProtocolError(f"The response has no list of 'outputs': {bytes(header[:200])!r}")
    reader = BinaryReader(binary)
    outputs = []
    for entry in entries:
        name, array = read_tensor(entry, reader, where="output")
        sent_binary = BINARY_DATA_SIZE in (entry.get("parameters") or {})
        outputs.append(OutputTensor(name, array, entry["datatype"], binary=sent_binary))
    reader.finish()
    model = document.get("model_name")
    version = document.get("model_version")
    return InferResponse(
        outputs,
        model if isinstance(model, str) else "",
        version if isinstance(version, str) else "",
        document.get("id"),
    )


def _load_object(header: memoryview, what: str) -> dict[str, Any]:
    try:
        document = json_codec.loads(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"The {what}'s JSON is malformed: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"The {what} must be a JSON object, got {type(document).__name__}")
    return document


def _shared_memory_input(entry: dict[str, Any], parameters: dict[str, Any]) -> tuple[str, SharedMemoryInput]:
    name = entry.get("name")
    if not isinstance(name, str):
        raise ProtocolError(f"An input has no 'name' string: {entry!r}")
    if "data" in entry or BINARY_DATA_SIZE in parameters:
        raise ProtocolError(f"Input '{name}' names a shared memory region and also carries data; give one")
    datatype = entry.get("datatype")
    if not isinstance(datatype, str):
        raise ProtocolError(f"Tensor '{name}': 'datatype' must be a string, got {datatype!r}")
    return name, SharedMemoryInput(datatype, parse_shape(entry.get("shape"), name), parameters)


def _requested_outputs(entries: object) -> list[RequestedOutput] | None:
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
    requested = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise ProtocolError(f"Each requested output needs a 'name' string, got {entry!r}")
        parameters = parameters_of(entry, name)
        binary = parameters.get(BINARY_DATA)
        if binary is not None and not isinstance(binary, bool):
            raise ProtocolError(f"Output '{name}': {BINARY_DATA} must be true or false, got {binary!r}")
        count = 0
        if CLASSIFICATION in parameters:
            count = class_count(parameters[CLASSIFICATION], grpc=False)
            if count and SHARED_MEMORY_REGION in parameters:
                raise ProtocolError(
                    f"Output can't set both '{SHARED_MEMORY_REGION}' and '{CLASSIFICATION}' (output '{name}')"
                )
        requested.append(RequestedOutput(name, binary, parameters, count))
    return requested


def _requested_entry(output: RequestedOutput) -> dict[str, Any]:
    parameters = dict(output.parameters)
    if output.class_count:
        parameters[CLASSIFICATION] = output.class_count
    if output.binary is not None:
        parameters[BINARY_DATA] = output.binary
    return {"name": output.name, "parameters": parameters} if parameters else {"name": output.name}


def _write_tensors(tensors: Sequence[OutputTensor]) -> tuple[list[dict[str, Any]], list[memoryview], bool]:
    entries = []
    raws: list[memoryview] = []
    non_finite = False
    for tensor in tensors:
        array = tensor.array
        if tensor.shared_memory is not None:
            # No parameters: perf_analyzer reads any output "parameters" as binary output and
            # then requires binary_data_size; the data is already in the client's region.
            entry: dict[str, Any] = {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(array.shape),
            }
        else:
            entry, raw = write_tensor(tensor.name, array, binary=tensor.binary, datatype=tensor.datatype)
            if raw is not None:
                raws.append(raw)
            elif array.dtype.kind in "fc" and not non_finite:
                non_finite = not np.isfinite(array).all()
        entries.append(entry)
    return entries, raws, non_finite


__all__ = ["decode_request", "decode_response", "encode_request", "encode_response"]
