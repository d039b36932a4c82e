"""Variable-length elements as a spec wants them: text for ``string`` tensors, bytes for ``bytes``.

Some sources give bytes whatever they mean: the protocol's ``BYTES`` decoders
(``neuropod.protocol``: object arrays of ``bytes``; a JSON string is its UTF-8 bytes, as in
Triton), TensorFlow's and onnxruntime's string tensors. Only the side that knows the tensor's
spec can say what they are: a server for its inputs, a client for the outputs it reads, a
backend for its model's outputs. ``BytesConformer`` is that step, built once per list of specs:

- a ``string`` tensor's elements must be UTF-8 and become a numpy ``str`` array; anything
  else is a ``ValidationError`` (a 400 when serving) naming the tensor and the first bad element;
- a ``bytes`` tensor's elements stay ``bytes``, exactly as sent (``str`` elements, which a
  caller may hand over, are encoded to UTF-8).

Arrays of any other kind pass unchanged, for the spec check to judge.

>>> conform = BytesConformer([TensorSpec("text", "string", (None,)), TensorSpec("raw", "bytes", (None,))])
>>> out = conform({"text": np.array([b"hi"], dtype=object), "raw": np.array([b"\\xff\\x00"], dtype=object)})
>>> out["text"], out["raw"]
(array(['hi'], dtype='<U2'), array([b'\\xff\\x00'], dtype=object))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from neuropod.errors import ValidationError
from neuropod.spec.dtypes import STRING, VARIABLE_LENGTH
from neuropod.spec.tensor_spec import TensorSpec


def as_text(array: np.ndarray, name: str, where: str = "input", *, sent: bool = False) -> np.ndarray:
    """A ``string`` tensor's elements as a numpy ``str`` array.

    Args:
        array: an object array of ``bytes`` (or ``str``), or a numpy ``S`` / ``U`` array.
        name: the tensor's name, for messages.
        where: ``"input"`` or ``"output"``, for messages.
        sent: the elements came over the wire (a server's request): refuse a ``str`` array far
            larger than their text (see ``STRING_EXPANSION``).

    Returns:
        The ``str`` array; ``array`` itself when it is one, or when an element is neither
        ``bytes`` nor ``str`` (for the spec check to refuse).

    Raises:
        ValidationError: an element is not UTF-8, or (``sent``) the ``str`` array would be far
            larger than the text.
    """
    if array.dtype.kind == "U":
        return array
    items = array.reshape(-1).tolist()
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            try:
                items[i] = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError(
                    f"Tensor '{name}': element {i} is not UTF-8 text ({exc.reason} at byte "
                    f"{exc.start}), but '{name}' is a string {where}, which holds text; a tensor of "
                    f"dtype bytes takes any bytes"
                ) from None
        elif not isinstance(item, str):
            return array
    if sent:
        _check_width(items, name)
    return np.array(items, dtype=str).reshape(array.shape)


#: A numpy ``str`` array is fixed-width: 4 bytes per character of its longest element, for every
#: element. One long element among many short ones makes it far larger than the text (a 4 MB
#: request could ask for terabytes), so ``as_text`` refuses an array over ``STRING_ARRAY_SLACK``
#: bytes that holds more than ``STRING_EXPANSION`` times the characters given.
STRING_EXPANSION = 16
STRING_ARRAY_SLACK = 16 << 20


def _check_width(items: list[str], name: str) -> None:
    count = len(items)
    longest = max(map(len, items), default=0)
    width = count * longest
    if width * 4 > STRING_ARRAY_SLACK and width > STRING_EXPANSION * (sum(map(len, items)) + count):
        raise ValidationError(
            f"Tensor '{name}': its {count} elements would take {width * 4} bytes as a numpy str "
            f"array, where each element is as wide as the longest ({longest} characters): over "
            f"{STRING_EXPANSION} times their text. Send elements of more even lengths, fewer per "
            f"request, or declare the tensor as bytes"
        )


def as_bytes(array: np.ndarray) -> np.ndarray:
    """A ``bytes`` tensor's elements as an object array of ``bytes`` (``str`` encoded to UTF-8).

    Returns:
        The object array; ``array`` itself when it is one, or when an element is neither
        ``bytes`` nor ``str`` (for the spec check to refuse).
    """
    items = array.reshape(-1).tolist()  # S arrays give bytes (their trailing NULs already gone)
    if array.dtype.kind == "O" and all(type(item) is bytes for item in items):
        return array
    for i, item in enumerate(items):
        if isinstance(item, str):
            items[i] = item.encode("utf-8")
        elif not isinstance(item, bytes):
            return array
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(array.shape)


class BytesConformer:
    """Turns decoded ``BYTES`` tensors into what their specs hold (see the module docstring).

    Args:
        specs: the tensors' specs; only ``string`` and ``bytes`` ones matter.
        where: ``"input"`` or ``"output"``, for messages.
        sent: the tensors come from a request a server received (see ``as_text``).
    """

    def __init__(self, specs: Iterable[TensorSpec], where: str = "input", *, sent: bool = False):
        self._types = {spec.name: spec.dtype for spec in specs if spec.dtype in VARIABLE_LENGTH}
        self._where = where
        self._sent = sent

    def __call__(self, tensors: Mapping[str, Any]) -> Any:
        """``tensors`` with each ``string`` / ``bytes`` tensor conformed; the same mapping when
        there are none.

        Raises:
            ValidationError: a ``string`` tensor's element is not UTF-8, or (``sent``) its
                ``str`` array would be far larger than its text.
        """
        if not self._types:
            return tensors
        out = dict(tensors)
        for name, dtype in self._types.items():
            array = out.get(name)
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "OSU":
                continue
            if dtype == STRING:
                out[name] = as_text(array, name, self._where, sent=self._sent)
            else:
                out[name] = as_bytes(array)
        return out


__all__ = ["BytesConformer", "as_bytes", "as_text"]
