"""The serving benchmark's floor: ``neuropod serve`` with inference answered from a cache.

Runs the real server (uvicorn's HTTP and grpcio's gRPC front ends, routing, auth, statistics)
but answers every inference request of a model with the bytes of its first answer: no decoding,
no model, no encoding. What perf_analyzer measures against it is the cost of the front ends and
the client alone, the most any server built on them could reach on this machine. It is a
measuring tool, not a server: the cached answers ignore the requests' data.

    python bench/serve_floor.py --repository DIR --http-port P --grpc-port Q
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from neuropod.protocol.grpc import service_pb2
from neuropod.protocol.grpc_framing import RAW_INPUT_FIELD, split_raw_contents
from neuropod.serving import Server, http_infer
from neuropod.serving.grpc_service import InferenceServicer
from neuropod.serving.shm import SharedMemoryRegistry


def cache_http_answers() -> None:
    """Make ``POST /v2/models/{m}/infer`` answer with the first answer of each model."""
    compute = http_infer.infer
    answers: dict[tuple[str, int], Any] = {}

    async def infer(served: Any, shm: SharedMemoryRegistry, body: bytes, header_length: int | None) -> Any:
        key = (served.name, len(body))  # JSON and binary requests differ in length
        answer = answers.get(key)
        if answer is None:
            answer = answers[key] = await compute(served, shm, body, header_length)
        served.stats.record_success(0.0, 0.0, 0.0, 0.0, 0.0)  # perf_analyzer reads the counts
        return answer

    http_infer.infer = infer


def cache_grpc_answers() -> None:
    """Make gRPC ``ModelInfer`` answer with the first answer of each model."""
    compute = InferenceServicer.ModelInfer
    answers: dict[str, bytes] = {}

    def model_infer(self: InferenceServicer, data: bytes, context: Any) -> bytes:
        request, _ = split_raw_contents(data, service_pb2.ModelInferRequest, RAW_INPUT_FIELD)
        answer = answers.get(request.model_name)
        if answer is None:
            answer = answers[request.model_name] = compute(self, data, context)
        else:
            self.core.repository.get(request.model_name).stats.record_success(0.0, 0.0, 0.0, 0.0, 0.0)
        return answer

    InferenceServicer.ModelInfer = model_infer  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    cache_http_answers()
    cache_grpc_answers()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Server(repository=args.repository, http_port=args.http_port, grpc_port=args.grpc_port):
        stop.wait()


if __name__ == "__main__":
    main()
