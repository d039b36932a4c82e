"""Raw contents split out of, and joined into, encoded inference messages."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.grpc import service_pb2
from neuropod.protocol.grpc_framing import (
    RAW_INPUT_FIELD,
    RAW_OUTPUT_FIELD,
    SPLIT_THRESHOLD,
    join_raw_contents,
    split_raw_contents,
)

Request = service_pb2.ModelInferRequest
Response = service_pb2.ModelInferResponse


def request_with(raws: list[bytes]) -> service_pb2.ModelInferRequest:
    request = Request(model_name="m", model_version="1", id="abc")
    request.parameters["priority"].int64_param = 3
    for i, raw in enumerate(raws):
        tensor = request.inputs.add(name=f"x{i}", datatype="UINT8")
        tensor.shape.append(len(raw))
    request.outputs.add(name="out")
    request.raw_input_contents.extend(raws)
    return request


@pytest.mark.parametrize("size", [4, SPLIT_THRESHOLD + 1, 3 << 20])
def test_split_gives_the_message_and_its_raw_contents(size):
    raws = [bytes(range(256)) * (size // 256) + b"z" * (size % 256), b"", b"\x07" * 9]
    request = request_with(raws)
    message, contents = split_raw_contents(request.SerializeToString(), Request, RAW_INPUT_FIELD)
    assert [bytes(raw) for raw in contents] == raws
    assert len(message.raw_input_contents) == 0
    del request.raw_input_contents[:]
    assert message == request


def test_large_raw_contents_are_views_of_the_message():
    data = request_with([b"\x01" * (1 << 20)]).SerializeToString()
    _, (raw,) = split_raw_contents(data, Request, RAW_INPUT_FIELD)
    assert isinstance(raw, memoryview) and raw.obj is data and raw.readonly
    array = np.frombuffer(raw, np.uint8)
    assert not array.flags.writeable and array.sum() == 1 << 20


def test_fields_in_any_order():
    raws = [b"\x02" * (SPLIT_THRESHOLD + 5), b"\x03" * 10]
    request = request_with(raws)
    contents_only = Request(raw_input_contents=raws).SerializeToString()
    del request.raw_input_contents[:]
    data = contents_only[:20_000] + contents_only[20_000:] + request.SerializeToString()
    message, contents = split_raw_contents(data, Request, RAW_INPUT_FIELD)
    assert message == request and [bytes(raw) for raw in contents] == raws


@pytest.mark.parametrize("size", [0, 5, SPLIT_THRESHOLD * 2])
def test_join_is_what_protobuf_parses(size):
    response = Response(model_name="m", model_version="1", id="7")
    response.outputs.add(name="out", datatype="FP32").shape.extend([size // 4])
    array = np.arange(size // 4, dtype=np.float32)
    raws = [array.view(np.uint8).data, b"", b"abc"]
    data = join_raw_contents(response, RAW_OUTPUT_FIELD, raws)
    parsed = Response.FromString(data)
    assert list(parsed.raw_output_contents) == [array.tobytes(), b"", b"abc"]
    assert parsed.model_name == "m" and parsed.outputs[0].name == "out"
    _message, contents = split_raw_contents(data, Response, RAW_OUTPUT_FIELD)
    assert [bytes(raw) for raw in contents] == list(parsed.raw_output_contents)


def large(data: bytes) -> bytes:
    """Pads a message past the split threshold with a field the walk must skip."""
    padding = Request(id="p" * (SPLIT_THRESHOLD + 1)).SerializeToString()
    return padding + data


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x0a\x05ab", "valid ModelInferRequest"),  # a string field cut short
        (large(b"\x3a\xff\xff\x7f" + b"\0" * 4), "ends inside a field"),  # raw entry cut short
        (large(b"\x3a"), "ends inside a varint"),
        (large(b"\x3b\x00"), "wire type 3"),  # groups are not in this proto
        (large(b"\xff" * 11), "longer than 10 bytes"),
    ],
)
def test_malformed_messages_are_protocol_errors(data, message):
    with pytest.raises(ProtocolError, match=message):
        split_raw_contents(data, Request, RAW_INPUT_FIELD)
