"""The gRPC front end: ``inference.GRPCInferenceService`` on grpc's thread-pool server.

grpc's synchronous server rather than ``grpc.aio``: measured on loopback it spends less time
per call, and its handler threads can run a model directly, with no hop to another thread.

Every RPC of the service is answered except tracing and log settings (``UNIMPLEMENTED``);
streaming inference is ``neuropod.serving.grpc_stream``'s. Tensors come in as
``raw_input_contents`` (or typed contents, or a shared-memory region) and go out as
``raw_output_contents``, one entry per output in order (empty for an output written to shared
memory). ``ModelInfer`` takes and gives encoded
messages so that raw contents are neither copied in nor out of protobuf objects (see
``neuropod.protocol.grpc_framing``); input arrays view the received message. Failures are
gRPC status codes with the message (see ``neuropod.serving.errors``). A decoupled model is
served by ``ModelStreamInfer`` only: ``ModelInfer`` answers it ``UNIMPLEMENTED``, as Triton does.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import json_format

from neuropod.errors import NeuropodError
from neuropod.protocol import grpc_codec
from neuropod.protocol.grpc import MESSAGE_SIZE_OPTIONS, service_pb2, service_pb2_grpc
from neuropod.serving import load_parameters
from neuropod.serving.core import ServerCore
from neuropod.serving.errors import BadRequest, NotFound, ServingError, Unavailable, Unsupported, classify
from neuropod.serving.grpc_stream import StreamCall
from neuropod.serving.metadata import metadata_properties
from neuropod.serving.served_model import ServedModel
from neuropod.serving.stats import RequestTimer

logger = logging.getLogger("neuropod.serving")

Handler = Callable[[Any, Any, grpc.ServicerContext], Any]


#: RPCs whose handler takes the encoded request message (see ``_EncodedModelInfer``).
ENCODED_REQUESTS = frozenset({"ModelInfer"})


def listen_address(host: str, port: int) -> str:
    """gRPC's form of a host and port (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_grpc_server(core: ServerCore, address: str, threads: int) -> tuple[grpc.Server, int]:
    """Start the gRPC front end on grpcio.

    Args:
        core: what the server serves.
        address: where to listen: ``host:port`` (port 0 picks a free one) or ``unix:PATH``.
        threads: how many calls are handled at once (see ``server.default_grpc_threads``).

    Returns:
        ``(server, bound_port)``.

    Raises:
        OSError: the port cannot be bound.
    """
    limit = min(core.max_body_size, 2**31 - 1)
    # gRPC takes the first of repeated options, so the body limit replaces the default one.
    sizes = [(key, value) for key, value in MESSAGE_SIZE_OPTIONS if key != "grpc.max_receive_message_length"]
    options = [*sizes, ("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)]
    server = grpc.server(
        ThreadPoolExecutor(threads, thread_name_prefix="neuropod-serve-grpc"), options=options
    )
    servicer = InferenceServicer(core)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, _EncodedModelInfer(server))
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"Cannot listen for gRPC on {address}: {exc}") from None
    server.start()
    return server, bound


class _EncodedModelInfer:
    """Passes the generated service registration on to a server, with ``ModelInfer`` and
    ``ModelStreamInfer`` registered without (de)serializers, so that the servicer gets and
    returns their bytes, and
    ``ModelMetadata`` without a response serializer: its answer carries the protocol's
    ``properties``, which the generated message lacks (see ``neuropod.protocol.grpc_codec``)."""

    def __init__(self, server: grpc.Server):
        self.server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: the generated code registers the same handlers next, by name."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        encoded = grpc.unary_unary_rpc_method_handler(handlers["ModelInfer"].unary_unary)
        metadata = handlers["ModelMetadata"]
        encoded_metadata = grpc.unary_unary_rpc_method_handler(
            metadata.unary_unary, request_deserializer=metadata.request_deserializer
        )
        stream = grpc.stream_stream_rpc_method_handler(handlers["ModelStreamInfer"].stream_stream)
        handlers = {
            **handlers,
            "ModelInfer": encoded,
            "ModelStreamInfer": stream,
            "ModelMetadata": encoded_metadata,
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        self.server.add_registered_method_handlers(service, handlers)


def _rpc(public: bool = False) -> Callable[[Handler], Handler]:
    """Wrap an RPC: check the token (unless ``public``), turn exceptions into status codes."""

    def decorate(method: Handler) -> Handler:
        @functools.wraps(method)
        def wrapper(self: InferenceServicer, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if not public and self.core.auth_token is not None:
                    self.core.check_token(_metadata(context, "authorization"))
                return method(self, request, context)
            except Exception as exc:
                _, code = classify(exc)
                if code == "INTERNAL" and not isinstance(exc, (ServingError, NeuropodError)):
                    logger.exception("Unexpected error answering %s", method.__name__)
                message = str(exc)
            context.abort(getattr(grpc.StatusCode, code), message)

        return wrapper

    return decorate


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]  # generated, untyped
    """The RPCs of one server.

    Args:
        core: what the server serves.
    """

    def __init__(self, core: ServerCore):
        self.core = core

    @_rpc(public=True)
    def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    @_rpc(public=True)
    def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.core.accepting)

    @_rpc()
    def ModelReady(self, request: Any, context: Any) -> Any:
        self.core.check_version(request.name, request.version)
        return service_pb2.ModelReadyResponse(ready=self.core.repository.is_ready(request.name))

    @_rpc()
    def ServerMetadata(self, request: Any, context: Any) -> Any:
        return json_format.ParseDict(self.core.metadata(), service_pb2.ServerMetadataResponse())

    @_rpc()
    def ModelMetadata(self, request: Any, context: Any) -> bytes:
        served = self._model(request.name, request.version)
        return grpc_codec.encode_model_metadata(served.metadata, metadata_properties(served.metadata))

    @_rpc()
    def ModelConfig(self, request: Any, context: Any) -> Any:
        served = self._model(request.name, request.version)
        response = service_pb2.ModelConfigResponse()
        json_format.ParseDict(served.config, response.config)
        return response

    @_rpc()
    def ModelStatistics(self, request: Any, context: Any) -> Any:
        self.core.check_version(request.name, request.version)
        stats = {"model_stats": self.core.statistics(request.name or None)}
        return json_format.ParseDict(stats, service_pb2.ModelStatisticsResponse())

    @_rpc()
    def RepositoryIndex(self, request: Any, context: Any) -> Any:
        index = self.core.repository.index(request.ready)
        return json_format.ParseDict({"models": index}, service_pb2.RepositoryIndexResponse())

    @_rpc()
    def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        self.core.load_blocking(request.model_name, load_parameters.from_grpc(request.parameters))
        return service_pb2.RepositoryModelLoadResponse()

    @_rpc()
    def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        self.core.repository.unload(request.model_name)
        return service_pb2.RepositoryModelUnloadResponse()

    @_rpc()
    def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        self.core.shm.register(request.name, request.key, request.offset, request.byte_size)
        return service_pb2.SystemSharedMemoryRegisterResponse()

    @_rpc()
    def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        self.core.shm.unregister(request.name or None)
        return service_pb2.SystemSharedMemoryUnregisterResponse()

    @_rpc()
    def SystemSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        response = service_pb2.SystemSharedMemoryStatusResponse()
        for region in self.core.shm.status(request.name or None):
            json_format.ParseDict(region, response.regions[region["name"]])
        return response

    @_rpc()
    def CudaSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        raise BadRequest("CUDA shared memory is not supported by this server; use system shared memory")

    @_rpc()
    def CudaSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        return service_pb2.CudaSharedMemoryUnregisterResponse()

    @_rpc()
    def CudaSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        if request.name:
            raise NotFound(f"CUDA shared memory region '{request.name}' is not registered")
        return service_pb2.CudaSharedMemoryStatusResponse()

    @_rpc()
    def ModelInfer(self, data: bytes, context: Any) -> bytes:
        started = time.perf_counter()
        message, raws = grpc_codec.split_request(data)
        served = self._model(message.model_name, message.model_version)
        if not self.core.accepting:
            raise Unavailable("The server is shutting down")
        if served.decoupled:
            raise Unsupported("ModelInfer RPC doesn't support models with decoupled transaction policy")
        with RequestTimer(served.stats, started) as timer:
            request = grpc_codec.read_request(message, raws)
            response = served.answer(request, self.core.shm, timer)
            return grpc_codec.encode_response(response)

    def ModelStreamInfer(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        try:
            if self.core.auth_token is not None:
                self.core.check_token(_metadata(context, "authorization"))
        except Exception as exc:
            _, code = classify(exc)
            context.abort(getattr(grpc.StatusCode, code), str(exc))
        return StreamCall(self.core, requests, context).answers()

    def _model(self, name: str, version: str) -> ServedModel:
        self.core.check_version(name, version)
        return self.core.repository.get(name)


def _metadata(context: Any, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            value = item.value
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None
