"""Shards of Parquet and Arrow IPC files: columns to arrays and back (needs pyarrow).

A column of numbers, strings or binary is a tensor of rank 1 (string tensors are written as
string columns, bytes tensors as binary ones); a list column adds a dim per level of
nesting, and a batch of its rows becomes one array when every row of the batch has the same
length (else the batch fails validation). Outputs of rank 2 and more are written as list
columns: fixed-size lists where the output spec fixes the dim, plain lists elsewhere.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.batch.dataset import PARQUET, DatasetError, Shard, ShardReader, ShardWriter, output_path
from neuropod.batch.state import partial_path, publish
from neuropod.errors import BackendUnavailable, ValidationError
from neuropod.spec.dtypes import BYTES, STRING, VARIABLE_LENGTH
from neuropod.spec.tensor_spec import TensorSpec

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq
except ImportError as exc:
    raise BackendUnavailable(
        f"Parquet and Arrow datasets need pyarrow, which is not installed ({exc}): "
        f"pip install 'neuropod[batch]'"
    ) from exc

#: The column type of each variable-length spec type.
_ARROW_TYPES = {STRING: pa.string(), BYTES: pa.binary()}

#: Rows gathered before a row group (Parquet) or record batch (Arrow) is written.
ROWS_PER_GROUP = 1 << 16


def open_reader(shard: Shard) -> ShardReader:
    """A reader of a Parquet or Arrow IPC file."""
    assert shard.path is not None
    if shard.format == PARQUET:
        return _ParquetReader(shard.path)
    return _ArrowReader(shard.path)


def open_writer(shard: Shard, output: Path, specs: Sequence[TensorSpec]) -> ShardWriter:
    """A writer of outputs as a file of the shard's format and name."""
    return _TableWriter(output_path(shard, output), specs, shard.format)


def to_numpy(column: pa.Array | pa.ChunkedArray, name: str, first_row: int = 0) -> np.ndarray:
    """The rows of a column as one array: list levels become dims, strings an object array.

    Args:
        column: the column's rows.
        name: the column's name, for messages.
        first_row: the row number of ``column``'s first row in its file, for messages.

    Raises:
        ValidationError: the column holds nulls, or lists of different lengths at one level.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return _to_numpy(column, name, first_row, depth=1)


def _to_numpy(column: pa.Array, name: str, first_row: int, depth: int) -> np.ndarray:
    if column.null_count:
        where = f"row {first_row + _first_null(column)}" if depth == 1 else f"a list at dim {depth - 1}"
        raise ValidationError(
            f"Column '{name}' holds null values (first in {where}); tensors have no nulls: fill "
            f"them or drop those rows"
        )
    kind = column.type
    if isinstance(kind, pa.FixedShapeTensorType):
        return np.asarray(column.to_numpy_ndarray())
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        return np.asarray(column.to_numpy(zero_copy_only=False))
    rows = len(column)
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if rows else 0
        if rows and (lengths != width).any():
            odd = int(np.argmax(lengths != width))
            message = (
                f"Column '{name}' holds lists of different lengths at dim {depth} "
                f"(from {int(lengths.min())} to {int(lengths.max())}"
            )
            if depth == 1:
                message += f"; row {first_row} has {width}, row {first_row + odd} has {int(lengths[odd])}"
            raise ValidationError(
                message + "): a tensor needs one length per dim within a batch. Pad the lists to "
                "one length, or run with a batch size that keeps rows of one length together"
            )
    values = _to_numpy(column.flatten(), name, first_row, depth + 1)
    return values.reshape((rows, width, *values.shape[1:]))


def _first_null(column: pa.Array) -> int:
    return int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))


def to_arrow(array: np.ndarray, spec: TensorSpec) -> pa.Array:
    """An output array as a column: rank 1 as values, more dims as (fixed-size) list levels."""
    flat = array.reshape(-1)
    if spec.dtype in VARIABLE_LENGTH or array.dtype.kind in "UOS":
        values = pa.array(flat.tolist(), _ARROW_TYPES.get(spec.dtype, pa.string()))
    else:
        values = pa.array(flat)
    for i in range(array.ndim - 1, 0, -1):
        width = array.shape[i]
        if isinstance(spec.shape[i], int):
            values = pa.FixedSizeListArray.from_arrays(values, width)
        else:
            lists = int(np.prod(array.shape[:i]))
            values = pa.ListArray.from_arrays(pa.array(np.arange(lists + 1, dtype=np.int32) * width), values)
    return values


def schema(specs: Sequence[TensorSpec]) -> pa.Schema:
    """The schema of the output columns, derived from the output specs alone."""
    fields = []
    for spec in specs:
        kind: pa.DataType = _ARROW_TYPES.get(spec.dtype) or pa.from_numpy_dtype(np.dtype(spec.dtype))
        for dim in reversed(spec.shape[1:]):
            kind = pa.list_(kind, dim) if isinstance(dim, int) else pa.list_(kind)
        fields.append(pa.field(spec.name, kind, nullable=False))
    return pa.schema(fields)


class _TableReader(ShardReader):
    def __init__(self, path: Path, names: Sequence[str]):
        self._path = path
        self._names = frozenset(names)

    @property
    def columns(self) -> frozenset[str]:
        return self._names

    def _convert(self, table: pa.Table, names: Sequence[str], start: int) -> dict[str, np.ndarray]:
        return {name: to_numpy(table.column(name), name, start) for name in names}


class _ArrowReader(_TableReader):
    """An Arrow IPC file, memory-mapped: its columns are read without a copy."""

    def __init__(self, path: Path):
        try:
            self._table = ipc.open_file(pa.memory_map(str(path))).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise DatasetError(f"Cannot read {path} as an Arrow IPC file: {exc}") from exc
        super().__init__(path, self._table.column_names)

    def num_rows(self, names: Sequence[str]) -> int:
        return int(self._table.num_rows)

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
        return self._convert(self._table.slice(start, stop - start), names, start)


class _ParquetReader(_TableReader):
    """A Parquet file, read a row group at a time as the batches move through it."""

    def __init__(self, path: Path):
        try:
            self._file = pq.ParquetFile(str(path), memory_map=True)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DatasetError(f"Cannot read {path} as a Parquet file: {exc}") from exc
        metadata = self._file.metadata
        counts = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        self._group_starts = list(np.cumsum([0, *counts]))
        self._cached: tuple[int, int, tuple[str, ...], pa.Table] | None = None
        super().__init__(path, self._file.schema_arrow.names)

    def num_rows(self, names: Sequence[str]) -> int:
        return int(self._file.metadata.num_rows)

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
        table, offset = self._groups(tuple(names), start, stop)
        return self._convert(table.slice(start - offset, stop - start), names, start)

    def _groups(self, names: tuple[str, ...], start: int, stop: int) -> tuple[pa.Table, int]:
        cached = self._cached
        if cached is not None and cached[0] <= start and stop <= cached[1] and cached[2] == names:
            return cached[3], cached[0]
        first = bisect.bisect_right(self._group_starts, start) - 1
        last = bisect.bisect_left(self._group_starts, stop)
        table = self._file.read_row_groups(list(range(first, last)), columns=list(names))
        self._cached = (int(self._group_starts[first]), int(self._group_starts[last]), names, table)
        return table, int(self._group_starts[first])

    def close(self) -> None:
        self._cached = None
        self._file.close()


class _TableWriter(ShardWriter):
    """Writes batches of outputs as row groups (Parquet) or record batches (Arrow IPC)."""

    def __init__(self, final: Path, specs: Sequence[TensorSpec], fmt: str):
        self._final = final
        self._specs = specs
        self._format = fmt
        self._schema = schema(specs)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._sink: Any = None

    def write(self, outputs: Mapping[str, np.ndarray]) -> None:
        columns = [to_arrow(outputs[spec.name], spec) for spec in self._specs]
        table = pa.Table.from_arrays(columns, schema=self._schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._sink is None:
            self._final.parent.mkdir(parents=True, exist_ok=True)
            path = str(partial_path(self._final))
            if self._format == PARQUET:
                self._sink = pq.ParquetWriter(path, self._schema)
            else:
                self._sink = ipc.new_file(path, self._schema)
        if self._pending:
            self._sink.write_table(pa.concat_tables(self._pending).combine_chunks())
        self._pending, self._pending_rows = [], 0

    def commit(self) -> None:
        self._flush()
        self._sink.close()
        self._sink = None
        publish(self._final)

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        partial_path(self._final).unlink(missing_ok=True)
