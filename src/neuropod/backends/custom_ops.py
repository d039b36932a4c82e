"""Loading a package's custom op libraries (``0/ops``) into a framework, once per process.

A custom op library registers its ops process-wide when it is opened, and opening a second copy
of it (another package's, or another extraction of the same zip) registers them again, which
some frameworks (torch) answer by aborting the process. Libraries are therefore known by
content: the sha256 of every library loaded, per framework.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath

from neuropod.errors import PackageError
from neuropod.package.manifest import sha256_file
from neuropod.package.package import Package

_loaded: dict[str, set[str]] = {}
_lock = threading.Lock()


def op_path(package: Package, name: str) -> Path:
    """The file of custom op ``name`` listed in the package's config.

    Only a file inside the package's ``0/ops/`` is ever loaded: a name with a path in it, or
    a link that leads out of the folder, is refused before anything is opened.

    Raises:
        PackageError: the name is not a file name in ``0/ops/``, or the file is missing.
    """
    if not name or PurePath(name).name != name or "\\" in name or name in (".", ".."):
        raise PackageError(
            f"{package.path}: custom op {name!r} listed in config.json is not a file name in 0/ops/; "
            f"only libraries inside the package are loaded"
        )
    path = package.ops_dir / name
    if path.exists() and package.ops_dir.resolve() not in path.resolve().parents:
        raise PackageError(
            f"{package.path}: custom op 0/ops/{name} leads outside the package; "
            f"only libraries inside the package are loaded"
        )
    if not path.is_file():
        raise PackageError(f"{package.path}: custom op 0/ops/{name} listed in config.json is missing")
    return path


def load_custom_ops(
    package: Package,
    framework: str,
    load: Callable[[str], object],
    errors: tuple[type[BaseException], ...],
    *,
    loaded_elsewhere: Callable[[], Iterable[str]] | None = None,
) -> None:
    """Load every library of the config's ``custom_ops`` whose bytes ``framework`` has not loaded yet.

    Args:
        package: the opened package.
        framework: whose registry of loaded libraries to use (``"torch"``, ``"tensorflow"``).
        load: loads one library by path (``torch.ops.load_library``, ``tf.load_op_library``).
        errors: what ``load`` raises for a library it cannot load.
        loaded_elsewhere: paths of libraries the process may have loaded without this module
            (a library with the same bytes is not loaded again).

    Raises:
        PackageError: a library is missing, or ``load`` failed (its error is the ``__cause__``).
    """
    for name in package.config.custom_ops:
        path = op_path(package, name)
        digest = sha256_file(path)
        with _lock:
            loaded = _loaded.setdefault(framework, set())
            if digest in loaded:
                continue
            if loaded_elsewhere is not None and _same_bytes(loaded_elsewhere(), digest, path.stat().st_size):
                loaded.add(digest)
                continue
            try:
                load(str(path))
            except errors as exc:
                raise PackageError(f"{package.path}: cannot load custom op 0/ops/{name}: {exc}") from exc
            loaded.add(digest)


def mapped_files() -> set[str]:
    """The files mapped into this process (Linux: ``/proc/self/maps``; elsewhere none)."""
    files = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    files.add(fields[5].rstrip("\n"))
    except OSError:
        pass
    return files


def _same_bytes(candidates: Iterable[str], digest: str, size: int) -> bool:
    for candidate in set(candidates):
        try:
            if os.path.getsize(candidate) == size and sha256_file(Path(candidate)) == digest:
                return True
        except OSError:
            continue
    return False
