"""KServe's Python clients against a neuropod server; run by KServe's interpreter, not by pytest.

    python kserve_client_program.py HTTP_URL GRPC_ADDRESS CASE [CASE ...]

prints one JSON object, ``{case: what the client got}``. Each case uses ``kserve``'s own
``InferenceRESTClient`` (v2 protocol), ``InferenceGRPCClient`` and request types, as an
application would; an error that a case expects is reported, any other one ends the program.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import numpy as np
from google.protobuf import empty_pb2, unknown_fields
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.logging import trace_logger
from kserve.protocol.grpc import grpc_predict_v2_pb2
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import RequestedOutput

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def wide_ints(binary: bool) -> InferRequest:
    u64 = InferInput("u64", [3], "UINT64")
    u64.set_data_from_numpy(np.array([0, 1, U64_MAX], np.uint64), binary_data=binary)
    i64 = InferInput("i64", [3], "INT64")
    i64.set_data_from_numpy(np.array([I64_MIN, -1, I64_MAX], np.int64), binary_data=binary)
    return InferRequest("wide_ints", [u64, i64])


def partial(parameters: dict[str, Any] | None = None, outputs: list[str] | None = None) -> InferRequest:
    x = InferInput("x", [2], "INT64")
    x.set_data_from_numpy(np.array([1, 2], np.int64), binary_data=False)
    requested = [RequestedOutput(name) for name in outputs] if outputs else None
    return InferRequest("partial", [x], parameters=parameters, request_outputs=requested)


def outputs_of(response: Any) -> dict[str, Any]:
    return {
        o.name: {"datatype": o.datatype, "shape": list(o.shape), "data": o.as_numpy().tolist()}
        for o in response.outputs
    }


async def rest(http_url: str, request: InferRequest) -> dict[str, Any]:
    headers: dict[str, str] = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as client:
        try:
            response = await client.infer(
                http_url, request, model_name=request.model_name, response_headers=headers
            )
            return {
                "outputs": outputs_of(response),
                "binary_body": INFERENCE_CONTENT_LENGTH_HEADER in headers,
            }
        except httpx.HTTPStatusError as error:
            return {"status": error.response.status_code, "error": str(error)}


async def grpc_infer(address: str, request: InferRequest) -> dict[str, Any]:
    async with InferenceGRPCClient(address, retries=0) as client:
        try:
            return {"outputs": outputs_of(await client.infer(request))}
        except grpc.aio.AioRpcError as error:
            return {"code": error.code().name, "details": error.details()}


async def grpc_metadata(address: str) -> dict[str, Any]:
    # kserve 0.21's gRPC client has no metadata call and its compiled proto predates the
    # protocol's `properties` (field 6): its stub keeps that field as an unknown field.
    async with grpc.aio.insecure_channel(address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        reply = await stub.ModelMetadata(grpc_predict_v2_pb2.ModelMetadataRequest(name="partial"))
    properties = {}
    for field in unknown_fields.UnknownFieldSet(reply):
        if field.field_number == 6:
            entry = {
                f.field_number: f.data.decode()
                for f in unknown_fields.UnknownFieldSet(empty_pb2.Empty.FromString(field.data))
            }
            properties[entry[1]] = entry[2]
    return {
        "name": reply.name,
        "versions": list(reply.versions),
        "platform": reply.platform,
        "outputs": [[t.name, t.datatype, list(t.shape)] for t in reply.outputs],
        "properties": properties,
    }


def cases(http_url: str, grpc_address: str) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    return {
        "wide_ints_rest_json": lambda: rest(http_url, wide_ints(binary=False)),
        "wide_ints_grpc_contents": lambda: grpc_infer(grpc_address, wide_ints(binary=False)),
        "wide_ints_grpc_raw": lambda: grpc_infer(grpc_address, wide_ints(binary=True)),
        "partial_rest_json": lambda: rest(http_url, partial()),
        "partial_rest_binary": lambda: rest(http_url, partial({"binary_data_output": True})),
        "partial_grpc": lambda: grpc_infer(grpc_address, partial()),
        "missing_rest": lambda: rest(http_url, partial(outputs=["o_int", "o_bool"])),
        "missing_grpc": lambda: grpc_infer(grpc_address, partial(outputs=["o_int", "o_bool"])),
        "metadata_grpc": lambda: grpc_metadata(grpc_address),
    }


async def main(http_url: str, grpc_address: str, names: list[str]) -> None:
    table = cases(http_url, grpc_address)
    results = {name: await table[name]() for name in names}
    print(json.dumps(results))


if __name__ == "__main__":
    # The gRPC client logs each failed call with its traceback; the cases report errors instead.
    trace_logger.setLevel(logging.CRITICAL)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
