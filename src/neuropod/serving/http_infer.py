"""``POST /v2/models/{m}/infer``: an HTTP body in, a model run, an HTTP body out.

All of it runs in a thread of the model's pool, off the event loop.

Decoding and encoding are the protocol's (``neuropod.protocol.http_codec``); this adds what
only a server does: shared-memory regions, the model's run and its statistics. Without an
``outputs`` list every output the model produced comes back; an output asked for that it did
not produce is a 400 naming it.
"""

from __future__ import annotations

from neuropod.protocol import http_codec
from neuropod.protocol.keys import HEADER_LENGTH
from neuropod.serving.errors import Unsupported
from neuropod.serving.served_model import ServedModel
from neuropod.serving.shm import SharedMemoryRegistry
from neuropod.serving.stats import RequestTimer

Headers = list[tuple[bytes, bytes]]

_JSON = [(b"content-type", b"application/json")]
_BINARY_CONTENT_TYPE = b"application/octet-stream"
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()


async def infer(
    served: ServedModel, shm: SharedMemoryRegistry, body: bytes, header_length: int | None
) -> tuple[Headers, list[bytes | memoryview]]:
    """Answer one inference request, in a thread of the model's pool (see ``answer``): the
    event loop neither decodes a large body nor waits for a slow model.

    Raises:
        Unsupported: the model is decoupled, which only gRPC streams serve (Triton's text).
    """
    if served.decoupled:
        raise Unsupported("HTTP end point doesn't support models with decoupled transaction policy")
    return await served.run(answer, served, shm, body, header_length)


def answer(
    served: ServedModel, shm: SharedMemoryRegistry, body: bytes, header_length: int | None
) -> tuple[Headers, list[bytes | memoryview]]:
    """Answer one inference request in this thread.

    Args:
        served: the model.
        shm: the server's shared-memory regions.
        body: the request body.
        header_length: its ``Inference-Header-Content-Length`` (``None``: all JSON).

    Returns:
        ``(headers, body_parts)`` of the 200 response.

    Raises:
        ServingError: an unknown region, a window outside its region.
        ValidationError: the request breaks the protocol or the spec.
        Exception: whatever the model raised.
    """
    with RequestTimer(served.stats) as timer:
        request = http_codec.decode_request(body, header_length)
        response = served.answer(request, shm, timer)
        header, raws = http_codec.encode_response(response)
    if not raws:
        return _JSON, [header]
    headers = [(b"content-type", _BINARY_CONTENT_TYPE), (_HEADER_LENGTH, str(len(header)).encode())]
    return headers, [header, *raws]
