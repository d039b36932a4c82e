"""Where zipped packages are extracted, and how the copies left by dead processes are reclaimed.

Every opened zip gets its own folder ``neuropod-pkg-<pid>-<random>`` in the temp directory,
holding the extracted package (``package/``) and a ``lock`` file that the process keeps locked
with ``flock`` for as long as the copy is in use. The kernel releases that lock when the
process dies, however it dies (SIGKILL, a crash, the OOM killer), so the first extraction of
every process removes each such folder whose lock it can take: copies of dead processes are
reclaimed on the next start instead of piling up. The lock file appears under its name only
once locked, so a folder being created is never mistaken for an abandoned one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
from pathlib import Path

PREFIX = "neuropod-pkg-"
_LOCK = "lock"

_reclaim_lock = threading.Lock()
_reclaimed = False


def create_extraction_dir() -> tuple[Path, int]:
    """A new folder for one extracted package, and the descriptor that holds its lock.

    Also reclaims the folders of dead processes, the first time a process calls it.

    Returns:
        ``(folder, lock_fd)``: extract into ``folder / "package"`` (created, empty); pass both
        to ``remove_extraction_dir`` when done.
    """
    _reclaim_once()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    try:
        fd = os.open(folder / ".lock-new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(folder / ".lock-new", folder / _LOCK)
        (folder / "package").mkdir()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, fd


def remove_extraction_dir(folder: Path, lock_fd: int) -> None:
    """Remove an extracted copy, then release its lock. Safe to call once per folder."""
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(lock_fd)


def reclaim_abandoned(temp_dir: Path | None = None) -> list[Path]:
    """Remove the extracted copies whose process is gone (their lock is free).

    Args:
        temp_dir: where to look (default: ``tempfile.gettempdir()``).

    Returns:
        The folders removed.
    """
    base = Path(temp_dir or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = [entry for entry in os.scandir(base) if entry.name.startswith(PREFIX)]
    except OSError:
        return removed
    uid = os.getuid()
    for entry in candidates:
        try:
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or info.st_uid != uid:
                continue
            fd = os.open(Path(entry.path, _LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # gone already, someone else's, or not yet locked
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its process is alive
            os.close(fd)
            continue
        remove_extraction_dir(Path(entry.path), fd)
        removed.append(Path(entry.path))
    return removed


def _reclaim_once() -> None:
    global _reclaimed
    with _reclaim_lock:
        if not _reclaimed:
            _reclaimed = True
            reclaim_abandoned()
