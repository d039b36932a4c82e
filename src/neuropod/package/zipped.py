"""Reading a zipped package in place: its config, file list and manifest, nothing extracted.

``neuropod inspect`` describes a zip this way, so that looking at a package never writes it
out. Only plain archives are read in place: one whose entries include links, or names that
extraction would rewrite (``./a``, ``a//b``, backslashes, repeats), has its files decided by
extraction, and ``read_zipped`` returns ``None`` for it.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.archive import CORRUPT_ENTRY_ERRORS, check_entry
from neuropod.package.config import ModelConfig
from neuropod.package.jsonfile import parse_json
from neuropod.package.limits import ExtractionLimits
from neuropod.package.manifest import IGNORED_DIRS, check_manifest


@dataclass(frozen=True)
class ZippedPackage:
    """A zipped package read in place.

    Args:
        path: the zip file.
        config: its ``config.json``.
        files: the size of every file, ``manifest.json`` included, by ``/``-separated path.
    """

    path: Path
    config: ModelConfig
    files: dict[str, int]

    def verify_manifest(self) -> bool:
        """Check the files against ``manifest.json``; ``False`` if there is none.

        Raises:
            IntegrityError: a file's hash differs, a listed file is missing, or one is not listed.
            PackageError: the manifest cannot be read, or an entry is corrupt.
        """
        if layout.MANIFEST not in self.files:
            return False
        with _open(self.path) as zf:
            where = f"{self.path}:{layout.MANIFEST}"
            raw = _read(zf, self.path, layout.MANIFEST)
            manifest = parse_json(raw, f"The manifest of {self.path}", where)
            actual = sorted(
                rel
                for rel in self.files
                if rel != layout.MANIFEST and IGNORED_DIRS.isdisjoint(rel.split("/")[:-1])
            )
            check_manifest(manifest, actual, lambda rel: _sha256(zf, self.path, rel), str(self.path), where)
        return True


def read_zipped(path: Path, limits: ExtractionLimits | None = None) -> ZippedPackage | None:
    """Read the config and file list of the zipped package ``path`` without extracting it.

    Args:
        path: the zip file.
        limits: the limits extraction would apply (default: ``ExtractionLimits.from_env()``).

    Returns:
        The package, or ``None`` if only extraction can tell its files (links, odd names).

    Raises:
        UnsafeArchiveError: an entry has an absolute path or a ``..`` component.
        PackageError: the archive is corrupt, over the limits, or its config is malformed.
    """
    with _open(path) as zf:
        infos = zf.infolist()
        (limits or ExtractionLimits.from_env()).check_declared(path, infos)
        files: dict[str, int] = {}
        for info in infos:
            check_entry(path, info)
            name = info.filename.rstrip("/") if info.is_dir() else info.filename
            if stat.S_ISLNK(info.external_attr >> 16) or "\\" in name or name != str(PurePosixPath(name)):
                return None
            if not info.is_dir():
                if name in files:
                    return None
                files[name] = info.file_size
        if layout.CONFIG not in files:
            raise PackageError(f"The model config is missing: {path} holds no {layout.CONFIG}")
        where = f"{path}:{layout.CONFIG}"
        raw = _read(zf, path, layout.CONFIG)
        config = ModelConfig.from_json(parse_json(raw, "The model config", where), where)
    return ZippedPackage(path, config, files)


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except CORRUPT_ENTRY_ERRORS as exc:  # e.g. NotImplementedError for a newer zip version
        raise PackageError(f"{path} is not a valid zip file: {exc}") from exc


def _read(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return zf.read(name)
    except CORRUPT_ENTRY_ERRORS as exc:
        raise PackageError(f"{path}: cannot read '{name}': {exc}") from exc


def _sha256(zf: zipfile.ZipFile, path: Path, name: str) -> str:
    digest = hashlib.sha256()
    try:
        with zf.open(name) as entry:
            while block := entry.read(1 << 20):
                digest.update(block)
    except CORRUPT_ENTRY_ERRORS as exc:
        raise PackageError(f"{path}: cannot read '{name}': {exc}") from exc
    return digest.hexdigest()
