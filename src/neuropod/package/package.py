"""Opening a package: unpack a zip if needed, check the manifest, read the config."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from neuropod.closing import Closing
from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.archive import extract_zip, is_zip
from neuropod.package.config import ModelConfig
from neuropod.package.extraction import create_extraction_dir, remove_extraction_dir
from neuropod.package.jsonfile import load_json
from neuropod.package.manifest import verify_manifest
from neuropod.package.test_data import TestData, load_test_data


class Package(Closing):
    """An opened package, directory or zip, with its config read and its files verified.

    A zipped package is extracted to a private temporary directory that ``close`` removes
    (and, failing that, the garbage collector or interpreter exit; after a process is killed,
    the next process that opens a zip: see ``neuropod.package.extraction``).

    Args:
        path: the package's directory or zip file.
        verify: check files against ``manifest.json`` (packages without one are accepted).

    Raises:
        PackageError: the path does not exist, is not a package, fails verification, or is a
            zip past the extraction limits (``neuropod.package.limits``).
    """

    def __init__(self, path: str | os.PathLike[str], verify: bool = True):
        self.path = Path(path)
        self._tmpdir: str | None = None
        if self.path.is_dir():
            self.root = self.path
        elif is_zip(self.path):
            folder, lock_fd = create_extraction_dir()
            self._tmpdir = str(folder)
            self._cleanup = weakref.finalize(self, remove_extraction_dir, folder, lock_fd)
            self.root = folder / "package"
            try:
                extract_zip(self.path, self.root)
            except BaseException:
                self.close()
                raise
        elif self.path.exists():
            raise PackageError(f"{self.path} is neither a package directory nor a zip file")
        else:
            raise PackageError(f"No neuropod package at {self.path}: it does not exist")
        try:
            self.config = ModelConfig.read(self.root)
            self.has_manifest = verify_manifest(self.root, str(self.path)) if verify else False
        except BaseException:
            self.close()
            raise

    @property
    def data_dir(self) -> Path:
        """``0/data``: the model's files."""
        return self.root / layout.DATA_DIR

    @property
    def code_dir(self) -> Path:
        """``0/code``: the Python code of python packages (and of Keras packages' custom objects)."""
        return self.root / layout.CODE_DIR

    @property
    def ops_dir(self) -> Path:
        """``0/ops``: custom op libraries."""
        return self.root / layout.OPS_DIR

    def backend_config(self) -> dict[str, Any]:
        """The backend settings from ``0/config.json`` (empty when the file is absent)."""
        path = self.root / layout.BACKEND_CONFIG
        if not path.exists():
            return {}
        settings = load_json(path, f"The backend config of {self.path}")
        if not isinstance(settings, dict):
            raise PackageError(f"{path} must hold a JSON object")
        return settings

    def test_data(self, allow_pickle: bool = False) -> TestData | None:
        """The package's test data, or ``None``.

        Args:
            allow_pickle: unpickle the original's ``test_data.pkl`` even where it names code.

        Raises:
            PackageError: the test data cannot be read, or names code without ``allow_pickle``.
        """
        return load_test_data(self.root, allow_pickle)

    def close(self) -> None:
        """Remove the extracted copy of a zipped package. Idempotent."""
        if self._tmpdir is not None:
            self._cleanup()
            self._tmpdir = None

    def __repr__(self) -> str:
        return f"Package({str(self.path)!r}, platform={self.config.platform!r})"
