"""The system shared-memory extension: regions a client registers, and tensors in them.

A client creates a POSIX shared-memory object (``/dev/shm/<key>``), registers a window of it
(``offset``, ``byte_size``) under a region name, then sends tensors whose parameters name the
region instead of carrying data. The server opens the object read-write (its outputs may be
written there) and never unlinks it: the client owns it.

The object is never mapped: inputs are read with ``pread`` into fresh arrays and outputs
written with ``pwrite``. A mapping would let a client that shrinks the object (``ftruncate``)
between a check and an access kill the whole server with SIGBUS, which Python cannot catch;
a read past the end is instead a short read, answered 400. The price is a copy where a view
of a mapping was free: on a 2-core VM about 8 microseconds per 4 KB tensor and 0.6 ms per
4 MB one, each way (``bench/shm_read.py``). The object is opened as glibc's ``shm_open``
opens it, without following a symbolic link, and must be a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import numpy as np

from neuropod.options import int_at_least
from neuropod.protocol.binary import tensor_from_raw, tensor_to_raw
from neuropod.protocol.infer import InferRequest, InferResponse, SharedMemoryInput
from neuropod.protocol.keys import SHARED_MEMORY_BYTE_SIZE, SHARED_MEMORY_OFFSET, SHARED_MEMORY_REGION
from neuropod.serving.errors import BadRequest, NotFound

_NON_NEGATIVE = int_at_least(0)

#: Where POSIX shared-memory objects live.
SHM_DIR = "/dev/shm"


class Region:
    """One registered region: a window of an open shared-memory object.

    Args:
        name: the region's name.
        key: the object's name, as the client gave it.
        offset: where the window starts in the object.
        byte_size: the window's size.
        fd: the open object; the region owns it.
    """

    def __init__(self, name: str, key: str, offset: int, byte_size: int, fd: int):
        self.name = name
        self.key = key
        self.offset = offset
        self.byte_size = byte_size
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def read(self, offset: int, byte_size: int, tensor: str) -> memoryview:
        """A copy of ``byte_size`` bytes at ``offset`` of the region, for tensor ``tensor``.

        Returns:
            The bytes, in memory of their own (uninitialized before the read, unlike a
            ``bytearray``'s).

        Raises:
            BadRequest: the window does not lie inside the region, the object has shrunk
                below it, or the region was unregistered meanwhile.
        """
        start = self._start(offset, byte_size, tensor)
        view = np.empty(byte_size, np.uint8).data
        done = 0
        with self._open(tensor) as fd:
            while done < byte_size:
                count = os.preadv(fd, [view[done:]], start + done)
                if count == 0:
                    raise self._shrunk(fd, tensor, start + byte_size)
                done += count
        return view

    def write(self, offset: int, byte_size: int, data: memoryview, tensor: str) -> None:
        """Write ``data`` at ``offset`` of the region, into a window of ``byte_size`` bytes.

        Raises:
            BadRequest: the window does not lie inside the region, ``data`` is larger than
                the window, the object has shrunk below it, or the region was unregistered.
        """
        start = self._start(offset, byte_size, tensor)
        if data.nbytes > byte_size:
            raise BadRequest(
                f"Output '{tensor}' has {data.nbytes} bytes, more than the {byte_size} bytes of "
                f"shared memory given for it"
            )
        data = data.cast("B")
        with self._open(tensor) as fd:
            # A client that shrinks the object after this check makes pwrite grow it again:
            # its own loss, never the server's crash.
            if os.fstat(fd).st_size < start + data.nbytes:
                raise self._shrunk(fd, tensor, start + data.nbytes)
            done = 0
            while done < data.nbytes:
                done += os.pwrite(fd, data[done:], start + done)

    def _start(self, offset: int, byte_size: int, tensor: str) -> int:
        if offset < 0 or byte_size < 0 or offset + byte_size > self.byte_size:
            raise BadRequest(
                f"Tensor '{tensor}': shared memory window (offset {offset}, {byte_size} bytes) does "
                f"not fit region '{self.name}' of {self.byte_size} bytes"
            )
        return self.offset + offset

    @contextmanager
    def _open(self, tensor: str) -> Iterator[int]:
        # A descriptor of our own: unregistering closes the region's, whose number the OS may
        # then give to another file, which this request must never read or write.
        with self._lock:
            if self._fd is None:
                raise BadRequest(f"Tensor '{tensor}': shared memory region '{self.name}' was unregistered")
            fd = os.dup(self._fd)
        try:
            yield fd
        finally:
            os.close(fd)

    def _shrunk(self, fd: int, tensor: str, needed: int) -> BadRequest:
        return BadRequest(
            f"Tensor '{tensor}': shared memory object '{self.key}' of region '{self.name}' has "
            f"shrunk to {os.fstat(fd).st_size} bytes; the tensor needs {needed}"
        )

    def status(self) -> dict[str, Any]:
        """The region as the status call reports it."""
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}

    def close(self) -> None:
        """Close the object. Idempotent; requests reading or writing it meanwhile finish."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SharedMemoryRegistry:
    """The system shared-memory regions registered with one server. Thread-safe."""

    def __init__(self) -> None:
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: object, offset: object, byte_size: object) -> None:
        """Map ``byte_size`` bytes at ``offset`` of the object ``key`` as region ``name``.

        Raises:
            BadRequest: a field is malformed, the name is taken, the object does not exist or
                is smaller than ``offset + byte_size``.
        """
        if not name:
            raise BadRequest("A shared memory region needs a name")
        if not isinstance(key, str) or not key.strip("/") or "/" in key.lstrip("/") or "\0" in key:
            raise BadRequest(
                f"Region '{name}': key must be a POSIX shared memory name like '/x', got {key!r}"
            )
        start = _non_negative(name, "offset", offset)
        size_wanted = _non_negative(name, "byte_size", byte_size)
        path = os.path.join(SHM_DIR, key.lstrip("/"))
        with self._lock:
            if name in self._regions:
                raise BadRequest(f"Shared memory region '{name}' is already registered; unregister it first")
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError as exc:
                reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
                raise BadRequest(
                    f"Region '{name}': cannot open shared memory object '{key}': {reason}"
                ) from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise BadRequest(
                        f"Region '{name}': '{key}' is not a shared memory object (not a regular "
                        f"file in {SHM_DIR})"
                    )
                if start + size_wanted > info.st_size or size_wanted == 0:
                    raise BadRequest(
                        f"Region '{name}': offset {start} + byte_size {size_wanted} does not fit "
                        f"shared memory object '{key}' of {info.st_size} bytes"
                    )
            except BaseException:
                os.close(fd)
                raise
            self._regions[name] = Region(name, key, start, size_wanted, fd)

    def unregister(self, name: str | None = None) -> None:
        """Forget region ``name``, or every region when ``None``. An unknown name is no error."""
        with self._lock:
            names = list(self._regions) if name is None else [name]
            regions = [self._regions.pop(n) for n in names if n in self._regions]
        for region in regions:
            region.close()

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """The status of region ``name``, or of every region.

        Raises:
            NotFound: ``name`` is not registered.
        """
        with self._lock:
            if name is None:
                return [region.status() for region in self._regions.values()]
            return [self.get(name).status()]

    def get(self, name: str) -> Region:
        """The region named ``name``.

        Raises:
            NotFound: it is not registered.
        """
        region = self._regions.get(name)
        if region is None:
            raise NotFound(f"Shared memory region '{name}' is not registered")
        return region

    def close(self) -> None:
        """Unregister every region. Idempotent."""
        self.unregister(None)


def _non_negative(region: str, field: str, value: object) -> int:
    _NON_NEGATIVE(f"Region '{region}': {field}", value, BadRequest)
    return cast(int, value)


#: Parameters of a tensor held in a region rather than in the request or response.
REGION = SHARED_MEMORY_REGION
BYTE_SIZE = SHARED_MEMORY_BYTE_SIZE
OFFSET = SHARED_MEMORY_OFFSET


def resolve_inputs(registry: SharedMemoryRegistry, request: InferRequest) -> dict[str, np.ndarray]:
    """A request's inputs as arrays: those held in regions are read from them.

    Raises:
        NotFound: a region is not registered.
        BadRequest: a window is malformed, outside its region, or past the end of an object
            that shrank.
        ProtocolError: a window does not fit its tensor's shape and datatype.
    """
    inputs = request.inputs
    for value in inputs.values():
        if type(value) is SharedMemoryInput:
            break
    else:
        return inputs  # type: ignore[return-value]  # all arrays: the common case, checked above
    arrays = {}
    for name, value in inputs.items():
        if isinstance(value, SharedMemoryInput):
            region, offset, size = region_window(registry, name, value.parameters)
            value = tensor_from_raw(region.read(offset, size, name), value.datatype, value.shape, name=name)
        arrays[name] = value
    return arrays


def write_outputs(registry: SharedMemoryRegistry, response: InferResponse) -> None:
    """Write the outputs that name a region into it.

    Raises:
        NotFound: a region is not registered.
        BadRequest: a window is malformed, outside its region, too small for its output, or
            past the end of an object that shrank.
    """
    for tensor in response.outputs:
        if tensor.shared_memory is not None:
            region, offset, size = region_window(registry, tensor.name, tensor.shared_memory)
            region.write(offset, size, tensor_to_raw(tensor.array, tensor.datatype), tensor.name)


def region_window(
    registry: SharedMemoryRegistry, tensor: str, parameters: Mapping[str, Any]
) -> tuple[Region, int, int]:
    """The region, offset and byte size that a tensor's parameters name.

    Args:
        registry: the server's regions.
        tensor: the tensor's name, for messages.
        parameters: the tensor's parameters (``shared_memory_region``, ``shared_memory_byte_size``,
            optional ``shared_memory_offset``).

    Returns:
        ``(region, offset, byte_size)``; the window is checked against the region when read
        or written.

    Raises:
        NotFound: the region is not registered.
        BadRequest: the size or offset is missing or malformed.
    """
    name = parameters.get(REGION)
    if not isinstance(name, str):
        raise BadRequest(f"Tensor '{tensor}': {REGION} must be a string, got {name!r}")
    region = registry.get(name)
    size = parameters.get(BYTE_SIZE)
    if size is None:
        raise BadRequest(f"Tensor '{tensor}': {REGION} needs {BYTE_SIZE}")
    offset = parameters.get(OFFSET, 0)
    for field, value in ((BYTE_SIZE, size), (OFFSET, offset)):
        _NON_NEGATIVE(f"Tensor '{tensor}': {field}", value, BadRequest)
    return region, offset, size
