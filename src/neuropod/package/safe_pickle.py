"""Reading the original Neuropod's ``test_data.pkl`` without letting it run code.

A pickle names the callables that rebuild its objects, and unpickling calls them: a package
could run anything through ``test_data.pkl``. The restricted unpickler here resolves only the
globals that rebuild plain data, so that by default a test-data pickle can hold dicts, lists,
tuples, strings, bytes, numbers, booleans, ``None``, numpy arrays (numeric, string and object
arrays of these) and numpy scalars. The allowed globals, under each name numpy 1.x and 2.x
write them:

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` and
  ``numpy.ndarray``: an array (protocols 0-4);
- ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``: an array
  (protocol 5);
- ``numpy.dtype``: a dtype;
- ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar``: a numpy scalar;
- ``_codecs.encode`` with the ``latin1`` codec only: how protocols 0-2 store ``bytes``;
- ``builtins.complex`` (``__builtin__.complex`` in Python 2 pickles): a complex number.

Anything else is refused with a ``PackageError``, before it is called.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from neuropod.errors import PackageError

_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1"}


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    # Any other codec (zlib, base64, rot13, ...) is not what pickle writes for bytes.
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    core = getattr(np, "_core", None) or np.core  # numpy 1.x has only numpy.core
    multiarray, numeric = core.multiarray, core.numeric
    table: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _encode_latin1,
        ("builtins", "complex"): complex,
        ("__builtin__", "complex"): complex,
    }
    # Resolved here rather than imported by name: numpy 2 warns on every numpy.core import.
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path):
        # latin1: Python 2 pickles store array bytes as str, which must come back byte for byte.
        super().__init__(file, encoding="latin1")
        self._path = path
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise PackageError(
                f"{self._path} wants to load the global '{module}.{name}', which is not plain "
                f"data (arrays, dicts, lists, tuples, strings, bytes, numbers); nothing was run. "
                f"If you trust this package, allow any pickle with `neuropod test --allow-pickle` "
                f"or load_test_data(..., allow_pickle=True)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise PackageError(f"{self._path} holds a persistent id, which is not plain data")


def load_pickle(path: Path, allow_pickle: bool = False) -> Any:
    """Unpickle the file ``path``, building only plain data unless ``allow_pickle``.

    Args:
        path: the pickle file.
        allow_pickle: unpickle anything, running whatever code the file names.

    Returns:
        The unpickled object.

    Raises:
        PackageError: without ``allow_pickle``, the file names a global outside the allow
            list (named in the message); nothing it names has been called.
        OSError: the file cannot be read.
        Exception: whatever a damaged pickle makes ``pickle`` raise.
    """
    with open(path, "rb") as f:
        if allow_pickle:
            return pickle.load(f)
        return _RestrictedUnpickler(f, path).load()
