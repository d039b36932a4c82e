"""Shards of numpy files (``.npz``, folders of ``.npy``) and of arrays in memory."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from neuropod.batch.dataset import (
    MEMORY,
    NPY,
    NPZ,
    DatasetError,
    Shard,
    ShardReader,
    ShardWriter,
    output_path,
)
from neuropod.batch.state import write_atomically
from neuropod.package.test_data import storable_array
from neuropod.spec.dtypes import FIXED_WIDTH_KIND, numpy_dtype
from neuropod.spec.tensor_spec import TensorSpec


def open_reader(shard: Shard) -> ShardReader:
    """A reader of a ``.npz``, ``.npy`` folder or in-memory shard."""
    if shard.format == MEMORY:
        assert shard.arrays is not None
        return _ArraysReader(shard.name, shard.arrays)
    assert shard.path is not None
    if shard.format == NPZ:
        return _NpzReader(shard.path)
    return _NpyReader(shard.path)


def open_writer(shard: Shard, output: Path, specs: Sequence[TensorSpec]) -> ShardWriter:
    """A writer of a numpy shard's outputs in its format (``.npz`` for in-memory data)."""
    final = output_path(shard, output)
    if shard.format == NPY:
        return _NpyWriter(final, specs)
    compressed = shard.format == NPZ and shard.path is not None and _is_compressed(shard.path)
    return _NpzWriter(final, specs, compressed)


class _ArraysReader(ShardReader):
    def __init__(self, where: str, arrays: Mapping[str, np.ndarray]):
        self._where = where
        self._arrays = dict(arrays)

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(self._arrays)

    def num_rows(self, names: Sequence[str]) -> int:
        return _common_rows(self._where, {name: self._array(name).shape for name in names})

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: self._array(name)[start:stop] for name in names}

    def _array(self, name: str) -> np.ndarray:
        return self._arrays[name]


class _NpyReader(_ArraysReader):
    """A folder of ``NAME.npy`` files, memory-mapped so that only the rows read are loaded."""

    def __init__(self, folder: Path):
        super().__init__(str(folder), {})
        self._folder = folder
        self._names = frozenset(p.stem for p in folder.glob("*.npy") if not p.name.startswith("."))

    @property
    def columns(self) -> frozenset[str]:
        return self._names

    def _array(self, name: str) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None:
            path = self._folder / f"{name}.npy"
            try:
                # Copy-on-write: the views are writeable, so frameworks take them without a
                # copy, and nothing a model does to them reaches the file.
                array = np.load(path, mmap_mode="c", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DatasetError(f"Cannot read {path} as a .npy file without pickle: {exc}") from exc
            self._arrays[name] = array
        return array

    def close(self) -> None:
        self._arrays.clear()


class _NpzReader(_ArraysReader):
    """An ``.npz`` file; an array is loaded whole the first time rows of it are read."""

    def __init__(self, path: Path):
        super().__init__(str(path), {})
        self._path = path
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"Cannot read {path} as an .npz file: {exc}") from exc
        self._names = frozenset(m[: -len(".npy")] for m in members if m.endswith(".npy"))

    @property
    def columns(self) -> frozenset[str]:
        return self._names

    def num_rows(self, names: Sequence[str]) -> int:
        # From the arrays' headers: counting rows must not decompress whole arrays.
        shapes = {}
        with zipfile.ZipFile(self._path) as archive:
            for name in names:
                with archive.open(f"{name}.npy") as member:
                    shapes[name] = _npy_header_shape(member, f"{self._path}:{name}")
        return _common_rows(self._where, shapes)

    def _array(self, name: str) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None:
            try:
                with np.load(self._path, allow_pickle=False) as npz:
                    array = npz[name]
            except (OSError, ValueError) as exc:
                raise DatasetError(
                    f"Cannot read '{name}' of {self._path} without pickle ({exc}); store strings "
                    f"as unicode arrays (dtype 'U'), not object arrays"
                ) from exc
            self._arrays[name] = array
        return array

    def close(self) -> None:
        self._arrays.clear()


class MemoryWriter(ShardWriter):
    """Keeps a shard's outputs in memory: ``arrays`` after ``commit``."""

    def __init__(self, specs: Sequence[TensorSpec]):
        self._specs = specs
        self._parts: list[Mapping[str, np.ndarray]] = []
        self.arrays: dict[str, np.ndarray] = {}

    def write(self, outputs: Mapping[str, np.ndarray]) -> None:
        self._parts.append(outputs)

    def commit(self) -> None:
        self.arrays = concatenate(self._parts, self._specs)
        self._parts = []


class _NpzWriter(MemoryWriter):
    def __init__(self, final: Path, specs: Sequence[TensorSpec], compressed: bool):
        super().__init__(specs)
        self._final = final
        self._save = np.savez_compressed if compressed else np.savez

    def commit(self) -> None:
        super().commit()
        arrays = {name: _storable(array, name, self._final) for name, array in self.arrays.items()}
        self._final.parent.mkdir(parents=True, exist_ok=True)

        def save(path: Path) -> None:
            with open(path, "wb") as file:  # a file object, so that numpy adds no ".npz"
                self._save(file, allow_pickle=False, **arrays)

        write_atomically(self._final, save)
        self.arrays = {}


class _NpyWriter(MemoryWriter):
    def __init__(self, folder: Path, specs: Sequence[TensorSpec]):
        super().__init__(specs)
        for spec in specs:
            if Path(spec.name).name != spec.name or spec.name in (".", ".."):
                raise DatasetError(
                    f"Output {spec.name!r} cannot be written as NAME.npy: its name is not a file "
                    f"name; write the outputs as .npz or Parquet instead"
                )
        self._folder = folder

    def commit(self) -> None:
        super().commit()
        self._folder.mkdir(parents=True, exist_ok=True)
        for name, array in self.arrays.items():
            value = _storable(array, name, self._folder)

            def save(path: Path, value: np.ndarray = value) -> None:
                with open(path, "wb") as file:
                    np.save(file, value, allow_pickle=False)

            write_atomically(self._folder / f"{name}.npy", save)
        self.arrays = {}


def concatenate(
    parts: Sequence[Mapping[str, np.ndarray]], specs: Sequence[TensorSpec]
) -> dict[str, np.ndarray]:
    """The outputs of consecutive batches as one array per output, in spec order.

    Raises:
        DatasetError: an output's dims after the first differ between batches.
    """
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        arrays = [part[spec.name] for part in parts if spec.name in part]
        if not arrays:
            if parts:  # an optional output the model never returned
                continue
            out[spec.name] = _empty(spec)
            continue
        # An empty shard's outputs have 0 for every unknown dim, which other shards' do not.
        arrays = [array for array in arrays if len(array)] or arrays[:1]
        if len(arrays) == 1:
            out[spec.name] = arrays[0]
            continue
        trailing = {array.shape[1:] for array in arrays}
        if len(trailing) > 1:
            raise DatasetError(
                f"Output '{spec.name}' has different shapes after dim 0 in different batches "
                f"({', '.join(str(s) for s in sorted(trailing))}), so its batches cannot be "
                f"joined into one array: write Parquet or Arrow, whose list columns hold rows of "
                f"any length"
            )
        out[spec.name] = np.concatenate(arrays)
    return out


def _empty(spec: TensorSpec) -> np.ndarray:
    shape = (0, *(dim if isinstance(dim, int) else 0 for dim in spec.shape[1:]))
    return np.empty(shape, numpy_dtype(spec.dtype) or FIXED_WIDTH_KIND[spec.dtype] + "1")


def _storable(array: np.ndarray, name: str, where: Path) -> np.ndarray:
    try:
        return storable_array(array, name)
    except ValueError as exc:
        raise DatasetError(
            f"Output {exc} in {where}; write the outputs as Parquet or Arrow, whose binary "
            f"columns hold any bytes"
        ) from None


def _common_rows(where: str, shapes: Mapping[str, tuple[int, ...]]) -> int:
    for name, shape in shapes.items():
        if not shape:
            raise DatasetError(f"{where}: '{name}' is a scalar, not rows of a batch")
    rows = {name: shape[0] for name, shape in shapes.items()}
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"'{name}' {count}" for name, count in rows.items())
        raise DatasetError(f"{where}: the inputs have different numbers of rows ({counts})")
    return next(iter(rows.values()), 0)


def _npy_header_shape(member: object, where: str) -> tuple[int, ...]:
    try:
        version = np.lib.format.read_magic(member)  # type: ignore[arg-type]
        reader = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = reader(member)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DatasetError(f"{where} is not a .npy array: {exc}") from exc
    return tuple(shape)


def _is_compressed(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist())
    except (OSError, zipfile.BadZipFile):
        return False
