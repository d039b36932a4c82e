"""The error raised for data that breaks the Open Inference Protocol."""

from __future__ import annotations

from neuropod.errors import ValidationError


class ProtocolError(ValidationError):
    """A request or response breaks the protocol: an unknown datatype, a shape that does not
    match the data, a binary tensor of the wrong size, BYTES that are not UTF-8.

    It is a ``ValidationError`` (hence a ``ValueError``): a server answers it with 400 /
    ``INVALID_ARGUMENT``, and a client sees the same type as for a local spec mistake.
    """
