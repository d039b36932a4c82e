"""Which reader and writer handle a shard, by its format.

Kept apart from ``dataset`` (what a shard is) so that the format modules can build on
``dataset`` without ``dataset`` importing them back. The Arrow formats are imported on first
use: they need pyarrow, an optional dependency that takes a while to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from neuropod.batch import numpy_format
from neuropod.batch.dataset import MEMORY, NPY, NPZ, Shard, ShardReader, ShardWriter
from neuropod.spec.tensor_spec import TensorSpec


def open_reader(shard: Shard) -> ShardReader:
    """A reader of ``shard``, in its format.

    Raises:
        DatasetError: the file cannot be opened in its format.
        BackendUnavailable: the format needs pyarrow, which is not installed.
    """
    if shard.format in (NPZ, NPY, MEMORY):
        return numpy_format.open_reader(shard)
    from neuropod.batch import arrow_format

    return arrow_format.open_reader(shard)


def open_writer(shard: Shard, output: Path | None, specs: Sequence[TensorSpec]) -> ShardWriter:
    """A writer of ``shard``'s outputs in its format, under ``output`` (in memory if ``None``).

    Args:
        shard: the input shard; the output goes to ``output / shard.name``.
        output: the output folder, or ``None`` to keep the outputs in memory.
        specs: the model's output specs (types of empty outputs, Arrow schemas).

    Raises:
        BackendUnavailable: the format needs pyarrow, which is not installed.
    """
    if output is None:
        return numpy_format.MemoryWriter(specs)
    if shard.format in (NPZ, NPY, MEMORY):
        return numpy_format.open_writer(shard, output, specs)
    from neuropod.batch import arrow_format

    return arrow_format.open_writer(shard, output, specs)
