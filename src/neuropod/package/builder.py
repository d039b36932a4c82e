"""Writing a package: assemble it in a staging directory, then publish it in one step."""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from pathlib import Path

from neuropod.closing import Closing
from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.archive import write_zip
from neuropod.package.config import ModelConfig
from neuropod.package.jsonfile import dump_json
from neuropod.package.manifest import write_manifest


def _make_staging_dir(path: Path) -> Path:
    # Not mkdtemp: its 0700 would make the published package unreadable to other users, where
    # any other new directory gets 0777 less the umask.
    while True:
        root = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        try:
            root.mkdir()
            return root
        except FileExistsError:
            continue


_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


class PackageBuilder(Closing):
    """Stages a package beside ``neuropod_path`` and publishes it atomically on ``finish``.

    An error before ``finish`` (or while finishing) leaves nothing at ``neuropod_path``: the
    staging directory is removed when the context exits.

    Args:
        neuropod_path: where the package goes; must not exist yet.
        package_as_zip: write a zip file instead of a directory.
        zip_compression: the ``zipfile`` compression method of the entries.

    Raises:
        PackageError: ``neuropod_path`` already exists.
    """

    @staticmethod
    def check_path(neuropod_path: str | os.PathLike[str]) -> Path:
        """``neuropod_path`` made absolute, checked to be free (for packagers with slow work to do first).

        Raises:
            PackageError: ``neuropod_path`` already exists.
        """
        path = Path(neuropod_path).absolute()
        if path.exists() or path.is_symlink():
            raise PackageError(f"The neuropod path {path} already exists; choose a new path")
        return path

    def __init__(
        self,
        neuropod_path: str | os.PathLike[str],
        package_as_zip: bool = True,
        zip_compression: int = zipfile.ZIP_DEFLATED,
    ):
        self.path = self.check_path(neuropod_path)
        if zip_compression not in _COMPRESSIONS:
            raise PackageError(
                f"zip_compression must be a zipfile compression method, got {zip_compression!r}"
            )
        self.package_as_zip = package_as_zip
        self.zip_compression = zip_compression
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Staged in the same directory so that publishing a directory is a rename.
        self.root = _make_staging_dir(self.path)
        (self.root / layout.OPS_DIR).mkdir(parents=True)
        (self.root / layout.DATA_DIR).mkdir(parents=True)

    def write_config(self, config: ModelConfig) -> None:
        """Write the model config."""
        config.write(self.root)

    def write_backend_config(self, settings: dict[str, object], *, sort_keys: bool = True) -> None:
        """Write the backend settings ``0/config.json`` on one line, as the original did.

        Args:
            settings: the backend's settings.
            sort_keys: whether to sort keys; ``False`` keeps ``settings``' order (the original's
                TensorFlow packager did not sort).
        """
        dump_json(settings, self.root / layout.BACKEND_CONFIG, indent=None, sort_keys=sort_keys)

    def add_custom_ops(self, paths: list[str]) -> list[str]:
        """Copy custom op libraries into ``0/ops``; return their file names."""
        names = []
        for op in paths:
            src = Path(op)
            if not src.is_file():
                raise PackageError(f"Custom op {src} does not exist or is not a file")
            if src.name in names:
                raise PackageError(f"Two custom ops are named {src.name!r}")
            shutil.copyfile(src, self.root / layout.OPS_DIR / src.name)
            names.append(src.name)
        return names

    def finish(self) -> Path:
        """Write the manifest and publish the package at ``path``."""
        write_manifest(self.root)
        if self.path.exists():
            raise PackageError(f"The neuropod path {self.path} appeared while packaging; not overwriting it")
        if self.package_as_zip:
            write_zip(self.root, self.path, self.zip_compression)
            shutil.rmtree(self.root)
        else:
            os.rename(self.root, self.path)
        return self.path

    def close(self) -> None:
        """Remove the staging directory: after ``finish``, nothing; before, the unfinished package."""
        shutil.rmtree(self.root, ignore_errors=True)
