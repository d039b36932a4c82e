"""The system shared-memory extension: regions a client registers, and tensors in them.

A client creates a POSIX shared-memory object (``/dev/shm/<key>``), registers a window of it
(``offset``, ``byte_size``) under a region name, then sends tensors whose parameters name the
region instead of carrying data. The server maps the object read-write (its outputs may be
written there) and never unlinks it: the client owns it.

Input tensors read from a region are views of the mapping, so a model sees the client's
bytes without a copy; a region whose views are still alive when it is unregistered is closed
once the last of them goes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuropod.protocol.binary import tensor_from_raw, tensor_to_raw
from neuropod.protocol.infer import InferRequest, InferResponse, SharedMemoryInput
from neuropod.protocol.keys import SHARED_MEMORY_BYTE_SIZE, SHARED_MEMORY_OFFSET, SHARED_MEMORY_REGION
from neuropod.serving.errors import BadRequest, NotFound

#: Where POSIX shared-memory objects live.
SHM_DIR = "/dev/shm"


@dataclass(frozen=True)
class Region:
    """One registered region: a window of a mapped shared-memory object."""

    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap

    def view(self, offset: int, byte_size: int, tensor: str) -> memoryview:
        """``byte_size`` bytes at ``offset`` of the region, for tensor ``tensor``.

        Raises:
            BadRequest: the window does not lie inside the region.
        """
        if offset < 0 or byte_size < 0 or offset + byte_size > self.byte_size:
            raise BadRequest(
                f"Tensor '{tensor}': shared memory window (offset {offset}, {byte_size} bytes) does "
                f"not fit region '{self.name}' of {self.byte_size} bytes"
            )
        start = self.offset + offset
        return memoryview(self.mapping)[start : start + byte_size]

    def status(self) -> dict[str, Any]:
        """The region as the status call reports it."""
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}

    def close(self) -> None:
        """Unmap, unless views are alive (then the mapping goes with the last of them)."""
        # BufferError: tensors still view it; the mmap object is freed, and unmapped, after them.
        with contextlib.suppress(BufferError):
            self.mapping.close()


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
        if not isinstance(key, str) or not key.strip("/") or "/" in key.lstrip("/"):
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
                fd = os.open(path, os.O_RDWR)
            except OSError as exc:
                raise BadRequest(
                    f"Region '{name}': cannot open shared memory object '{key}': {exc.strerror}"
                ) from None
            try:
                size = os.fstat(fd).st_size
                if start + size_wanted > size or size_wanted == 0:
                    raise BadRequest(
                        f"Region '{name}': offset {start} + byte_size {size_wanted} does not fit "
                        f"shared memory object '{key}' of {size} bytes"
                    )
                mapping = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self._regions[name] = Region(name, key, start, size_wanted, mapping)

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
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"Region '{region}': {field} must be a non-negative integer, got {value!r}")
    return value


#: Parameters of a tensor held in a region rather than in the request or response.
REGION = SHARED_MEMORY_REGION
BYTE_SIZE = SHARED_MEMORY_BYTE_SIZE
OFFSET = SHARED_MEMORY_OFFSET


def resolve_inputs(registry: SharedMemoryRegistry, request: InferRequest) -> dict[str, np.ndarray]:
    """A request's inputs as arrays: those held in regions become views of them.

    Raises:
        NotFound: a region is not registered.
        BadRequest: a window is malformed or outside its region.
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
            window = region_window(registry, name, value.parameters)
            value = tensor_from_raw(window, value.datatype, value.shape, name=name)
        arrays[name] = value
    return arrays


def write_outputs(registry: SharedMemoryRegistry, response: InferResponse) -> None:
    """Write the outputs that name a region into it.

    Raises:
        NotFound: a region is not registered.
        BadRequest: a window is malformed, outside its region, or too small for its output.
    """
    for tensor in response.outputs:
        if tensor.shared_memory is not None:
            window = region_window(registry, tensor.name, tensor.shared_memory)
            write_output(window, tensor.name, tensor_to_raw(tensor.array, tensor.datatype))


def region_window(registry: SharedMemoryRegistry, tensor: str, parameters: Mapping[str, Any]) -> memoryview:
    """The window of a region that a tensor's parameters name.

    Args:
        registry: the server's regions.
        tensor: the tensor's name, for messages.
        parameters: the tensor's parameters (``shared_memory_region``, ``shared_memory_byte_size``,
            optional ``shared_memory_offset``).

    Raises:
        NotFound: the region is not registered.
        BadRequest: the size or offset is missing, malformed, or outside the region.
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
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadRequest(f"Tensor '{tensor}': {field} must be a non-negative integer, got {value!r}")
    return region.view(offset, size, tensor)


def write_output(window: memoryview, tensor: str, raw: memoryview) -> None:
    """Copy an output's raw bytes into its window of a region.

    Raises:
        BadRequest: the output is larger than the window.
    """
    if raw.nbytes > window.nbytes:
        raise BadRequest(
            f"Output '{tensor}' has {raw.nbytes} bytes, more than the {window.nbytes} bytes of "
            f"shared memory given for it"
        )
    window[: raw.nbytes] = raw.cast("B")
