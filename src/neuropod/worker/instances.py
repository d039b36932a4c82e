"""Worker instances: each runs one call at a time and is restarted after a crash; the pool
sends each call to the least busy one, so calls from several threads run in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.errors import InferenceTimeout, ModelClosedError, WorkerCrashed
from neuropod.worker.process import EXIT_GRACE_S
from neuropod.worker.session import WorkerGone, WorkerSession


class Instance:
    """One slot for a worker process, refilled after a crash or timeout by the next call.

    Args:
        start: starts a worker session (the worker then loads the model).
        timeout: seconds a call may take, or ``None``.
        max_restarts: how many times a dead worker is replaced (``None``: always).
        model: the model's name, for messages.
    """

    def __init__(
        self,
        start: Callable[[], WorkerSession],
        *,
        timeout: float | None,
        max_restarts: int | None,
        model: str,
    ):
        self._start = start
        self._timeout = timeout
        self._max_restarts = max_restarts
        self._model = model
        self._lock = threading.Lock()
        self._session: WorkerSession | None = None
        self._closed = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running worker's process id, or ``None`` while there is none."""
        session = self._session
        return session.process.pid if session is not None else None

    def start(self) -> None:
        """Start the worker; ``wait_ready`` waits for its model to load."""
        self._session = self._start()

    def wait_ready(self) -> None:
        """Wait for the worker ``start`` started (raises what loading raised)."""
        session = self._session
        if session is not None:
            try:
                session.wait_ready()
            except BaseException:
                self._session = None
                raise

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Run a call, starting a new worker first if the last one died.

        Raises:
            WorkerCrashed: the worker died during the call, or died before and may not be
                replaced (``max_restarts``).
            InferenceTimeout: the call took longer than the timeout; the worker was killed.
            ModelClosedError: the model was closed.
        """
        with self._lock:
            session = self._session if self._session is not None else self._restart()
            try:
                return session.infer(inputs, self._timeout)
            except WorkerGone:
                self._session = None  # it died while idle: nothing ran, a new worker takes the call
                session = self._restart()
            except (WorkerCrashed, InferenceTimeout) as exc:
                raise self._failed(exc) from None
            try:
                return session.infer(inputs, self._timeout)
            except (WorkerCrashed, InferenceTimeout) as exc:
                raise self._failed(exc) from None

    def stream(self, inputs: Mapping[str, np.ndarray]) -> Iterator[dict[str, Any]]:
        """Run a call of ``infer_stream`` and yield its responses; the instance is busy until
        the iterator ends or is closed (closing it stops the call in the worker).

        Raises:
            As ``infer``, while iterating.
        """
        with self._lock:
            session = self._session if self._session is not None else self._restart()
            try:
                try:
                    responses = session.stream(inputs, self._timeout)
                except WorkerGone:
                    self._session = None  # as in infer: nothing ran, a new worker takes the call
                    responses = self._restart().stream(inputs, self._timeout)
                yield from responses
            except (WorkerCrashed, InferenceTimeout) as exc:
                raise self._failed(exc) from None

    def _failed(self, exc: WorkerCrashed | InferenceTimeout) -> WorkerCrashed | InferenceTimeout:
        self._session = None
        kind = InferenceTimeout if isinstance(exc, InferenceTimeout) else WorkerCrashed
        return kind(f"{exc}; {self._next_step()}")

    def _restart(self) -> WorkerSession:
        if self._closed:
            raise ModelClosedError(f"Model '{self._model}' is closed")
        if self._max_restarts is not None and self.restarts >= self._max_restarts:
            raise WorkerCrashed(
                f"The worker of model '{self._model}' died and max_restarts={self._max_restarts} "
                f"are used up; load the model again"
            )
        self.restarts += 1
        session = self._start()
        session.wait_ready()
        self._session = session
        return session

    def _next_step(self) -> str:
        if self._max_restarts is None or self.restarts < self._max_restarts:
            return "the next call starts a new worker"
        return f"max_restarts={self._max_restarts} are used up, so later calls fail too"

    def shutdown(self) -> None:
        """Ask an idle worker to exit now; ``close`` waits for it (and for a busy one)."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                if self._session is not None:
                    self._session.shutdown()
            finally:
                self._lock.release()

    def close(self) -> None:
        """Stop the worker, letting a call in progress finish for a while first. Idempotent."""
        self._closed = True
        locked = self._lock.acquire(timeout=EXIT_GRACE_S)
        try:
            session, self._session = self._session, None
            if session is not None:
                if not locked:
                    session.process.kill()  # the call in progress then fails as a crash
                session.end()
        finally:
            if locked:
                self._lock.release()


class InstancePool:
    """Hands each call the instance with the fewest calls running or waiting.

    Args:
        instances: the model's instances.
    """

    def __init__(self, instances: Sequence[Instance]):
        self.instances = list(instances)
        self._busy = [0] * len(self.instances)
        self._lock = threading.Lock()

    def acquire(self) -> int:
        """The index of the least busy instance, now counted busy until ``release``."""
        with self._lock:
            busy = self._busy
            index = busy.index(min(busy))
            busy[index] += 1
            return index

    def take(self, index: int) -> None:
        """Count instance ``index`` busy until ``release``: a call pinned to it."""
        with self._lock:
            self._busy[index] += 1

    def release(self, index: int) -> None:
        """A call on instance ``index`` ended."""
        with self._lock:
            self._busy[index] -= 1
