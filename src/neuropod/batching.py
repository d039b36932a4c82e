"""Dynamic batching: concurrent calls to one model merged into one call, and split back.

``DynamicBatcher`` wraps a model with the same interface, for models whose every input and
output starts with one shared batch symbol, e.g. ``("batch", 3)``. Calls from many threads
queue up; a call waits at most ``max_queue_delay_ms`` for others to join it, then the model
runs once on their inputs concatenated along dim 0, and each caller gets its own rows back.

>>> adder = load_neuropod("adder.zip")  # doctest: +SKIP
>>> with DynamicBatcher(adder, max_batch_size=64, max_queue_delay_ms=2) as model:  # doctest: +SKIP
...     model.infer({"x": np.ones((1, 3), np.float32), "y": np.ones((1, 3), np.float32)})
{'out': array([[2., 2., 2.]], dtype=float32)}
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from neuropod.errors import InferenceError, ModelClosedError, OptionError, SpecError
from neuropod.spec.tensor_spec import TensorSpec
from neuropod.spec.validation import TensorValidator


class BatchableModel(Protocol):
    """What ``DynamicBatcher`` wraps: a ``NeuropodModel``, or another wrapper of one."""

    @property
    def name(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def path(self) -> Path | str: ...

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]: ...

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class _Request:
    __slots__ = ("inputs", "rows", "key", "arrival", "future")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int, key: Hashable | None):
        self.inputs = inputs
        self.rows = rows
        self.key = key  # requests merge only with requests of the same key; None: never
        self.arrival = time.monotonic()
        self.future: Future[dict[str, np.ndarray]] = Future()


class DynamicBatcher:
    """A model whose concurrent calls are merged into batches.

    Each call is checked against the input spec on its own before it is queued, so a bad
    call fails alone. Calls merge when they give the same inputs with the same sizes past
    dim 0; the merged call's error, if any, goes to each of its callers. A call larger than
    ``max_batch_size`` runs alone. Closing the batcher answers the calls already queued, then
    closes the model: the batcher owns it.

    Args:
        model: the model to wrap; its inputs and outputs must all start with one symbol.
        max_batch_size: the most rows (sum of dim 0) one merged call may have.
        max_queue_delay_ms: how long a call may wait for others to join it; ``0`` merges only
            the calls that queued while the model was busy.
        concurrency: how many merged calls may run at once (the model's ``instances`` for a
            model run out of process).

    Raises:
        SpecError: the model's inputs and outputs do not share a leading batch symbol.
        OptionError: an option is out of range.
    """

    def __init__(
        self,
        model: BatchableModel,
        *,
        max_batch_size: int,
        max_queue_delay_ms: float = 0.0,
        concurrency: int = 1,
    ):
        for option, value, minimum in (
            ("max_batch_size", max_batch_size, 1),
            ("concurrency", concurrency, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise OptionError(f"{option} must be an integer >= {minimum}, got {value!r}")
        if (
            isinstance(max_queue_delay_ms, bool)
            or not isinstance(max_queue_delay_ms, (int, float))
            or not max_queue_delay_ms >= 0
        ):
            raise OptionError(f"max_queue_delay_ms must be a number >= 0, got {max_queue_delay_ms!r}")
        self.batch_symbol = _batch_symbol(model)
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = float(max_queue_delay_ms)
        self._model: BatchableModel | None = model
        self._name = model.name
        self._check_inputs = TensorValidator(model.input_specs, "input")
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._run, args=(model,), name=f"batcher-{self._name}", daemon=True)
            for _ in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def name(self) -> str:
        """The model's name."""
        return self._wrapped.name

    @property
    def platform(self) -> str:
        """The model's platform."""
        return self._wrapped.platform

    @property
    def path(self) -> Path | str:
        """Where the model was loaded from."""
        return self._wrapped.path

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The model's input specs."""
        return self._wrapped.input_specs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """The model's output specs."""
        return self._wrapped.output_specs

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The input specs as ``{"name", "dtype", "shape"}`` dicts."""
        return [spec.to_dict() for spec in self.input_specs]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The output specs as ``{"name", "dtype", "shape"}`` dicts."""
        return [spec.to_dict() for spec in self.output_specs]

    @property
    def _wrapped(self) -> BatchableModel:
        model = self._model
        if model is None:
            raise ModelClosedError(f"Model '{self._name}' is closed")
        return model

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``inputs``, merged with other calls queued at the same time.

        Args:
            inputs: input name -> numpy array, every array with the batch in dim 0; never modified.

        Returns:
            output name -> numpy array of this call's rows (views of the merged outputs).

        Raises:
            ValidationError: this call's inputs break the spec (other calls are not affected).
            InferenceError: the merged call failed, or an output lacks the batch rows.
            ModelClosedError: the batcher was closed.
        """
        if self._closing:
            raise ModelClosedError(f"Model '{self._name}' is closed")
        self._check_inputs(inputs)
        request = _request(dict(inputs))
        with self._cond:
            if self._closing:
                raise ModelClosedError(f"Model '{self._name}' is closed")
            self._queue.append(request)
            self._cond.notify()
        return request.future.result()

    def _run(self, model: BatchableModel) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            _run_batch(model, batch)

    def _next_batch(self) -> list[_Request] | None:
        delay = self.max_queue_delay_ms / 1000
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
            deadline = first.arrival + delay
            while rows < self.max_batch_size:
                rows = self._take_matching(first.key, batch, rows)
                remaining = deadline - time.monotonic()
                if rows >= self.max_batch_size or remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            return batch

    def _take_matching(self, key: Hashable, batch: list[_Request], rows: int) -> int:
        """Move the queued requests of ``key`` that still fit into ``batch``, keeping the others in order."""
        kept: deque[_Request] = deque()
        queue = self._queue
        while queue:
            request = queue.popleft()
            if request.key == key and rows + request.rows <= self.max_batch_size:
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
        self._queue = kept
        return rows

    def close(self) -> None:
        """Answer the calls already queued, then close the model. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join()
        model, self._model = self._model, None
        if model is not None:
            model.close()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._model is None else "open"
        return (
            f"<DynamicBatcher {self.batch_symbol!r} max_batch_size={self.max_batch_size} "
            f"max_queue_delay_ms={self.max_queue_delay_ms:g} of {self._model!r} {state}>"
        )


def _batch_symbol(model: BatchableModel) -> str:
    if not model.input_specs:
        raise SpecError(f"Model '{model.name}' cannot be batched: it has no inputs")
    first_input = model.input_specs[0]
    symbol = first_input.shape[0] if first_input.shape and isinstance(first_input.shape[0], str) else ""
    specs = [("input", spec) for spec in model.input_specs] + [
        ("output", spec) for spec in model.output_specs
    ]
    for kind, spec in specs:
        first = spec.shape[0] if spec.shape else None
        if not symbol or first != symbol or symbol in spec.shape[1:]:
            raise SpecError(
                f"Model '{model.name}' cannot be batched: {kind} '{spec.name}' has shape "
                f"{spec.shape!r}; dynamic batching needs every input and output to start with one "
                f"shared batch symbol, used nowhere else in the shape, e.g. ('batch', 3)"
            )
    return symbol


def _request(inputs: dict[str, np.ndarray]) -> _Request:
    if not inputs:
        return _Request(inputs, 0, None)
    # Validated: every input has the same size in dim 0. Sizes past dim 0 must agree to concatenate.
    key = tuple(sorted((name, array.shape[1:]) for name, array in inputs.items()))
    return _Request(inputs, next(iter(inputs.values())).shape[0], key)


def _run_batch(model: BatchableModel, batch: list[_Request]) -> None:
    try:
        if len(batch) == 1:
            batch[0].future.set_result(model.infer(batch[0].inputs))
            return
        names = batch[0].inputs.keys()
        merged = {name: np.concatenate([request.inputs[name] for request in batch]) for name in names}
        outputs = model.infer(merged)
        total = sum(request.rows for request in batch)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise InferenceError(
                    f"Model '{model.name}' returned output '{name}' of shape {array.shape} for a "
                    f"merged batch of {total} rows; a batched model must return one row per input row"
                )
    except BaseException as exc:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    start = 0
    for request in batch:
        end = start + request.rows
        request.future.set_result({name: array[start:end] for name, array in outputs.items()})
        start = end
