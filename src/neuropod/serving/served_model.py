"""A loaded model as the server runs it: metadata computed once, bounded concurrency, stats.

The front ends run a request as decode -> ``infer`` (or ``call``) -> encode inside a
``RequestTimer`` of its ``stats``, which counts it.

A model runs at most ``concurrency`` calls at once (its option; default its ``instances``,
else 1); a request waits for a free slot, and that wait is its queue time. Where a call runs:

- gRPC requests call the model from grpc's handler thread;
- HTTP requests, which arrive on the event loop, run in a thread of the model's own pool
  (``run``), decoding and encoding included, so that a slow or hung model, or a large body,
  holds up only the requests to that model, never the loop and its health checks.

A stateful model (``sequence_batching``) runs each request through its ``SequenceScheduler``
(``neuropod.serving.sequences``): in its sequence's turn, on the instance the sequence is
pinned to, with the control inputs and state added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from neuropod.errors import ProtocolError, ValidationError
from neuropod.model import NeuropodModel
from neuropod.protocol.datatypes import spec_dtype_to_datatype
from neuropod.protocol.infer import InferRequest, InferResponse, respond
from neuropod.protocol.sequence import read_sequence
from neuropod.serving.config_override import ConfigOverride
from neuropod.serving.errors import InternalError, Unavailable
from neuropod.serving.metadata import model_config, model_metadata
from neuropod.serving.options import ModelOptions
from neuropod.serving.sequences import SequenceScheduler
from neuropod.serving.shm import SharedMemoryRegistry, resolve_inputs, write_outputs
from neuropod.serving.stats import ModelStats, RequestTimer
from neuropod.spec.elements import BytesConformer
from neuropod.spec.tensor_spec import TensorSpec
from neuropod.spec.validation import TensorValidator

#: A loaded model, or a wrapper of one with the same interface (``DynamicBatcher``).
Servable = NeuropodModel

Inputs = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Result = tuple[Outputs, float, float]
T = TypeVar("T")

logger = logging.getLogger("neuropod.serving")


class ServedModel:
    """One model, loaded and ready to serve.

    Args:
        name: the name clients use.
        model: the loaded model; closed with this object.
        options: how it is served.

    Raises:
        OptionError: its ``config`` does not fit the model, or a label file cannot be read.
    """

    def __init__(self, name: str, model: Servable, options: ModelOptions):
        self.name = name
        self.model = model
        self.options = options
        self.stats = ModelStats(name)
        inputs: Sequence[TensorSpec] = model.input_specs
        outputs: Sequence[TensorSpec] = model.output_specs
        override = options.config if isinstance(options.config, ConfigOverride) else None
        #: The model batches, as clients are told: classification ranks each row on its own.
        self.batched = options.max_batch_size > 0
        #: A stateful model's scheduler (``None``: the model is stateless).
        self.sequences: SequenceScheduler | None = None
        if options.sequences is not None:
            self.sequences = SequenceScheduler(
                name,
                options.sequences,
                inputs,
                outputs,
                batched=self.batched,
                instances=model.instances,
                max_sequences=options.max_sequences,
            )
            inputs, outputs = self.sequences.client_specs(inputs, outputs)
        #: Output name -> class labels, from the label files its options name.
        self.labels: dict[str, list[str]] = {}
        if override is not None:
            override.check(name, inputs, outputs, self.batched)
            self.labels = override.labels()
        self.metadata: dict[str, Any] = model_metadata(
            name, model.platform, inputs, outputs, override=override, batched=self.batched
        )
        self.config: dict[str, Any] = model_config(
            name,
            model.platform,
            inputs,
            outputs,
            max_batch_size=options.max_batch_size,
            instances=options.instances,
            max_queue_delay_ms=None
            if options.dynamic_batching is None
            else float(options.dynamic_batching.get("max_queue_delay_ms", 0.0)),
            sequence_batching=None if self.sequences is None else self.sequences.config(),
            override=override,
            decoupled=model.decoupled,
        )
        #: The model answers a request with a stream of zero or more responses (over gRPC
        #: ``ModelStreamInfer`` only, as Triton serves decoupled models).
        self.decoupled = model.decoupled
        #: Output name -> protocol datatype, in spec order.
        self.output_datatypes = {spec.name: spec_dtype_to_datatype(spec.dtype) for spec in outputs}
        self._threads = options.threads
        # A token per slot: SimpleQueue's get and put are C calls, a semaphore's are Python code.
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self._threads):
            self._slots.put(None)
        # Twice the slots: HTTP requests decode and encode in these threads too, so that while
        # the slots compute, as many requests again can be decoded and answered.
        self._executor = ThreadPoolExecutor(2 * self._threads, thread_name_prefix=f"neuropod-serve-{name}")
        self._closing = False
        self._closed = False
        self._model_closed = False
        self._input_check = TensorValidator(model.input_specs, "input", require_all=True)
        self._conform_inputs = BytesConformer(inputs, sent=True)

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> Result:
        """Run the model in a thread of its pool (see ``call``).

        Returns:
            ``(outputs, queue_seconds, compute_seconds)``.

        Raises:
            Unavailable: the model is being unloaded.
            ValidationError: the inputs or outputs break the spec.
            Exception: whatever the model raised (``InferenceError``, ``WorkerCrashed``...).
        """
        return await self.run(self.call, inputs)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a thread of the model's pool, off the event loop.

        Returns:
            What it returned.

        Raises:
            Unavailable: the model is being unloaded.
            Exception: whatever it raised.
        """
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, function, *args)
        except RuntimeError:  # the pool was shut down: the model is being unloaded
            raise Unavailable(f"Model '{self.name}' is being unloaded") from None
        try:
            return await future
        finally:
            # A failed call's exception holds this frame (its traceback) and the future holds
            # the exception: without this the request's tensors wait for a GC cycle.
            del future

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """``function(*args)`` in a thread of the model's pool, for callers off the event loop.

        Raises:
            Unavailable: the model is being unloaded.
        """
        try:
            return self._executor.submit(function, *args)
        except RuntimeError:  # the pool was shut down: the model is being unloaded
            raise Unavailable(f"Model '{self.name}' is being unloaded") from None

    def answer_stream(
        self, request: InferRequest, shm: SharedMemoryRegistry, timer: RequestTimer
    ) -> Generator[InferResponse, None, None]:
        """``answer`` for a stream: the responses of a decoupled model as it produces them (the
        one response of any other model).

        The model holds its slot until the iterator ends or is closed; closing it stops the
        model's stream. Raises as ``answer``: a model's error while iterating.
        """
        if not self.decoupled:
            yield self.answer(request, shm, timer)
            return
        request.check_outputs(self.output_datatypes, self.name)
        inputs = self._conform_inputs(resolve_inputs(shm, request))
        timer.decoded()
        with self._slot() as submitted:
            started = time.perf_counter()
            responses = self.model.infer_stream(inputs)  # raises for invalid inputs
            try:
                for outputs in responses:
                    response = respond(
                        request, outputs, self.name, self.output_datatypes, labels=self.labels,
                        batched=self.batched,
                    )  # fmt: skip
                    if request.outputs is not None:
                        write_outputs(shm, response)
                    yield response
            except ProtocolError:  # an output asked for that the model did not produce: 400
                raise
            except ValidationError as exc:  # the inputs were valid: a response broke the spec
                message = f"Model '{self.name}' returned outputs that break its spec: {exc}"
                raise InternalError(message) from exc
            finally:
                responses.close()
            timer.ran(started - submitted, time.perf_counter() - started)

    def answer(self, request: InferRequest, shm: SharedMemoryRegistry, timer: RequestTimer) -> InferResponse:
        """The middle of every front end's pipeline: a decoded request in, its response out.

        Checks the requested outputs, reads shared-memory inputs, runs the model in this thread
        (``call``), builds the response and writes shared-memory outputs, marking the steps on
        ``timer``. The front end decodes before and encodes after, inside the same timer.

        Raises:
            ServingError: an unknown output or region, a window outside its region.
            ValidationError: the inputs or outputs break the spec.
            Exception: whatever the model raised.
        """
        request.check_outputs(self.output_datatypes, self.name)
        # BYTES inputs arrive as bytes: text for string tensors (UTF-8, else a 400), as they are for bytes.
        inputs = self._conform_inputs(resolve_inputs(shm, request))
        timer.decoded()
        if self.sequences is not None:
            outputs, queue, compute = self.sequences.run(request, inputs, self.call)
        else:
            if request.parameters:  # checked, then ignored by a stateless model, as by Triton
                read_sequence(request.parameters)
            outputs, queue, compute = self.call(inputs)
        timer.ran(queue, compute)
        response = respond(
            request, outputs, self.name, self.output_datatypes, labels=self.labels, batched=self.batched
        )
        if request.outputs is not None:  # only requested outputs name regions
            write_outputs(shm, response)
        return response

    def call(self, inputs: Mapping[str, np.ndarray], instance: int | None = None) -> Result:
        """Wait for a free slot, then run the model in this thread (on ``instance``, if given).

        Returns:
            ``(outputs, queue_seconds, compute_seconds)``.

        Raises:
            Unavailable: the model is being unloaded.
            Exception: as ``infer``.
        """
        with self._slot() as submitted:
            return self._run(inputs, submitted, instance)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[float]:
        """Hold one of the model's slots (waiting for one); yields when the wait began.

        Raises:
            Unavailable: the model is being unloaded, or was while this waited.
        """
        submitted = time.perf_counter()
        if self._closing:
            raise Unavailable(f"Model '{self.name}' is being unloaded")
        self._slots.get()
        try:
            if self._closed:
                raise Unavailable(f"Model '{self.name}' was unloaded")
            yield submitted
        finally:
            self._slots.put(None)

    def _run(self, inputs: Mapping[str, np.ndarray], submitted: float, instance: int | None) -> Result:
        started = time.perf_counter()
        try:
            outputs = self.model.infer(inputs, instance=instance)
        except ValidationError as exc:
            if not self._inputs_are_valid(inputs):
                raise
            raise InternalError(f"Model '{self.name}' returned outputs that break its spec: {exc}") from exc
        return outputs, started - submitted, time.perf_counter() - started

    def _inputs_are_valid(self, inputs: Mapping[str, np.ndarray]) -> bool:
        # The model validated inputs and outputs alike, so its ValidationError does not say
        # whose fault it was: valid inputs mean the outputs broke the spec, the model's fault
        # (500), not the client's (400). Every input is required here so that a doubt stays
        # the client's: only a failure path pays for this second check.
        try:
            self._input_check(inputs)
        except ValidationError:
            return False
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new calls, wait for those running, then close the model. Idempotent.

        Args:
            timeout: the longest to wait for calls still running (``None``: for ever). A call
                that outlives it (a hung model) keeps its thread, and the model stays open.

        Returns:
            Whether the model was closed (``False``: calls outlived the timeout).
        """
        if self._closing:
            return self._model_closed
        self._closing = True
        if self.sequences is not None:
            self.sequences.close()
        # Calls queued in the pool fail at once (call() sees _closing): only running ones wait.
        self._executor.shutdown(wait=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        taken = 0
        try:
            while taken < self._threads:  # every slot back: no call is running any more
                self._slots.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
                taken += 1
        except queue.Empty:
            logger.warning("Model '%s' still runs calls that outlived the timeout; left open", self.name)
            self._closed = True  # no further call runs: callers waiting for a slot give up
            for _ in range(taken):
                self._slots.put(None)
            return False
        self._closed = True
        try:
            self.model.close()
            self._model_closed = True
        finally:
            for _ in range(self._threads):  # callers still waiting see _closed and give up
                self._slots.put(None)
        return True
