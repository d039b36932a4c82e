"""Backends: one module per framework, each imported only when a model of it is loaded."""

from neuropod.backends.base import Backend

__all__ = ["Backend"]
