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
from typing import Any

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with neuropod[serve]
    orjson = None


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Parse a JSON document.

    Raises:
        ValueError: the document is not valid JSON (or not UTF-8), or nests deeper than the
            parser can follow.
    """
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # perhaps NaN or Infinity, which the standard library reads; or an error it reports
    try:
        return json.loads(bytes(data))
    except RecursionError:
        raise ValueError("the document nests arrays or objects too deeply") from None


def dumps(value: Any, allow_nan: bool = False) -> bytes:
    """Write a value as compact JSON, UTF-8 encoded.

    Args:
        value: what to write.
        allow_nan: the value holds non-finite floats, to write as ``NaN`` / ``Infinity``.

    Raises:
        TypeError: the value holds something JSON cannot represent.
    """
    if orjson is not None and not allow_nan:
        try:
            encoded: bytes = orjson.dumps(value)
            return encoded
        except TypeError:
            # Perhaps a str holding a lone surrogate, as the standard library reads a JSON
            # escape such as "\ud800" (a tensor's name, in the error naming it): orjson refuses
            # it, the standard library writes it escaped again. Else it raises the same.
            pass
    return json.dumps(value, separators=(",", ":")).encode()
