"""Per-model counters and latency histograms, read by the statistics API and ``/metrics``.

Requests finish in the models' threads and in gRPC's threads. A success, the common case, is one
append to a queue (thread-safe and about a tenth of a microsecond; counting it in place
costs several microseconds, a tenth of a small request's handling); the queue is folded into
the counters under a lock when they are read, and every ``FOLD_EVERY`` requests so that it
stays short. Failures are counted in place.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from neuropod.protocol.infer import VERSION

#: Queued successes past which the request that queues one folds them.
FOLD_EVERY = 1024

#: Upper bounds of the latency histograms' buckets, in seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """A Prometheus-style histogram: per-bucket counts, total count and sum, in seconds."""

    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` per bucket, ``+Inf`` last, as Prometheus exposes them."""
        out = []
        running = 0
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class Duration:
    """A count of events and their total duration, in nanoseconds (Triton's ``StatisticDuration``)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        """Count one event that took ``seconds``."""
        self.count += 1
        self.ns += int(seconds * 1e9)

    def to_dict(self) -> dict[str, int]:
        """``{"count", "ns"}``."""
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStats:
    """What happened to one model's requests since it was loaded.

    ``success`` and ``fail`` time whole requests (decoding, queue, run, encoding); ``queue`` is
    the wait for a free slot of the model, ``compute_input`` the decoding of the inputs,
    ``compute_infer`` the model's ``infer``, ``compute_output`` the encoding of the outputs.
    """

    name: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    request_latency: Histogram = field(default_factory=Histogram)
    queue_latency: Histogram = field(default_factory=Histogram)
    compute_latency: Histogram = field(default_factory=Histogram)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _successes: deque[tuple[float, ...]] = field(default_factory=deque, repr=False)

    def record_success(
        self, total: float, queue: float, decode: float, compute: float, encode: float
    ) -> None:
        """Count a request that succeeded, with its phases' durations in seconds.

        The counters show it once ``fold`` has run (readers call it).
        """
        successes = self._successes
        successes.append((time.time(), total, queue, decode, compute, encode))
        if len(successes) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Count the queued successes in the counters and histograms."""
        with self._lock:
            successes = self._successes
            for _ in range(len(successes)):
                self._record_success(*successes.popleft())

    def _record_success(
        self, finished: float, total: float, queue: float, decode: float, compute: float, encode: float
    ) -> None:
        self.last_inference_ms = max(self.last_inference_ms, int(finished * 1000))
        self.inference_count += 1
        self.execution_count += 1
        self.success.add(total)
        self.queue.add(queue)
        self.compute_input.add(decode)
        self.compute_infer.add(compute)
        self.compute_output.add(encode)
        self.request_latency.observe(total)
        self.queue_latency.observe(queue)
        self.compute_latency.observe(compute)

    def record_failure(self, total: float, executed: bool) -> None:
        """Count a request that failed after ``total`` seconds; ``executed``: the model ran."""
        with self._lock:
            self.fail.add(total)
            self.request_latency.observe(total)
            if executed:
                self.last_inference_ms = int(time.time() * 1000)
                self.execution_count += 1

    def to_dict(self) -> dict[str, Any]:
        """The model's entry of Triton's statistics response."""
        self.fold()
        empty = Duration().to_dict()
        return {
            "name": self.name,
            "version": VERSION,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_dict(),
                "fail": self.fail.to_dict(),
                "queue": self.queue.to_dict(),
                "compute_input": self.compute_input.to_dict(),
                "compute_infer": self.compute_infer.to_dict(),
                "compute_output": self.compute_output.to_dict(),
                "cache_hit": empty,
                "cache_miss": empty,
            },
            "batch_stats": [],
        }


class RequestTimer:
    """Times one request's phases: decoding, the model's run, encoding.

    Used as ``with RequestTimer(stats) as timer:`` around the whole request: ``decoded`` when
    the inputs are ready, ``ran`` once the model returned. Leaving the block counts a success,
    or, on an exception, a failure (one that ran the model, once ``decoded`` was called).

    Args:
        stats: where the request is counted.
        started: when it started (``time.perf_counter()``; default now).
    """

    __slots__ = ("_compute", "_decoded", "_queue", "_ran", "_started", "_stats")

    def __init__(self, stats: ModelStats, started: float | None = None):
        self._stats = stats
        self._started = time.perf_counter() if started is None else started
        self._decoded = 0.0
        self._ran = 0.0
        self._queue = 0.0
        self._compute = 0.0

    def decoded(self) -> None:
        """The inputs are decoded; the model runs next."""
        self._decoded = time.perf_counter()

    def ran(self, queue: float, compute: float) -> None:
        """The model returned after ``queue`` seconds waiting and ``compute`` seconds running."""
        self._ran = time.perf_counter()
        self._queue = queue
        self._compute = compute

    def __enter__(self) -> RequestTimer:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        done = time.perf_counter()
        started = self._started
        if kind is None:
            self._stats.record_success(
                done - started, self._queue, self._decoded - started, self._compute, done - self._ran
            )
        else:
            self._stats.record_failure(done - started, self._decoded != 0.0)
