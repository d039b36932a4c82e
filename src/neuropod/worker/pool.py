"""Reusing shared-memory blocks: making and mapping a new one costs far more than a call.

Each side of a worker connection owns a pool: the application's process for input blocks, the
worker for output blocks. A block is busy while a call holds it or any array views it through a
lease (see ``shm``); then it returns to the pool, and the other process, which keeps its mapping
of the block, sees the next data in it without being sent anything but the block's id.
"""

from __future__ import annotations

import threading
from collections import deque

from neuropod.worker.shm import SharedBuffer

#: The smallest block: a call with a few small tensors fits in one.
MIN_BLOCK = 64 * 1024
#: Free blocks beyond this many bytes are closed (the newest free block is always kept).
MAX_FREE_BYTES = 512 * 1024 * 1024


def block_size(nbytes: int) -> int:
    """The size class that holds ``nbytes``: a power of two, at least ``MIN_BLOCK``."""
    return max(MIN_BLOCK, 1 << max(nbytes - 1, 0).bit_length())


class BufferPool:
    """The blocks one process owns, handed out by size class.

    Args:
        max_free_bytes: how many bytes of free blocks to keep for reuse.
    """

    def __init__(self, max_free_bytes: int = MAX_FREE_BYTES):
        self.max_free_bytes = max_free_bytes
        #: Counts closed blocks, so that holders of block ids notice cheaply when to look.
        self.evictions = 0
        self._lock = threading.Lock()
        self._blocks: dict[int, SharedBuffer] = {}
        self._free: dict[int, list[SharedBuffer]] = {}
        self._free_bytes = 0
        self._unleased: deque[SharedBuffer] = deque()
        self._closed = False

    def acquire(self, nbytes: int) -> SharedBuffer:
        """A block of at least ``nbytes``, held until ``release``."""
        size = block_size(nbytes)
        with self._lock:
            if self._closed:
                raise ValueError("the buffer pool is closed")
            self._collect_unleased()
            free = self._free.get(size)
            if free:
                block = free.pop()
                block.free = False
                self._free_bytes -= size
                block.held = True
                return block
        block = SharedBuffer.create(size)
        block.on_unleased = self._unleased.append
        block.held = True
        with self._lock:
            self._blocks[block.id] = block
            if self._closed:
                block.close()
                raise ValueError("the buffer pool is closed")
        return block

    def release(self, block: SharedBuffer) -> None:
        """The holder is done with ``block``; it is reused once no array views it."""
        with self._lock:
            block.held = False
            self._collect_unleased()
            if not block.leased:
                self._make_free(block)

    def get(self, block_id: int) -> SharedBuffer | None:
        """The open block with this id, if this pool made it."""
        block = self._blocks.get(block_id)
        return block if block is not None and not block.closed else None

    def close(self) -> None:
        """Close every block. Arrays that still view one keep its memory until they go."""
        with self._lock:
            self._closed = True
            blocks = list(self._blocks.values())
            self._blocks.clear()
            self._free.clear()
            self._free_bytes = 0
            self._unleased.clear()
        for block in blocks:
            block.close()

    def _collect_unleased(self) -> None:
        while self._unleased:
            block = self._unleased.popleft()
            if not block.held and not block.leased:
                self._make_free(block)

    def _make_free(self, block: SharedBuffer) -> None:
        if block.free or block.closed:
            return
        block.free = True
        self._free.setdefault(block.size, []).append(block)
        self._free_bytes += block.size
        self._evict()

    def _evict(self) -> None:
        while self._free_bytes > self.max_free_bytes:
            size = max((s for s, blocks in self._free.items() if blocks), default=0)
            if not size or sum(map(len, self._free.values())) <= 1:
                return
            block = self._free[size].pop(0)
            self._free_bytes -= size
            del self._blocks[block.id]
            block.close()
            self.evictions += 1
