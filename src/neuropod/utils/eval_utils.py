"""Running a package on example data and comparing with expected outputs (original API)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.errors import TestDataMismatch
from neuropod.package import test_data
from neuropod.package.test_data import TestData, as_array

__all__ = [
    "check_output_matches_expected",
    "load_and_test_neuropod",
    "load_test_data",
    "save_test_data",
]


def check_output_matches_expected(out: Mapping[str, Any], expected_out: Mapping[str, Any]) -> None:
    """Compare outputs with expected ones: ``==`` for strings, ``np.allclose`` for numbers.

    Raises:
        TestDataMismatch: ``"<name> does not match expected value!"``, followed by what differs.
    """
    for name, expected in expected_out.items():
        expected = as_array(expected)
        if name not in out:
            raise TestDataMismatch(
                f"{name} does not match expected value! The model returned no output '{name}' "
                f"(it returned: {', '.join(sorted(out)) or 'nothing'})"
            )
        got = as_array(out[name])
        if got.shape != expected.shape:
            raise TestDataMismatch(
                f"{name} does not match expected value! Expected shape {expected.shape}, "
                f"got shape {got.shape}"
            )
        if expected.dtype.kind in "UOS" or got.dtype.kind in "UOS":
            matches = bool(np.array_equal(expected, got))
        else:
            matches = bool(np.allclose(expected, got))
        if not matches:
            raise TestDataMismatch(
                f"{name} does not match expected value! Expected {_preview(expected)}, "
                f"got {_preview(got)}"
            )


def load_and_test_neuropod(
    neuropod_path: str | os.PathLike[str],
    test_input_data: Mapping[str, Any],
    test_expected_out: Mapping[str, Any] | None = None,
    neuropod_load_args: Mapping[str, Any] | None = None,
    **_ignored: Any,
) -> dict[str, np.ndarray]:
    """Load a package, run it on ``test_input_data`` and check ``test_expected_out`` if given.

    Extra keyword arguments are accepted and ignored, as the original did. A decoupled model
    is run with ``infer_stream`` to its end, and its last response is the one compared (and
    returned; an empty dict when it gave none).

    Returns:
        The model's outputs.

    Raises:
        TestDataMismatch: an output differs from the expected one.
    """
    from neuropod.loader import load_neuropod

    inputs = {name: as_array(value) for name, value in test_input_data.items()}
    with load_neuropod(neuropod_path, **dict(neuropod_load_args or {})) as model:
        if model.decoupled:
            out = {}
            for out in model.infer_stream(inputs):  # noqa: B007 - the last one is kept
                pass
        else:
            out = model.infer(inputs)
    if test_expected_out is not None:
        check_output_matches_expected(out, test_expected_out)
    return out


def save_test_data(
    neuropod_path: str | os.PathLike[str],
    test_input_data: Mapping[str, Any],
    test_expected_out: Mapping[str, Any] | None,
) -> None:
    """Store test data in a package directory (as ``test_data.npz``, which needs no pickle)."""
    test_data.save_test_data(Path(neuropod_path), test_input_data, test_expected_out)


def load_test_data(
    neuropod_path: str | os.PathLike[str], allow_pickle: bool = False
) -> dict[str, Any] | None:
    """Read a package directory's test data as the original's
    ``{"test_input": ..., "test_output": ...}`` dict, or ``None`` if it has none.

    Args:
        neuropod_path: the package directory.
        allow_pickle: unpickle an original package's ``test_data.pkl`` even where it names
            code; by default only plain data (numpy arrays, dicts, lists, tuples, strings,
            bytes, numbers) is built, and anything else is refused.

    Returns:
        The test data, or ``None``.

    Raises:
        PackageError: the test data cannot be read, or its pickle names code and
            ``allow_pickle`` is false.
    """
    data: TestData | None = test_data.load_test_data(Path(neuropod_path), allow_pickle)
    if data is None:
        return None
    return {"test_input": data.inputs, "test_output": data.expected}


def _preview(array: np.ndarray) -> str:
    text = np.array2string(array, threshold=8, edgeitems=3)
    return text if len(text) < 200 else text[:200] + "..."
