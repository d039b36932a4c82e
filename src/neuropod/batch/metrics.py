"""``evaluate``: one metrics pipeline per problem, run with every model that solves it.

A metric is a plain function of the outputs and the targets of the whole dataset, so the same
metrics serve every model of a problem, whatever framework built it::

    def mae(outputs, targets):
        return float(np.mean(np.abs(outputs["y"] - targets["y"])))

    evaluate({"torchscript": "linear_ts.zip", "onnx": "linear_onnx.zip"}, "data/",
             metrics={"mae": mae}, targets=["y"])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from neuropod.batch.dataset import DatasetError, open_dataset
from neuropod.batch.engine import Engine
from neuropod.batch.formats import open_reader
from neuropod.batch.numpy_format import concatenate
from neuropod.batch.runner import DEFAULT_BATCH_SIZE, run
from neuropod.errors import OptionError
from neuropod.model import NeuropodModel
from neuropod.spec.tensor_spec import TensorSpec
from neuropod.text_table import table

#: ``metric(outputs, targets) -> value``, both dicts of name -> array over the whole dataset.
Metric = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], float]


@dataclass(frozen=True)
class Evaluation:
    """The metrics of every model over one dataset; ``str`` gives the side-by-side table.

    Attributes:
        scores: model name -> metric name -> value.
        rows_per_second: model name -> rows per second of its run.
        rows: the rows of the dataset.
    """

    scores: dict[str, dict[str, float]]
    rows_per_second: dict[str, float]
    rows: int

    def table(self) -> str:
        """A table with a column per model and a row per metric, then one of rows/s."""
        models = list(self.scores)
        metrics = list(next(iter(self.scores.values()), {}))
        rows = [[metric, *(_number(self.scores[m][metric]) for m in models)] for metric in metrics]
        rows.append(["rows/s", *(f"{self.rows_per_second[m]:,.0f}" for m in models)])
        return table(rows, ["metric", *models], indent=0, right=range(1, len(models) + 1))

    def __str__(self) -> str:
        return self.table()


def evaluate(
    models: Mapping[str, NeuropodModel | str | os.PathLike[str]],
    dataset: str | os.PathLike[str] | Mapping[str, Any],
    metrics: Mapping[str, Metric],
    targets: Sequence[str] | Mapping[str, Any],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    engine: str | Engine = "local",
    load_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    print_table: bool = True,
    file: TextIO | None = None,
) -> Evaluation:
    """Run every model over a dataset and compute every metric on its outputs.

    Args:
        models: name -> a loaded model or a package path, all of one problem.
        dataset: what ``neuropod.batch.run`` takes.
        metrics: name -> ``metric(outputs, targets)``, called once per model with the whole
            dataset's outputs and targets.
        targets: names of arrays or columns of ``dataset`` (the labels), or a dict of
            name -> array with one row per dataset row.
        batch_size: rows per call of a model.
        engine: the engine of every run (see ``neuropod.batch.run``).
        load_options: ``load_neuropod`` options for models given as paths.
        progress: draw each run's progress bar on stderr.
        print_table: print the side-by-side table when done.
        file: where to print it (default: ``sys.stdout``).

    Returns:
        An ``Evaluation``.

    Raises:
        OptionError: no model or no metric.
        DatasetError: a target is missing, or its rows differ from the dataset's.
        ValidationError, InferenceError: a batch failed (a metric over part of the data would
            mislead, so every run stops at its first error).
    """
    if not models or not metrics:
        raise OptionError("evaluate() needs at least one model and one metric")
    wanted = _targets(dataset, targets)
    scores: dict[str, dict[str, float]] = {}
    speeds: dict[str, float] = {}
    rows = 0
    for name, model in models.items():
        result = run(
            model,
            dataset,
            batch_size=batch_size,
            engine=engine,
            stop_on_error=True,
            progress=progress,
            load_options=load_options,
        )
        assert result.outputs is not None
        rows = result.rows
        for target, array in wanted.items():
            if len(array) != rows:
                raise DatasetError(f"Target '{target}' has {len(array)} rows, but the dataset has {rows}")
        scores[name] = {metric: float(fn(result.outputs, wanted)) for metric, fn in metrics.items()}
        speeds[name] = result.rows_per_second
    evaluation = Evaluation(scores, speeds, rows)
    if print_table:
        print(evaluation.table(), file=file if file is not None else sys.stdout)
    return evaluation


def _targets(
    dataset: str | os.PathLike[str] | Mapping[str, Any], targets: Sequence[str] | Mapping[str, Any]
) -> dict[str, np.ndarray]:
    if isinstance(targets, Mapping):
        return {name: np.asarray(value) for name, value in targets.items()}
    if isinstance(targets, str):
        targets = [targets]
    data = open_dataset(dataset)
    parts: list[dict[str, np.ndarray]] = []
    for shard in data.shards:
        reader = open_reader(shard)
        try:
            missing = [name for name in targets if name not in reader.columns]
            if missing:
                raise DatasetError(
                    f"Shard {shard.name} of the dataset has no target {', '.join(map(repr, missing))} "
                    f"(it holds {', '.join(map(repr, sorted(reader.columns)))})"
                )
            parts.append(reader.read(list(targets), 0, reader.num_rows(list(targets))))
        finally:
            reader.close()
    # Targets follow no spec; any dtype joins, as long as the dims after the first agree.
    return concatenate(parts, [TensorSpec(name, "float32", ("rows",)) for name in targets])


def _number(value: float) -> str:
    return f"{value:.6g}"
