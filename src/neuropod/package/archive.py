"""Zipped packages: written deterministically, extracted defensively."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from neuropod.errors import PackageError, UnsafeArchiveError
from neuropod.package.limits import ExtractionLimits

# What reading a damaged or unsupported entry raises (zlib and lzma report bad streams their own way).
CORRUPT_ENTRY_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    UnicodeDecodeError,  # a link target that is not UTF-8
    zlib.error,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted entry
)
try:
    import lzma

    CORRUPT_ENTRY_ERRORS += (lzma.LZMAError,)
except ImportError:  # Python built without lzma: zipfile cannot read such entries anyway
    pass

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
    tmp, fd = _create_beside(dest)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w", compression) as zf:
            for name, path in paths:
                if name.endswith("/"):
                    zf.writestr(_entry(name, _DIR_MODE, zipfile.ZIP_STORED), b"")
                    continue
                # Zip64 only where needed: it adds fields, and smaller files keep their bytes.
                large = path.stat().st_size >= _ZIP64_THRESHOLD
                with open(path, "rb") as src_file, zf.open(
                    _entry(name, _FILE_MODE, compression), "w", force_zip64=large
                ) as dst_file:
                    shutil.copyfileobj(src_file, dst_file, 1 << 20)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


#: Files from this size on get zip64 entries. Below zipfile's limit by a margin because
#: compressing incompressible data can grow it a little (deflate: 5 bytes per 16 KiB block).
_ZIP64_THRESHOLD = zipfile.ZIP64_LIMIT - (zipfile.ZIP64_LIMIT >> 10)


def _create_beside(dest: Path) -> tuple[Path, int]:
    # Not mkstemp: its 0600 would make the published package unreadable to other users, where
    # any other new file gets 0666 less the umask.
    while True:
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a file holding a zip archive."""
    return path.is_file() and zipfile.is_zipfile(path)


def extract_zip(archive: Path, dest: Path, limits: ExtractionLimits | None = None) -> None:
    """Extract ``archive`` into the empty directory ``dest``, refusing entries that escape it.

    Each entry is checked against the links extracted before it, and each link again once all
    are in place: a chain of links that are harmless one by one (``a -> b/..``, then
    ``b -> .``) must not lead outside either. The sizes and count the archive declares are
    checked against ``limits`` before anything is written, and the bytes actually written are
    counted too, so that a header that lies about a size cannot get past the limit.

    Args:
        archive: the zip file.
        dest: an empty directory; on an error it may hold part of the archive.
        limits: the most entries and bytes to extract (default: ``ExtractionLimits.from_env()``).

    Raises:
        UnsafeArchiveError: an entry has an absolute path, a ``..`` component, or is a link that
            points outside ``dest``.
        PackageError: the archive is corrupt, or holds more entries or bytes than ``limits``.
    """
    limits = limits or ExtractionLimits.from_env()
    try:
        zf = zipfile.ZipFile(archive)
    except CORRUPT_ENTRY_ERRORS as exc:  # e.g. NotImplementedError for a newer zip version
        raise PackageError(f"{archive} is not a valid zip file: {exc}") from exc
    with zf:
        infos = zf.infolist()
        limits.check_declared(archive, infos)
        for info in infos:
            check_entry(archive, info)
        written = 0
        root = dest.resolve()
        links: list[tuple[str, Path, str]] = []
        for info in infos:
            target = dest / info.filename
            # Where the entry lands depends on the links extracted so far.
            _check_inside(archive, info.filename, target.parent, root)
            try:
                if stat.S_ISLNK(info.external_attr >> 16) and not info.is_dir():
                    with zf.open(info) as src:
                        link = src.read(_MAX_LINK + 1).decode("utf-8")
                    if len(link) > _MAX_LINK:
                        raise UnsafeArchiveError(
                            f"{archive}: entry '{info.filename}' is a link longer than "
                            f"{_MAX_LINK} bytes"
                        )
                    if "\0" in link:  # no path holds one (pathlib raises ValueError on it)
                        raise UnsafeArchiveError(
                            f"{archive}: entry '{info.filename}' is a link whose target holds a NUL byte"
                        )
                    if os.path.isabs(link) or not _inside(archive, target.parent / link, root):
                        raise UnsafeArchiveError(
                            f"{archive}: entry '{info.filename}' is a link to '{link}', "
                            f"which is outside the package"
                        )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(link, target)
                    links.append((info.filename, target, link))
                    continue
                _check_inside(archive, info.filename, target, root)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        written += len(block)
                        limits.check_written(archive, written)
                        dst.write(block)
            except CORRUPT_ENTRY_ERRORS as exc:
                raise PackageError(f"{archive}: cannot extract '{info.filename}': {exc}") from exc
        for name, target, link in links:
            if not _inside(archive, target, root):
                raise UnsafeArchiveError(
                    f"{archive}: entry '{name}' is a link to '{link}', which leads outside the "
                    f"package through other links"
                )


#: The longest link target read from an archive (Linux's PATH_MAX).
_MAX_LINK = 4096


def _inside(archive: Path, path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop, before Python 3.13
        raise PackageError(f"{archive}: cannot resolve '{path}': {exc}") from exc


def _check_inside(archive: Path, name: str, path: Path, root: Path) -> None:
    if not _inside(archive, path, root):
        raise UnsafeArchiveError(
            f"{archive}: entry '{name}' would be written outside the package (through a link)"
        )


def check_entry(archive: Path, info: zipfile.ZipInfo) -> None:
    """Refuse an entry whose name alone would place it outside the package.

    Raises:
        UnsafeArchiveError: the name is empty or absolute (also drive-letter or backslash-rooted)
            or has a ``..`` component.
    """
    name = info.filename
    if not name:  # it would be the package's folder itself (and zipfile's is_dir fails on it)
        raise UnsafeArchiveError(f"{archive}: an entry has an empty name")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry '{name}' has an absolute path")
    if ".." in posix.parts:
        raise UnsafeArchiveError(f"{archive}: entry '{name}' contains '..'")
