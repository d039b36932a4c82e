"""A loaded model as the server runs it: metadata computed once, bounded concurrency, stats.

The front ends run a request as decode -> ``infer`` (or ``call``) -> encode inside a
``RequestTimer`` of its ``stats``, which counts it.

A model runs at most ``concurrency`` calls at once (its option; default its ``instances``,
else 1); a request waits for a free slot, and that wait is its queue time. Where a call runs:

- gRPC requests call the model from grpc's handler thread;
- HTTP requests, which arrive on the event loop, run the model right there when the model is
  fast (its recent calls took under ``INLINE_LIMIT`` seconds on average), has one slot, and
  the slot is free: a hop to a thread costs more than such a model's whole call. Otherwise
  the call goes to a thread of the model's own pool, so that a slow model never holds up the
  loop nor another model.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from neuropod.model import NeuropodModel
from neuropod.protocol.datatypes import spec_dtype_to_datatype
from neuropod.serving.errors import Unavailable
from neuropod.serving.metadata import model_config, model_metadata
from neuropod.serving.options import ModelOptions
from neuropod.serving.stats import ModelStats

#: A loaded model, or a wrapper of one with the same interface (``DynamicBatcher``).
Servable = NeuropodModel

Inputs = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Result = tuple[Outputs, float, float]

#: Mean call time under which a one-slot model runs on the event loop, in seconds.
INLINE_LIMIT = 0.0005

# Weight of the newest call in the moving average of call times.
_SMOOTHING = 0.1


class ServedModel:
    """One model, loaded and ready to serve.

    Args:
        name: the name clients use.
        model: the loaded model; closed with this object.
        options: how it is served.
    """

    def __init__(self, name: str, model: Servable, options: ModelOptions):
        self.name = name
        self.model = model
        self.options = options
        self.stats = ModelStats(name)
        inputs, outputs = model.input_specs, model.output_specs
        self.metadata: dict[str, Any] = model_metadata(name, model.platform, inputs, outputs)
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
        )
        #: Output name -> protocol datatype, in spec order.
        self.output_datatypes = {spec.name: spec_dtype_to_datatype(spec.dtype) for spec in outputs}
        self._threads = options.threads
        # A token per slot: SimpleQueue's get and put are C calls, a semaphore's are Python code.
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self._threads):
            self._slots.put(None)
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix=f"neuropod-serve-{name}")
        self._mean_call = float("inf")  # no inline call before one call was timed
        self._closing = False
        self._closed = False

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> Result:
        """Run the model without blocking the event loop for longer than a fast call.

        Returns:
            ``(outputs, queue_seconds, compute_seconds)``.

        Raises:
            Unavailable: the model is being unloaded.
            ValidationError: the inputs or outputs break the spec.
            Exception: whatever the model raised (``InferenceError``, ``WorkerCrashed``...).
        """
        if self._threads == 1 and self._mean_call < INLINE_LIMIT and not self._closing:
            try:
                self._slots.get_nowait()
            except queue.Empty:  # a gRPC call holds the slot: wait for it in a thread
                pass
            else:
                try:
                    return self._run(inputs, time.perf_counter())
                finally:
                    self._slots.put(None)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self.call, inputs)
        except RuntimeError:  # the pool was shut down: the model is being unloaded
            raise Unavailable(f"Model '{self.name}' is being unloaded") from None
        try:
            return await future
        finally:
            # A failed call's exception holds this frame (its traceback) and the future holds
            # the exception: without this the request's tensors wait for a GC cycle.
            del future

    def call(self, inputs: Mapping[str, np.ndarray]) -> Result:
        """Wait for a free slot, then run the model in this thread.

        Returns:
            ``(outputs, queue_seconds, compute_seconds)``.

        Raises:
            Unavailable: the model is being unloaded.
            Exception: as ``infer``.
        """
        submitted = time.perf_counter()
        if self._closing:
            raise Unavailable(f"Model '{self.name}' is being unloaded")
        self._slots.get()
        try:
            if self._closed:
                raise Unavailable(f"Model '{self.name}' was unloaded")
            return self._run(inputs, submitted)
        finally:
            self._slots.put(None)

    def _run(self, inputs: Mapping[str, np.ndarray], submitted: float) -> Result:
        started = time.perf_counter()
        try:
            outputs = self.model.infer(inputs)
        finally:
            took = time.perf_counter() - started
            mean = self._mean_call
            self._mean_call = took if mean == float("inf") else mean + _SMOOTHING * (took - mean)
        return outputs, started - submitted, took

    def close(self) -> None:
        """Refuse new calls, wait for those queued and running, then close the model. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._executor.shutdown(wait=True)
        for _ in range(self._threads):  # every slot back: no call is running any more
            self._slots.get()
        self._closed = True
        try:
            self.model.close()
        finally:
            for _ in range(self._threads):  # callers still waiting see _closed and give up
                self._slots.put(None)
