"""Engines: what runs the batches of a run, in this process or on a cluster.

An engine gets a ``Job`` (the package, the shards and the batches to run, in order) and yields
one ``TaskResult`` per batch, in the same order; the runner reads and writes nothing but what
the engine yields. ``LocalEngine`` runs the batches one after another in this process;
``neuropod.integrations.ray.RayEngine`` runs them on a pool of Ray actors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.batch.dataset import Shard, ShardReader
from neuropod.batch.formats import open_reader
from neuropod.errors import InferenceError, NeuropodError, ValidationError
from neuropod.loader import load_neuropod
from neuropod.model import NeuropodModel
from neuropod.spec.batch_dim import output_without_rows
from neuropod.spec.elements import BytesConformer

#: The errors that fail one batch and let the run go on; any other error stops the run.
BATCH_ERRORS = (ValidationError, InferenceError)


@dataclass(frozen=True)
class Task:
    """One batch: rows ``start`` to ``stop`` (exclusive) of shard number ``shard``."""

    index: int
    shard: int
    start: int
    stop: int


@dataclass(frozen=True)
class TaskResult:
    """The outputs of a batch, or the error that failed it."""

    task: Task
    outputs: dict[str, np.ndarray] | None = None
    error: NeuropodError | None = None


@dataclass(frozen=True)
class Job:
    """What an engine runs.

    Args:
        package: the package, for engines that load the model themselves.
        load_options: ``load_neuropod``'s options for those loads.
        inputs: the model's input names; a shard's columns of those names are read.
        shards: the dataset's shards that have batches to run.
        tasks: the batches, grouped by shard, in order.
        model: a model loaded by the caller, which an in-process engine uses as it is.
    """

    package: Path
    load_options: Mapping[str, Any]
    inputs: tuple[str, ...]
    shards: tuple[Shard, ...]
    tasks: tuple[Task, ...]
    model: NeuropodModel | None = field(default=None, compare=False)


class Engine(ABC):
    """Runs the batches of a job and yields their results in order."""

    @abstractmethod
    def map(self, job: Job) -> Iterator[TaskResult]:
        """Yield one ``TaskResult`` per task of ``job``, in task order.

        Closing the iterator early (the run stopped at an error) releases what it holds.
        """


class LocalEngine(Engine):
    """Runs the batches one after another in this process, with one model.

    The model is the job's, or loaded from its package (and closed at the end).
    """

    def map(self, job: Job) -> Iterator[TaskResult]:
        model = job.model if job.model is not None else load_neuropod(job.package, **job.load_options)
        readers = ShardReaders(job.shards, job.inputs)
        try:
            for task in job.tasks:
                yield run_task(model, readers, task)
        finally:
            readers.close()
            if job.model is None:
                model.close()

    def __repr__(self) -> str:
        return "LocalEngine()"


class ShardReaders:
    """Opens the reader of each shard as tasks reach it, keeping one open at a time.

    Args:
        shards: the job's shards.
        inputs: the model's input names.
    """

    def __init__(self, shards: Sequence[Shard], inputs: Sequence[str]):
        self._shards = shards
        self._inputs = inputs
        self._current: tuple[int, ShardReader, tuple[str, ...]] | None = None

    def get(self, shard: int) -> tuple[ShardReader, tuple[str, ...]]:
        """The reader of shard number ``shard`` and the input names it holds."""
        if self._current is None or self._current[0] != shard:
            self.close()
            reader = open_reader(self._shards[shard])
            names = tuple(name for name in self._inputs if name in reader.columns)
            self._current = (shard, reader, names)
        return self._current[1], self._current[2]

    def close(self) -> None:
        """Close the open reader."""
        current, self._current = self._current, None
        if current is not None:
            current[1].close()


def run_task(model: NeuropodModel, readers: ShardReaders, task: Task) -> TaskResult:
    """Read a batch, run the model on it, and return its outputs or the error that failed it.

    Raises:
        NeuropodError: an error that is not one batch's (see ``BATCH_ERRORS``).
    """
    reader, names = readers.get(task.shard)
    rows = task.stop - task.start
    try:
        # A binary column feeds a string input as UTF-8 text, a string column a bytes input as bytes.
        inputs = BytesConformer(model.input_specs)(reader.read(names, task.start, task.stop))
        outputs = model.infer(inputs)
        short = output_without_rows(outputs, rows)
        if short is not None:
            raise ValidationError(
                f"Output '{short}' has shape {outputs[short].shape} for a batch of {rows} rows; a "
                f"batch run needs one row of every output per input row (dim 0)"
            )
    except BATCH_ERRORS as exc:
        return TaskResult(task, error=exc)
    return TaskResult(task, outputs=outputs)
