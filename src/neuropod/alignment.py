"""64-byte alignment, which TensorFlow's kernels, XLA's CPU client and the worker's blocks share.

TensorFlow is compiled with ``EIGEN_MAX_ALIGN_BYTES=64`` and XLA's CPU client uses a host buffer
in place only from a 64-byte boundary, while numpy aligns its allocations to 16 bytes. An array
that starts on a boundary is handed to a framework as it is; any other is copied once with
``aligned_copy``. The worker lays tensors out in its shared blocks on the same boundaries, so that
what it hands to a backend needs no second copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ALIGNMENT", "aligned_copy", "is_aligned", "round_up"]

#: The alignment, in bytes, of the buffers handed to a framework.
ALIGNMENT = 64


def is_aligned(array: np.ndarray) -> bool:
    """Whether ``array`` is C-contiguous and its data starts on an ``ALIGNMENT`` boundary.

    Args:
        array: the array.

    Returns:
        ``True`` when a framework can use its memory in place.
    """
    return bool(array.flags.c_contiguous) and array.ctypes.data % ALIGNMENT == 0


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writeable copy of ``array`` whose data starts on an ``ALIGNMENT`` boundary.

    Args:
        array: the array to copy.

    Returns:
        The copy, of the same dtype and shape.
    """
    raw = np.empty(array.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    # The view keeps ``raw`` (its base) alive for as long as a framework holds the array.
    copy = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(copy, array)
    return copy


def round_up(nbytes: int) -> int:
    """``nbytes`` rounded up to a multiple of ``ALIGNMENT``: where the next tensor may start."""
    return (nbytes + ALIGNMENT - 1) & -ALIGNMENT
