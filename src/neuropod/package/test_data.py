"""Test data stored in a package: example inputs and the outputs the model must give for them.

New packages store it as ``test_data.npz`` (plain ``.npy`` entries, no pickle, so reading it runs
no code); packages of the original Neuropod store ``test_data.pkl``, which is still read, by
default with an unpickler that builds only plain data (see ``neuropod.package.safe_pickle``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.archive import write_zip_entries
from neuropod.package.safe_pickle import load_pickle

_INPUT = "test_input/"
_OUTPUT = "test_output/"


@dataclass(frozen=True)
class TestData:
    """Example inputs of a package and, optionally, the outputs they must produce."""

    __test__ = False  # not a pytest test class, despite the name

    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray] | None


def as_array(value: Any) -> np.ndarray:
    """An array for ``value``, turning lists and object arrays of str into unicode arrays."""
    array = np.asarray(value)
    if array.dtype.kind == "O" and all(isinstance(item, str) for item in array.flat):
        array = array.astype(str)
    return array


def storable_array(value: Any, name: str) -> np.ndarray:
    """``as_array(value)`` in a form ``.npy`` files hold without pickle.

    An object array of ``bytes`` becomes a numpy ``S`` array, the only form of bytes ``.npy``
    stores without pickle; ``S`` elements lose trailing NULs, so an element that ends with one
    is refused rather than changed.

    Raises:
        ValueError: a bytes element ends with a NUL byte.
    """
    array = as_array(value)
    if array.dtype.kind != "O" or not array.size or not all(isinstance(item, bytes) for item in array.flat):
        return array
    for i, item in enumerate(array.flat):
        if item.endswith(b"\x00"):
            raise ValueError(
                f"'{name}' holds bytes ending with a NUL byte (element {i}), which a numpy S array, "
                f"the only form .npy files store bytes in without pickle, would drop"
            )
    return array.astype(np.bytes_)


def save_test_data(
    root: Path, inputs: Mapping[str, Any], expected: Mapping[str, Any] | None = None
) -> Path:
    """Write ``test_data.npz`` into the package directory ``root`` and return its path.

    Raises:
        PackageError: a value cannot be stored without pickle (e.g. an array of objects).
    """
    entries = []
    for prefix, tensors in ((_INPUT, inputs), (_OUTPUT, expected or {})):
        for name in sorted(tensors):
            array = as_array(tensors[name])
            buffer = io.BytesIO()
            try:
                np.lib.format.write_array(buffer, storable_array(array, name), allow_pickle=False)
            except ValueError as exc:
                raise PackageError(
                    f"Test tensor '{name}' of dtype {array.dtype} cannot be stored: {exc}"
                ) from None
            entries.append((f"{prefix}{name}.npy", buffer.getvalue()))
    if expected is None:
        entries.append(("no_expected_output", b""))
    path = root / layout.TEST_DATA_NPZ
    write_zip_entries(path, entries)
    return path


def load_test_data(root: Path, allow_pickle: bool = False) -> TestData | None:
    """Read a package's test data (``.npz``, else the original's ``.pkl``), or ``None``.

    Args:
        root: the package directory.
        allow_pickle: unpickle ``test_data.pkl`` even where it names code, not only plain data
            (arrays, dicts, lists, tuples, strings, bytes, numbers): only for trusted packages.

    Raises:
        PackageError: the file exists but cannot be read, or its pickle names code and
            ``allow_pickle`` is false.
    """
    npz = root / layout.TEST_DATA_NPZ
    if npz.exists():
        return _load_npz(npz)
    pkl = root / layout.TEST_DATA_PICKLE
    if pkl.exists():
        return _load_pickle(pkl, allow_pickle)
    return None


def _load_npz(path: Path) -> TestData:
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            has_expected = "no_expected_output" not in npz.files
            for key in npz.files:
                if key.startswith(_INPUT):
                    inputs[key[len(_INPUT):]] = npz[key]
                elif key.startswith(_OUTPUT):
                    outputs[key[len(_OUTPUT):]] = npz[key]
    except (OSError, ValueError) as exc:
        raise PackageError(f"Cannot read test data {path}: {exc}") from exc
    return TestData(inputs, outputs if has_expected else None)


def _load_pickle(path: Path, allow_pickle: bool) -> TestData:
    try:
        data = load_pickle(path, allow_pickle)
        inputs = {k: as_array(v) for k, v in data["test_input"].items()}
        expected = data.get("test_output")
        if expected is not None:
            expected = {k: as_array(v) for k, v in expected.items()}
    except PackageError:
        raise
    except Exception as exc:  # unpickling, and a pickle of the wrong shape, can raise anything
        raise PackageError(f"Cannot read test data {path}: {exc}") from exc
    return TestData(inputs, expected)
