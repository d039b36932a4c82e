"""Connection limits for the HTTP front end: header and body timeouts, and a connection cap.

uvicorn's httptools protocol times out nothing before a request's headers are complete, nor a
body that arrives slowly: a connection that sends nothing, or trickles bytes, is held for as
long as the client likes, with its file descriptor. A few thousand of them (a "slowloris"
client) exhaust the process's descriptors, and then neither HTTP nor gRPC accepts anyone.
Its ``limit_concurrency`` only answers 503 to requests whose headers did arrive, so it does
not help either.

``ConnectionGuard`` enforces ``HttpLimits`` with a subclass of that protocol
(``guarded_protocol``) that files each connection under what it is waiting for:

- ``awaiting_headers``: opened, or started a request, and the headers are not complete;
- ``reading_body``: headers complete, body not.

(An idle kept-alive connection has uvicorn's keep-alive timer.) Both are dicts in insertion
order, which is the order their waits began, so one timer sweeping a few times a second finds
the expired header waits at the front and stops at the first that is not, and a connection past
the cap closes the oldest connection still waiting for headers (else an idle one) rather than
being refused: under a flood of connections that never send a request, a client that does is
still answered. Each request costs a few dict operations, not a timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from neuropod.serving.options import HttpLimits

logger = logging.getLogger("neuropod.serving")

#: File descriptors left for everything but HTTP connections (gRPC, the models' workers and
#: files, logs) when the process's limit bounds the cap: at least this many ...
_RESERVED_FDS = 256
#: ... or this share of the limit, whichever is more.
_RESERVED_SHARE = 0.1
#: The longest time between two sweeps, in seconds; shorter timeouts sweep more often.
_SWEEP_INTERVAL = 0.25
_MIN_SWEEP_INTERVAL = 0.01
#: How often, at most, a sweep logs how many connections the guard closed since the last log.
_REPORT_INTERVAL = 60.0

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"connection: close\r\n\r\n%s"
)
_FULL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"connection: close\r\n\r\n%s"
)


def _response(template: bytes, message: str) -> bytes:
    body = b'{"error": "%s"}' % message.encode()
    return template % (len(body), body)


_HEADERS_TIMED_OUT = _response(_TIMEOUT_RESPONSE, "The request's headers did not arrive in time")
_BODY_TIMED_OUT = _response(_TIMEOUT_RESPONSE, "The request's body arrived too slowly")
_FULL = _response(_FULL_RESPONSE, "The server has too many connections open")


def connection_cap(limits: HttpLimits, open_files: int | None) -> int:
    """How many HTTP connections may be open: ``max_connections``, or fewer where the process
    may open fewer than that many files beside the descriptors it keeps for the rest.

    Args:
        limits: the HTTP limits.
        open_files: the process's soft ``RLIMIT_NOFILE`` (``None``: unlimited).
    """
    if open_files is None:
        return limits.max_connections
    reserved = max(_RESERVED_FDS, int(open_files * _RESERVED_SHARE))
    return max(1, min(limits.max_connections, open_files - reserved))


class ConnectionGuard:
    """The HTTP connections of one server and the limits they are held to.

    Args:
        limits: the limits.
        cap: how many connections may be open at once (``connection_cap``).
    """

    def __init__(self, limits: HttpLimits, cap: int):
        self.limits = limits
        self.cap = cap
        #: Connection -> when its wait for headers began.
        self.awaiting_headers: dict[GuardedProtocol, float] = {}
        #: Connection -> when its body's wait began (moved on while its reading is paused).
        self.reading_body: dict[GuardedProtocol, float] = {}
        #: How many connections were closed for each reason, for logs and tests.
        self.closed = {"header_timeout": 0, "body_timeout": 0, "evicted": 0, "refused": 0}
        self._timer: asyncio.TimerHandle | None = None
        self._interval = max(
            _MIN_SWEEP_INTERVAL, min(_SWEEP_INTERVAL, limits.header_timeout / 4, limits.body_timeout / 4)
        )
        self._last_sweep = 0.0
        self._reported = dict(self.closed)
        self._last_report = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start sweeping for expired waits on ``loop`` (the loop serving HTTP)."""
        self._last_sweep = self._last_report = time.monotonic()
        self._timer = loop.call_later(self._interval, self._sweep, loop)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def make_room(self, newcomer: GuardedProtocol) -> None:
        """Called when ``newcomer`` took the open connections past the cap: close the oldest
        connection waiting for headers, else an idle one, else ``newcomer`` (503)."""
        for victim in self.awaiting_headers:
            if victim is not newcomer:
                self._evict(victim)
                return
        # Idle connections are not filed (it would cost every request): look for one, only
        # here, where no connection waits for headers and the cap is reached.
        for connection in newcomer.connections:
            if isinstance(connection, GuardedProtocol) and connection.timeout_keep_alive_task is not None:
                self._evict(connection)
                return
        self.closed["refused"] += 1
        newcomer.drop()
        newcomer.transport.write(_FULL)
        newcomer.transport.close()

    def _evict(self, victim: GuardedProtocol) -> None:
        self.closed["evicted"] += 1
        victim.drop()
        victim.transport.abort()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        try:
            self._expire_headers(now)
            self._expire_bodies(now)
        except Exception:  # the sweeps must go on: log, and try again next time
            logger.exception("Sweeping HTTP connections for timeouts failed")
        self._last_sweep = now
        if now - self._last_report >= _REPORT_INTERVAL:
            self._report(now)
        self._timer = loop.call_later(self._interval, self._sweep, loop)

    def _report(self, now: float) -> None:
        closed = {reason: count - self._reported[reason] for reason, count in self.closed.items()}
        if any(closed.values()):
            logger.warning(
                "HTTP connections closed in the last %.0f s: %s",
                now - self._last_report,
                ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in closed.items() if count),
            )
        self._reported = dict(self.closed)
        self._last_report = now

    def _expire_headers(self, now: float) -> None:
        began_by = now - self.limits.header_timeout
        expired = []
        for connection, began in self.awaiting_headers.items():
            if began > began_by:
                break  # the rest began later
            expired.append(connection)
        for connection in expired:
            self.closed["header_timeout"] += 1
            connection.time_out_headers()

    def _expire_bodies(self, now: float) -> None:
        if not self.reading_body:
            return
        limits = self.limits
        paused_for = now - self._last_sweep
        expired = []
        for connection, began in self.reading_body.items():
            if connection.flow.read_paused:
                # Waiting for the application to take what arrived: not the client's time.
                self.reading_body[connection] = began + paused_for
            elif now > began + limits.body_timeout + connection.body_received / limits.body_min_rate:
                expired.append(connection)
        for connection in expired:
            self.closed["body_timeout"] += 1
            connection.time_out_body()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, filing its connection in its server's ``ConnectionGuard``.

    ``guarded_protocol`` makes the subclass of one server, with its ``guard``.
    """

    guard: ConnectionGuard
    body_received = 0
    #: Bytes still to come of the body of a request that asked to upgrade the connection (which
    #: the parser leaves to us); ``None`` outside such a body.
    upgrade_body_left: int | None = None

    # The hooks that run for every request call uvicorn's by name: super() costs as much again
    # as the rest of the hook.

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.guard.limits.keep_alive_timeout  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.awaiting_headers[self] = time.monotonic()
        if len(self.connections) > guard.cap:
            guard.make_room(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.drop()

    def drop(self) -> None:
        """Forget this connection: it is closing."""
        guard = self.guard
        guard.awaiting_headers.pop(self, None)
        guard.reading_body.pop(self, None)
        self.connections.discard(self)

    def time_out_headers(self) -> None:
        """The request's headers are late: answer 408 and close, or, if the connection's previous
        request is still being answered, close once that answer is out."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self.guard.awaiting_headers.pop(self, None)
            cycle.keep_alive = False
            return
        self.drop()
        self.transport.write(_HEADERS_TIMED_OUT)
        self.transport.close()

    def time_out_body(self) -> None:
        """The request's body is late: answer 408 (the application's answer is dropped) and
        close; or only close, where an answer went out already."""
        self.drop()
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the application reads a disconnect, its answer goes nowhere
            cycle.message_event.set()
            self.transport.write(_BODY_TIMED_OUT)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        # uvicorn's, except for requests that ask to upgrade the connection (e.g. Java's
        # HttpClient asks for HTTP/2 with "Upgrade: h2c" on every plain-HTTP request): llhttp
        # stops at their headers and calls the message complete, so uvicorn would run them
        # with an empty body and read the body as the next request. A server may ignore an
        # upgrade it does not offer (RFC 9110, 7.8): the request is answered as HTTP/1.1.
        if self.upgrade_body_left is not None:
            self._upgrade_body(data)
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade as upgrade:
            self._ignore_upgrade(data[upgrade.args[0] :])

    def _ignore_upgrade(self, rest: bytes) -> None:
        self.parser = httptools.HttpRequestParser(self)  # the old one stays stopped
        length = 0
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and not value.strip().isdigit()):
                self.send_400_response("An upgrade request's body must have a plain Content-Length")
                return
            if name == b"content-length":
                length = int(value)
        cycle = self.cycle
        if length and cycle is not None:
            cycle.more_body = True  # the application's task has not run yet
            self.upgrade_body_left = length
            self.guard.reading_body[self] = time.monotonic()
        if rest:
            self.data_received(rest)

    def _upgrade_body(self, data: bytes) -> None:
        left = self.upgrade_body_left or 0
        body, rest = data[:left], data[left:]
        left -= len(body)
        self.upgrade_body_left = left or None
        self.on_body(body)
        if not left:
            self.guard.reading_body.pop(self, None)
            self.cycle.more_body = False
            self.cycle.message_event.set()
            if rest:
                self.data_received(rest)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's, which also marks where a kept-alive connection's next request begins: once
        # an answer is out, the keep-alive timer runs until bytes arrive, and those bytes cancel
        # it here. (Bytes that came while the answer was computed are followed by more, or the
        # timer closes the connection.) A hook in on_message_begin would cost every request.
        task = self.timeout_keep_alive_task
        if task is not None:
            task.cancel()
            self.timeout_keep_alive_task = None
            self.guard.awaiting_headers[self] = time.monotonic()

    def on_headers_complete(self) -> None:
        guard = self.guard
        guard.awaiting_headers.pop(self, None)
        self.body_received = 0
        guard.reading_body[self] = time.monotonic()
        HttpToolsProtocol.on_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        self.body_received += len(body)
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        self.guard.reading_body.pop(self, None)
        HttpToolsProtocol.on_message_complete(self)


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """The protocol class of one server: ``GuardedProtocol`` bound to its ``guard``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})
