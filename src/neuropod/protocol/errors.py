"""The error raised for data that breaks the Open Inference Protocol (defined in ``neuropod.errors``)."""

from __future__ import annotations

from neuropod.errors import ProtocolError

__all__ = ["ProtocolError"]
