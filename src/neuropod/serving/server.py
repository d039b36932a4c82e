"""The server's lifetime: load the models, serve HTTP and gRPC, drain, stop.

HTTP runs on an event loop (uvloop when installed) in a thread of its own, gRPC on grpc's
thread pool, so a server can be embedded in any program and its tests; ``neuropod serve``
runs the same object and waits for a signal.

Port 0 picks a free port; the server says which it got:

>>> with Server(["adder.zip"], http_port=0, grpc_port=0) as server:
...     print(server.http_url, server.grpc_address)
http://127.0.0.1:... 127.0.0.1:...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from neuropod.closing import Closing
from neuropod.serving.core import DEFAULT_MAX_BODY_SIZE, ServerCore
from neuropod.serving.grpc_fronts import resolve_front
from neuropod.serving.http_app import HttpApp
from neuropod.serving.options import HttpLimits, ModelOptions
from neuropod.serving.repository import ModelRepository

if TYPE_CHECKING:
    from neuropod.serving.http_guard import ConnectionGuard

logger = logging.getLogger("neuropod.serving")

#: The environment variable holding a bearer token when none is passed.
TOKEN_ENV = "NEUROPOD_SERVE_TOKEN"
#: Connections the kernel queues before HTTP accepts them (the kernel caps it at somaxconn).
_BACKLOG = 4096


class Server(Closing):
    """An Open Inference Protocol server for neuropod packages, over HTTP and gRPC.

    Use it as a context manager, or call ``start`` and ``stop``. ``start`` loads every model
    before it returns; ``stop`` stops accepting requests, lets those in flight finish (up to
    ``drain_timeout`` seconds), then closes the models.

    Args:
        paths: packages to serve under their model names.
        repository: a folder of models (see ``neuropod.serving.options`` for its layout).
        host: the address to listen on (loopback by default).
        http_port: the HTTP port; 0 picks a free one (see ``http_port`` after ``start``);
            ``None`` serves no HTTP.
        grpc_port: the gRPC port, likewise.
        load_options: default ``load_neuropod`` options of every model (e.g. ``use_ope``).
        model_options: options of models by served name, over everything else.
        auth_token: a bearer token that every request but health checks must carry; default
            the ``NEUROPOD_SERVE_TOKEN`` environment variable, if set.
        max_body_size: the largest request accepted, in bytes (HTTP answers 413 past it,
            gRPC ``RESOURCE_EXHAUSTED``).
        grpc_threads: how many gRPC calls run at once, further ones (health checks too) waiting
            their turn; default: one per CPU, or one per slot of the models loaded at start
            where they have more (see ``default_grpc_threads``).
        drain_timeout: how long ``stop`` waits for requests in flight, and for the models'
            calls still running.
        http_limits: HTTP connection timeouts and cap (default ``HttpLimits()``; see
            docs/serving/limits.md). ``start`` also raises the process's soft limit of open
            files to its hard limit, so that connections are not refused for descriptors first.
        server_name: the server's ``name`` in its metadata (``GET /v2``, ``ServerMetadata``).
        grpc_front: which gRPC server runs the service: ``native`` (pygrpc-native, the
            ``grpc-native`` extra: 2-3x fewer CPU microseconds per call), ``grpcio``, or
            ``auto`` (native where installed); see ``neuropod.serving.grpc_native``.

    Raises:
        ValueError: no port to serve on, no model source, or ``grpc_front`` cannot be had.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]] = (),
        *,
        repository: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        http_port: int | None = 8000,
        grpc_port: int | None = 8001,
        load_options: Mapping[str, Any] | None = None,
        model_options: Mapping[str, ModelOptions] | None = None,
        auth_token: str | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        grpc_threads: int | None = None,
        drain_timeout: float = 30.0,
        server_name: str = "neuropod",
        grpc_front: str = "auto",
        http_limits: HttpLimits | None = None,
    ):
        if http_port is None and grpc_port is None:
            raise ValueError("A server needs an HTTP port, a gRPC port, or both")
        if not paths and repository is None:
            raise ValueError("Nothing to serve: give package paths, a repository folder, or both")
        if auth_token is None:
            auth_token = os.environ.get(TOKEN_ENV) or None
        if grpc_threads is not None and grpc_threads < 1:
            raise ValueError(f"grpc_threads must be at least 1, got {grpc_threads}")
        if not server_name.strip():
            raise ValueError("server_name must not be empty")
        self.host = host
        self._grpc_threads = grpc_threads
        self.grpc_front = resolve_front(grpc_front)
        self.drain_timeout = drain_timeout
        if http_limits is not None and not isinstance(http_limits, HttpLimits):
            raise TypeError(f"http_limits must be an HttpLimits, got {type(http_limits).__name__}")
        self.http_limits = http_limits if http_limits is not None else HttpLimits()
        #: Enforces ``http_limits`` once HTTP is served (``None`` before, or without HTTP).
        self.http_guard: ConnectionGuard | None = None
        self._ports = {"http": http_port, "grpc": grpc_port}
        self.core = ServerCore(
            ModelRepository(paths, repository, load_options=load_options, model_options=model_options),
            auth_token=auth_token,
            max_body_size=max_body_size,
            name=server_name,
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._grpc_server: Any = None
        self._stopped = False
        #: The models whose calls outlived ``drain_timeout`` at ``stop``: left open, their
        #: threads still running (a hung model).
        self.left_running: list[str] = []

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port (``None`` without HTTP)."""
        return self._ports["http"]

    @property
    def grpc_port(self) -> int | None:
        """The bound gRPC port (``None`` without gRPC)."""
        return self._ports["grpc"]

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP front end."""
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC front end."""
        return f"{_url_host(self.host)}:{self.grpc_port}"

    def start(self) -> Server:
        """Load the models, bind the ports and start serving; return once requests are answered.

        Returns:
            The server itself.

        Raises:
            NeuropodError: an explicitly given package failed to load.
            OSError: a port cannot be bound.
            RuntimeError: the server was started before.
        """
        if self._thread is not None:
            raise RuntimeError("The server was started already; make a new Server to serve again")
        self.core.repository.load_all()
        open_files = raise_open_file_limit()
        try:
            if self._ports["grpc"] is not None:
                self._start_grpc(self._ports["grpc"])
            http_socket = None
            if self._ports["http"] is not None:
                from neuropod.serving.http_guard import ConnectionGuard, connection_cap

                cap = connection_cap(self.http_limits, open_files)
                if cap < self.http_limits.max_connections:
                    logger.warning(
                        "HTTP serves at most %d connections, not max_connections %d: the process "
                        "may open %d files, and keeps some for gRPC and the models",
                        cap, self.http_limits.max_connections, open_files,
                    )  # fmt: skip
                self.http_guard = ConnectionGuard(self.http_limits, cap)
                http_socket = socket.create_server(
                    (self.host, self._ports["http"]), reuse_port=False, backlog=_BACKLOG
                )
                self._ports["http"] = http_socket.getsockname()[1]
            self._thread = threading.Thread(
                target=self._run, args=(http_socket,), name="neuropod-serve", daemon=True
            )
            self._thread.start()
            self._started.wait()
            if self._error is not None:
                self._thread.join()
                raise self._error
        except BaseException:
            self.stop()
            raise
        return self

    def _start_grpc(self, port: int) -> None:
        threads = self._grpc_threads
        if threads is None:
            threads = default_grpc_threads(s.options.threads for s in self.core.repository.served())
        if self.grpc_front == "native":
            from neuropod.serving.grpc_native import NativeGrpcServer

            self._grpc_server = NativeGrpcServer(self.core, self.host, port, threads)
            self._ports["grpc"] = self._grpc_server.port
        else:
            from neuropod.serving.grpc_service import listen_address, start_grpc_server

            address = listen_address(self.host, port)
            self._grpc_server, self._ports["grpc"] = start_grpc_server(self.core, address, threads)

    def stop(self) -> None:
        """Stop accepting requests, drain those in flight, close the models. Idempotent.

        It returns after about ``drain_timeout`` at most: a model whose calls run longer is
        left open and named in ``left_running``.
        """
        if self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        self.core.accepting = False
        loop, event, thread = self._loop, self._stop_requested, self._thread
        grpc_stopped = None if self._grpc_server is None else self._grpc_server.stop(self.drain_timeout)
        if loop is not None and event is not None and thread is not None and thread.is_alive():
            # RuntimeError: the loop closed in between.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
            thread.join()
        if grpc_stopped is not None:
            grpc_stopped.wait()
        remaining = max(0.0, self.drain_timeout - (time.monotonic() - started))
        self.left_running = self.core.repository.close(remaining)
        self.core.shm.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); return whether it stopped."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> Server:
        return self.start()

    def close(self) -> None:
        """``stop``: what a ``with`` block ends with."""
        self.stop()

    def _run(self, http_socket: socket.socket | None) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(http_socket))
        except BaseException as exc:  # reported to start(), or logged once serving
            if not self._started.is_set():
                self._error = exc
            else:
                logger.exception("The server's event loop failed")
        finally:
            self._started.set()
            loop.close()

    async def _serve(self, http_socket: socket.socket | None) -> None:
        self._stop_requested = asyncio.Event()
        http_server = http_task = None
        try:
            if http_socket is not None:
                assert self.http_guard is not None
                self.http_guard.start(asyncio.get_running_loop())
                http_server = _uvicorn_server(HttpApp(self.core), self.drain_timeout, self.http_guard)
                http_task = asyncio.ensure_future(http_server.serve(sockets=[http_socket]))
                while not http_server.started and not http_task.done():
                    await asyncio.sleep(0.005)
                if http_task.done():
                    http_task.result()
                    raise RuntimeError("The HTTP server stopped while starting")
            self._started.set()
            await self._stop_requested.wait()
        finally:
            self.core.accepting = False
            if http_server is not None:
                http_server.should_exit = True
            if http_task is not None:
                await asyncio.gather(http_task, return_exceptions=True)
            if http_socket is not None:
                http_socket.close()
            if self.http_guard is not None:
                self.http_guard.stop()


def default_grpc_threads(model_slots: Iterable[int] = ()) -> int:
    """How many gRPC calls run at once by default: one per CPU (at least 2), or one per slot of
    the served models (``ModelOptions.threads``) where they have more.

    grpc's handler threads run the models, holding the GIL for all but a framework's compute,
    so threads past that mostly wait and wake one another: on 2 cores, 2 threads answer small
    requests from 8 clients about 1.35x faster than 16.
    """
    return max(2, os.cpu_count() or 1, sum(model_slots))


def raise_open_file_limit() -> int | None:
    """Raise the process's soft limit of open files to its hard limit; return the new soft
    limit (``None``: unlimited).

    Each connection holds a descriptor, and the usual soft limit (1,024) is a small share of
    what the hard limit allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. a hard limit over the kernel's nr_open
            logger.warning("Cannot raise the limit of open files from %d to %d: %s", soft, hard, exc)
    return None if soft == resource.RLIM_INFINITY else soft


def _uvicorn_server(app: HttpApp, drain_timeout: float, guard: ConnectionGuard) -> Any:
    import uvicorn

    from neuropod.serving.http_guard import guarded_protocol

    config = uvicorn.Config(
        app,
        http=guarded_protocol(guard),
        ws="none",  # an upgrade to a WebSocket would leave the guard's sight
        lifespan="off",
        log_config=None,  # leave the application's logging alone
        access_log=False,
        proxy_headers=False,  # a middleware on every request otherwise
        server_header=False,
        timeout_graceful_shutdown=math.ceil(drain_timeout),
        backlog=_BACKLOG,
    )
    return uvicorn.Server(config)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
