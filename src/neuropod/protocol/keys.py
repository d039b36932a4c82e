"""The protocol's wire keys that neuropod reads or writes, in one place.

Parameters of a request, of a tensor, or of a requested output, as both the JSON and the gRPC
forms carry them, and the ``parameters`` through which a neuropod server passes its exact
specs to neuropod clients (model metadata over HTTP, Triton's model config, and the gRPC
metadata's ``properties``).
"""

from __future__ import annotations

#: The HTTP header holding the length of the JSON part of a body with binary tensors.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: A tensor's parameter saying its data is binary, and how many bytes it has.
BINARY_DATA_SIZE = "binary_data_size"
#: A request's parameter asking for every output as binary data.
BINARY_DATA_OUTPUT = "binary_data_output"
#: A requested output's parameter asking for it as binary data (or not).
BINARY_DATA = "binary_data"

#: A tensor's parameters that put its data in a registered shared-memory region.
SHARED_MEMORY_REGION = "shared_memory_region"
SHARED_MEMORY_BYTE_SIZE = "shared_memory_byte_size"
SHARED_MEMORY_OFFSET = "shared_memory_offset"

#: A response's parameter on a gRPC stream: true on the last response of its request.
FINAL_RESPONSE = "triton_final_response"
#: A request's parameter asking for an empty response that says a decoupled model's request
#: is complete when the model ends it without a response (Triton's bare final flag).
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"

#: Model parameters carrying the package's platform and exact specs (see ``neuropod.serving.metadata``).
NEUROPOD_PLATFORM = "neuropod_platform"
NEUROPOD_INPUTS = "neuropod_inputs"
NEUROPOD_OUTPUTS = "neuropod_outputs"
SPEC_PARAMETERS = (NEUROPOD_PLATFORM, NEUROPOD_INPUTS, NEUROPOD_OUTPUTS)

#: A request's parameters that make it part of a sequence (Triton's sequence extension).
SEQUENCE_ID = "sequence_id"
SEQUENCE_START = "sequence_start"
SEQUENCE_END = "sequence_end"
