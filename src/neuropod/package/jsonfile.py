"""JSON written byte for byte as the original Neuropod wrote it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuropod.errors import PackageError


def dump_json(obj: Any, path: Path, *, indent: int | None = 4, sort_keys: bool = True) -> None:
    """Write ``obj`` as ``json.dump`` does, no trailing newline.

    Args:
        obj: the JSON value.
        path: the file to write.
        indent: spaces per level (``config.json``, ``manifest.json``), or ``None`` for one line
            (``0/config.json``).
        sort_keys: sort the keys of objects; the original left TensorFlow's ``0/config.json``
            in insertion order.
    """
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, sort_keys=sort_keys)


def load_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning absence and syntax errors into ``PackageError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PackageError(f"{what} is missing: {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{what} at {path} is not valid JSON: {exc}") from exc
    except OSError as exc:  # a directory, or unreadable
        raise PackageError(f"{what} at {path} cannot be read: {exc}") from exc
