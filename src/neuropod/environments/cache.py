"""The environment cache: where environments live, who may touch them, and how they are listed and pruned.

::

    <cache>/                     $NEUROPOD_ENV_CACHE, else ~/.cache/neuropod/envs (or $XDG_CACHE_HOME's)
        <key>/                   a finished environment (a virtual environment), named by its hash
            neuropod-env.json    what it holds (requirements, python), written before it got its name
            last-used            its modification time is the environment's last use
        .locks/<key>.lock        flock: shared while a model uses it, exclusive to build or remove it
        .build-<key>-<token>/    a build in progress, or what a killed build left (removed by the next build)
        .trash-<key>-<token>/    an environment being removed

A directory gets its final name by one ``rename`` once complete, so an environment under its key
is always whole; anything else is scratch that only a holder of the key's exclusive lock touches.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Environment variable naming the cache directory.
CACHE_ENV_VAR = "NEUROPOD_ENV_CACHE"
METADATA = "neuropod-env.json"
LAST_USED = "last-used"
BUILD_PREFIX = ".build-"
TRASH_PREFIX = ".trash-"
LOCKS = ".locks"


def default_cache_dir() -> Path:
    """The cache directory when none is given: ``NEUROPOD_ENV_CACHE``, else the user's cache."""
    given = os.environ.get(CACHE_ENV_VAR)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neuropod" / "envs"


class KeyLock:
    """An ``flock`` on one environment's lock file: shared to use it, exclusive to build or remove it.

    The descriptor is not inherited by child processes unless passed on explicitly.

    Args:
        path: the lock file (created if missing).
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def acquire(self, *, shared: bool, blocking: bool = True) -> bool:
        """Take the lock (converting one already held); ``False`` if not blocking and it is taken."""
        if self.fd is None:
            raise ValueError("the lock is closed")
        operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self.fd, operation if blocking else operation | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Drop the lock, keeping the file open."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Drop the lock and close the file. Idempotent."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


@dataclass(frozen=True)
class EnvironmentInfo:
    """One finished environment of the cache, as ``neuropod env list`` shows it.

    Attributes:
        key: its hash.
        path: its directory.
        size: bytes on disk (files linked from uv's cache are counted too).
        packages: the requirements it was built from, e.g. ``["npdemo-lib==1.0", "numpy==2.4.6"]``.
        python: the Python it runs.
        created: when it was built (seconds since the epoch).
        last_used: when a model last loaded it.
        in_use: whether a model uses it now.
    """

    key: str
    path: Path
    size: int
    packages: tuple[str, ...]
    python: str
    created: float
    last_used: float
    in_use: bool


class EnvironmentCache:
    """A directory of environments keyed by the hash of what they hold.

    Args:
        root: the cache directory (default: ``default_cache_dir()``); created when needed.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        """The directory of environment ``key`` (it may not exist)."""
        return self.root / key

    def is_complete(self, key: str) -> bool:
        """Whether environment ``key`` exists and was finished."""
        return (self.root / key / METADATA).is_file()

    def lock(self, key: str) -> KeyLock:
        """A new (not yet acquired) lock of environment ``key``."""
        return KeyLock(self.root / LOCKS / f"{key}.lock")

    def scratch(self, key: str) -> Path:
        """A fresh directory name in the cache to build environment ``key`` in."""
        return self.root / f"{BUILD_PREFIX}{key}-{uuid.uuid4().hex[:8]}"

    def touch(self, key: str) -> None:
        """Record that environment ``key`` was used now."""
        marker = self.root / key / LAST_USED
        # Failing to touch it is fine: a read-only cache still serves its environments.
        with contextlib.suppress(OSError):
            marker.touch()

    def metadata(self, key: str) -> dict[str, Any]:
        """What ``neuropod-env.json`` of environment ``key`` says (empty if unreadable)."""
        try:
            data = json.loads((self.root / key / METADATA).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def remove_scratch(self, key: str) -> None:
        """Remove what killed builds of ``key`` left behind; call it holding the exclusive lock."""
        for leftover in self._scratch_dirs(key):
            shutil.rmtree(leftover, ignore_errors=True)

    def keys(self) -> list[str]:
        """The keys of the finished environments."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if not entry.name.startswith(".") and self.is_complete(entry.name)
        )

    def entries(self) -> list[EnvironmentInfo]:
        """Every finished environment, least recently used first."""
        infos = []
        for key in self.keys():
            path = self.path(key)
            meta = self.metadata(key)
            lock = self.lock(key)
            try:
                in_use = not lock.acquire(shared=False, blocking=False)
            finally:
                lock.close()
            infos.append(
                EnvironmentInfo(
                    key=key,
                    path=path,
                    size=_size(path),
                    packages=tuple(meta.get("packages", ())),
                    python=str(meta.get("python", "?")),
                    created=float(meta.get("created", 0.0)),
                    last_used=_mtime(path / LAST_USED, default=_mtime(path / METADATA)),
                    in_use=in_use,
                )
            )
        return sorted(infos, key=lambda info: info.last_used)

    def remove(self, key: str) -> bool:
        """Remove environment ``key`` unless a model uses it or a build holds it.

        Returns:
            Whether it was removed (or was not there).
        """
        lock = self.lock(key)
        try:
            if not lock.acquire(shared=False, blocking=False):
                return False
            path = self.path(key)
            if path.exists():
                # Renamed first: a removal cut short must not leave a half environment under the key.
                trash = self.root / f"{TRASH_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
                os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)
            self.remove_scratch(key)
            return True
        finally:
            lock.close()

    def prune(
        self, *, older_than_days: float | None = None, remove_all: bool = False
    ) -> tuple[list[str], list[str]]:
        """Remove leftovers of killed builds, and environments unused for a while (or all).

        Args:
            older_than_days: also remove environments last used more than this many days ago.
            remove_all: also remove every environment.

        Returns:
            ``(removed keys, keys kept because a model uses them)``.
        """
        removed: list[str] = []
        busy: list[str] = []
        cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
        for info in self.entries():
            if remove_all or (cutoff is not None and info.last_used < cutoff):
                (removed if self.remove(info.key) else busy).append(info.key)
        for key in sorted(self._leftover_keys()):
            lock = self.lock(key)
            try:
                if lock.acquire(shared=False, blocking=False):
                    self.remove_scratch(key)
                    for trash in self.root.glob(f"{TRASH_PREFIX}{key}-*"):
                        shutil.rmtree(trash, ignore_errors=True)
            finally:
                lock.close()
        return removed, busy

    def _scratch_dirs(self, key: str) -> Iterator[Path]:
        return self.root.glob(f"{BUILD_PREFIX}{key}-*")

    def _leftover_keys(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        keys = set()
        for entry in self.root.iterdir():
            for prefix in (BUILD_PREFIX, TRASH_PREFIX):
                if entry.name.startswith(prefix):
                    keys.add(entry.name[len(prefix) :].rsplit("-", 1)[0])
        return keys


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _mtime(path: Path, default: float = 0.0) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default
