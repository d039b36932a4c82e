"""Dynamic batching: concurrent calls to one model merged into one call, and split back.

``DynamicBatcher`` is a model that wraps a model, for models whose every input and output
starts with one shared batch symbol, e.g. ``("batch", 3)``. Calls from many threads queue up;
a call waits at most ``max_queue_delay_ms`` for others to join it, then the wrapped model runs
once on their inputs concatenated along dim 0, and each caller gets its own rows back.

(Named after the ``dynamic_batching`` option of ``neuropod-serve.json`` and of Triton, and
not to be confused with ``neuropod.batch``, which runs a model over a dataset.)

>>> from neuropod import load_neuropod
>>> adder = load_neuropod("adder.zip")
>>> with DynamicBatcher(adder, max_batch_size=64, max_queue_delay_ms=2) as model:
...     model.infer({"x": np.ones((1, 3), np.float32), "y": np.ones((1, 3), np.float32)})
{'out': array([[2., 2., 2.]], dtype=float32)}
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from neuropod.backends.base import Backend
from neuropod.errors import InferenceError, ModelClosedError, OptionError
from neuropod.model import NeuropodModel
from neuropod.options import int_at_least, number_at_least
from neuropod.package.config import ModelConfig
from neuropod.spec import batch_dim


class DynamicBatcher(NeuropodModel):
    """A model whose concurrent calls are merged into batches.

    Each call is checked against the input spec on its own before it is queued, so a bad
    call fails alone. Calls merge when they give the same inputs with the same sizes past
    dim 0; the merged call's error, if any, goes to each of its callers. A call larger than
    ``max_batch_size`` runs alone. Closing the batcher answers the calls already queued, then
    closes the wrapped model: the batcher owns it.

    Args:
        model: the model to wrap; its inputs and outputs must all start with one symbol.
        max_batch_size: the most rows (sum of dim 0) one merged call may have.
        max_queue_delay_ms: how long a call may wait for others to join it; ``0`` merges only
            the calls that queued while the model was busy.
        concurrency: how many merged calls may run at once (the model's ``instances`` for a
            model run out of process).

    Raises:
        SpecError: the model's inputs and outputs do not share a leading batch symbol.
        OptionError: an option is out of range, or the model is decoupled.
    """

    def __init__(
        self,
        model: NeuropodModel,
        *,
        max_batch_size: int,
        max_queue_delay_ms: float = 0.0,
        concurrency: int = 1,
    ):
        int_at_least(1)("max_batch_size", max_batch_size)
        int_at_least(1)("concurrency", concurrency)
        number_at_least(0, "milliseconds")("max_queue_delay_ms", max_queue_delay_ms)
        if model.decoupled:
            raise OptionError(
                f"Model '{model.name}' is decoupled (it answers with a stream of responses), so its "
                f"calls cannot be merged into batches; serve it without dynamic_batching"
            )
        self.batch_symbol = batch_dim.merge_symbol(model.name, model.input_specs, model.output_specs)
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = float(max_queue_delay_ms)
        self._wrapped = model
        self._batching = BatchingBackend(model, max_batch_size, self.max_queue_delay_ms / 1000, concurrency)
        # The batcher has the wrapped model's name, specs and path (its backend's), validates
        # each call in front of the queue, and its backend runs the wrapped model.
        super().__init__(self._batching)

    def __repr__(self) -> str:
        state = "closed" if self._batching.closed else "open"
        return (
            f"<DynamicBatcher {self.batch_symbol!r} max_batch_size={self.max_batch_size} "
            f"max_queue_delay_ms={self.max_queue_delay_ms:g} of {self._wrapped!r} {state}>"
        )


class _Request:
    __slots__ = ("arrival", "future", "inputs", "key", "rows")

    def __init__(self, inputs: dict[str, np.ndarray]):
        self.inputs = inputs
        self.rows = batch_dim.rows(inputs)
        self.key = batch_dim.merge_key(inputs)  # merges only with requests of the same key; None: never
        self.arrival = time.monotonic()
        self.future: Future[dict[str, np.ndarray]] = Future()


class BatchingBackend(Backend):
    """The backend of a ``DynamicBatcher``: queues calls and runs them merged on a model.

    Calls reach it validated (by the model in front). ``concurrency`` threads each take the
    oldest queued call, gather the queued calls that merge with it (up to ``max_batch_size``
    rows, for at most ``max_delay`` seconds after it arrived), and run them as one call.

    Args:
        model: the model the merged calls run on; closed by ``close``.
        max_batch_size: the most rows one merged call may have.
        max_delay: seconds a call may wait for others to join it.
        concurrency: threads running merged calls.
    """

    def __init__(self, model: NeuropodModel, max_batch_size: int, max_delay: float, concurrency: int):
        # No super().__init__: this backend has no package of its own, it runs a loaded model.
        self._model = model
        self._name = model.name
        self._max_batch_size = max_batch_size
        self._max_delay = max_delay
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._run, name=f"batcher-{self._name}", daemon=True)
            for _ in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def config(self) -> ModelConfig:
        """The wrapped model's config."""
        return self._model.config

    @property
    def path(self) -> Path | str:
        """The wrapped model's path."""
        return self._model.path

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closing

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Queue the call and wait for its rows of the merged call's outputs.

        Raises:
            InferenceError: the merged call failed, or an output lacks the batch rows.
            ModelClosedError: the batcher was closed.
        """
        request = _Request(inputs)
        with self._cond:
            if self._closing:
                raise ModelClosedError(f"Model '{self._name}' is closed")
            self._queue.append(request)
            self._cond.notify()
        return request.future.result()

    def close(self) -> None:
        """Answer the calls already queued, then close the model. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join()
        self._model.close()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _next_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch = [first]
            if first.key is None:
                return batch
            rows = first.rows
            deadline = first.arrival + self._max_delay
            while rows < self._max_batch_size:
                rows = self._take_matching(first.key, batch, rows)
                remaining = deadline - time.monotonic()
                if rows >= self._max_batch_size or remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            return batch

    def _take_matching(self, key: Hashable, batch: list[_Request], rows: int) -> int:
        """Move the queued requests of ``key`` that still fit into ``batch``, keeping the others in order."""
        kept: deque[_Request] = deque()
        queue = self._queue
        while queue:
            request = queue.popleft()
            if request.key == key and rows + request.rows <= self._max_batch_size:
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
        self._queue = kept
        return rows

    def _run_batch(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                batch[0].future.set_result(self._model.infer(batch[0].inputs))
                return
            outputs = self._model.infer(batch_dim.merge([request.inputs for request in batch]))
            total = sum(request.rows for request in batch)
            short = batch_dim.output_without_rows(outputs, total)
            if short is not None:
                raise InferenceError(
                    f"Model '{self._name}' returned output '{short}' of shape {outputs[short].shape} "
                    f"for a merged batch of {total} rows; a batched model must return one row per "
                    f"input row"
                )
        except BaseException as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        parts = batch_dim.split(outputs, [request.rows for request in batch])
        for request, part in zip(batch, parts, strict=True):
            request.future.set_result(part)
