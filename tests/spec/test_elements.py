"""Variable-length elements as a spec wants them: text for string tensors, exact bytes for bytes."""

from __future__ import annotations

import numpy as np
import pytest

from neuropod.errors import ValidationError
from neuropod.spec import TensorSpec
from neuropod.spec.elements import BytesConformer, as_bytes, as_text

RAW = [b"\x00\xff\xfe", b"a\x00b\x00\x00", b"", "é".encode(), b"\x80"]


def byte_array(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def test_conformer_makes_text_of_string_tensors_and_keeps_bytes():
    conform = BytesConformer([TensorSpec("s", "string", (None,)), TensorSpec("b", "bytes", (None,))])
    out = conform({"s": byte_array([b"a", "é".encode()]), "b": byte_array(RAW), "n": np.zeros(1)})
    assert out["s"].dtype.kind == "U" and out["s"].tolist() == ["a", "é"]
    assert out["b"].tolist() == RAW
    with pytest.raises(ValidationError) as info:
        conform({"s": byte_array([b"ok", b"\xff\xfe"])})
    assert str(info.value) == (
        "Tensor 's': element 1 is not UTF-8 text (invalid start byte at byte 0), but 's' is "
        "a string input, which holds text; a tensor of dtype bytes takes any bytes"
    )


def test_conformer_leaves_what_the_spec_check_must_refuse():
    conform = BytesConformer([TensorSpec("s", "string", (None,)), TensorSpec("b", "bytes", (None,))])
    numbers, mixed = np.zeros(2, np.float32), np.array([b"a", 1], dtype=object)
    out = conform({"s": mixed, "b": numbers})
    assert out["s"] is mixed and out["b"] is numbers
    assert as_bytes(np.array(["a", 2], dtype=object)).tolist() == ["a", 2]
    assert as_text(np.array([b"a", None], dtype=object), "s").tolist() == [b"a", None]
    assert BytesConformer([TensorSpec("x", "float32", (1,))])({"x": numbers})["x"] is numbers


def test_conformer_encodes_text_for_bytes_tensors():
    conform = BytesConformer([TensorSpec("b", "bytes", (None,))])
    out = conform({"b": np.array(["é", "a"])})
    assert out["b"].dtype == object and out["b"].tolist() == ["é".encode(), b"a"]
    assert conform({"b": np.array([b"x\x00y"])})["b"].tolist() == [b"x\x00y"]
