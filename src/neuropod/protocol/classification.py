"""Triton's classification extension: an output's top k classes instead of its values.

A requested output with the parameter ``classification`` = k (tritonclient's
``InferRequestedOutput(name, class_count=k)``) comes back as a ``BYTES`` tensor of the k
largest values of each item, largest first, each element ``"<value>:<index>"``, or
``"<value>:<index>:<label>"`` where the model has a label for that class. As in Triton:

- the value prints as C++'s ``std::to_string`` does: floats with six decimals, integers whole;
- an item is the whole output, or one row of dim 0 when the model batches (its
  ``max_batch_size`` > 0): the result's shape is then ``[B, k]``, else ``[k]``; k is cut to
  the item's element count, and the index is the position in the item read row-major;
- ties come out lower index first;
- line i of the output's label file is the label of class i (an empty or missing line: none).

>>> top_classes(np.array([0.1, 0.7, 0.2], np.float32), 2, ["cat", "dog", "emu"], batched=False)
array(['0.700000:1:dog', '0.200000:2:emu'], dtype=object)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuropod.protocol.datatypes import array_datatype
from neuropod.protocol.errors import ProtocolError

#: The request parameter of a requested output that asks for its top classes.
CLASSIFICATION = "classification"

#: The most elements one item may have (Triton's limit).
MAX_ITEM_SIZE = 1_000_000

_KINDS = "iu"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def top_classes(array: np.ndarray, k: int, labels: Sequence[str] | None, *, batched: bool) -> np.ndarray:
    """The top ``k`` classes of an output, as Triton's classification extension gives them.

    Args:
        array: the output the model produced.
        k: how many classes to give per item (at least 1).
        labels: class index -> label (``None``: no labels).
        batched: the model batches: each row of dim 0 is an item of its own.

    Returns:
        An object array of str, shape ``[B, k']`` when batched (and the output has a dim),
        else ``[k']``.

    Raises:
        ProtocolError: the output's datatype cannot be ranked (``FP16``, ``BF16``, ``BOOL``,
            ``BYTES``), or an item has more than ``MAX_ITEM_SIZE`` elements.
    """
    if not (array.dtype.kind in _KINDS or array.dtype in _FLOATS):
        raise ProtocolError(
            f"class result not available for output due to unsupported type '{array_datatype(array)}' "
            f"(classification ranks integer, FP32 and FP64 outputs)"
        )
    rows = array.reshape(array.shape[0], -1) if batched and array.ndim else array.reshape(1, -1)
    size = rows.shape[1]
    if size > MAX_ITEM_SIZE:
        raise ProtocolError(
            f"classification output tensor too large: {size} elements per item, at most {MAX_ITEM_SIZE}"
        )
    count = min(k, size)
    is_float = array.dtype.kind == "f"
    out = np.empty((rows.shape[0], count), dtype=object)
    for r, row in enumerate(rows):
        # A stable sort of the reversed row, reversed: largest first, ties lower index first.
        order = size - 1 - np.argsort(row[::-1], kind="stable")[::-1][:count]
        for c, index in enumerate(order.tolist()):
            value = row[index]
            text = f"{value:f}" if is_float else str(int(value))
            label = labels[index] if labels is not None and index < len(labels) else ""
            out[r, c] = f"{text}:{index}:{label}" if label else f"{text}:{index}"
    return out if batched and array.ndim else out.reshape(count)


def class_count(value: object, *, grpc: bool) -> int:
    """The class count a requested output's ``classification`` parameter asks for.

    Args:
        value: the parameter as sent.
        grpc: it came over gRPC (an ``int64_param``, at least 1) rather than HTTP (a JSON
            unsigned integer, 0 meaning no classification).

    Returns:
        k (0: no classification).

    Raises:
        ProtocolError: the value has the wrong type or range, with Triton's texts.
    """
    if grpc:
        if type(value) is not int:
            raise ProtocolError(
                f"invalid value type for '{CLASSIFICATION}' parameter, expected int64_param, got {value!r}"
            )
        if value <= 0:
            raise ProtocolError(
                f"invalid value for '{CLASSIFICATION}' parameter, expected >= 0, got {value} "
                f"(the class count must be at least 1)"
            )
        return value
    if type(value) is not int or value < 0:
        raise ProtocolError(
            f"Unable to set '{CLASSIFICATION}': expected an unsigned integer (the class count), got {value!r}"
        )
    return value


def read_labels(text: str) -> list[str]:
    """The labels of a label file's text: line i is the label of class i."""
    return [line.strip() for line in text.splitlines()]


__all__ = ["CLASSIFICATION", "MAX_ITEM_SIZE", "class_count", "read_labels", "top_classes"]
