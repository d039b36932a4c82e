"""What a request can fail with, and the HTTP status and gRPC code each failure answers.

::

    ServingError
    ├── BadRequest          400  INVALID_ARGUMENT    malformed request (also any ValidationError)
    ├── Unauthenticated     401  UNAUTHENTICATED     missing or wrong bearer token
    ├── NotFound            404  NOT_FOUND           unknown model, version, tensor or region
    ├── PayloadTooLarge     413  RESOURCE_EXHAUSTED  body or region over the configured limit
    ├── Unavailable         503  UNAVAILABLE         model not ready, or the server stopping
    └── InternalError       500  INTERNAL            the model failed (crash, error, timeout)

``ValidationError`` (a neuropod spec or protocol mistake) answers 400; any other exception
from a model answers 500. The message is always the exception's text.
"""

from __future__ import annotations

from neuropod.errors import InferenceTimeout, ValidationError


class ServingError(Exception):
    """A failed request, with the HTTP status and gRPC status code name it answers."""

    status = 500
    grpc_code = "INTERNAL"


class BadRequest(ServingError):
    """The request is malformed."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(ServingError):
    """The request lacks the server's bearer token."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class NotFound(ServingError):
    """The request names a model, version, tensor or shared-memory region that does not exist."""

    status = 404
    grpc_code = "NOT_FOUND"


class PayloadTooLarge(ServingError):
    """The request is larger than the server accepts."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(ServingError):
    """The model is not ready, or the server is shutting down."""

    status = 503
    grpc_code = "UNAVAILABLE"


class InternalError(ServingError):
    """The model failed while running."""

    status = 500
    grpc_code = "INTERNAL"


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
