"""``run``: feed a dataset through a model in batches and write the outputs shard by shard."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from neuropod.batch.dataset import Dataset, DatasetError, Shard, open_dataset
from neuropod.batch.engine import Engine, Job, LocalEngine, Task, TaskResult
from neuropod.batch.formats import open_reader, open_writer
from neuropod.batch.numpy_format import MemoryWriter, concatenate
from neuropod.batch.progress import Progress
from neuropod.batch.registry import resolve_engine
from neuropod.batch.state import RunState
from neuropod.errors import NeuropodError, SpecError
from neuropod.loader import load_neuropod
from neuropod.model import NeuropodModel
from neuropod.options import int_at_least
from neuropod.package.package import Package
from neuropod.spec.batch_dim import batch_symbol
from neuropod.spec.tensor_spec import TensorSpec

#: Rows per batch when none is given.
DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class BatchFailure:
    """A batch that failed: rows ``start`` to ``stop`` (exclusive) of a shard, and why.

    Its ``str`` reads ``shard part-1.npz rows 100-199: ValidationError: ...``.
    """

    shard: str
    start: int
    stop: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        """The failure as the run state file stores it."""
        return {"start": self.start, "stop": self.stop, "error": self.error}

    def __str__(self) -> str:
        return f"shard {self.shard} {_rows(self.start, self.stop)}: {self.error}"


@dataclass(frozen=True)
class RunResult:
    """What a call of ``run`` did.

    Attributes:
        rows: rows whose outputs were written (or returned) by this call.
        failed_rows: rows of the batches that failed.
        failures: the failed batches, in order.
        shards_run: shards run by this call.
        shards_skipped: shards an earlier run into the same output folder had finished.
        seconds: the wall time of the call, from when the model was loaded (by this process;
            an engine's workers load theirs within it).
        outputs: with no output folder, every output of every row run, joined along dim 0
            (rows of failed batches left out); else ``None``.
        output: the output folder, or ``None``.
    """

    rows: int
    failed_rows: int
    failures: tuple[BatchFailure, ...]
    shards_run: int
    shards_skipped: int
    seconds: float
    outputs: dict[str, np.ndarray] | None = None
    output: Path | None = None

    @property
    def ok(self) -> bool:
        """Whether every batch succeeded."""
        return not self.failures

    @property
    def rows_per_second(self) -> float:
        """Rows run (failed ones included) per second of wall time."""
        return (self.rows + self.failed_rows) / self.seconds if self.seconds > 0 else 0.0


def run(
    model: NeuropodModel | str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Mapping[str, Any],
    *,
    output: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    engine: str | Engine = "local",
    stop_on_error: bool = False,
    progress: bool = True,
    load_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run a model over a dataset in batches of rows, writing the outputs shard by shard.

    The batch dim is the symbol that dim 0 of every input shares. Each shard's outputs are
    written under ``output`` in the shard's own format and name, and appear whole or not at
    all; ``output/neuropod-run.json`` lists the finished shards, so calling ``run`` again with
    the same arguments after a crash or a kill only runs the shards left. A batch that fails
    validation, or on which the model raises, is reported with its rows and skipped (its rows
    have no outputs); the state file lists those failures too.

    Args:
        model: a loaded model, or a package path (loaded here, or by each worker of the engine).
        dataset: a folder or file of shards (see ``neuropod.batch.dataset``), or a dict of
            input name -> array. Columns that are not inputs are not read.
        output: the output folder (new, empty, or holding this run's state); ``None`` to keep
            the outputs in memory, in the result.
        batch_size: rows per call of the model.
        engine: ``"local"`` (this process), ``"ray"`` (a Ray actor pool, with the defaults of
            ``neuropod.integrations.ray.RayEngine``), another name of an engine registered
            under the ``neuropod.engines`` entry point group, or an ``Engine``.
        stop_on_error: raise the first batch's error instead of going on.
        progress: draw a progress bar with rows/s on stderr, and print failures there.
        load_options: ``load_neuropod`` options for a model given as a path (``use_ope=True``
            runs it out of process).

    Returns:
        A ``RunResult``.

    Raises:
        SpecError: dim 0 of the inputs is not one shared symbol, or an output is a scalar.
        DatasetError: the dataset cannot be read, has no input columns, or the output folder
            holds something else than this run.
        ValidationError, InferenceError: with ``stop_on_error``, the first failed batch; the
            message starts with its shard and rows.
        OptionError: an invalid ``batch_size`` or engine.
        BackendUnavailable: the engine cannot be imported (``"ray"`` without Ray installed).

    >>> result = run("model.zip", "data/", output="out/", batch_size=4096)
    >>> result.rows, result.failures
    (8, ())
    """
    int_at_least(1)("batch_size", batch_size)
    chosen = resolve_engine(engine)
    options = dict(load_options or {})
    # An in-process engine runs the model loaded here; others load it in their workers.
    loaded = None
    if not isinstance(model, NeuropodModel) and isinstance(chosen, LocalEngine):
        loaded = load_neuropod(model, **options)
    facts = _facts(loaded or model)
    start_time = time.perf_counter()
    try:
        inputs, outputs = facts.inputs, facts.outputs
        batch_symbol(inputs)
        for spec in outputs:
            if not spec.shape:
                raise SpecError(
                    f"Output '{spec.name}' is a scalar, so it has no row per input row; a batch "
                    f"run needs dim 0 of every output to be the batch dim"
                )
        data = open_dataset(dataset)
        folder = _output_folder(output, data)
        state = None
        if folder is not None:
            identity = {
                "model": facts.name,
                "platform": facts.platform,
                "dataset": data.source,
                "outputs": [s.to_dict() for s in outputs],
            }
            state = RunState.open(folder, identity)
        pending = [s for s in data.shards if state is None or not state.finished(s.name)]
        tasks = _plan(pending, inputs, batch_size)
        job = Job(
            package=facts.package,
            load_options=options,
            inputs=tuple(s.name for s in inputs),
            shards=tuple(pending),
            tasks=tuple(t for shard_tasks in tasks for t in shard_tasks),
            model=model if isinstance(model, NeuropodModel) else loaded,
        )
        total = sum(t.stop - t.start for t in job.tasks)
        bar = Progress(total, facts.name, enabled=progress and bool(job.tasks))
        if len(pending) < len(data.shards):
            bar.note(f"resuming: {len(data.shards) - len(pending)} of {len(data.shards)} shards are done")
        try:
            return _execute(
                chosen,
                job,
                tasks,
                outputs,
                folder,
                state,
                bar,
                stop_on_error,
                skipped=len(data.shards) - len(pending),
                start_time=start_time,
            )
        finally:
            bar.close()
    finally:
        if loaded is not None:
            loaded.close()


class _Facts(NamedTuple):
    package: Path
    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _facts(model: NeuropodModel | str | os.PathLike[str]) -> _Facts:
    if isinstance(model, NeuropodModel):
        return _Facts(Path(model.path), model.name, model.platform, model.input_specs, model.output_specs)
    with Package(model, verify=False) as package:  # the engine's workers verify it when loading
        config = package.config
        return _Facts(Path(model), config.name, config.platform, config.inputs, config.outputs)


def _output_folder(output: str | os.PathLike[str] | None, data: Dataset) -> Path | None:
    if output is None:
        return None
    folder = Path(output).resolve()
    if data.overlaps(folder):
        raise DatasetError(
            f"Output folder {output} overlaps the dataset ({data.source}): outputs written there "
            f"would be read as input by the next run, or replace the input; write them elsewhere"
        )
    return folder


def _plan(shards: list[Shard], inputs: tuple[TensorSpec, ...], batch_size: int) -> list[list[Task]]:
    names = [spec.name for spec in inputs]
    plan: list[list[Task]] = []
    count = 0
    for number, shard in enumerate(shards):
        reader = open_reader(shard)
        try:
            present = [n for n in names if n in reader.columns]
            if not present:
                held = ", ".join(repr(c) for c in sorted(reader.columns)) or "nothing"
                raise DatasetError(
                    f"Shard {shard.name} of the dataset holds no input of the model (it holds "
                    f"{held}; the inputs are {', '.join(map(repr, names))}): name the arrays or "
                    f"columns after the inputs"
                )
            rows = reader.num_rows(present)
        finally:
            reader.close()
        shard_tasks = []
        for start in range(0, rows, batch_size):
            shard_tasks.append(Task(count, number, start, min(start + batch_size, rows)))
            count += 1
        plan.append(shard_tasks)
    return plan


def _execute(
    engine: Engine,
    job: Job,
    plan: list[list[Task]],
    output_specs: tuple[TensorSpec, ...],
    folder: Path | None,
    state: RunState | None,
    bar: Progress,
    stop_on_error: bool,
    *,
    skipped: int,
    start_time: float,
) -> RunResult:
    results: Iterator[TaskResult] = engine.map(job)
    failures: list[BatchFailure] = []
    in_memory: list[dict[str, np.ndarray]] = []
    rows = failed = 0
    try:
        for shard, tasks in zip(job.shards, plan, strict=True):
            writer = open_writer(shard, folder, output_specs)
            shard_failures = []
            try:
                for task in tasks:
                    result = next(results)
                    if result.task != task:
                        raise RuntimeError(f"engine {engine!r} yielded {result.task} where {task} was due")
                    if result.error is not None:
                        failure = BatchFailure(shard.name, task.start, task.stop, _error_text(result.error))
                        if stop_on_error:
                            where = f"shard {shard.name} {_rows(task.start, task.stop)}"
                            raise type(result.error)(f"{where}: {result.error}") from result.error
                        shard_failures.append(failure)
                        bar.note(f"error: {failure}")
                        failed += task.stop - task.start
                    else:
                        assert result.outputs is not None
                        writer.write(result.outputs)
                        rows += task.stop - task.start
                    bar.update(task.stop - task.start)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            if isinstance(writer, MemoryWriter) and folder is None:
                in_memory.append(writer.arrays)
            if state is not None:
                state.finish(
                    shard.name, tasks[-1].stop if tasks else 0, [f.to_dict() for f in shard_failures]
                )
            failures.extend(shard_failures)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return RunResult(
        rows=rows,
        failed_rows=failed,
        failures=tuple(failures),
        shards_run=len(job.shards),
        shards_skipped=skipped,
        seconds=time.perf_counter() - start_time,
        outputs=concatenate(in_memory, output_specs) if folder is None else None,
        output=folder,
    )


def _error_text(error: NeuropodError) -> str:
    return f"{type(error).__name__}: {error}"


def _rows(start: int, stop: int) -> str:
    return f"row {start}" if stop - start == 1 else f"rows {start}-{stop - 1}"
