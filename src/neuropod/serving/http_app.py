"""The HTTP front end: a plain ASGI application, served by uvicorn.

A plain ASGI callable rather than a framework: an inference request passes through one path
split and one handler, which keeps the server's own time per small request to tens of
microseconds (a framework's routing, request and response objects cost as much again).

Every answer that is not a success is ``{"error": "..."}`` with the status of the failure
(see ``neuropod.serving.errors``). Health checks need no token; everything else does when the
server has one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from neuropod.errors import ClientGone, NeuropodError
from neuropod.protocol import json_codec
from neuropod.protocol.binary import parse_header_length
from neuropod.protocol.keys import HEADER_LENGTH
from neuropod.serving import compression, http_infer, load_parameters, metrics
from neuropod.serving.core import ServerCore
from neuropod.serving.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServingError,
    Unavailable,
    classify,
)

logger = logging.getLogger("neuropod.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = [(b"content-type", b"application/json")]
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()
#: Bodies up to this size go out in one write, not one per part: each write is a send to the
#: socket, and a client woken by a partial answer costs more than the copy.
_COALESCE_LIMIT = 64 * 1024
#: The paths answered without a token: the server's liveness and readiness, nothing that
#: names a model.
_PUBLIC_PATHS = (["", "v2", "health", "live"], ["", "v2", "health", "ready"])
_MODEL_ACTIONS = {"": "GET", "ready": "GET", "infer": "POST", "config": "GET", "stats": "GET"}


class Request:
    """What a handler needs of an HTTP request."""

    __slots__ = ("body", "headers", "method", "parts")

    def __init__(self, method: str, parts: list[str], headers: dict[bytes, bytes], body: bytes):
        self.method = method
        self.parts = parts
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty).

        Raises:
            BadRequest: it is not a JSON object.
        """
        if not self.body:
            return {}
        try:
            value = json_codec.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"The request's JSON is malformed: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest(f"The request must be a JSON object, got {type(value).__name__}")
        return value


Response = tuple[int, Headers, Sequence[bytes | memoryview]]


class HttpApp:
    """The ASGI application of one server.

    Args:
        core: what the server serves.
    """

    def __init__(self, core: ServerCore):
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        try:
            request = await self._read(scope, receive)
            status, headers, parts = await self._route(request)
        except ClientGone:
            return  # no one to answer
        except Exception as exc:
            status, _ = classify(exc)
            if status == 500 and not isinstance(exc, (ServingError, NeuropodError)):
                logger.exception("Unexpected error answering %s %s", scope["method"], scope["path"])
            headers, parts = _JSON, [json_codec.dumps({"error": str(exc)})]
            if status == 401:
                headers = [*_JSON, (b"www-authenticate", b"Bearer")]
        length = 0
        for part in parts:  # a loop, not a generator: this runs for every request
            length += len(part) if isinstance(part, bytes) else part.nbytes
        if len(parts) > 1 and length <= _COALESCE_LIMIT:
            parts = [b"".join(parts)]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(length).encode())],
            }
        )
        last = len(parts) - 1
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
        if not parts:
            await send({"type": "http.response.body", "body": b""})

    async def _read(self, scope: Scope, receive: Receive) -> Request:
        headers = dict(scope["headers"])
        parts = scope["path"].split("/")
        request = Request(scope["method"], parts, headers, b"")
        if parts not in _PUBLIC_PATHS:
            authorization = headers.get(b"authorization")
            self.core.check_token(None if authorization is None else authorization.decode("latin-1"))
        limit = self.core.max_body_size
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"The request body has {int(declared)} bytes; this server accepts at most {limit}"
            )
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The request body is over this server's limit of {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                if message["type"] != "http.request":
                    raise ClientGone  # closed, or timed out by the connection guard
                break
        request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return request

    async def _route(self, request: Request) -> Response:
        parts = request.parts
        if len(parts) < 2 or parts[0]:
            raise NotFound(f"No such path: {'/'.join(parts)}")
        if parts[1] == "metrics" and len(parts) == 2:
            _allow(request, "GET")
            text = metrics.render(
                [served.stats for served in self.core.repository.served()],
                self.core.repository.ready_states(),
            )
            return 200, [(b"content-type", metrics.CONTENT_TYPE.encode())], [text.encode()]
        if parts[1] != "v2":
            raise NotFound(f"No such path: {'/'.join(parts)}")
        rest = parts[2:]
        head = rest[0] if rest else ""
        if head == "models":
            return await self._models(request, rest[1:])
        if head == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            _allow(request, "GET")
            ok = rest[1] == "live" or self.core.accepting
            return (200 if ok else 503), _JSON, [json_codec.dumps({rest[1]: ok})]
        if head == "" and len(rest) <= 1:
            _allow(request, "GET")
            return _ok(self.core.metadata())
        if head in ("systemsharedmemory", "cudasharedmemory"):
            return self._shared_memory(request, head == "cudasharedmemory", rest[1:])
        if head == "repository":
            return await self._repository(request, rest[1:])
        raise NotFound(f"No such path: {'/'.join(parts)}")

    async def _models(self, request: Request, rest: list[str]) -> Response:
        core = self.core
        if rest == ["stats"]:
            _allow(request, "GET")
            return _ok({"model_stats": core.statistics(None)})
        if not rest or not rest[0]:
            raise NotFound("No model named in the path")
        name, tail = rest[0], rest[1:]
        if tail[:1] == ["versions"] and len(tail) >= 2:
            core.check_version(name, tail[1])
            tail = tail[2:]
        action = tail[0] if len(tail) == 1 else "" if not tail else None
        if action not in _MODEL_ACTIONS:
            raise NotFound(f"No such path: /v2/models/{'/'.join(rest)}")
        _allow(request, _MODEL_ACTIONS[action])
        if action == "infer":
            served = core.repository.get(name)
            if not core.accepting:
                raise Unavailable("The server is shutting down")
            try:
                header_length = parse_header_length(request.headers.get(_HEADER_LENGTH))
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            encoding = request.headers.get(b"content-encoding")
            body = request.body
            if encoding is not None:
                body = compression.inflate(body, encoding.decode("latin-1"), core.max_body_size)
            headers, parts = await http_infer.infer(served, core.shm, body, header_length)
            compress = compression.response_encoding(request.headers.get(b"accept-encoding"))
            if compress is not None:
                headers = [*headers, (b"content-encoding", compress.encode())]
                parts = [compression.deflate(parts, compress)]
            return 200, headers, parts
        if action == "ready":
            ready = core.repository.is_ready(name)
            return (200 if ready else 503), _JSON, [json_codec.dumps({"name": name, "ready": ready})]
        if action == "stats":
            return _ok({"model_stats": core.statistics(name)})
        served = core.repository.get(name)
        if action == "config":
            return _ok(served.config)
        return _ok(served.metadata)

    def _shared_memory(self, request: Request, cuda: bool, rest: list[str]) -> Response:
        region = ""
        if len(rest) == 3 and rest[0] == "region":
            region, rest = rest[1], rest[2:]
        action = rest[0] if len(rest) == 1 else None
        if action == "status":
            _allow(request, "GET")
            if cuda:
                if region:
                    raise NotFound(f"CUDA shared memory region '{region}' is not registered")
                return _ok([])
            return _ok(self.core.shm.status(region or None))
        if action == "unregister":
            _allow(request, "POST")
            if not cuda:
                self.core.shm.unregister(region or None)
            return _ok({})
        if action == "register" and region:
            _allow(request, "POST")
            if cuda:
                raise BadRequest(
                    "CUDA shared memory is not supported by this server; use system shared memory"
                )
            body = request.json()
            self.core.shm.register(region, body.get("key"), body.get("offset", 0), body.get("byte_size"))
            return _ok({})
        raise NotFound(f"No such shared memory path: {'/'.join(rest)}")

    async def _repository(self, request: Request, rest: list[str]) -> Response:
        _allow(request, "POST")
        if rest == ["index"]:
            ready = request.json().get("ready", False)
            return _ok(await self.core.index(bool(ready)))
        if len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
            body = request.json()
            if rest[2] == "load":
                await self.core.load(rest[1], load_parameters.from_json(body.get("parameters")))
            else:
                await self.core.unload(rest[1])
            return _ok({})
        raise NotFound(f"No such repository path: {'/'.join(rest)}")


def _ok(value: Any) -> Response:
    return 200, _JSON, [json_codec.dumps(value)]


def _allow(request: Request, method: str) -> None:
    if request.method != method:
        raise MethodNotAllowed(f"{request.method} is not allowed here; use {method}")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
