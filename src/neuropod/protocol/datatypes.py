"""Tensor element types: the protocol's datatype names, neuropod's spec dtypes, numpy dtypes.

The Open Inference Protocol names element types ``FP32``, ``INT64``, ``BYTES``...; a neuropod
spec names them ``float32``, ``int64``, ``string``; Triton's model configuration names them
``TYPE_FP32``, ``TYPE_INT64``, ``TYPE_STRING``. Every mapping between them lives here.

``BF16`` is a protocol datatype that no neuropod spec can hold, so it is refused like an
unknown name.

``BYTES`` is both of neuropod's variable-length types, ``string`` (text) and ``bytes``
(arbitrary bytes): the protocol's elements are bytes, and a server that knows a tensor's spec
decides what they are (``neuropod.spec.elements``). Triton's configuration names it
``TYPE_STRING``. A datatype with no spec behind it (another server's ``BYTES``) reads as
``string``.

>>> spec_dtype_to_datatype("float32"), datatype_to_spec_dtype("BYTES"), spec_dtype_to_datatype("bytes")
('FP32', 'string', 'BYTES')
>>> datatype_to_numpy("INT16").name
'int16'
"""

from __future__ import annotations

import numpy as np

from neuropod.protocol.errors import ProtocolError

#: Protocol datatype -> neuropod spec dtype, for every datatype a neuropod tensor can hold.
_SPEC_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "string",
}

#: Every protocol datatype neuropod accepts, in the protocol's order.
DATATYPES: tuple[str, ...] = tuple(_SPEC_DTYPES)

#: The datatype of string tensors.
BYTES = "BYTES"

_DATATYPES = {dtype: datatype for datatype, dtype in _SPEC_DTYPES.items()} | {"bytes": BYTES}
# Explicitly little-endian: the protocol's byte order, whatever the host's.
_NUMPY: dict[str, np.dtype] = {
    datatype: np.dtype(dtype).newbyteorder("<")
    for datatype, dtype in _SPEC_DTYPES.items()
    if datatype != BYTES
}
_NUMPY_KINDS = {np.dtype(dtype): datatype for datatype, dtype in _SPEC_DTYPES.items() if datatype != BYTES}
_CONFIG_PREFIX = "TYPE_"


def spec_dtype_to_datatype(dtype: str) -> str:
    """The protocol datatype of a neuropod spec dtype (``"float32"`` -> ``"FP32"``).

    Args:
        dtype: a canonical spec dtype name (``TensorSpec.dtype``).

    Returns:
        The datatype name; ``"BYTES"`` for ``"string"`` and ``"bytes"``.

    Raises:
        ProtocolError: ``dtype`` is not a spec dtype.
    """
    try:
        return _DATATYPES[dtype]
    except KeyError:
        raise ProtocolError(
            f"{dtype!r} is not a neuropod dtype; expected one of: {', '.join(_DATATYPES)}"
        ) from None


def datatype_to_spec_dtype(datatype: str) -> str:
    """The neuropod spec dtype of a protocol datatype (``"FP32"`` -> ``"float32"``).

    Raises:
        ProtocolError: the datatype is unknown, or one neuropod cannot hold (``BF16``).
    """
    try:
        return _SPEC_DTYPES[datatype]
    except (KeyError, TypeError):
        raise ProtocolError(_unknown(datatype)) from None


def datatype_to_numpy(datatype: str) -> np.dtype | None:
    """The little-endian numpy dtype of a protocol datatype; ``None`` for ``BYTES``.

    Raises:
        ProtocolError: the datatype is unknown or unsupported.
    """
    dtype = _NUMPY.get(datatype)
    if dtype is None and datatype != BYTES:
        raise ProtocolError(_unknown(datatype))
    return dtype


def array_datatype(array: np.ndarray) -> str:
    """The protocol datatype of a numpy array; str, bytes and object arrays are ``BYTES``.

    Raises:
        ProtocolError: the array's element type has no protocol datatype (complex, datetime...).
    """
    dtype = array.dtype
    if dtype.kind in "USO":
        return BYTES
    datatype = _NUMPY_KINDS.get(dtype if dtype.isnative else dtype.newbyteorder("="))
    if datatype is None:
        raise ProtocolError(
            f"Arrays of {dtype.name} have no protocol datatype; expected one of the numpy "
            f"types {', '.join(str(t) for t in _NUMPY_KINDS)}, or strings"
        )
    return datatype


def element_size(datatype: str) -> int | None:
    """Bytes per element of a datatype; ``None`` for ``BYTES`` (elements vary in size).

    Raises:
        ProtocolError: the datatype is unknown or unsupported.
    """
    dtype = datatype_to_numpy(datatype)
    return None if dtype is None else dtype.itemsize


def datatype_to_config_type(datatype: str) -> str:
    """Triton's model-configuration name of a datatype (``"FP32"`` -> ``"TYPE_FP32"``).

    ``BYTES`` is ``"TYPE_STRING"`` there.

    Raises:
        ProtocolError: the datatype is unknown or unsupported.
    """
    datatype_to_spec_dtype(datatype)
    return _CONFIG_PREFIX + ("STRING" if datatype == BYTES else datatype)


def config_type_to_datatype(config_type: str) -> str:
    """The datatype of a Triton model-configuration type name (``"TYPE_STRING"`` -> ``"BYTES"``).

    Raises:
        ProtocolError: the name is not a configuration type of a supported datatype.
    """
    name = config_type[len(_CONFIG_PREFIX) :] if config_type.startswith(_CONFIG_PREFIX) else ""
    datatype = BYTES if name == "STRING" else name
    if datatype not in _SPEC_DTYPES:
        raise ProtocolError(
            f"{config_type!r} is not a supported model-configuration data type; expected one of: "
            + ", ".join(datatype_to_config_type(d) for d in DATATYPES)
        )
    return datatype


def _unknown(datatype: object) -> str:
    return f"Datatype {datatype!r} is not supported; expected one of: {', '.join(DATATYPES)}"
