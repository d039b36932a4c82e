"""The 64-byte alignment helper shared by the TensorFlow and JAX backends and the worker."""

from __future__ import annotations

import numpy as np

from neuropod.alignment import ALIGNMENT, aligned_copy, is_aligned, round_up


def test_an_aligned_copy_starts_on_a_boundary_and_equals_the_original():
    original = np.arange(1001, dtype=np.float32)[1:]  # 4 bytes past numpy's own alignment
    copy = aligned_copy(original)
    assert copy.ctypes.data % ALIGNMENT == 0
    assert is_aligned(copy) and not is_aligned(original)
    assert copy.flags.writeable and copy.dtype == original.dtype and copy.shape == original.shape
    np.testing.assert_array_equal(copy, original)


def test_an_aligned_copy_of_a_strided_array_is_c_contiguous():
    original = np.arange(24, dtype=np.int64).reshape(4, 6).T
    assert not is_aligned(original)
    copy = aligned_copy(original)
    assert copy.flags.c_contiguous and is_aligned(copy)
    np.testing.assert_array_equal(copy, original)


def test_the_copy_keeps_its_buffer_alive():
    copy = aligned_copy(np.ones(10, np.uint8))
    assert copy.base is not None


def test_round_up():
    assert [round_up(n) for n in (0, 1, 63, 64, 65, 128)] == [0, 64, 64, 64, 128, 128]
