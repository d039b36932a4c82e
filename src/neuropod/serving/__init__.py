"""Serving neuropod packages over the Open Inference Protocol (KServe v2), HTTP and gRPC.

::

    Server                 server.py        lifetime: load, serve on one event loop, drain, stop
    ├── ServerCore         core.py          what both front ends share: models, shm, auth
    │   ├── ModelRepository   repository.py the models: explicit packages + a repository folder
    │   │   └── ServedModel   served_model.py  a loaded model: metadata, threads, stats
    │   │       ├── options.py, config_override.py, metadata.py, stats.py
    │   │       ├── SequenceScheduler  sequences.py  stateful models (sequence_batching.py: config)
    │   │       └── load_parameters.py  a load's config override and uploaded files
    │   └── SharedMemoryRegistry  shm.py    registered system shared-memory regions
    ├── HttpApp            http_app.py      ASGI routes (uvicorn), http_infer.py the infer call
    │   ├── http_guard.py  connection limits: header/body timeouts, connection cap
    │   ├── compression.py gzip / deflate bodies
    │   └── metrics.py     Prometheus /metrics
    └── InferenceServicer  grpc_service.py  inference.GRPCInferenceService
        ├── grpc_stream.py   ModelStreamInfer: streams, decoupled models
        └── on grpc_fronts.py's choice: NativeGrpcServer (grpc_native.py, pygrpc-native) or grpcio

Errors and their status codes: ``neuropod.serving.errors``. The wire formats shared with the
remote backend: ``neuropod.protocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neuropod.serving.options import OPTIONS_FILE, HttpLimits, ModelOptions

if TYPE_CHECKING:
    from neuropod.serving.server import TOKEN_ENV, Server

__all__ = ["OPTIONS_FILE", "TOKEN_ENV", "HttpLimits", "ModelOptions", "Server"]


def __getattr__(name: str) -> Any:
    # The server (uvicorn, the protocol codecs) is imported on first use, so that reading the
    # options (``neuropod serve``'s arguments) does not import it.
    if name in ("Server", "TOKEN_ENV"):
        from neuropod.serving import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
