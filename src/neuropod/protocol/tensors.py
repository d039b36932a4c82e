"""Tensors in the JSON of an inference request or response, with their data inline or binary.

A request's inputs and a response's outputs have the same form::

    {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    {"name": "x", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}

so one reader and one writer serve both sides: a server reads inputs and writes outputs, a
client writes inputs and reads outputs. JSON ``data`` is row-major, flat or nested; ``BOOL``
is ``true``/``false`` and ``BYTES`` elements are JSON strings, read as their UTF-8 bytes (as
Triton does): JSON carries text only, so bytes that are not UTF-8 travel as binary data.

>>> entry, raw = write_tensor("x", np.arange(4, dtype=np.float32).reshape(2, 2), binary=False)
>>> entry
{'name': 'x', 'datatype': 'FP32', 'shape': [2, 2], 'data': [0.0, 1.0, 2.0, 3.0]}
>>> read_tensor(entry, BinaryReader(b""))
('x', array([[0., 1.],
       [2., 3.]], dtype=float32))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.protocol.binary import BinaryReader, object_array, tensor_from_raw, tensor_to_raw
from neuropod.protocol.datatypes import DATATYPES, array_datatype, datatype_to_numpy
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.keys import BINARY_DATA_SIZE

_DATATYPES = frozenset(DATATYPES)

# What JSON numbers each kind of datatype accepts, by numpy kind of the parsed data.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "fiu"}


def parse_shape(shape: object, name: str) -> tuple[int, ...]:
    """Check a tensor's ``shape`` field: a list of non-negative ints (see ``check_shape``).

    Raises:
        ProtocolError: it is anything else.
    """
    if isinstance(shape, list):
        for dim in shape:
            if type(dim) is not int or dim < 0:
                break
        else:
            return check_shape(tuple(shape), name)
    raise ProtocolError(f"Tensor '{name}': shape must be a list of non-negative integers, got {shape!r}")


#: The most dimensions a tensor may have: numpy's limit.
MAX_RANK = 64
#: The most elements a tensor's non-zero sizes may multiply to: numpy's limit on an array's
#: bytes (a signed 64-bit count) over the widest element (8 bytes). numpy refuses larger
#: shapes even when another size is zero.
MAX_ELEMENTS = (2**63 - 1) // 8


def check_shape(shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Check that a shape of ints is one an array can have.

    Args:
        shape: the sizes.
        name: the tensor's name, for messages.

    Returns:
        ``shape``.

    Raises:
        ProtocolError: a size is negative, there are more than ``MAX_RANK`` sizes, or the
            non-zero sizes multiply to more than ``MAX_ELEMENTS``.
    """
    if len(shape) > MAX_RANK:
        raise ProtocolError(
            f"Tensor '{name}': shape has {len(shape)} dimensions; a tensor may have at most {MAX_RANK}"
        )
    elements = 1
    for dim in shape:
        if dim < 0:
            raise ProtocolError(f"Tensor '{name}': shape must hold non-negative sizes, got {list(shape)}")
        if dim:
            elements *= dim
    if elements > MAX_ELEMENTS:
        raise ProtocolError(
            f"Tensor '{name}': shape {list(shape)} is too large: its non-zero sizes multiply to "
            f"{elements}, more than the {MAX_ELEMENTS} elements a tensor may have"
        )
    return shape


def tensor_from_json(data: object, datatype: str, shape: Sequence[int], *, name: str = "") -> np.ndarray:
    """A tensor from JSON ``data`` (flat or nested, row-major).

    Args:
        data: the parsed JSON value.
        datatype: the tensor's protocol datatype.
        shape: its shape; the data must hold exactly ``prod(shape)`` elements.
        name: the tensor's name, for messages.

    Returns:
        A numpy array of the datatype and shape; for ``BYTES`` an object array of each
        string's UTF-8 ``bytes``.

    Raises:
        ProtocolError: the data is not a list, is ragged, holds values of another type (a
            float for an integer type, a number out of range, a non-string for ``BYTES``), or
            holds another number of elements than the shape needs.
    """
    dtype = datatype_to_numpy(datatype)
    if not isinstance(data, list):
        raise ProtocolError(f"Tensor '{name}': data must be a JSON array, got {_json_kind(data)}")
    if dtype is not None and _holds_strings(data):
        raise ProtocolError(
            f"Tensor '{name}': {datatype} data must hold {_expected(dtype)}, but holds strings or "
            f"other values"
        )
    try:
        parsed = np.array(data, dtype=object if dtype is None else None)
    except ValueError:
        raise ProtocolError(f"Tensor '{name}': data is ragged (nested arrays of different lengths)") from None
    count = math.prod(shape)
    if parsed.size != count:
        raise ProtocolError(
            f"Tensor '{name}': shape {list(shape)} needs {count} elements, but data has {parsed.size}"
        )
    if dtype is None:
        items = parsed.reshape(-1).tolist()
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ProtocolError(
                    f"Tensor '{name}': BYTES data must hold JSON strings, but element {i} is "
                    f"{_json_kind(item)}"
                )
        return object_array([item.encode("utf-8", "surrogatepass") for item in items]).reshape(shape)
    if count == 0:
        return np.empty(shape, dtype)
    if dtype.kind in "iu" and parsed.dtype.kind in "fO":
        # numpy makes float64 (or objects) of integers beyond int64, losing the low digits of
        # UINT64 values over 2**53: such data is checked and converted from Python's ints.
        return _exact_integers(data, dtype, datatype, name).reshape(shape)
    if parsed.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        raise ProtocolError(
            f"Tensor '{name}': {datatype} data must hold {_expected(dtype)}, but holds {_kind_name(parsed)}"
        )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = parsed.min(), parsed.max()
        if low < info.min or high > info.max:
            raise ProtocolError(
                f"Tensor '{name}': {datatype} data must lie in [{info.min}, {info.max}], "
                f"but holds {low if low < info.min else high}"
            )
    elif dtype.kind == "f" and dtype.itemsize < 8:
        limit = float(np.finfo(dtype).max)
        if not np.abs(parsed).max() <= limit:  # too large, or NaN or infinity sent as such
            finite = parsed[np.isfinite(parsed)]
            if finite.size and np.abs(finite).max() > limit:  # the cast would make it infinite
                raise ProtocolError(
                    f"Tensor '{name}': {datatype} data must lie in [{-limit:g}, {limit:g}], "
                    f"but holds {finite[np.abs(finite).argmax()]:g}"
                )
    return parsed.astype(dtype, copy=False).reshape(shape)


def _holds_strings(data: list[Any]) -> bool:
    # numpy makes data holding a string a str array whose every element is as wide as the
    # longest string: one long string among many numbers would take far more than was sent.
    level = data
    while level:
        kinds = set(map(type, level))
        if str in kinds:
            return True
        if list not in kinds:
            return False
        level = list(itertools.chain.from_iterable(item for item in level if type(item) is list))
    return False


def _exact_integers(data: list[Any], dtype: np.dtype, datatype: str, name: str) -> np.ndarray:
    items = np.array(data, dtype=object).reshape(-1).tolist()
    info = np.iinfo(dtype)
    for item in items:
        if type(item) is int:
            continue
        if isinstance(item, float) and item.is_integer() and abs(item) >= 2**63:
            # An integer beyond the JSON parser's own ints (orjson's are 64-bit), made a float.
            raise ProtocolError(
                f"Tensor '{name}': {datatype} data must lie in [{info.min}, {info.max}], "
                f"but holds {item:.17g}"
            )
        kind = "non-integral numbers" if isinstance(item, float) else "strings or other values"
        raise ProtocolError(f"Tensor '{name}': {datatype} data must hold integers, but holds {kind}")
    low, high = min(items), max(items)
    if low < info.min or high > info.max:
        raise ProtocolError(
            f"Tensor '{name}': {datatype} data must lie in [{info.min}, {info.max}], "
            f"but holds {low if low < info.min else high}"
        )
    return np.array(items, dtype=dtype)


def tensor_to_json(array: np.ndarray, name: str = "") -> list[Any]:
    """The flat, row-major JSON ``data`` of a tensor: numbers, booleans, or strings.

    Raises:
        ProtocolError: a bytes element is not UTF-8, which a JSON string cannot carry.
    """
    if array.dtype.kind not in "OSU":
        items: list[Any] = array.reshape(-1).tolist()
        return items
    strings = []
    for i, item in enumerate(array.flat):
        if isinstance(item, bytes):
            try:
                strings.append(item.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    f"Tensor '{name}': BYTES element {i} is not UTF-8 ({exc.reason} at byte "
                    f"{exc.start}), so JSON cannot carry it; send it as binary data (the binary "
                    f"tensor extension: parameter binary_data, or gRPC)"
                ) from None
        else:
            strings.append(str(item))
    return strings


def read_tensor(entry: object, reader: BinaryReader, *, where: str = "input") -> tuple[str, np.ndarray]:
    """Decode one tensor entry of a request's ``inputs`` or a response's ``outputs``.

    Binary data (``parameters.binary_data_size``) is taken from ``reader``, so entries must be
    read in order. Shared-memory parameters are not handled here: a server resolves them first.

    Args:
        entry: the parsed JSON entry.
        reader: the binary part of the body.
        where: ``"input"`` or ``"output"``, for messages.

    Returns:
        ``(name, array)``.

    Raises:
        ProtocolError: a field is missing or malformed, or the data does not fit the shape.
    """
    if not isinstance(entry, dict):
        raise ProtocolError(f"Each {where} must be a JSON object, got {_json_kind(entry)}")
    name = entry.get("name")
    if not isinstance(name, str):
        raise ProtocolError(f"An {where} has no 'name' string: {_short(entry)}")
    datatype = entry.get("datatype")
    if not isinstance(datatype, str):
        raise ProtocolError(f"Tensor '{name}': 'datatype' must be a string, got {datatype!r}")
    shape = parse_shape(entry.get("shape"), name)
    parameters = parameters_of(entry, name)
    size = parameters.get(BINARY_DATA_SIZE)
    if size is not None:
        if "data" in entry:
            raise ProtocolError(f"Tensor '{name}' has both 'data' and parameter {BINARY_DATA_SIZE}; give one")
        if datatype not in _DATATYPES:
            datatype_to_numpy(datatype)  # raises: an unknown datatype reads better than a size mismatch
        return name, tensor_from_raw(reader.take(size, name), datatype, shape, name=name)
    if "data" not in entry:
        raise ProtocolError(f"Tensor '{name}' has no 'data' (nor parameter {BINARY_DATA_SIZE})")
    return name, tensor_from_json(entry["data"], datatype, shape, name=name)


def write_tensor(
    name: str, array: np.ndarray, *, binary: bool, datatype: str | None = None
) -> tuple[dict[str, Any], memoryview | None]:
    """Encode one tensor as an entry of a request's ``inputs`` or a response's ``outputs``.

    Args:
        name: the tensor's name.
        array: its value.
        binary: send the data as binary (after the JSON) rather than inline.
        datatype: the datatype to send (default: the array's).

    Returns:
        ``(entry, raw)``: the JSON entry, and with ``binary`` the bytes to append to the body
        (else ``None``).

    Raises:
        ProtocolError: the array has no protocol datatype.
    """
    if datatype is None:
        datatype = array_datatype(array)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if not binary:
        entry["data"] = tensor_to_json(array, name)
        return entry, None
    raw = tensor_to_raw(array, datatype)
    entry["parameters"] = {BINARY_DATA_SIZE: raw.nbytes}
    return entry, raw


def parameters_of(entry: Mapping[str, Any], name: str) -> dict[str, Any]:
    """An entry's ``parameters`` object (``{}`` when absent or null).

    Raises:
        ProtocolError: it is not a JSON object.
    """
    parameters = entry.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"'{name}': parameters must be a JSON object, got {_json_kind(parameters)}")
    return parameters


def _expected(dtype: np.dtype) -> str:
    return {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}[dtype.kind]


def _kind_name(parsed: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "non-integral numbers"}.get(
        parsed.dtype.kind, "strings or other values"
    )


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "MAX_ELEMENTS",
    "MAX_RANK",
    "check_shape",
    "parameters_of",
    "parse_shape",
    "read_tensor",
    "tensor_from_json",
    "tensor_to_json",
    "write_tensor",
]
