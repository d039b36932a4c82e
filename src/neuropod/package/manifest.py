"""``manifest.json``: the sha256 of every file in a package, checked when it is opened."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from neuropod.errors import IntegrityError, PackageError
from neuropod.package import layout
from neuropod.package.jsonfile import dump_json, load_json

MANIFEST_VERSION = 1

# Python writes bytecode caches beside the code of python packages opened in place.
_IGNORED_DIRS = {"__pycache__"}


def package_files(root: Path) -> list[str]:
    """Every file under ``root`` but the manifest, as sorted ``/``-separated relative paths."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _IGNORED_DIRS]
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
    """
    path = root / layout.MANIFEST
    if not path.exists():
        return False
    manifest = load_json(path, f"The manifest of {label}")
    expected = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict):
        raise PackageError(f"The manifest of {label} ({path}) has no 'files' object")
    actual = package_files(root)
    present = set(actual)
    for rel, digest in sorted(expected.items()):
        file = root / rel
        # Membership, not just existence: a hostile manifest may name '../x' or '/etc/x'.
        if rel not in present or not file.is_file():
            raise IntegrityError(f"{label}: file '{rel}' is listed in manifest.json but missing")
        got = sha256_file(file)
        if got != digest:
            raise IntegrityError(
                f"{label}: file '{rel}' has changed since packaging "
                f"(sha256 expected {digest}, got {got})"
            )
    extra = [rel for rel in actual if rel not in expected]
    if extra:
        raise IntegrityError(
            f"{label}: file(s) {', '.join(map(repr, extra))} are not listed in manifest.json"
        )
    return True
