"""Batch inference: run a dataset through any neuropod, and compare models with one set of metrics.

>>> from neuropod import batch
>>> result = batch.run("model.zip", "data/", output="out/", batch_size=4096)
>>> result.rows
8

A metric is a function of the outputs and the targets over the whole dataset; ``evaluate``
prints a column per model (rows/s differs from run to run):

>>> def mae(outputs, targets):
...     return float(np.mean(np.abs(outputs["out"] - targets["target"])))
>>> models = {"v1": "addition_model.zip", "v2": "model.zip"}
>>> evaluation = batch.evaluate(models, "data/", metrics={"mae": mae},
...                             targets=["target"])  # doctest: +NORMALIZE_WHITESPACE
metric  v1  v2
mae      0   0
rows/s ... ...

``run`` splits the dataset along the batch dim (the symbol that dim 0 of every input shares),
writes the outputs shard by shard in the dataset's format, and resumes a killed run without
redoing finished shards. The engine runs the batches: ``"local"`` in this process, ``"ray"``
on a pool of Ray actors (``neuropod.integrations.ray``); other packages add engines through
the ``neuropod.engines`` entry point group (``neuropod.batch.registry``). Parquet and Arrow
datasets need pyarrow (``pip install 'neuropod[batch]'``).
"""

from neuropod.batch.dataset import Dataset, DatasetError, Shard, open_dataset
from neuropod.batch.engine import Engine, Job, LocalEngine, Task, TaskResult
from neuropod.batch.metrics import Evaluation, Metric, evaluate
from neuropod.batch.runner import BatchFailure, RunResult, run
from neuropod.batch.state import STATE_FILE
from neuropod.spec.batch_dim import batch_symbol

__all__ = [
    "BatchFailure",
    "Dataset",
    "DatasetError",
    "Engine",
    "Evaluation",
    "Job",
    "LocalEngine",
    "Metric",
    "RunResult",
    "STATE_FILE",
    "Shard",
    "Task",
    "TaskResult",
    "batch_symbol",
    "evaluate",
    "open_dataset",
    "run",
]
