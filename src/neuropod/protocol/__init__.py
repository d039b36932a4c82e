"""The Open Inference Protocol (KServe v2) with Triton's extensions, as both sides speak it.

Shared by the server (``neuropod.serving``) and the remote backend, so that what one writes
the other reads:

- ``datatypes``: protocol datatypes <-> neuropod spec dtypes <-> numpy <-> Triton config types.
- ``binary``: raw tensor bytes (binary tensor extension, gRPC raw contents), ``BYTES``
  length-prefixed strings (decoded as ``bytes``: ``neuropod.spec.elements`` makes text of
  those a spec calls ``string``), splitting an HTTP body into its JSON header and binary part.
- ``tensors``: one tensor entry of a JSON request or response, inline or binary.
- ``infer``: an inference request and its response as data (``InferRequest``,
  ``InferResponse``), whatever carried them.
- ``classification``: Triton's classification extension (an output's top k classes).
- ``http_codec``: those in HTTP bodies (JSON and binary tensors), for servers and clients.
- ``grpc``: the generated gRPC messages and service, and tensors in them.
- ``grpc_codec``: inference requests and responses in gRPC messages, and model metadata.
- ``keys``: the wire keys (parameters, metadata parameters) neuropod reads and writes.

Importing this package imports numpy only (and orjson when installed);
``neuropod.protocol.grpc`` and ``grpc_codec`` import grpc.
"""

from neuropod.protocol.binary import (
    BinaryReader,
    decode_bytes_elements,
    encode_bytes_elements,
    parse_header_length,
    raw_size,
    split_body,
    tensor_from_raw,
    tensor_to_raw,
)
from neuropod.protocol.datatypes import (
    BYTES,
    DATATYPES,
    array_datatype,
    config_type_to_datatype,
    datatype_to_config_type,
    datatype_to_numpy,
    datatype_to_spec_dtype,
    element_size,
    spec_dtype_to_datatype,
)
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.infer import (
    InferRequest,
    InferResponse,
    OutputTensor,
    RequestedOutput,
    SharedMemoryInput,
    respond,
)
from neuropod.protocol.keys import BINARY_DATA_SIZE, HEADER_LENGTH
from neuropod.protocol.tensors import (
    parameters_of,
    parse_shape,
    read_tensor,
    tensor_from_json,
    tensor_to_json,
    write_tensor,
)

__all__ = [
    "BINARY_DATA_SIZE",
    "BYTES",
    "DATATYPES",
    "HEADER_LENGTH",
    "BinaryReader",
    "InferRequest",
    "InferResponse",
    "OutputTensor",
    "ProtocolError",
    "RequestedOutput",
    "SharedMemoryInput",
    "array_datatype",
    "config_type_to_datatype",
    "datatype_to_config_type",
    "datatype_to_numpy",
    "datatype_to_spec_dtype",
    "decode_bytes_elements",
    "element_size",
    "encode_bytes_elements",
    "parameters_of",
    "parse_header_length",
    "parse_shape",
    "raw_size",
    "read_tensor",
    "respond",
    "spec_dtype_to_datatype",
    "split_body",
    "tensor_from_json",
    "tensor_from_raw",
    "tensor_to_json",
    "tensor_to_raw",
    "write_tensor",
]
