"""What a request can fail with, and the HTTP status and gRPC code each failure answers.

::

    ServingError
    ├── BadRequest          400  INVALID_ARGUMENT    malformed request (also any ValidationError)
    ├── Unauthenticated     401  UNAUTHENTICATED     missing or wrong bearer token
    ├── NotFound            404  NOT_FOUND           unknown model, version, tensor or region
    ├── MethodNotAllowed    405  UNIMPLEMENTED       the path exists, not with this method
    ├── PayloadTooLarge     413  RESOURCE_EXHAUSTED  body or region over the configured limit
    ├── Unavailable         503  UNAVAILABLE         model not ready, or the server stopping
    └── InternalError       500  INTERNAL            the model failed (crash, error, timeout)

``ValidationError`` (a neuropod spec or protocol mistake) answers 400; any other exception
from a model answers 500. The message is always the exception's text. The classes are defined
in ``neuropod.errors``, with the rest of neuropod's errors.
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
