"""Shared memory that no file system sees: anonymous ``memfd`` blocks mapped by both processes.

A block is created with ``memfd_create`` and handed to the other process as a file descriptor
over the control socket (``SCM_RIGHTS``). It has no name in ``/dev/shm`` or anywhere else, so
nothing can leak: the kernel frees it when the last descriptor is closed and the last mapping is
gone, whichever process dies first and however (``SIGKILL`` included).

Arrays handed to the application view a block through a *lease*, a ``PickleBuffer`` over the
mapping: numpy keeps the lease as the arrays' base, so the mapping lives as long as any view,
and a weak reference to the lease tells the block's owner when the last view is gone and the
block may be reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import mmap
import os
import threading
import weakref
from collections.abc import Callable
from functools import partial
from pickle import PickleBuffer
from typing import Any

import numpy as np

_byte_bounds = getattr(np.lib, "array_utils", np).byte_bounds  # moved in numpy 2
_ids = itertools.count(1)
_lease_lock = threading.Lock()
# id(lease) -> the block it views; an entry leaves in the lease's weakref callback, which runs
# while the lease is being freed, so an id is never looked up after it could be reused.
_lease_blocks: dict[int, SharedBuffer] = {}


class SharedBuffer:
    """One block of shared memory, mapped read-write in this process.

    Make one with ``create`` (a new block owned here) or ``attach`` (a block the other process
    sent). ``on_unleased`` is called, from whichever thread drops the last view, when the block
    stops being viewed; it must be quick and take no locks (``deque.append``).

    Attributes:
        id: the number both processes use to name the block (unique in its creating process).
        size: bytes.
        fd: the memfd, kept open by the creator so the block can be sent to a new worker;
            ``-1`` once closed or for attached blocks.
        address: where the block is mapped in this process.
    """

    __slots__ = ("_lease", "address", "closed", "fd", "free", "held", "id", "mmap", "on_unleased", "size")

    def __init__(self, buffer_id: int, size: int, fd: int, *, keep_fd: bool):
        self.id = buffer_id
        self.size = size
        try:
            self.mmap = mmap.mmap(fd, size)
        finally:
            if not keep_fd:
                os.close(fd)
        self.fd = fd if keep_fd else -1
        anchor = ctypes.c_char.from_buffer(self.mmap)
        self.address: int = ctypes.addressof(anchor)
        del anchor  # a live export would stop the mapping from ever being closed
        self.closed = False
        self.held = False
        self.free = False
        self.on_unleased: Callable[[SharedBuffer], None] | None = None
        self._lease: weakref.ref[PickleBuffer] | None = None

    @classmethod
    def create(cls, size: int) -> SharedBuffer:
        """A new zero-filled block of ``size`` bytes, with a fresh id."""
        buffer_id = next(_ids)
        fd = os.memfd_create(f"neuropod-{buffer_id}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            return cls(buffer_id, size, fd, keep_fd=True)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, buffer_id: int, size: int, fd: int) -> SharedBuffer:
        """Map a block the other process sent; ``fd`` is closed (the mapping keeps the memory)."""
        return cls(buffer_id, size, fd, keep_fd=False)

    @property
    def leased(self) -> bool:
        """Whether some array still views the block through a lease."""
        ref = self._lease
        return ref is not None and ref() is not None

    def lease(self) -> PickleBuffer:
        """The object to build arrays on that the application keeps: one per block at a time."""
        with _lease_lock:
            lease = self._lease() if self._lease is not None else None
            if lease is None:
                if self.closed:
                    raise ValueError(f"shared buffer {self.id} is closed")
                lease = PickleBuffer(self.mmap)
                key = id(lease)
                self._lease = weakref.ref(lease, partial(_lease_ended, key))
                _lease_blocks[key] = self
            return lease

    def view(self, dtype: np.dtype[Any], shape: tuple[int, ...], offset: int,
             strides: tuple[int, ...] | None = None, *, leased: bool = False) -> np.ndarray:
        """An array on the block; with ``leased`` it keeps the block alive and busy."""
        buffer: Any = self.lease() if leased else self.mmap
        array: np.ndarray = np.ndarray(shape, dtype, buffer=buffer, offset=offset, strides=strides)
        return array

    def close_fd(self) -> None:
        """Close the descriptor, keeping the mapping (the block can then not be sent again)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """Close the descriptor and unmap, unless views remain (they then keep the mapping)."""
        self.close_fd()
        if not self.closed:
            self.closed = True
            # BufferError: leased views still use it; the mapping goes with the last of them.
            with contextlib.suppress(BufferError):
                self.mmap.close()

    def __repr__(self) -> str:
        return f"<SharedBuffer {self.id} {self.size} bytes{' closed' if self.closed else ''}>"


def _lease_ended(key: int, ref: weakref.ref[PickleBuffer]) -> None:
    # Runs inside the lease's deallocation, on any thread, possibly inside the garbage
    # collector: only atomic operations here, no locks.
    block = _lease_blocks.pop(key, None)
    if block is not None and block._lease is ref and block.on_unleased is not None:
        block.on_unleased(block)


def buffer_of(array: np.ndarray) -> SharedBuffer | None:
    """The block an array views through a lease, or ``None`` for ordinary memory."""
    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    if type(base) is not PickleBuffer:
        return None
    return _lease_blocks.get(id(base))


def data_offset(array: np.ndarray, block: SharedBuffer) -> int | None:
    """Where ``array`` starts in ``block``, or ``None`` unless all of it lies inside.

    ``array`` must have no negative strides (its start is then its lowest byte).
    """
    low, high = _byte_bounds(array)
    if low < block.address or high > block.address + block.size:
        return None
    return int(low - block.address)
