"""Tensors in shared memory: writing a dict of arrays into blocks and reading it back.

Both directions use the same code. Each side of a worker connection has an *arena*, a block of
its own that carries the small tensors of every call: writing a few bytes there and copying
them out on the other side costs less than any bookkeeping, and the arena is free again when
the call returns. Larger arrays are copied into one pooled block per call (64-byte aligned, C
order), unless they are in shared memory already (from ``allocate``, or an output that views
an input): those are referred to where they are, without a copy.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from neuropod.alignment import round_up
from neuropod.errors import InferenceError
from neuropod.worker.pool import BufferPool
from neuropod.worker.protocol import ARENA, NO_BLOCK, PICKLED, SENDER
from neuropod.worker.shm import SharedBuffer

#: Tensors up to this size go through the arena, and arrive as copies of their own.
SMALL = 64 * 1024
#: The arena's size: a call's small tensors beyond it go to a pooled block.
ARENA_SIZE = 512 * 1024

Descriptor = tuple[str, str, tuple[int, ...], "tuple[int, ...] | None", int, int, int]
#: Finds an array that is in shared memory already: ``(owner, block, offset)`` or ``None``.
Locate = Callable[[np.ndarray], "tuple[int, SharedBuffer, int] | None"]
#: The block a descriptor names: ``find(owner, block id)``.
Find = Callable[[int, int], SharedBuffer]

_WIRE_KINDS = frozenset("biufcmMUS")
_dtypes: dict[str, np.dtype[Any]] = {}


def encode(
    tensors: Mapping[str, Any], arena: SharedBuffer, pool: BufferPool, locate: Locate | None = None
) -> tuple[list[Descriptor], SharedBuffer | None]:
    """Put ``tensors`` in shared memory.

    Args:
        tensors: name -> array (other values are pickled).
        arena: the sender's arena, free for this call.
        pool: where a block for larger copies comes from.
        locate: finds arrays that are in shared memory already, so they are not copied.

    Returns:
        The descriptors in ``tensors``' order, and the block acquired for larger copies (the
        caller releases it when the receiver is done with it), or ``None``.
    """
    descriptors: list[Any] = []
    large: list[tuple[int, str, np.ndarray]] = []
    memory = arena.mmap
    used = 0
    for name, value in tensors.items():
        array = value if type(value) is np.ndarray and value.dtype.kind in _WIRE_KINDS else wire_array(value)
        if array is None:
            dtype = PICKLED
            array = np.frombuffer(_pickle(name, value), np.uint8)
        else:
            dtype = array.dtype.str
        nbytes = array.nbytes
        if nbytes == 0:
            descriptors.append((name, dtype, array.shape, None, NO_BLOCK, 0, 0))
            continue
        if locate is not None and array.base is not None:
            found = locate(array)
            if found is not None:
                owner, block, offset = found
                descriptors.append((name, dtype, array.shape, array.strides, owner, block.id, offset))
                continue
        shape = (nbytes,) if dtype is PICKLED else array.shape
        if nbytes <= SMALL and used + nbytes <= arena.size:
            if array.flags.c_contiguous:
                memory[used : used + nbytes] = array  # type: ignore[call-overload]  # a memcpy
            else:
                np.copyto(arena.view(array.dtype, array.shape, used), array)
            descriptors.append((name, dtype, shape, None, ARENA, arena.id, used))
            used += round_up(nbytes)
            continue
        large.append((len(descriptors), dtype, array))
        descriptors.append((name, dtype, shape, None, SENDER, 0, 0))
    if not large:
        return descriptors, None
    block = pool.acquire(sum(round_up(array.nbytes) for _, _, array in large))
    try:
        offset = 0
        for index, _, array in large:
            if array.flags.c_contiguous:
                block.mmap[offset : offset + array.nbytes] = array  # type: ignore[call-overload]
            else:
                np.copyto(block.view(array.dtype, array.shape, offset), array)
            descriptors[index] = (*descriptors[index][:5], block.id, offset)
            offset += round_up(array.nbytes)
    except BaseException:
        pool.release(block)
        raise
    return descriptors, block


class SandboxedPickle:
    """A value that is not an array, from a worker the application does not trust (sandboxed,
    or connected by path): unpickling runs code the sender chooses, so it stays unpickled, and
    the model's output check rejects it by this type's name.

    Attributes:
        nbytes: the size of the pickle.
    """

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int):
        self.nbytes = nbytes

    def __repr__(self) -> str:
        return f"<a value that is not an array, not unpickled from an untrusted worker: {self.nbytes} bytes>"


def decode(
    descriptors: list[Descriptor], find: Find, *, keep: bool, unpickle: bool = True
) -> tuple[dict[str, Any], list[SharedBuffer]]:
    """Rebuild the tensors ``encode`` described.

    Args:
        descriptors: from the message.
        find: the block a descriptor names.
        keep: ``False`` gives plain views, valid while the blocks are not reused (the worker's
            inputs, for one call); ``True`` gives arrays the application may keep: small ones
            are copies, large ones view their block through a lease.
        unpickle: whether to unpickle values that are not arrays (else ``SandboxedPickle``).

    Returns:
        The tensors, and the sender's pooled blocks they came in.
    """
    tensors: dict[str, Any] = {}
    used: list[SharedBuffer] = []
    for name, dtype_str, shape, strides, owner, block_id, offset in descriptors:
        if owner == NO_BLOCK:
            tensors[name] = np.empty(shape, _dtype(dtype_str))
            continue
        block = find(owner, block_id)
        if owner == SENDER and block not in used:
            used.append(block)
        if dtype_str == PICKLED:
            if unpickle:
                tensors[name] = pickle.loads(block.mmap[offset : offset + shape[0]])
            else:
                tensors[name] = SandboxedPickle(int(shape[0]))
            continue
        dtype = _dtype(dtype_str)
        if not keep:
            tensors[name] = block.view(dtype, shape, offset, strides)
        elif owner == ARENA or math.prod(shape) * dtype.itemsize <= SMALL:
            tensors[name] = block.view(dtype, shape, offset, strides).copy()
        else:
            # The lease is the array's base: the mapping stays while the array (or any view
            # of it, torch tensors included) lives, and the block is not reused before.
            tensors[name] = block.view(dtype, shape, offset, strides, leased=True)
    return tensors, used


def wire_array(value: Any) -> np.ndarray | None:
    """``value`` as an array whose bytes can travel as they are, or ``None`` (to pickle)."""
    if not isinstance(value, np.ndarray):
        return None
    kind = value.dtype.kind
    if kind in _WIRE_KINDS:
        plain: np.ndarray = np.asarray(value)  # a subclass travels as a plain array
        return plain
    # Object arrays of bytes (and empty ones, which may be either) are pickled: pickle copies
    # bytes as they are, NULs included, while an S array would drop trailing NULs.
    if kind == "O" and value.size and all(isinstance(item, str) for item in value.flat):
        strings: np.ndarray = np.array(value.tolist(), dtype=str).reshape(value.shape)
        return strings
    return None


def _pickle(name: str, value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise InferenceError(
            f"'{name}' is a {type(value).__name__}, which is neither a numpy array of a plain "
            f"dtype nor picklable, so it cannot pass between processes: {exc}"
        ) from exc


def _dtype(text: str) -> np.dtype[Any]:
    dtype = _dtypes.get(text)
    if dtype is None:
        dtype = _dtypes[text] = np.dtype(text)
    return dtype
