"""Python code shipped in a package (``code_path_spec``), for python and Keras packages."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neuropod.backends.code_namespace import top_level_names
from neuropod.errors import PackageError

#: What is never copied from code and data directories.
IGNORE = shutil.ignore_patterns("*.pyc", "__pycache__")


def check_code_path_spec(
    code_path_spec: Sequence[Mapping[str, Any]], neuropod_path: Path
) -> list[tuple[Path, str]]:
    """``(source directory, relative path in 0/code)`` for every code directory, after checking each.

    Raises:
        PackageError: ``code_path_spec`` is not a list of ``{"python_root", "dirs_to_package"}``,
            a directory is not relative to its root or does not exist, or the package would
            land inside a ``python_root``.
    """
    if isinstance(code_path_spec, (str, bytes, Mapping)):
        raise PackageError(
            f"code_path_spec must be a list of {{'python_root', 'dirs_to_package'}} dicts, "
            f"got {code_path_spec!r}"
        )
    checked: list[tuple[Path, str]] = []
    for spec in code_path_spec:
        if not isinstance(spec, Mapping) or set(spec) != {"python_root", "dirs_to_package"}:
            raise PackageError(
                f"Each code_path_spec item must be {{'python_root', 'dirs_to_package'}}, got {spec!r}"
            )
        root = Path(spec["python_root"])
        if neuropod_path.resolve().is_relative_to(root.resolve()):
            raise PackageError(
                f"neuropod_path {neuropod_path} must not be inside python_root {root}: the package "
                f"would copy itself; write it elsewhere"
            )
        dirs = spec["dirs_to_package"]
        if isinstance(dirs, (str, bytes)):
            raise PackageError(f"dirs_to_package must be a list of directories, got {dirs!r}")
        for rel in dirs:
            # "" (or ".") is python_root itself, as in the original: its whole tree is packaged.
            rel_path = Path(rel) if isinstance(rel, str) else None
            if rel_path is None or rel_path.is_absolute() or ".." in rel_path.parts:
                raise PackageError(
                    f"Each of dirs_to_package must be a directory relative to python_root {root} "
                    f"('' for all of it), got {rel!r}"
                )
            src = root / rel_path
            if not src.is_dir():
                raise PackageError(f"Code directory {src} (from python_root {root}) does not exist")
            checked.append((src, rel_path.as_posix()))
    return checked


def packaged_top_level(code: list[tuple[Path, str]]) -> set[str]:
    """The top-level modules and packages that the checked code directories put in ``0/code``."""
    names = {rel.split("/")[0] for _, rel in code if rel != "."}
    return names | top_level_names([src for src, rel in code if rel == "."])


def copy_code(code_dir: Path, code: list[tuple[Path, str]]) -> None:
    """Copy the checked code directories into ``code_dir`` (``0/code``).

    Every directory under ``code_dir``, ``code_dir`` included, gets an empty ``__init__.py`` if it
    lacks one, as the original Neuropod wrote them. Without code, ``code_dir`` is not created.
    """
    if not code:
        return
    code_dir.mkdir(parents=True, exist_ok=True)
    for src, rel in code:
        shutil.copytree(src, code_dir / rel, ignore=IGNORE, dirs_exist_ok=True)
    # The original made every code directory a regular package; its packages rely on that, and
    # the manifest hashes of packages written by both only agree with the same files.
    for dirpath, _dirnames, filenames in os.walk(code_dir):
        if "__init__.py" not in filenames:
            Path(dirpath, "__init__.py").touch()


def module_in_code(code_dir: Path, dotted: str) -> bool:
    """Whether module ``dotted`` exists in ``code_dir`` (``0/code``) as a package or module file."""
    path = code_dir.joinpath(*dotted.split("."))
    if path.is_dir():
        return True
    return any(path.with_name(path.name + suffix).is_file() for suffix in importlib.machinery.all_suffixes())
