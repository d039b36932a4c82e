"""``manifest.json``: the sha256 of every file in a package, checked when it is opened."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neuropod.errors import IntegrityError, PackageError
from neuropod.package import layout
from neuropod.package.jsonfile import dump_json, load_json

MANIFEST_VERSION = 1

# Python writes bytecode caches beside the code of python packages opened in place.
IGNORED_DIRS = {"__pycache__"}


def package_files(root: Path) -> list[str]:
    """Every file under ``root`` but the manifest, as sorted ``/``-separated relative paths."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        rel_dir = os.path.relpath(dirpath, root)
        for filename in filenames:
            rel = filename if rel_dir == "." else f"{rel_dir}/{filename}"
            rel = rel.replace(os.sep, "/")
            if rel != layout.MANIFEST:
                files.append(rel)
    return sorted(files)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(root: Path) -> None:
    """Hash every file under ``root`` into ``root/manifest.json``."""
    files = {rel: sha256_file(root / rel) for rel in package_files(root)}
    dump_json({"manifest_version": MANIFEST_VERSION, "files": files}, root / layout.MANIFEST)


def verify_manifest(root: Path, label: str) -> bool:
    """Check ``root`` against its manifest; return ``False`` if it has none (an original package).

    Raises:
        IntegrityError: a file's hash differs, a listed file is missing, or a file is not listed.
        PackageError: the manifest cannot be read or has no ``files`` object.
    """
    path = root / layout.MANIFEST
    if not path.exists():
        return False

    def digest(rel: str) -> str | None:
        file = root / rel
        return sha256_file(file) if file.is_file() else None

    check_manifest(load_json(path, f"The manifest of {label}"), package_files(root), digest, label, path)
    return True


def check_manifest(
    manifest: Any,
    actual: Sequence[str],
    digest: Callable[[str], str | None],
    label: str,
    where: Path | str,
) -> None:
    """Check a package's files against its parsed ``manifest.json``.

    Args:
        manifest: the parsed manifest.
        actual: the package's files but the manifest, as ``/``-separated relative paths.
        digest: the hex sha256 of one of ``actual``, or ``None`` if it is not a regular file.
        label: the package, for messages.
        where: the manifest's location, for messages.

    Raises:
        IntegrityError: a file's hash differs, a listed file is missing, or a file is not listed.
        PackageError: the manifest has no ``files`` object.
    """
    expected = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict):
        raise PackageError(f"The manifest of {label} ({where}) has no 'files' object")
    present = set(actual)
    for rel, want in sorted(expected.items()):
        # Membership, not just existence: a hostile manifest may name '../x' or '/etc/x'.
        got = digest(rel) if rel in present else None
        if got is None:
            raise IntegrityError(f"{label}: file '{rel}' is listed in manifest.json but missing")
        if got != want:
            raise IntegrityError(
                f"{label}: file '{rel}' has changed since packaging "
                f"(sha256 expected {want}, got {got})"
            )
    extra = [rel for rel in actual if rel not in expected]
    if extra:
        raise IntegrityError(
            f"{label}: file(s) {', '.join(map(repr, extra))} are not listed in manifest.json"
        )
