"""Batch inference over a ``ray.data.Dataset`` with a pool of actors, each loading the package once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray.data

from neuropod.errors import OptionError, ValidationError
from neuropod.integrations.ray.actor import ModelActor, actor_load_options
from neuropod.integrations.ray.package_source import PackageSource, package_source
from neuropod.package.package import Package
from neuropod.spec.batch_dim import batch_symbol


class NeuropodPredictor(ModelActor):
    """A callable class for ``Dataset.map_batches``: each actor loads the package once.

    Every batch (a dict of column name -> array, ``batch_format="numpy"``) is passed to the
    model's ``infer`` with the columns named after its inputs; the outputs, and the columns of
    ``keep_columns``, are the batch returned. Columns of per-row arrays (Ray's ragged tensors,
    Parquet lists) are stacked into one array when the rows of the batch have one shape.

    Args:
        package: a ``PackageSource``, or a path every worker can read.
        load_options: ``load_neuropod``'s options (``use_ope=True``: out of process).
        keep_columns: input columns passed through to the output (ids, labels).

    Raises:
        ValidationError: (on a call) a batch breaks the input spec; Ray reports it as the
            dataset's failure.
    """

    def __init__(
        self,
        package: PackageSource | str | os.PathLike[str],
        load_options: Mapping[str, Any] | None = None,
        keep_columns: Sequence[str] = (),
    ):
        super().__init__(package, dict(load_options or {}))
        self._inputs = [spec.name for spec in self.model.input_specs]
        outputs = {spec.name for spec in self.model.output_specs}
        clash = sorted(outputs.intersection(keep_columns))
        if clash:
            raise OptionError(f"keep_columns {clash} have the names of outputs of the model")
        self._keep = tuple(keep_columns)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on one batch and return its outputs (and the kept columns)."""
        inputs = {name: stack_rows(batch[name], name) for name in self._inputs if name in batch}
        outputs = self.model.infer(inputs)
        for column in self._keep:
            outputs[column] = batch[column]
        return outputs


def infer_dataset(
    dataset: ray.data.Dataset,
    package: str | os.PathLike[str] | PackageSource,
    *,
    batch_size: int = 1024,
    concurrency: int = 1,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    use_ope: bool = False,
    load_options: Mapping[str, Any] | None = None,
    ship_package: bool = False,
    keep_columns: Sequence[str] = (),
) -> ray.data.Dataset:
    """Map a dataset through a neuropod on a pool of Ray actors (lazily, like any Ray Data step).

    Args:
        dataset: rows whose columns are named after the model's inputs.
        package: the package: a path the workers can read, or a ``PackageSource``.
        batch_size: rows per call of the model.
        concurrency: actors in the pool; each loads the package once.
        num_cpus: CPUs each actor reserves.
        num_gpus: GPUs each actor reserves; with any, the model runs on the actor's GPU
            (``visible_gpu=0`` unless ``load_options`` says otherwise).
        use_ope: run the model out of process, in a worker process of each actor.
        load_options: other ``load_neuropod`` options.
        ship_package: put the package into Ray's object store, for workers that cannot read
            ``package`` (see the module's docstring).
        keep_columns: input columns to pass through to the output.

    Returns:
        The dataset of outputs (and kept columns). A batch that fails fails the dataset when
        it runs: Ray raises a ``ray.exceptions.RayTaskError`` (a ``UserCodeException``) whose
        message holds the model's error, e.g. ``ValidationError: Tensor 'x' ...``. To go on
        past failed batches and have them listed with their rows, use ``neuropod.batch.run``
        with a ``RayEngine``.

    Raises:
        PackageError: the package exists on the driver but cannot be read.
        SpecError: dim 0 of the inputs is not one shared batch symbol.
    """
    path = Path(package.path if isinstance(package, PackageSource) else package)
    if path.exists():  # else it may be a path that only the workers have
        with Package(path, verify=False) as opened:
            batch_symbol(opened.config.inputs)
    options = actor_load_options(load_options, num_gpus=num_gpus, use_ope=use_ope)
    return dataset.map_batches(
        NeuropodPredictor,
        fn_constructor_kwargs={
            "package": package_source(package, ship_package),
            "load_options": options,
            "keep_columns": tuple(keep_columns),
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )


def stack_rows(column: np.ndarray, name: str) -> np.ndarray:
    """A column of per-row arrays (an object array) as one array, when the rows share a shape.

    Raises:
        ValidationError: the rows have different shapes.
    """
    if column.dtype != object or not len(column) or not isinstance(column[0], np.ndarray):
        return column
    shapes = {row.shape for row in column}
    if len(shapes) > 1:
        raise ValidationError(
            f"Column '{name}' holds rows of different shapes ({', '.join(map(str, sorted(shapes)))}) "
            f"in one batch: a tensor needs one shape per batch. Pad the rows to one shape"
        )
    return np.stack(list(column))
