"""Datasets: where the rows come from (a folder of files, or arrays in memory) and their shards.

A dataset is a list of shards; a shard is the unit that is read, written to the output in the
same format, and skipped when a killed run resumes. The layouts:

- ``.npz`` files: each file is a shard; its arrays are named after the model's inputs.
- ``.npy`` files: a folder holding ``NAME.npy`` for each input is one shard; a folder of such
  folders holds one shard per folder.
- ``.parquet`` files, or Arrow IPC files (``.arrow``, ``.feather``): each file is a shard; its
  columns are named after the model's inputs, list columns becoming the dims after the first.
- A dict of arrays in memory: one shard.

Files and folders whose names start with ``.`` or ``_`` (``_SUCCESS``, ``.crc``) are skipped,
as are files of other types. Columns that are not inputs (ids, targets) are not read.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.errors import DatasetError as DatasetError  # re-exported: its old home

#: Input formats, named as the state file and messages name them.
NPZ, NPY, PARQUET, ARROW, MEMORY = "npz", "npy", "parquet", "arrow", "memory"

_SUFFIXES = {".npz": NPZ, ".parquet": PARQUET, ".pq": PARQUET, ".arrow": ARROW, ".feather": ARROW}

#: The name of the only shard of an in-memory dataset, and of a lone folder of ``.npy`` files.
SINGLE = "."


@dataclass(frozen=True)
class Shard:
    """One part of a dataset: a file, a folder of ``.npy`` files, or arrays in memory.

    Args:
        name: the path relative to the dataset's folder (``"."`` for a lone shard), which is
            also where its outputs go relative to the output folder.
        format: ``"npz"``, ``"npy"``, ``"parquet"``, ``"arrow"`` or ``"memory"``.
        path: the file or folder; ``None`` in memory.
        arrays: the arrays of an in-memory shard.
    """

    name: str
    format: str
    path: Path | None = None
    arrays: Mapping[str, np.ndarray] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Dataset:
    """A dataset's shards, in the order they are run.

    Args:
        source: the resolved folder or file, or ``"<memory>"``; a run's identity when resuming.
        format: the format every shard has.
        shards: the shards, sorted by name.
    """

    source: str
    format: str
    shards: tuple[Shard, ...]

    def overlaps(self, output: Path) -> bool:
        """Whether outputs written under ``output`` would land among the dataset's files.

        Inside the dataset's folder they would be read as input by the next run; beside a
        single-file dataset, the output of the same name would replace it.
        """
        if self.format == MEMORY:
            return False
        source = Path(self.source)
        if source.is_dir():
            return output.resolve().is_relative_to(source)
        return output.resolve() == source.parent


def open_dataset(data: str | os.PathLike[str] | Mapping[str, Any]) -> Dataset:
    """Find the shards of ``data``.

    Args:
        data: a folder (see the module's docstring for layouts), a single ``.npz``,
            ``.parquet`` or Arrow file, or a dict of input name -> array (one shard).

    Returns:
        The dataset.

    Raises:
        DatasetError: the path does not exist, holds no shard, or mixes formats.
    """
    if isinstance(data, Mapping):
        arrays = {str(name): np.asarray(value) for name, value in data.items()}
        return Dataset("<memory>", MEMORY, (Shard(SINGLE, MEMORY, arrays=arrays),))
    path = Path(data).resolve()  # workers of other processes read the shards, from their own cwd
    if path.is_file():
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise DatasetError(
                f"{path} is not a dataset: expected a folder, or a .npz, .parquet, .arrow or .feather file"
            )
        return Dataset(str(path), fmt, (Shard(path.name, fmt, path),))
    if not path.is_dir():
        raise DatasetError(f"No dataset at {data}: it does not exist")
    entries = sorted(p for p in path.iterdir() if not p.name.startswith((".", "_")))
    by_format: dict[str, list[Shard]] = {}
    for entry in entries:
        fmt = _SUFFIXES.get(entry.suffix.lower()) if entry.is_file() else None
        if fmt is not None:
            by_format.setdefault(fmt, []).append(Shard(entry.name, fmt, entry))
    if any(entry.suffix == ".npy" and entry.is_file() for entry in entries):
        by_format.setdefault(NPY, []).append(Shard(SINGLE, NPY, path))
    else:
        folders = [e for e in entries if e.is_dir() and any(e.glob("*.npy"))]
        if folders:
            by_format[NPY] = [Shard(folder.name, NPY, folder) for folder in folders]
    if len(by_format) > 1:
        raise DatasetError(
            f"{path} mixes dataset formats ({', '.join(sorted(by_format))}); keep one format per folder"
        )
    if not by_format:
        raise DatasetError(
            f"{path} holds no dataset: expected .npz, .parquet, .arrow or .feather files, "
            f"NAME.npy files, or folders of NAME.npy files"
        )
    ((fmt, shards),) = by_format.items()
    return Dataset(str(path), fmt, tuple(shards))


class ShardReader(ABC):
    """Reads rows of one shard. Made by ``open_reader``; close it when done."""

    @property
    @abstractmethod
    def columns(self) -> frozenset[str]:
        """The names of the tensors (arrays or columns) the shard holds."""

    @abstractmethod
    def num_rows(self, names: Sequence[str]) -> int:
        """The number of rows of the tensors ``names``, without reading them where possible.

        Raises:
            DatasetError: the tensors have different numbers of rows, or one is a scalar.
        """

    @abstractmethod
    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start`` to ``stop`` (exclusive) of the tensors ``names``.

        Raises:
            ValidationError: the rows cannot become arrays (lists of different lengths, nulls).
        """

    def close(self) -> None:  # noqa: B027 - readers of memory have nothing to release
        """Release the files the reader holds."""


class ShardWriter(ABC):
    """Writes the outputs of one shard; nothing is visible until ``commit``."""

    @abstractmethod
    def write(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Add the outputs of the next rows."""

    @abstractmethod
    def commit(self) -> None:
        """Make the shard's outputs appear, whole, at once (an atomic rename).

        Raises:
            DatasetError: the outputs of the batches cannot be put together.
        """

    def abort(self) -> None:  # noqa: B027 - writers of memory have nothing to remove
        """Drop what was written; the shard's final outputs are left as they were."""


def output_path(shard: Shard, output: Path) -> Path:
    """Where ``shard``'s outputs go under the output folder (in-memory data goes to ``data.npz``)."""
    if shard.format == MEMORY:
        return output / "data.npz"
    return output if shard.name == SINGLE else output / shard.name
