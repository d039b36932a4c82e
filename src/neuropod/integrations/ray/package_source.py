"""Where Ray workers find a package: a path they can read, or its bytes in Ray's object store."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from neuropod.errors import PackageError
from neuropod.package.archive import write_zip

_materialized: dict[str, Path] = {}


@dataclass(frozen=True)
class PackageSource:
    """A package as Ray workers reach it.

    Made by ``PackageSource.at`` (workers read the path: a path on every node, or a shared
    filesystem) or ``PackageSource.ship`` (the zipped package goes through the object store,
    and each worker process writes it to a local temporary file once).

    Args:
        path: the package's path on the driver (and, unless shipped, on every worker).
        ref: the object holding the zipped package's bytes, when shipped.
    """

    path: str
    ref: Any = field(default=None, compare=False)

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> PackageSource:
        """A package that every worker reads at ``path`` (made absolute: workers have their own cwd)."""
        return cls(os.path.abspath(path))

    @classmethod
    def ship(cls, path: str | os.PathLike[str]) -> PackageSource:
        """Put the package (zipped, if a directory) into Ray's object store.

        Needs a Ray session (``ray.init``); the bytes live as long as the returned source is
        referenced.

        Raises:
            PackageError: ``path`` does not exist.
        """
        package = Path(path)
        if package.is_dir():
            with tempfile.TemporaryDirectory(prefix="neuropod-ship-") as tmp:
                archive = Path(tmp) / "package.zip"
                write_zip(package, archive)
                data = archive.read_bytes()
        elif package.is_file():
            data = package.read_bytes()
        else:
            raise PackageError(f"No neuropod package at {package}: it does not exist")
        return cls(os.fspath(path), ray.put(data))

    def local_path(self) -> Path:
        """The package's path in this process: ``path``, or the shipped bytes written to a temp file.

        A shipped package is written once per process, and removed at its exit.
        """
        if self.ref is None:
            return Path(self.path)
        key = self.ref.hex()
        local = _materialized.get(key)
        if local is None:
            folder = tempfile.mkdtemp(prefix="neuropod-ray-")
            atexit.register(shutil.rmtree, folder, True)
            local = Path(folder) / "package.zip"
            local.write_bytes(ray.get(self.ref))
            _materialized[key] = local
        return local


def package_source(package: str | os.PathLike[str] | PackageSource, ship: bool) -> PackageSource:
    """``package`` as a source: shipped through the object store when ``ship`` is set."""
    if isinstance(package, PackageSource):
        return package
    return PackageSource.ship(package) if ship else PackageSource.at(package)
