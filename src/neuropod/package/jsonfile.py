"""JSON written byte for byte as the original Neuropod wrote it."""

from __future__ import annotations

import json
import re
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
    """Read a JSON file, turning every way it can be unreadable into ``PackageError``.

    Args:
        path: the file.
        what: what the file is, for messages (``"The model config"``).

    Returns:
        The JSON value.

    Raises:
        PackageError: the file is missing or unreadable, or ``parse_json`` refuses it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PackageError(f"{what} is missing: {path} does not exist") from None
    except OSError as exc:  # a directory, or unreadable
        raise PackageError(f"{what} at {path} cannot be read: {exc}") from exc
    return parse_json(data, what, path)


def parse_json(data: bytes, what: str, where: Path | str) -> Any:
    """Parse the bytes of a package's JSON file.

    Args:
        data: the file's bytes, UTF-8.
        what: what the file is, for messages.
        where: its location, for messages.

    Returns:
        The JSON value.

    Raises:
        PackageError: the bytes are not UTF-8, not JSON, nest deeper than Python's recursion
            limit, hold an integer too long to convert, or escape a lone surrogate (which no
            message naming it could print).
    """
    try:
        value = json.loads(data.decode("utf-8"))
        _check_text(data, value)
        return value
    except RecursionError:
        raise PackageError(f"{what} at {where} nests too deeply to be read as JSON") from None
    except ValueError as exc:  # syntax, UTF-8, surrogates, integers past sys.get_int_max_str_digits()
        raise PackageError(f"{what} at {where} is not valid JSON: {exc}") from exc


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_text(data: bytes, value: Any) -> None:
    # A "\ud800"-style escape may name half of a UTF-16 surrogate pair alone: json reads it into
    # a str that cannot be encoded as UTF-8, so no message naming it (a model's name...) could be
    # printed. Only a document with such an escape is looked at again.
    if _SURROGATE_ESCAPE.search(data) is None:
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("it escapes a lone UTF-16 surrogate (\\ud800 to \\udfff), not text") from None
