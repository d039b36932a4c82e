"""The peer of ``bench/serve.py``: identity models served by KServe's Python model server.

Runs in a virtual environment of its own (``bench/serve.py`` creates it), never in neuropod's::

    python bench/serve_kserve_model.py --model small:4 --model large:1048576 \\
        --config-dir DIR --http_port 8080 --grpc_port 8081

Each model answers ``out = x`` for one FP32 input of shape ``[-1, elements]``, as the neuropod
models of the benchmark do, so both servers do the same work apart from serving.

KServe does not implement Triton's model-configuration call (``GET /v2/models/{m}/config``, the
``ModelConfig`` RPC), and perf_analyzer asks for it before its first request. This script adds
that one call with a fixed answer; the inference paths measured are KServe's own. The gRPC
answers come serialized in ``DIR/<model>.pb``, written by ``bench/serve.py`` with tritonclient's
messages: Triton's proto and KServe's define the same ``inference.*`` names, which cannot share
one process's descriptor pool.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import grpc
import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.model_server import app as kserve_app
from kserve.model_server import parser as kserve_parser
from kserve.protocol.grpc import grpc_predict_v2_pb2
from kserve.protocol.grpc import server as kserve_grpc_server

#: Reported in the model configuration: perf_analyzer then sends shape [1, elements].
MAX_BATCH_SIZE = 8


class Identity(kserve.Model):
    """``out = x`` for float32 rows of ``elements`` items."""

    def __init__(self, name: str, elements: int):
        super().__init__(name)
        self.elements = elements
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "x", "datatype": "FP32", "shape": [-1, self.elements]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "out", "datatype": "FP32", "shape": [-1, self.elements]}]

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        out = InferOutput(name="out", shape=list(x.shape), datatype="FP32")
        out.set_data_from_numpy(x, binary_data=payload.use_binary_outputs)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[out],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def triton_config(name: str, elements: int) -> dict[str, Any]:
    """The model configuration perf_analyzer reads, in Triton's JSON form."""
    tensor = {"data_type": "TYPE_FP32", "dims": [elements]}
    return {
        "name": name,
        "platform": "kserve",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [{"name": "x", **tensor}],
        "output": [{"name": "out", **tensor}],
    }


def add_model_config_call(models: dict[str, int], grpc_replies: dict[str, bytes]) -> None:
    """Answer Triton's model-configuration call: JSON over HTTP, the serialized replies over gRPC."""
    for name, elements in models.items():
        config = triton_config(name, elements)
        kserve_app.add_api_route(f"/v2/models/{name}/config", lambda config=config: config, methods=["GET"])

    async def model_config(request: bytes, context: Any) -> bytes:
        # ModelConfigRequest and KServe's ModelMetadataRequest are both {name = 1; version = 2}.
        name = grpc_predict_v2_pb2.ModelMetadataRequest.FromString(request).name
        if name not in grpc_replies:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model '{name}'")
        return grpc_replies[name]

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ModelConfig": grpc.unary_unary_rpc_method_handler(
                model_config, request_deserializer=bytes, response_serializer=bytes
            )
        },
    )
    grpc_module = kserve_grpc_server.grpc_predict_v2_pb2_grpc
    add_servicer = grpc_module.add_GRPCInferenceServiceServicer_to_server

    def add_servicer_and_config(servicer: Any, server: Any) -> None:
        add_servicer(servicer, server)
        server.add_generic_rpc_handlers((handler,))

    grpc_module.add_GRPCInferenceServiceServicer_to_server = add_servicer_and_config


def main() -> None:
    args = argparse.ArgumentParser(parents=[kserve_parser], conflict_handler="resolve")
    args.add_argument("--model", action="append", required=True, help="NAME:ELEMENTS, repeatable")
    args.add_argument("--config-dir", type=Path, required=True, help="holds NAME.pb ModelConfigResponses")
    options, _ = args.parse_known_args()
    models = {name: int(elements) for name, elements in (item.split(":") for item in options.model)}
    replies = {name: (options.config_dir / f"{name}.pb").read_bytes() for name in models}
    add_model_config_call(models, replies)
    server = kserve.ModelServer(http_port=options.http_port, grpc_port=options.grpc_port)
    server.start([Identity(name, elements) for name, elements in models.items()])


if __name__ == "__main__":
    main()
