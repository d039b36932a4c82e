"""Compressed HTTP inference bodies: ``Content-Encoding`` in, ``Accept-Encoding`` out.

As Triton does it (and so as tritonclient's ``request_compression_algorithm`` and
``response_compression_algorithm`` expect): a request body sent with ``Content-Encoding: gzip``
or ``deflate`` (the zlib format) is inflated before it is decoded, and its
``Inference-Header-Content-Length`` counts the inflated JSON. A response is compressed whole
(JSON and binary tensors) when ``Accept-Encoding`` names ``gzip`` or ``deflate``; its
``Inference-Header-Content-Length`` still counts the uncompressed JSON. Only inference bodies
are compressed; errors and other endpoints never are.

Inflating stops as soon as the output passes the server's body limit, so a small body that
inflates to gigabytes (a "zip bomb") costs at most the limit in memory and is answered 413.

>>> inflate(zlib.compress(b"{}"), "deflate", limit=100)
b'{}'
>>> response_encoding(b"deflate;q=0.5, gzip")
'gzip'
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from neuropod.serving.errors import BadRequest, PayloadTooLarge

#: The encodings a request body may have and a response may be sent with.
ENCODINGS = ("gzip", "deflate")

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")
# Output produced per step while inflating: small steps keep the overshoot past the limit small.
_STEP = 1 << 20
_LEVEL = 6  # zlib's default, as Triton's compressor uses


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """A request body as it was before the client compressed it.

    Args:
        body: the body as received.
        encoding: its ``Content-Encoding`` (``""`` or ``identity``: not compressed).
        limit: the largest inflated size accepted, in bytes.

    Returns:
        The inflated body (``body`` itself when it was not compressed).

    Raises:
        BadRequest: the encoding is not one of ``ENCODINGS``, or the body is not valid data
            of it (corrupt, truncated, or followed by other bytes).
        PayloadTooLarge: the body inflates to more than ``limit`` bytes.
    """
    encoding = encoding.strip().lower()
    if encoding in _IDENTITY:
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise BadRequest(
            f"Unsupported compression type '{encoding}' (Content-Encoding); this server accepts "
            f"{', '.join(ENCODINGS)} or identity"
        )
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    pending = body
    try:
        while pending:
            out += inflater.decompress(pending, _STEP)
            if len(out) > limit:
                raise PayloadTooLarge(
                    f"Decompressed data size exceeds the maximum allowed value of {limit} bytes "
                    f"(Content-Encoding: {encoding}; raise the server's max body size to accept it)"
                )
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise BadRequest(f"The request body is not valid {encoding} data (Content-Encoding): {exc}") from None
    if not inflater.eof:
        raise BadRequest(f"The request body's {encoding} data is truncated (Content-Encoding: {encoding})")
    if inflater.unused_data:
        raise BadRequest(
            f"The request body has {len(inflater.unused_data)} bytes after the end of its {encoding} "
            f"data (Content-Encoding: {encoding})"
        )
    return bytes(out)


def response_encoding(accept: bytes | None) -> str | None:
    """The encoding to send a response with, from the request's ``Accept-Encoding``.

    Triton's rule: entries are ``type`` or ``type;q=weight`` (weight 1 by default); of
    ``identity``, ``gzip`` and ``deflate`` the highest weight wins, the first on a tie.

    Returns:
        ``"gzip"``, ``"deflate"``, or ``None`` (send it uncompressed).
    """
    if not accept:
        return None
    best, best_weight = None, 0.0
    for entry in accept.decode("latin-1").split(","):
        name, _, weight_text = entry.partition(";")
        name = name.strip().lower()
        if name not in _IDENTITY and name not in _WBITS:
            continue
        weight = 1.0
        key, _, value = weight_text.partition("=")
        if key.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                continue
        if weight > best_weight:
            best, best_weight = name, weight
    return best if best in _WBITS else None


def deflate(parts: Sequence[bytes | memoryview], encoding: str) -> bytes:
    """A response body, compressed.

    Args:
        parts: the body's parts, in order.
        encoding: ``"gzip"`` or ``"deflate"``.

    Returns:
        The compressed body.
    """
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS[encoding])
    chunks = [compressor.compress(part) for part in parts]
    chunks.append(compressor.flush())
    return b"".join(chunks)


__all__ = ["ENCODINGS", "deflate", "inflate", "response_encoding"]
