"""JSON bodies of the HTTP protocol, encoded and decoded with orjson when it is installed.

orjson (part of the ``serve`` extra) parses and writes a small inference body in about a
microsecond each, against five to ten for the standard library: a tenth of the server's own
time per small request. Without it the standard library does the same job.

JSON has no NaN or infinities, but Triton's clients send and read them as ``NaN`` and
``Infinity`` (perf_analyzer's random JSON data holds some), as Python's ``json`` does. So a
document orjson refuses is read again by the standard library, and a response holding
non-finite floats is written by it (orjson would write ``null``).
"""

from __future__ import annotations

import json
import re
from typing import Any

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with neuropod[serve]
    orjson = None


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Parse a JSON document.

    Raises:
        ValueError: the document is not valid JSON (or not UTF-8, or escapes a lone surrogate),
            or nests deeper than the parser can follow.
    """
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # perhaps NaN or Infinity, which the standard library reads; or an error it reports
    raw = bytes(data)
    try:
        document = json.loads(raw)
    except RecursionError:
        raise ValueError("the document nests arrays or objects too deeply") from None
    check_text(raw, document)
    return document


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def check_text(raw: bytes, document: Any) -> None:
    """Refuse a document that the standard library parsed into strings that are not text.

    A ``\\ud800``-style escape may name half of a UTF-16 surrogate pair alone. ``json`` reads
    it into a str that cannot be encoded as UTF-8, so no error message or response naming it
    could be written (orjson refuses such documents itself).

    Args:
        raw: the document's bytes.
        document: what ``json.loads`` made of them.

    Raises:
        ValueError: the document holds a lone surrogate.
    """
    if _SURROGATE_ESCAPE.search(raw) is None:  # the common case: one scan, no surrogate
        return
    try:
        json.dumps(document, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except RecursionError:  # json.loads got through, one frame less deep
        raise ValueError("the document nests arrays or objects too deeply") from None
    except UnicodeEncodeError:
        raise ValueError(
            "the document holds an escape of a lone UTF-16 surrogate (\\ud800 to \\udfff), which is not text"
        ) from None


def dumps(value: Any, allow_nan: bool = False) -> bytes:
    """Write a value as compact JSON, UTF-8 encoded.

    Args:
        value: what to write.
        allow_nan: the value holds non-finite floats, to write as ``NaN`` / ``Infinity``.

    Raises:
        TypeError: the value holds something JSON cannot represent.
    """
    if orjson is not None and not allow_nan:
        encoded: bytes = orjson.dumps(value)
        return encoded
    return json.dumps(value, separators=(",", ":")).encode()
