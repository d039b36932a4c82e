"""What a request can fail with, and the HTTP status and gRPC code each failure answers.

The failures are ``ServingError`` and its subclasses (``BadRequest`` 400, ``Unauthenticated``
401, ``NotFound`` 404, ``MethodNotAllowed`` 405, ``PayloadTooLarge`` 413, ``Unavailable`` 503,
``Unsupported`` 501, ``InternalError`` 500), drawn with their gRPC codes in
``neuropod.errors``'s tree, where they are defined. ``classify`` answers any exception: a
``ServingError`` its own status, a ``ValidationError`` (a neuropod spec or protocol mistake)
400, an ``InferenceTimeout`` 500 / ``DEADLINE_EXCEEDED``, anything else 500. The message is
always the exception's text.
"""

from __future__ import annotations

from neuropod.errors import (
    BadRequest,
    InferenceTimeout,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServingError,
    Unauthenticated,
    Unavailable,
    Unsupported,
    ValidationError,
)

__all__ = [
    "BadRequest",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "ServingError",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
    "classify",
]


def classify(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and gRPC code name that answer an exception raised by a request.

    Args:
        exc: the exception.

    Returns:
        ``(http_status, grpc_code_name)``.
    """
    if isinstance(exc, ServingError):
        return exc.status, exc.grpc_code
    if isinstance(exc, ValidationError):
        return 400, "INVALID_ARGUMENT"
    if isinstance(exc, InferenceTimeout):
        return 500, "DEADLINE_EXCEEDED"
    return 500, "INTERNAL"
