"""Raw tensor bytes: the binary tensor extension over HTTP, and raw contents over gRPC.

Both carry a tensor as its elements' bytes, little-endian and row-major (``BOOL`` one byte per
element). A ``BYTES`` (string) tensor is its elements one after the other, each a 4-byte
little-endian length then that many bytes. Decoding gives an object array of ``bytes``, exactly
as sent; whether they are text is the tensor's spec's to say (``neuropod.spec.elements``).

Over HTTP, a request or response with binary tensors is one body: the JSON header, then the
tensors' bytes in the order of the header's tensors that carry ``binary_data_size``. The
header's length is sent in the ``Inference-Header-Content-Length`` HTTP header
(``HEADER_LENGTH``).

Decoding is zero-copy for numeric tensors: the arrays returned view the buffer they were given
(read-only when it is ``bytes``), so they keep it alive for as long as they live.

>>> raw = tensor_to_raw(np.array(["a", "bc"]))
>>> bytes(raw)
b'\\x01\\x00\\x00\\x00a\\x02\\x00\\x00\\x00bc'
>>> tensor_from_raw(raw, "BYTES", (2,))
array([b'a', b'bc'], dtype=object)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from neuropod.protocol.datatypes import BYTES, array_datatype, datatype_to_numpy
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.keys import BINARY_DATA_SIZE, HEADER_LENGTH

_LENGTH = struct.Struct("<I")

Buffer = bytes | bytearray | memoryview


def tensor_to_raw(array: np.ndarray, datatype: str | None = None) -> memoryview:
    """The bytes of a tensor as the protocol sends them.

    A C-contiguous little-endian numeric array is viewed, not copied: the memoryview keeps the
    array alive, and the array must not change until the bytes are sent.

    Args:
        array: the tensor; for ``BYTES``, str (sent as UTF-8) or bytes elements: a numpy
            ``U`` or ``S`` array, or an object array of them.
        datatype: the protocol datatype to send; default ``array_datatype(array)``.

    Returns:
        A byte-format (``"B"``) memoryview of the raw contents.

    Raises:
        ProtocolError: the array's type has no datatype, or a ``BYTES`` element is neither
            str nor bytes.
    """
    if datatype is None:
        datatype = array_datatype(array)
    if datatype == BYTES:
        return memoryview(encode_bytes_elements(array))
    dtype = datatype_to_numpy(datatype)
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    return contiguous.reshape(-1).view(np.uint8).data


def raw_size(array: np.ndarray, datatype: str | None = None) -> int:
    """How many bytes ``tensor_to_raw`` gives for a numeric array, without building them.

    Raises:
        ProtocolError: the datatype is ``BYTES`` (its size needs the encoding) or unknown.
    """
    dtype = datatype_to_numpy(datatype if datatype is not None else array_datatype(array))
    if dtype is None:
        raise ProtocolError("The raw size of a BYTES tensor is only known once it is encoded")
    return array.size * dtype.itemsize


def tensor_from_raw(buffer: Buffer, datatype: str, shape: Sequence[int], *, name: str = "") -> np.ndarray:
    """A tensor from its raw bytes: a view of ``buffer`` for numbers, bytes elements for ``BYTES``.

    Args:
        buffer: exactly the tensor's bytes.
        datatype: its protocol datatype.
        shape: its shape (non-negative ints, checked by the caller).
        name: the tensor's name, for messages.

    Returns:
        The array: little-endian numbers viewing ``buffer`` (read-only for ``bytes``), or for
        ``BYTES`` an object array of ``bytes``.

    Raises:
        ProtocolError: the size does not match the shape and datatype, a ``BYTES`` element is
            cut short, or a ``BOOL`` byte is neither 0 nor 1.
    """
    count = math.prod(shape)
    dtype = datatype_to_numpy(datatype)
    if dtype is None:
        return decode_bytes_elements(buffer, count, name=name).reshape(shape)
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise ProtocolError(
            f"Tensor '{name}': {datatype} data of shape {list(shape)} needs {expected} bytes, "
            f"but {len(buffer)} were given"
        )
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if dtype.kind == "b" and count and array.view(np.uint8).max() > 1:
        raise ProtocolError(f"Tensor '{name}': BOOL data must hold bytes 0 or 1 only")
    return array


def encode_bytes_elements(elements: np.ndarray | Iterable[object]) -> bytes:
    """The ``BYTES`` encoding of string elements, in row-major order.

    Args:
        elements: an array (any shape) or iterable of str (sent as UTF-8) or bytes.

    Raises:
        ProtocolError: an element is neither str nor bytes.
    """
    items = elements.flat if isinstance(elements, np.ndarray) else elements
    parts: list[bytes] = []
    pack = _LENGTH.pack
    for item in items:
        if isinstance(item, str):
            data = item.encode("utf-8")
        elif isinstance(item, bytes):
            data = item
        else:
            raise ProtocolError(f"BYTES elements must be str or bytes, got {type(item).__name__} {item!r}")
        parts.append(pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_bytes_elements(buffer: Buffer, count: int | None = None, *, name: str = "") -> np.ndarray:
    """Decode ``BYTES`` data into a flat object array of ``bytes``, exactly as encoded.

    Args:
        buffer: the encoded elements, nothing before or after.
        count: how many elements there must be (``None``: as many as the buffer holds).
        name: the tensor's name, for messages.

    Raises:
        ProtocolError: an element is cut short, the buffer holds another number of elements
            than ``count``, or bytes are left over.
    """
    view = memoryview(buffer).cast("B") if isinstance(buffer, memoryview) else buffer
    end = len(view)
    items: list[bytes] = []
    offset = 0
    unpack = _LENGTH.unpack_from
    while offset < end and (count is None or len(items) < count):
        if end - offset < 4:
            raise ProtocolError(
                f"Tensor '{name}': BYTES element {len(items)} is cut short (its 4-byte length "
                f"prefix starts {end - offset} bytes before the end)"
            )
        (length,) = unpack(view, offset)
        offset += 4
        if end - offset < length:
            raise ProtocolError(
                f"Tensor '{name}': BYTES element {len(items)} claims {length} bytes, but only "
                f"{end - offset} are left"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if count is not None and len(items) != count:
        raise ProtocolError(
            f"Tensor '{name}': BYTES data holds {len(items)} elements, but its shape needs {count}"
        )
    if offset != end:
        raise ProtocolError(
            f"Tensor '{name}': {end - offset} bytes are left after the {len(items)} BYTES elements "
            f"its shape needs"
        )
    return object_array(items)


def object_array(items: list[Any]) -> np.ndarray:
    """A flat object array of ``items`` (``np.array`` would make bytes an ``S`` array, which
    strips trailing NULs)."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def split_body(body: Buffer, header_length: int | None) -> tuple[memoryview, memoryview]:
    """Split an HTTP body into its JSON header and the binary tensors after it.

    Args:
        body: the whole body.
        header_length: the ``Inference-Header-Content-Length`` value (``None``: all JSON).

    Returns:
        ``(json_header, binary_part)``, both views of ``body``.

    Raises:
        ProtocolError: the length is negative or longer than the body.
    """
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    if header_length < 0 or header_length > len(view):
        raise ProtocolError(f"{HEADER_LENGTH} is {header_length}, but the body has {len(view)} bytes")
    return view[:header_length], view[header_length:]


def parse_header_length(value: str | bytes | None) -> int | None:
    """The value of the ``Inference-Header-Content-Length`` header as an int (``None`` if absent).

    Raises:
        ProtocolError: the value is not a non-negative decimal integer.
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    digits = text.strip()
    # ASCII only: str.isdigit also takes '²' (which int() refuses) and other scripts' digits. And
    # few enough for int(), which refuses over 4300 digits: no body has 10**20 bytes.
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        raise ProtocolError(f"{HEADER_LENGTH} must be a non-negative integer, got {text!r}")
    return int(digits)


class BinaryReader:
    """Hands out the binary tensors after a header, in order, checking they fit.

    Args:
        binary: the bytes after the JSON header.

    >>> reader = BinaryReader(b"abcdef")
    >>> bytes(reader.take(4, "x")), bytes(reader.take(2, "y"))
    (b'abcd', b'ef')
    >>> reader.finish()
    """

    def __init__(self, binary: Buffer):
        self._view = memoryview(binary)
        self._offset = 0

    def take(self, size: int, name: str) -> memoryview:
        """The next ``size`` bytes, those of tensor ``name``.

        Raises:
            ProtocolError: ``size`` is not a non-negative int, or fewer bytes are left.
        """
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(
                f"Tensor '{name}': {BINARY_DATA_SIZE} must be a non-negative integer, got {size!r}"
            )
        start = self._offset
        if start + size > len(self._view):
            raise ProtocolError(
                f"Tensor '{name}': {BINARY_DATA_SIZE} is {size}, but only {len(self._view) - start} "
                f"bytes of binary data are left in the body"
            )
        self._offset = start + size
        return self._view[start : start + size]

    def finish(self) -> None:
        """Check that every byte was claimed by a tensor.

        Raises:
            ProtocolError: bytes are left over.
        """
        left = len(self._view) - self._offset
        if left:
            raise ProtocolError(
                f"{left} bytes of binary data follow the tensors' {BINARY_DATA_SIZE} total of {self._offset}"
            )
