"""gRPC ``ModelStreamInfer``: many requests on one bidirectional stream, answered as Triton does.

Each request on the stream is the same ``ModelInferRequest`` that ``ModelInfer`` takes, read by
the same codec. A thread reads the stream while earlier requests run, each in a thread of its
model's pool, so several requests of one stream run at once (at most ``MAX_IN_FLIGHT``: then
reading waits, and gRPC's flow control holds the client back). The call's handler thread writes
the answers, one at a time:

- a model that is not decoupled answers each request with one response, in the order the
  requests arrived (as Triton does), with ``triton_final_response`` true;
- a decoupled model's responses go out as it produces them, interleaved across requests, with
  ``triton_final_response`` false; when its iterator ends, an empty response with the flag
  true follows if the request asked for it (``triton_enable_empty_final_response``).

A failed request is answered in the stream (``error_message``, with the request's ``id``), and
the stream goes on. A client error (4xx) carries only the ``id``, as Triton's errors from before
a request is issued do; a model's failure also carries the model, its version and
``triton_final_response`` true. With the header ``triton_grpc_error: true`` a model's failure
ends the stream with its status code instead. Once the client half-closes and every request is
answered, the call ends with OK; a cancelled call stops the models' streams at their next
response. When the server stops, a stream ends (OK) once no request of it is running, and
requests that still arrive are answered ``UNAVAILABLE`` in the stream.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import grpc

from neuropod.errors import NeuropodError
from neuropod.protocol import grpc_codec
from neuropod.protocol.infer import VERSION, InferResponse
from neuropod.protocol.keys import EMPTY_FINAL_RESPONSE, FINAL_RESPONSE
from neuropod.serving.core import ServerCore
from neuropod.serving.errors import BadRequest, ServingError, Unavailable, classify
from neuropod.serving.served_model import ServedModel
from neuropod.serving.stats import RequestTimer

logger = logging.getLogger("neuropod.serving")

#: The most requests of one stream that run at once; reading the stream waits beyond it.
MAX_IN_FLIGHT = 64
#: The header that makes a model's failure end the stream with its status (Triton's).
ERROR_HEADER = "triton_grpc_error"
#: How often an idle stream checks whether the server is stopping.
_SHUTDOWN_CHECK_S = 0.2
#: Triton's answer to a request that arrives on a stream while the server shuts down.
SHUTTING_DOWN = "GRPC server is shutting down and has stopped accepting new requests."


class _Abort:
    """Ends the stream with a status instead of answering in it (``triton_grpc_error``)."""

    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str):
        self.code = code
        self.message = message


Answer = bytes | _Abort


class _Ticket:
    """A request's place in the stream's order (models that are not decoupled)."""

    __slots__ = ("answers", "done")

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.done = False


class StreamCall:
    """One ``ModelStreamInfer`` call: reads its requests, runs them, writes their answers.

    Args:
        core: what the server serves.
        requests: the call's encoded requests, as gRPC delivers them.
        context: the call's context.
    """

    def __init__(self, core: ServerCore, requests: Iterator[bytes], context: grpc.ServicerContext):
        self.core = core
        self._requests = requests
        self._context = context
        self._out: queue.SimpleQueue[Answer | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._order: deque[_Ticket] = deque()
        self._in_flight = 0
        self._reading = True
        self._room = threading.Semaphore(MAX_IN_FLIGHT)
        self._cancelled = threading.Event()
        headers = {item.key: item.value for item in context.invocation_metadata() or ()}
        self._errors_end_stream = str(headers.get(ERROR_HEADER, "")).lower() == "true"

    def answers(self) -> Iterator[bytes]:
        """The encoded ``ModelStreamInferResponse`` messages, as they are ready."""
        self._context.add_callback(self._ended)
        threading.Thread(target=self._read, name="neuropod-serve-stream", daemon=True).start()
        try:
            while True:
                try:
                    answer = self._out.get(timeout=_SHUTDOWN_CHECK_S)
                except queue.Empty:
                    if not self.core.accepting and self._idle():
                        return  # the server drains: an idle stream ends now, not at the grace's end
                    continue
                if answer is None:
                    return
                if isinstance(answer, _Abort):
                    self._context.abort(answer.code, answer.message)  # raises
                    return
                yield answer
        finally:
            self._cancelled.set()

    def _idle(self) -> bool:
        with self._lock:
            return self._in_flight == 0

    def _ended(self) -> None:
        # The call is over (cancelled, timed out, aborted, or done): stop the models' streams.
        self._cancelled.set()
        self._out.put(None)

    def _read(self) -> None:
        try:
            for data in self._requests:
                while not self._room.acquire(timeout=0.5):
                    if self._cancelled.is_set():
                        return
                if self._cancelled.is_set():
                    return
                with self._lock:
                    self._in_flight += 1
                self._start(data)
        except Exception:  # the call was cancelled while waiting for a request (grpc.RpcError)
            self._cancelled.set()
        finally:
            with self._lock:
                self._reading = False
                finished = self._in_flight == 0
            if finished:
                self._out.put(None)

    def _start(self, data: bytes) -> None:
        started = time.perf_counter()
        message: Any = None
        try:
            message, raws = grpc_codec.split_request(data)
            self.core.check_version(message.model_name, message.model_version)
            served = self.core.repository.get(message.model_name)
            if not self.core.accepting:
                raise Unavailable(SHUTTING_DOWN)
        except Exception as exc:
            self._complete(self._ticket(), [self._error(exc, message, None)])
            self._finish()
            return
        ticket = None if served.decoupled else self._ticket()
        try:
            served.submit(self._answer, served, message, raws, ticket, started)
        except Unavailable as exc:
            answer = self._error(exc, message, None)
            if ticket is None:
                self._out.put(answer)
            else:
                self._complete(ticket, [answer])
            self._finish()

    def _answer(
        self, served: ServedModel, message: Any, raws: list[Any], ticket: _Ticket | None, started: float
    ) -> None:
        answers: list[Answer] = []
        try:
            with RequestTimer(served.stats, started) as timer:
                request = grpc_codec.read_request(message, raws)
                empty_final = _empty_final_response(request.parameters)
                responses = served.answer_stream(request, self.core.shm, timer)
                try:
                    for response in responses:
                        if self._cancelled.is_set():
                            return
                        response.parameters = {FINAL_RESPONSE: not served.decoupled}
                        self._emit(grpc_codec.encode_stream_response(response), ticket, answers)
                finally:
                    responses.close()
            if served.decoupled and empty_final:
                final = InferResponse([], served.name, VERSION, request.id, {FINAL_RESPONSE: True})
                self._emit(grpc_codec.encode_stream_response(final), ticket, answers)
        except Exception as exc:
            self._emit(self._error(exc, message, served), ticket, answers)
        finally:
            if ticket is not None:
                self._complete(ticket, answers)
            self._finish()

    def _error(self, exc: Exception, message: Any, served: ServedModel | None) -> Answer:
        status, code = classify(exc)
        if code == "INTERNAL" and not isinstance(exc, (ServingError, NeuropodError)):
            logger.exception("Unexpected error answering a request on ModelStreamInfer")
        request_id = getattr(message, "id", "")
        if status < 500 or served is None:  # the request's fault, found before the model ran
            return grpc_codec.encode_stream_error(str(exc), request_id)
        if self._errors_end_stream:
            return _Abort(getattr(grpc.StatusCode, code), str(exc))
        return grpc_codec.encode_stream_error(str(exc), request_id, served.name, VERSION, final=True)

    def _emit(self, answer: Answer, ticket: _Ticket | None, answers: list[Answer]) -> None:
        if ticket is None:
            self._out.put(answer)
        else:
            answers.append(answer)

    def _ticket(self) -> _Ticket:
        ticket = _Ticket()
        with self._lock:
            self._order.append(ticket)
        return ticket

    def _complete(self, ticket: _Ticket, answers: list[Answer]) -> None:
        with self._lock:
            ticket.answers = answers
            ticket.done = True
            order = self._order
            while order and order[0].done:
                for answer in order.popleft().answers:
                    self._out.put(answer)

    def _finish(self) -> None:
        self._room.release()
        with self._lock:
            self._in_flight -= 1
            finished = not self._reading and self._in_flight == 0
        if finished:
            self._out.put(None)


def _empty_final_response(parameters: dict[str, Any]) -> bool:
    value = parameters.get(EMPTY_FINAL_RESPONSE, False)
    if not isinstance(value, bool):
        raise BadRequest(f"invalid value type for '{EMPTY_FINAL_RESPONSE}' parameter, expected bool_param.")
    return value
