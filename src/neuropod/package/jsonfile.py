"""JSON written byte for byte as the original Neuropod wrote it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuropod.errors import PackageError


def dump_json(obj: Any, path: Path) -> None:
    """Write ``obj`` with 4-space indents and sorted keys, no trailing newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=4, sort_keys=True)


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
