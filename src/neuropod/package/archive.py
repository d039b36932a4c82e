"""Zipped packages: written deterministically, extracted defensively."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from neuropod.errors import PackageError, UnsafeArchiveError

# Fixed metadata, so that the same tree always gives the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = (stat.S_IFREG | 0o644) << 16
_DIR_MODE = ((stat.S_IFDIR | 0o755) << 16) | 0x10  # 0x10: the MS-DOS directory flag
_UNIX = 3


def _entry(name: str, mode: int, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = mode
    info.create_system = _UNIX
    info.compress_type = compression
    return info


def write_zip_entries(
    dest: Path | str, entries: Iterable[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED
) -> None:
    """Write in-memory ``(name, bytes)`` entries as a deterministic zip."""
    with zipfile.ZipFile(dest, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(_entry(name, _FILE_MODE, compression), data)


def write_zip(src: Path, dest: Path, compression: int = zipfile.ZIP_DEFLATED) -> None:
    """Zip the tree ``src`` into ``dest`` deterministically, replacing ``dest`` atomically.

    Entries are sorted, directories (empty ones included) get entries of their own, and every
    timestamp and permission is fixed, so that the same tree always gives the same bytes.
    """
    paths: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = Path(dirpath).relative_to(src)
        for d in dirnames:
            paths.append(((rel_dir / d).as_posix() + "/", Path(dirpath, d)))
        for f in filenames:
            paths.append(((rel_dir / f).as_posix(), Path(dirpath, f)))
    paths.sort()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression) as zf:
            for name, path in paths:
                if name.endswith("/"):
                    zf.writestr(_entry(name, _DIR_MODE, zipfile.ZIP_STORED), b"")
                    continue
                with open(path, "rb") as src_file, zf.open(
                    _entry(name, _FILE_MODE, compression), "w"
                ) as dst_file:
                    shutil.copyfileobj(src_file, dst_file, 1 << 20)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a file holding a zip archive."""
    return path.is_file() and zipfile.is_zipfile(path)


def extract_zip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the empty directory ``dest``, refusing entries that escape it.

    Raises:
        UnsafeArchiveError: an entry has an absolute path, a ``..`` component, or is a link that
            points outside ``dest``.
        PackageError: the archive is corrupt.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{archive} is not a valid zip file: {exc}") from exc
    with zf:
        infos = zf.infolist()
        for info in infos:
            _check_entry(archive, info)
        root = dest.resolve()
        for info in infos:
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode("utf-8")
                resolved = (target.parent / link).resolve()
                if os.path.isabs(link) or not resolved.is_relative_to(root):
                    raise UnsafeArchiveError(
                        f"{archive}: entry '{info.filename}' is a link to '{link}', "
                        f"which is outside the package"
                    )
                os.symlink(link, target)
                continue
            if not target.resolve().is_relative_to(root):
                raise UnsafeArchiveError(
                    f"{archive}: entry '{info.filename}' would be written outside the package "
                    f"(through a link)"
                )
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise PackageError(f"{archive}: cannot extract '{info.filename}': {exc}") from exc


def _check_entry(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry '{name}' has an absolute path")
    if ".." in posix.parts:
        raise UnsafeArchiveError(f"{archive}: entry '{name}' contains '..'")
