"""JSON bodies of the HTTP front end, encoded and decoded with orjson when it is installed.

orjson (part of the ``serve`` extra) parses and writes a small inference body in about a
microsecond each, against five to ten for the standard library: a tenth of the server's own
time per small request. Without it the standard library does the same job.

The two differ on non-finite floats, which JSON cannot hold: orjson writes them as ``null``
(as KServe does), the standard library as the non-standard ``NaN`` / ``Infinity``. Clients
that need them exact ask for binary outputs.
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
        ValueError: the document is not valid JSON (or not UTF-8).
    """
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(bytes(data))


def dumps(value: Any) -> bytes:
    """Write a value as compact JSON, UTF-8 encoded.

    Raises:
        TypeError: the value holds something JSON cannot represent.
    """
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()
