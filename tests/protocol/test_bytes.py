"""BYTES elements through the codecs: bytes exactly as sent, text only where the spec says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuropod.errors import ValidationError
from neuropod.protocol import InferRequest, InferResponse, OutputTensor, ProtocolError, http_codec
from neuropod.protocol.binary import decode_bytes_elements, encode_bytes_elements, tensor_from_raw
from neuropod.protocol.datatypes import datatype_to_config_type, spec_dtype_to_datatype
from neuropod.protocol.tensors import tensor_from_json, tensor_to_json
from neuropod.spec import TensorSpec
from neuropod.spec.elements import BytesConformer

grpc_codec = pytest.importorskip("neuropod.protocol.grpc_codec")
from neuropod.protocol.grpc import service_pb2, tensor_from_message  # noqa: E402

#: NULs (leading, inner, trailing), invalid UTF-8, an empty element, valid UTF-8.
RAW = [b"\x00\xff\xfe", b"a\x00b\x00\x00", b"", "é".encode(), b"\x80"]


def byte_array(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def test_bytes_and_string_share_the_bytes_datatype():
    assert spec_dtype_to_datatype("bytes") == spec_dtype_to_datatype("string") == "BYTES"
    assert datatype_to_config_type("BYTES") == "TYPE_STRING"


def test_binary_bytes_come_back_exactly():
    encoded = encode_bytes_elements(byte_array(RAW))
    decoded = tensor_from_raw(encoded, "BYTES", (5,))
    assert decoded.dtype == object and decoded.tolist() == RAW
    assert all(type(item) is bytes for item in decoded)
    assert decode_bytes_elements(bytearray(encoded)).tolist() == RAW


@pytest.mark.parametrize("binary", [True, False])
def test_http_requests_carry_bytes(binary):
    utf8 = byte_array([b"plain", "é".encode()])
    for value in (byte_array(RAW), utf8) if binary else (utf8,):
        header, raws = http_codec.encode_request(InferRequest({"b": value}), binary=binary)
        body = b"".join([header, *raws])
        received = http_codec.decode_request(body, len(header) if binary else None).inputs["b"]
        assert received.dtype == object and received.tolist() == value.tolist()


def test_json_strings_are_their_utf8_bytes():
    assert tensor_from_json(["é", "a\u0000"], "BYTES", (2,)).tolist() == ["é".encode(), b"a\x00"]
    # a lone surrogate is kept (as it would be encoded), for the spec to judge
    assert tensor_from_json(["\ud800"], "BYTES", (1,)).tolist() == [b"\xed\xa0\x80"]


def test_json_cannot_carry_bytes_that_are_not_utf8():
    with pytest.raises(ProtocolError) as info:
        tensor_to_json(byte_array([b"ok", b"\xff"]), "img")
    assert str(info.value) == (
        "Tensor 'img': BYTES element 1 is not UTF-8 (invalid start byte at byte 0), so JSON cannot "
        "carry it; send it as binary data (the binary tensor extension: parameter binary_data, or gRPC)"
    )
    response = InferResponse([OutputTensor("img", byte_array([b"\xff"]), binary=False)], "m")
    with pytest.raises(ProtocolError, match="Tensor 'img': BYTES element 0 is not UTF-8"):
        http_codec.encode_response(response)
    # as binary data the same output goes through
    response = InferResponse([OutputTensor("img", byte_array([b"\xff"]), binary=True)], "m")
    header, raws = http_codec.encode_response(response)
    assert http_codec.decode_response(b"".join([header, *raws]), len(header)).arrays()["img"].tolist() == [
        b"\xff"
    ]


def test_grpc_bytes_contents_and_raw_contents_carry_bytes():
    message = service_pb2.ModelInferRequest.InferInputTensor(name="b", datatype="BYTES", shape=[5])
    message.contents.bytes_contents.extend(RAW)
    assert tensor_from_message(message, None).tolist() == RAW
    request = InferRequest({"b": byte_array(RAW)}, model_name="m")
    received = grpc_codec.read_request(*grpc_codec.split_request(grpc_codec.encode_request(request)))
    assert received.inputs["b"].tolist() == RAW


def test_json_of_a_string_with_a_lone_surrogate_is_refused_for_string_tensors():
    body = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}]}
    request = http_codec.decode_request(json.dumps(body).encode(), None)
    with pytest.raises(ValidationError, match="Tensor 's': element 0 is not UTF-8 text"):
        BytesConformer([TensorSpec("s", "string", (1,))])(request.inputs)
