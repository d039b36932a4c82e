"""``RayEngine``: the batches of ``neuropod.batch.run`` on a pool of Ray actors, through Ray Data."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import ray
import ray.data

from neuropod.batch.dataset import MEMORY, Shard
from neuropod.batch.engine import Engine, Job, ShardReaders, Task, TaskResult, run_task
from neuropod.integrations.ray.actor import ModelActor, actor_load_options
from neuropod.integrations.ray.package_source import PackageSource, package_source


class RayEngine(Engine):
    """Runs the batches on a pool of Ray actors, each loading the package once.

    The driver plans the batches and writes the outputs; the actors read their rows from the
    shards themselves, so the dataset's files must be readable by every worker (as the
    package, unless shipped). In-memory datasets go through the object store. A batch that
    fails is reported like with the local engine; the run goes on.

    Args:
        address: the Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``); ``None``
            starts a local Ray. An already initialized Ray is used as it is.
        concurrency: actors in the pool.
        num_cpus: CPUs each actor reserves.
        num_gpus: GPUs each actor reserves (the model then runs on the actor's GPU).
        ship_package: put the package into the object store instead of having workers read
            its path.
        task_rows: rows of one Ray task: consecutive batches of a shard go to an actor together,
            so that Ray's cost per task is paid once per many batches.
        init_options: more keyword arguments of ``ray.init``.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        concurrency: int = 2,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        ship_package: bool = False,
        task_rows: int = 65536,
        init_options: Mapping[str, Any] | None = None,
    ):
        self.address = address
        self.concurrency = concurrency
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.ship_package = ship_package
        self.task_rows = task_rows
        self.init_options = dict(init_options or {})

    def map(self, job: Job) -> Iterator[TaskResult]:
        if not job.tasks:
            return
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_options)
        options = actor_load_options(job.load_options, num_gpus=self.num_gpus)
        shards, arrays = _shippable(job.shards)
        items = [{"first": first, "stop": stop} for first, stop in _chunks(job.tasks, self.task_rows)]
        tasks = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _TaskWorker,
            fn_constructor_kwargs={
                "package": package_source(job.package, self.ship_package),
                "load_options": options,
                "inputs": job.inputs,
                "shards": shards,
                "arrays": arrays,
                "tasks": job.tasks,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.concurrency),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus or None,
        )
        context = tasks.context
        context.execution_options.preserve_order = True
        # The runner draws its own progress bar; Ray's would interleave with it.
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        for batch in tasks.iter_batches(batch_size=None, batch_format="numpy"):
            for payload in batch["results"]:
                yield from pickle.loads(payload)

    def __repr__(self) -> str:
        return (
            f"RayEngine(address={self.address!r}, concurrency={self.concurrency}, "
            f"num_cpus={self.num_cpus}, num_gpus={self.num_gpus}, ship_package={self.ship_package}, "
            f"task_rows={self.task_rows})"
        )


class _TaskWorker(ModelActor):
    """An actor of the pool: loads the package once, then runs the batches it is given."""

    def __init__(
        self,
        package: PackageSource,
        load_options: Mapping[str, Any],
        inputs: Sequence[str],
        shards: Sequence[Shard],
        arrays: Mapping[int, Any],
        tasks: Sequence[Task],
    ):
        self._tasks = tasks
        super().__init__(package, load_options)
        shards = [
            dataclasses.replace(shard, arrays=ray.get(arrays[i])) if i in arrays else shard
            for i, shard in enumerate(shards)
        ]
        self._readers = ShardReaders(shards, inputs)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the tasks numbered ``first`` to ``stop`` of each row; their pickled results."""
        payloads = []
        for first, stop in zip(batch["first"], batch["stop"], strict=True):
            results = [run_task(self.model, self._readers, task) for task in self._tasks[first:stop]]
            payloads.append(pickle.dumps(results, protocol=5))
        return {"results": np.array(payloads, dtype=object)}

    def __del__(self) -> None:
        readers = getattr(self, "_readers", None)
        if readers is not None:
            readers.close()
        super().__del__()


def _chunks(tasks: Sequence[Task], rows: int) -> list[tuple[int, int]]:
    """Runs of consecutive tasks of one shard with about ``rows`` rows, as (first, stop) indices."""
    chunks: list[tuple[int, int]] = []
    first = count = 0
    for i, task in enumerate(tasks):
        if i > first and (task.shard != tasks[first].shard or count + task.stop - task.start > rows):
            chunks.append((first, i))
            first, count = i, 0
        count += task.stop - task.start
    chunks.append((first, len(tasks)))
    return chunks


def _shippable(shards: Sequence[Shard]) -> tuple[tuple[Shard, ...], dict[int, Any]]:
    """The shards without their in-memory arrays, and those arrays put into the object store."""
    arrays = {}
    stripped = []
    for i, shard in enumerate(shards):
        if shard.format == MEMORY:
            arrays[i] = ray.put(dict(shard.arrays or {}))
            shard = dataclasses.replace(shard, arrays=None)
        stripped.append(shard)
    return tuple(stripped), arrays
