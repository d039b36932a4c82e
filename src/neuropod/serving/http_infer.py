"""``POST /v2/models/{m}/infer``: an HTTP body in, a model run, an HTTP body out.

Inputs come as JSON ``data``, as binary data after the JSON header (binary tensor extension),
or from a registered shared-memory region. Outputs go back as JSON ``data`` unless the request
asks for binary (``binary_data_output`` for all, ``binary_data`` per output) or names a region
to write them to; ``outputs`` in the request selects which outputs come back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuropod.protocol.binary import (
    BINARY_DATA_SIZE,
    HEADER_LENGTH,
    BinaryReader,
    split_body,
    tensor_from_raw,
)
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.tensors import parameters_of, parse_shape, read_tensor, write_tensor
from neuropod.serving import json_codec
from neuropod.serving.errors import BadRequest
from neuropod.serving.metadata import VERSION
from neuropod.serving.served_model import ServedModel
from neuropod.serving.shm import REGION, SharedMemoryRegistry, region_window, write_output

Headers = list[tuple[bytes, bytes]]

_JSON = [(b"content-type", b"application/json")]
_BINARY_CONTENT_TYPE = b"application/octet-stream"
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()


async def infer(
    served: ServedModel, shm: SharedMemoryRegistry, body: bytes, header_length: int | None
) -> tuple[Headers, list[bytes | memoryview]]:
    """Answer one inference request.

    Args:
        served: the model.
        shm: the server's shared-memory regions.
        body: the request body.
        header_length: its ``Inference-Header-Content-Length`` (``None``: all JSON).

    Returns:
        ``(headers, body_parts)`` of the 200 response.

    Raises:
        ServingError: a bad request, an unknown region.
        ValidationError: the inputs break the protocol or the spec.
        Exception: whatever the model raised.
    """

    def decode() -> tuple[dict[str, np.ndarray], tuple[dict[str, Any], dict[str, _Requested] | None]]:
        header, binary = split_body(body, header_length)
        request = _parse_json(header)
        inputs = _read_inputs(request, BinaryReader(binary), shm)
        return inputs, (request, _requested_outputs(request, served))

    def encode(
        outputs: dict[str, np.ndarray], request: tuple[dict[str, Any], dict[str, _Requested] | None]
    ) -> tuple[Headers, list[bytes | memoryview]]:
        return _write_response(request[0], served, outputs, request[1], shm)

    return await served.handle(decode, encode)


def _parse_json(header: memoryview) -> dict[str, Any]:
    try:
        request = json_codec.loads(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request's JSON is malformed: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest(f"The request must be a JSON object, got {type(request).__name__}")
    return request


def _read_inputs(
    request: dict[str, Any], reader: BinaryReader, shm: SharedMemoryRegistry
) -> dict[str, np.ndarray]:
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise BadRequest("The request must have 'inputs': a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    for entry in entries:
        parameters = parameters_of(entry, "input") if isinstance(entry, dict) else {}
        if REGION in parameters:
            name, array = _read_shm_input(entry, parameters, shm)
        else:
            name, array = read_tensor(entry, reader)
        if name in inputs:
            raise BadRequest(f"Input '{name}' is given more than once")
        inputs[name] = array
    reader.finish()
    return inputs


def _read_shm_input(
    entry: dict[str, Any], parameters: dict[str, Any], shm: SharedMemoryRegistry
) -> tuple[str, np.ndarray]:
    name = entry.get("name")
    if not isinstance(name, str):
        raise ProtocolError(f"An input has no 'name' string: {entry!r}")
    if "data" in entry or BINARY_DATA_SIZE in parameters:
        raise BadRequest(f"Input '{name}' names a shared memory region and also carries data; give one")
    datatype = entry.get("datatype")
    if not isinstance(datatype, str):
        raise ProtocolError(f"Tensor '{name}': 'datatype' must be a string, got {datatype!r}")
    shape = parse_shape(entry.get("shape"), name)
    window = region_window(shm, name, parameters)
    return name, tensor_from_raw(window, datatype, shape, name=name)


class _Requested:
    __slots__ = ("binary", "parameters")

    def __init__(self, binary: bool, parameters: dict[str, Any]):
        self.binary = binary
        self.parameters = parameters


def _requested_outputs(request: dict[str, Any], served: ServedModel) -> dict[str, _Requested] | None:
    parameters = parameters_of(request, "request")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise BadRequest(f"Parameter binary_data_output must be true or false, got {binary_default!r}")
    entries = request.get("outputs")
    if entries is None:
        return (
            {name: _Requested(binary_default, {}) for name in served.output_datatypes}
            if binary_default
            else None
        )
    if not isinstance(entries, list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    requested: dict[str, _Requested] = {}
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise BadRequest(f"Each requested output needs a 'name' string, got {entry!r}")
        if name not in served.output_datatypes:
            raise BadRequest(
                f"Output '{name}' is not an output of model '{served.name}' "
                f"(outputs: {', '.join(served.output_datatypes)})"
            )
        output_parameters = parameters_of(entry, name)
        binary = output_parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise BadRequest(f"Output '{name}': binary_data must be true or false, got {binary!r}")
        requested[name] = _Requested(binary, output_parameters)
    return requested


def _write_response(
    request: dict[str, Any],
    served: ServedModel,
    outputs: dict[str, np.ndarray],
    requested: dict[str, _Requested] | None,
    shm: SharedMemoryRegistry,
) -> tuple[Headers, list[bytes | memoryview]]:
    entries = []
    raws: list[memoryview] = []
    non_finite = False
    datatypes = served.output_datatypes
    for name, want in requested.items() if requested is not None else ((n, None) for n in outputs):
        array = outputs[name]
        if want is not None and REGION in want.parameters:
            entry, raw = write_tensor(name, array, binary=True, datatype=datatypes[name])
            if raw is not None:
                write_output(region_window(shm, name, want.parameters), name, raw)
            # No parameters: perf_analyzer reads any output "parameters" as binary output and
            # then requires binary_data_size; the data is already in the client's region.
            entry.pop("parameters", None)
        else:
            entry, raw = write_tensor(
                name, array, binary=want is not None and want.binary, datatype=datatypes[name]
            )
            if raw is not None:
                raws.append(raw)
            elif array.dtype.kind in "fc" and not non_finite:
                non_finite = not np.isfinite(array).all()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": served.name, "model_version": VERSION}
    request_id = request.get("id")
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = entries
    header = json_codec.dumps(response, allow_nan=non_finite)
    if not raws:
        return _JSON, [header]
    headers = [(b"content-type", _BINARY_CONTENT_TYPE), (_HEADER_LENGTH, str(len(header)).encode())]
    return headers, [header, *raws]
