"""How the failures of a remote model become neuropod's exceptions, the same ones a local model raises.

===========================================  ==================  ====================
failure                                      while loading       while running
===========================================  ==================  ====================
400 / INVALID_ARGUMENT, 413 /                ``PackageError``    ``ValidationError``
RESOURCE_EXHAUSTED (the request is refused)
404 / NOT_FOUND (no such model or version)   ``PackageError``    ``PackageError``
the ``timeout`` ran out, 504 /               ``InferenceTimeout``  ``InferenceTimeout``
DEADLINE_EXCEEDED
no connection, or it broke; 401, 503, 500,   ``PackageError``    ``InferenceError``
any other status or code
===========================================  ==================  ====================

Loading is reading the model's metadata: whatever stops it means there is no model to open at
that URL, as a missing path does for a package. The server's message is kept in every case.
"""

from __future__ import annotations

from neuropod.errors import (
    InferenceError,
    InferenceTimeout,
    NeuropodError,
    PackageError,
    ValidationError,
)

_REFUSED_STATUSES = (400, 413)
_REFUSED_CODES = ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED")


def error_for_status(status: int, message: str, where: str, *, loading: bool) -> NeuropodError:
    """The exception for an HTTP error answer.

    Args:
        status: the HTTP status.
        message: the server's ``error`` text (or the body).
        where: what was asked, e.g. ``"model 'adder' at http://..."``, for the message.
        loading: whether the model was being loaded (else it was running).

    Returns:
        The exception to raise.
    """
    text = f"The server answered {status} for {where}: {message}"
    if status == 404 or (loading and status != 504):
        return PackageError(text)
    if status in _REFUSED_STATUSES:
        return ValidationError(text)
    if status == 504:
        return InferenceTimeout(text)
    return InferenceError(text)


def error_for_code(code: str, message: str, where: str, *, loading: bool) -> NeuropodError:
    """The exception for a gRPC error status.

    Args:
        code: the status code's name (``"NOT_FOUND"``...).
        message: the server's details.
        where: what was asked, for the message.
        loading: whether the model was being loaded (else it was running).

    Returns:
        The exception to raise.
    """
    if code == "UNAVAILABLE":  # also grpc's own word for "cannot connect"
        text = f"The server for {where} is unavailable (UNAVAILABLE): {message}"
    else:
        text = f"The server answered {code} for {where}: {message}"
    if code == "DEADLINE_EXCEEDED":
        return InferenceTimeout(text)
    if code == "NOT_FOUND" or loading:
        return PackageError(text)
    if code in _REFUSED_CODES:
        return ValidationError(text)
    return InferenceError(text)


def timeout_error(timeout: float | None, where: str) -> InferenceTimeout:
    """The exception for a call that outlived the model's ``timeout`` option."""
    return InferenceTimeout(
        f"No answer within the timeout of {timeout} s for {where}; the server may still be "
        f"running the call (raise the model's timeout option if it needs longer)"
    )


def connection_error(exc: BaseException, where: str, *, loading: bool) -> NeuropodError:
    """The exception for a connection that failed or broke."""
    reason = str(exc) or type(exc).__name__
    if loading:
        return PackageError(f"Cannot reach the server for {where}: {reason}")
    return InferenceError(f"Lost the connection to the server for {where}: {reason}")
