"""The fast gRPC front end: ``inference.GRPCInferenceService`` on pygrpc-native's Rust front.

grpcio's Python server spends about 280 us of CPU per small call on this kind of machine, most
of it in its own completion-queue and thread hand-offs. pygrpc-native (the ``grpc-native``
extra) does the HTTP/2 and gRPC work in Rust threads outside the GIL and hands each call to
Python as an event; here a pool of threads takes the events and runs the same
``InferenceServicer`` methods as the grpcio front end, so each concept (decoding, auth, error
codes) still exists once. Each thread takes one call at a time and answers it itself, as
grpcio's handler threads do: a slow model holds one thread, never the others.

The Rust front serves only calls with one request message, so bidirectional
``ModelStreamInfer`` goes to a grpcio server on a private Unix socket behind it, as do the
methods the servicer leaves to the generated base (which answers ``UNIMPLEMENTED``).

What this front end does not do, and why grpcio stays the fallback: no TLS (neither does the
grpcio front end here), no response compression (requests compressed by clients are
decompressed), and a message is received whole before its size is checked against the body
limit (grpcio refuses it while it arrives), so a client can make the server hold one message
of up to 4 GiB per stream in flight. ``neuropod serve --grpc-front grpcio`` chooses grpcio.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from neuropod.errors import RpcAborted
from neuropod.protocol.grpc import service_pb2, service_pb2_grpc
from neuropod.serving.core import ServerCore
from neuropod.serving.grpc_service import (
    ENCODED_REQUESTS,
    InferenceServicer,
    listen_address,
    start_grpc_server,
)

logger = logging.getLogger("neuropod.serving")

_SERVICE = "inference.GRPCInferenceService"


class _Metadatum(NamedTuple):
    key: str
    value: str | bytes


class _Context:
    """What the servicer's methods use of grpc's ``ServicerContext``."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]):
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[_Metadatum, ...]:
        return tuple(_Metadatum(key, value) for key, value in self._metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise RpcAborted(code, details)


class _Method(NamedTuple):
    name: str
    handler: Callable[[Any, _Context], Any]
    #: ``FromString`` of the request message; None where the handler takes the bytes.
    parse: Callable[[bytes], Any] | None


def _implemented(name: str) -> bool:
    """Whether the servicer answers RPC ``name`` (the generated base answers UNIMPLEMENTED)."""
    generated = service_pb2_grpc.GRPCInferenceServiceServicer
    return getattr(InferenceServicer, name) is not getattr(generated, name)


class NativeGrpcServer:
    """The service on a pygrpc-native front; stops like a ``grpc.Server``.

    Args:
        core: what the server serves.
        host: the address to listen on.
        port: the port; 0 picks a free one.
        threads: how many calls are handled at once.

    Raises:
        OSError: the port cannot be bound.
    """

    def __init__(self, core: ServerCore, host: str, port: int, threads: int):
        from pygrpc_native import NativeGrpcFront

        self._limit = min(core.max_body_size, 2**31 - 1)
        servicer = InferenceServicer(core)
        self._methods: list[_Method] = []
        for method in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
            if method.client_streaming or method.server_streaming or not _implemented(method.name):
                continue  # the fallback's
            parse = None
            if method.name not in ENCODED_REQUESTS:
                parse = getattr(service_pb2, method.input_type.name).FromString
            self._methods.append(_Method(method.name, getattr(servicer, method.name), parse))
        address = listen_address(host, port)
        try:
            self._front = NativeGrpcFront(
                address,
                [(f"/{_SERVICE}/{method.name}", False) for method in self._methods],
                io_threads=1,
                call_details=True,
                keepalive_permit_without_calls=False,  # as grpc-core servers
            )
        except OSError as exc:
            raise OSError(f"Cannot listen for gRPC on {address}: {exc}") from None
        self.port: int = self._front.bound_port
        self._fallback_dir = tempfile.mkdtemp(prefix="neuropod-grpc-")
        try:
            socket_path = os.path.join(self._fallback_dir, "fallback.sock")
            self._fallback, _ = start_grpc_server(core, f"unix:{socket_path}", threads)
        except BaseException:
            shutil.rmtree(self._fallback_dir, ignore_errors=True)
            self._front.close()
            raise
        self._front.set_fallback(socket_path)
        self._stopping = False
        self._busy = 0
        self._idle = threading.Condition()
        self._front.start()
        self._threads = [
            threading.Thread(target=self._serve, name=f"neuropod-serve-grpc-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        receive = self._front.recv_batch_details
        while True:
            # Without a timeout, closing the front wakes only one of the threads waiting here.
            events = receive(1, 200)
            if events is None:
                return
            while events:  # popped: no request outlives its answer in this frame
                self._take(*events.pop())

    def _take(self, kind: int, call_id: int, method_id: int, payload: Any, key: Any, details: Any) -> None:
        if payload is not None and details is not None:  # a call, not a cancellation
            self._answer(call_id, self._methods[method_id], payload, details[0])

    def _answer(self, call_id: int, method: _Method, payload: bytes, metadata: Any) -> None:
        front = self._front
        with self._idle:
            if self._stopping:
                front.fail(call_id, grpc.StatusCode.UNAVAILABLE.value[0], "Server is shutting down")
                return
            self._busy += 1
        try:
            if len(payload) > self._limit:
                message = f"Received message larger than max ({len(payload)} vs. {self._limit})"
                front.fail(call_id, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message)
                return
            try:
                request = payload if method.parse is None else method.parse(payload)
            except Exception:
                front.fail(call_id, grpc.StatusCode.INTERNAL.value[0], "Exception deserializing request!")
                return
            try:
                response = method.handler(request, _Context(metadata))
            except RpcAborted as aborted:
                front.fail(call_id, aborted.code.value[0], aborted.details)
                return
            except Exception as exc:  # the servicer turns its errors into aborts; this is a bug
                logger.exception("Unexpected error answering %s", method.name)
                front.fail(call_id, grpc.StatusCode.UNKNOWN.value[0], f"Exception calling application: {exc}")
                return
            front.respond(call_id, response if isinstance(response, bytes) else response.SerializeToString())
        finally:
            with self._idle:
                self._busy -= 1
                if not self._busy:
                    self._idle.notify_all()

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, let those in flight finish for up to ``grace`` seconds, close.

        Returns:
            An event set once the server has stopped.
        """
        done = threading.Event()
        deadline = time.monotonic() + (grace or 0.0)
        with self._idle:
            self._stopping = True

        def finish() -> None:
            # The fallback first refuses new streams and lets its own drain; the front closes
            # after the calls in flight, and with it the connection it holds to the fallback.
            fallback_done = self._fallback.stop(max(0.0, deadline - time.monotonic()))
            with self._idle:
                self._idle.wait_for(lambda: not self._busy, max(0.0, deadline - time.monotonic()))
            self._front.close()
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
            fallback_done.wait()
            shutil.rmtree(self._fallback_dir, ignore_errors=True)
            done.set()

        threading.Thread(target=finish, name="neuropod-serve-grpc-stop", daemon=True).start()
        return done
