"""The error a command raises for a mistake on its command line or in the files it was given
(defined in ``neuropod.errors``)."""

from __future__ import annotations

from neuropod.errors import CommandError

__all__ = ["CommandError"]
