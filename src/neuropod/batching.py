"""The first name of ``neuropod.dynamic_batching``, kept so that older imports keep working.

>>> from neuropod.batching import DynamicBatcher  # the same class as neuropod.dynamic_batching's
"""

from neuropod.dynamic_batching import DynamicBatcher

__all__ = ["DynamicBatcher"]
