"""Property-based tests of the protocol's decoders: hostile, almost valid, and round-tripped input.

Whatever a client (or a server, for the remote backend) sends, decoding gives a valid request or
response, or raises ``ProtocolError`` (answered 400 / ``INVALID_ARGUMENT``): never another
exception, and never an allocation sized from what the input merely claims.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuropod.protocol import (
    DATATYPES,
    BinaryReader,
    InferRequest,
    InferResponse,
    OutputTensor,
    ProtocolError,
    SharedMemoryInput,
    datatype_to_numpy,
    decode_bytes_elements,
    encode_bytes_elements,
    http_codec,
    json_codec,
    parse_header_length,
    parse_shape,
    tensor_from_json,
    tensor_from_raw,
)
from neuropod.protocol.tensors import check_shape
from tests.properties import bounded_allocation, dims, examples, json_values

pytest.importorskip("tritonclient.grpc")
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import _utils as grpc_utils

from neuropod.protocol import grpc_codec, grpc_framing
from neuropod.protocol.grpc import service_pb2

# --- strategies -------------------------------------------------------------------------------

#: Datatype names: every valid one, and some that are not.
datatypes = (
    st.sampled_from(DATATYPES) | st.sampled_from(["BF16", "FP8", "fp32", "", "STRING"]) | st.text(max_size=8)
)

#: Text a string tensor can hold unchanged: numpy str arrays drop trailing NULs, and lone
#: surrogates are not text (UTF-8 cannot encode them).
tensor_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, datatype: str | None = None) -> tuple[str, np.ndarray]:
    """A datatype and an array of it (str for ``BYTES``, as clients give them), non-finite floats
    included."""
    datatype = datatype or draw(st.sampled_from(DATATYPES))
    shape = draw(shapes)
    if datatype == "BYTES":
        items = draw(st.lists(tensor_text, min_size=math.prod(shape), max_size=math.prod(shape)))
        return datatype, np.array(items, dtype=str).reshape(shape)
    dtype = datatype_to_numpy(datatype)
    assert dtype is not None
    return datatype, draw(hnp.arrays(dtype.newbyteorder("="), shape))


@st.composite
def named_tensors(draw: st.DrawFn) -> dict[str, tuple[str, np.ndarray]]:
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3, unique=True))
    return {name: draw(tensors()) for name in names}


def utf8(items: Any) -> list[bytes]:
    """``BYTES`` elements as their bytes (the decoders give bytes; a client may give str)."""
    return [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in items]


def assert_same(got: np.ndarray, datatype: str, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    if datatype == "BYTES":
        assert got.dtype.kind in "OSU"
        assert utf8(got.flat) == utf8(expected.flat)
    else:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def check_request(request: InferRequest) -> None:
    """What a decoded request always is: inputs of protocol types, each the shape it claims."""
    assert request.inputs
    for name, value in request.inputs.items():
        json_codec.dumps({"error": f"Tensor '{name}'"})  # a message naming it can be sent
        if isinstance(value, SharedMemoryInput):
            assert isinstance(value.datatype, str)
            assert all(type(dim) is int and dim >= 0 for dim in value.shape)
        else:
            assert isinstance(value, np.ndarray)
            if value.dtype.kind == "O":  # BYTES: each element's bytes
                assert all(type(item) is bytes for item in value.flat)
            else:
                assert value.dtype.newbyteorder("<") in {
                    datatype_to_numpy(d) for d in DATATYPES if d != "BYTES"
                }
    for output in request.outputs or ():
        assert isinstance(output.name, str) and isinstance(output.parameters, dict)
        assert type(output.class_count) is int and output.class_count >= 0


def refused_or(check: Callable[[Any], None], decode: Callable[[], Any]) -> None:
    """Decode; a result must pass ``check``, and the only error allowed is ``ProtocolError``,
    whose message a server can send back (as ``{"error": message}``)."""
    try:
        result = decode()
    except ProtocolError as exc:
        json_codec.dumps({"error": str(exc)})
        return
    check(result)


# --- the Inference-Header-Content-Length header ------------------------------------------------


@given(value=st.text(max_size=30) | st.binary(max_size=30) | st.integers(0, 10**6).map(str))
@example(value="²")  # a digit to str.isdigit, not to int()
@example(value=b"\xb2")  # the same in latin-1
@example(value="١٢")  # Arabic-Indic digits: no HTTP client sends a length so
@example(value="9" * 5000)  # past Python's limit on int() of a string
def test_header_length_is_a_decimal_integer_or_refused(value: str | bytes) -> None:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    try:
        length = parse_header_length(value)
    except ProtocolError:
        stripped = text.strip()
        assert not (stripped.isascii() and stripped.isdigit() and len(stripped) <= 20)
        return
    assert length == int(text.strip()) and text.strip().isascii()


# --- HTTP bodies --------------------------------------------------------------------------------


@given(body=st.binary(max_size=300), header_length=st.none() | st.integers(-5, 310))
def test_arbitrary_bytes_are_a_request_or_refused(body: bytes, header_length: int | None) -> None:
    with bounded_allocation(len(body)):
        refused_or(check_request, lambda: http_codec.decode_request(body, header_length))


entries = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=4) | json_values,
        "datatype": datatypes | json_values,
        "shape": st.lists(dims | st.integers(-3, -1), max_size=4) | json_values,
        "data": json_values,
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "binary_data_size": st.integers(-1, 40) | json_values,
                "shared_memory_region": json_values,
                "shared_memory_byte_size": json_values,
            },
        )
        | json_values,
    },
)
documents = st.fixed_dictionaries(
    {"inputs": st.lists(entries | json_values, max_size=3) | json_values},
    optional={
        "id": json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=3) | json_values},
                optional={
                    "parameters": st.dictionaries(
                        st.sampled_from(["binary_data", "classification", "shared_memory_region", "x"]),
                        json_values,
                    )
                    | json_values
                },
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_output", "priority"]), json_values)
        | json_values,
    },
)


@given(document=documents | json_values, binary=st.binary(max_size=64))
@example(
    document={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [math.inf]}]}, binary=b""
)
# json.loads reads lone surrogate escapes, orjson writes none: the error naming it could not be sent
@example(document={"inputs": [{"name": "\ud800", "datatype": "FP32", "shape": [1]}]}, binary=b"")
def test_arbitrary_json_is_a_request_or_refused(document: Any, binary: bytes) -> None:
    header = json.dumps(document).encode()
    body = header + binary
    with bounded_allocation(len(body)):
        refused_or(check_request, lambda: http_codec.decode_request(body, len(header)))


@given(document=documents | json_values, binary=st.binary(max_size=64))
def test_arbitrary_json_is_a_response_or_refused(document: Any, binary: bytes) -> None:
    if isinstance(document, dict) and "inputs" in document:
        document["outputs"] = document.pop("inputs")
    header = json.dumps(document).encode()
    body = header + binary

    def check(response: InferResponse) -> None:
        for output in response.outputs:
            assert isinstance(output.array, np.ndarray) and output.datatype in DATATYPES

    with bounded_allocation(len(body)):
        refused_or(check, lambda: http_codec.decode_response(body, len(header)))


# Almost-valid requests: a valid one with exactly one thing wrong, so that decoding gets past
# the first checks and into the tensors.

_ENTRY_FIELDS = ("name", "datatype", "shape", "data", "parameters", "binary_data_size")


@st.composite
def corrupted_bodies(draw: st.DrawFn) -> tuple[bytes, int | None, dict[str, tuple[str, np.ndarray]]]:
    """A valid request's body with one field corrupted, its header length, and the tensors sent
    that the corruption left alone."""
    sent = draw(named_tensors())
    binary = draw(st.booleans())
    request = InferRequest({name: array for name, (_datatype, array) in sent.items()})
    header, raws = http_codec.encode_request(request, binary=binary)
    document = json.loads(header)
    tail = b"".join(bytes(raw) for raw in raws)
    header_length: int | None = len(header) if binary else None
    where = draw(st.sampled_from(["entry", "document", "tail", "header_length", "duplicate"]))
    untouched = {}
    if where == "entry":
        entry = draw(st.sampled_from(document["inputs"]))
        untouched = {name: value for name, value in sent.items() if name != entry["name"]}
        field = draw(st.sampled_from(_ENTRY_FIELDS))
        if field == "binary_data_size":
            entry.setdefault("parameters", {})[field] = draw(st.integers(-2, 2**64) | json_values)
        elif draw(st.booleans()):
            entry.pop(field, None)
        elif field == "shape":
            entry[field] = draw(st.lists(dims | st.integers(-3, -1), max_size=4) | json_values)
        elif field == "datatype":
            entry[field] = draw(datatypes | json_values)
        elif field == "data":
            entry[field] = draw(st.lists(json_values, max_size=6) | json_values)
        else:
            entry[field] = draw(json_values)
    elif where == "document":
        field = draw(st.sampled_from(["inputs", "outputs", "parameters", "id"]))
        document[field] = draw(json_values)
        untouched = {} if field == "inputs" else sent
    elif where == "tail":
        cut = draw(st.integers(0, len(tail)))
        tail = tail[:cut] + draw(st.binary(max_size=8))
    elif where == "header_length":
        header_length = draw(st.none() | st.integers(-2, len(header) + len(tail) + 2))
    else:
        document["inputs"].append(dict(draw(st.sampled_from(document["inputs"]))))
    new_header = json.dumps(document).encode()
    if header_length is not None and where != "header_length":
        header_length = len(new_header)
    return new_header + tail, header_length, untouched


@given(case=corrupted_bodies())
def test_an_almost_valid_request_is_decoded_or_refused(
    case: tuple[bytes, int | None, dict[str, tuple[str, np.ndarray]]],
) -> None:
    body, header_length, untouched = case

    def check(request: InferRequest) -> None:
        check_request(request)
        for name, (datatype, array) in untouched.items():
            assert_same(request.inputs[name], datatype, array)  # type: ignore[arg-type]

    with bounded_allocation(len(body)):
        refused_or(check, lambda: http_codec.decode_request(body, header_length))


@given(sent=named_tensors(), binary=st.booleans())
@example(sent={"x": ("FP32", np.array([np.inf, -np.inf, np.nan], np.float32))}, binary=False)
@example(sent={"x": ("FP16", np.array([np.inf, 1.0], np.float16))}, binary=False)
def test_http_request_round_trip(sent: dict[str, tuple[str, np.ndarray]], binary: bool) -> None:
    request = InferRequest({name: array for name, (_datatype, array) in sent.items()}, id="r")
    header, raws = http_codec.encode_request(request, binary=binary)
    received = http_codec.decode_request(header + b"".join(bytes(raw) for raw in raws), len(header))
    assert received.id == "r" and received.inputs.keys() == sent.keys()
    for name, (datatype, array) in sent.items():
        assert_same(received.inputs[name], datatype, array)  # type: ignore[arg-type]


@given(sent=named_tensors(), binary=st.booleans())
def test_http_response_round_trip_to_the_project_and_tritonclient(
    sent: dict[str, tuple[str, np.ndarray]], binary: bool
) -> None:
    outputs = [OutputTensor(name, array, datatype, binary) for name, (datatype, array) in sent.items()]
    header, raws = http_codec.encode_response(InferResponse(outputs, "m", "1", "7"))
    body = header + b"".join(bytes(raw) for raw in raws)
    length = len(header) if raws else None
    received = http_codec.decode_response(body, length)
    assert (received.model_name, received.model_version, received.id) == ("m", "1", "7")
    for output, (name, (datatype, array)) in zip(received.outputs, sent.items(), strict=True):
        assert (output.name, output.datatype) == (name, datatype)
        assert_same(output.array, datatype, array)
    result = httpclient.InferenceServerClient.parse_response_body(body, header_length=length)
    for name, (datatype, array) in sent.items():
        assert_same(result.as_numpy(name), datatype, array)  # BYTES: bytes binary, str inline


@given(sent=named_tensors(), binary=st.booleans())
def test_tritonclient_http_requests_decode_to_what_was_sent(
    sent: dict[str, tuple[str, np.ndarray]], binary: bool
) -> None:
    inputs = []
    for name, (datatype, array) in sent.items():
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        value = array.astype(object) if datatype == "BYTES" else array
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs)
    request = http_codec.decode_request(body, json_size)
    for name, (datatype, array) in sent.items():
        assert_same(request.inputs[name], datatype, array)  # type: ignore[arg-type]


# --- tensors ------------------------------------------------------------------------------------


@given(
    data=json_values | st.lists(json_values, max_size=8),
    datatype=datatypes,
    shape=st.lists(dims, max_size=4),
)
@example(data=["x" * 4000, *[0] * 4000], datatype="FP32", shape=[4001])  # a str array 64 MB wide
@example(data=["x" * 4000, *[""] * 4000], datatype="BYTES", shape=[4001])
@example(data=[math.nan, 1e6], datatype="FP16", shape=[2])  # a NaN hid the value out of range
def test_json_data_is_a_tensor_of_its_shape_or_refused(data: Any, datatype: str, shape: list[int]) -> None:
    def check(array: np.ndarray) -> None:
        assert array.shape == tuple(shape)
        if datatype == "BYTES":
            assert array.dtype.kind == "O" and all(type(item) is bytes for item in array.flat)
            return
        assert array.dtype == datatype_to_numpy(datatype)
        if array.dtype.kind == "f":  # a finite value never becomes infinite, nor the reverse
            sent = np.array(data, dtype=np.float64).reshape(-1)
            assert np.isfinite(array.reshape(-1)).tolist() == np.isfinite(sent).tolist()

    def decode() -> np.ndarray:
        # Callers check the shape first (parse_shape), as read_tensor does.
        return tensor_from_json(data, datatype, parse_shape(shape, "x"), name="x")

    with bounded_allocation(len(json.dumps(data))):
        refused_or(check, decode)


@given(buffer=st.binary(max_size=64), datatype=datatypes, shape=st.lists(dims, max_size=4))
@example(buffer=b"\x10\x00\x00\x00" * 0, datatype="FP64", shape=[2**62])
@example(buffer=b"", datatype="BYTES", shape=[2**62, 0])
def test_raw_data_is_a_tensor_of_its_shape_or_refused(buffer: bytes, datatype: str, shape: list[int]) -> None:
    def check(array: np.ndarray) -> None:
        assert array.shape == tuple(shape)

    def decode() -> np.ndarray:
        # Callers check the shape first (check_shape), as every decoder does.
        return tensor_from_raw(buffer, datatype, check_shape(tuple(shape), "x"), name="x")

    with bounded_allocation(len(buffer)):
        refused_or(check, decode)


@given(items=st.lists(st.binary(max_size=8) | tensor_text, max_size=20))
def test_bytes_elements_round_trip(items: list[bytes | str]) -> None:
    encoded = encode_bytes_elements(items)
    with bounded_allocation(len(encoded)):
        decoded = decode_bytes_elements(encoded, len(items), name="s")
    assert decoded.tolist() == utf8(items)


@given(buffer=st.binary(max_size=80), count=st.none() | st.integers(0, 2**62))
def test_arbitrary_bytes_elements_are_elements_or_refused(buffer: bytes, count: int | None) -> None:
    def check(array: np.ndarray) -> None:
        assert array.dtype.kind == "O" and array.ndim == 1
        assert all(type(item) is bytes for item in array.flat)
        assert count is None or array.size == count

    with bounded_allocation(len(buffer)):
        refused_or(check, lambda: decode_bytes_elements(buffer, count, name="s"))


@given(data=st.binary(max_size=40), sizes=st.lists(st.integers(-2, 50) | json_values, max_size=5))
def test_binary_reader_hands_out_exactly_the_bytes(data: bytes, sizes: list[Any]) -> None:
    reader = BinaryReader(data)
    taken = b""
    with contextlib.suppress(ProtocolError):
        for size in sizes:
            taken += bytes(reader.take(size, "x"))
        reader.finish()
        assert taken == data
    assert data.startswith(taken)


# --- gRPC ---------------------------------------------------------------------------------------

Request = service_pb2.ModelInferRequest
Response = service_pb2.ModelInferResponse


def split_both_ways(data: bytes) -> tuple[Any, list[bytes]] | None:
    """``split_request`` by protobuf and by the field walk of large messages; both must agree.

    Returns:
        The message and raws, or ``None`` when both refuse the data.
    """
    outcomes = []
    for threshold in (grpc_framing.SPLIT_THRESHOLD, 0):
        with mock.patch.object(grpc_framing, "SPLIT_THRESHOLD", threshold):
            try:
                message, raws = grpc_codec.split_request(data)
            except ProtocolError:
                outcomes.append(None)
                continue
            outcomes.append((message, [bytes(raw) for raw in raws]))
    whole, walked = outcomes
    if whole is None or walked is None:
        # The walk only looks at top-level fields, so it may pass what protobuf then refuses
        # (or refuse first); either way the data is refused, never half-read.
        return None
    assert whole[0] == walked[0] and whole[1] == walked[1]
    return whole


def read_grpc(data: bytes) -> None:
    split = split_both_ways(data)
    if split is None:
        return
    refused_or(check_request, lambda: grpc_codec.read_request(*split))


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_a_grpc_request_or_refused(data: bytes) -> None:
    with bounded_allocation(len(data)):
        read_grpc(data)


def parameter_maps(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, tuple[str, Any]]]:
    values = st.one_of(
        st.tuples(st.just("bool_param"), st.booleans()),
        st.tuples(st.just("int64_param"), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just("uint64_param"), st.integers(0, 2**64 - 1)),
        st.tuples(st.just("double_param"), st.floats()),
        st.tuples(st.just("string_param"), st.text(max_size=6)),
    )
    return st.dictionaries(keys, values, max_size=3)


def fill_parameters(target: Any, parameters: dict[str, tuple[str, Any]]) -> None:
    for key, (field, value) in parameters.items():
        setattr(target[key], field, value)


_CONTENTS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=6),
}
tensor_parameters = parameter_maps(
    st.sampled_from(["shared_memory_region", "shared_memory_byte_size", "binary_data_size"])
    | st.text(max_size=4)
)


@st.composite
def grpc_requests(draw: st.DrawFn) -> bytes:
    """A ``ModelInferRequest`` whose every field is arbitrary but well-typed."""
    message = Request(model_name=draw(st.text(max_size=4)), id=draw(st.text(max_size=4)))
    for _ in range(draw(st.integers(0, 3))):
        tensor = message.inputs.add(name=draw(st.text(max_size=2)), datatype=draw(datatypes))
        tensor.shape.extend(draw(st.lists(dims | st.integers(-(2**63), -1), max_size=4)))
        fill_parameters(tensor.parameters, draw(tensor_parameters))
        if draw(st.booleans()):
            field = draw(st.sampled_from(sorted(_CONTENTS)))
            getattr(tensor.contents, field).extend(draw(st.lists(_CONTENTS[field], max_size=6)))
    for _ in range(draw(st.integers(0, 2))):
        output = message.outputs.add(name=draw(st.text(max_size=2)))
        keys = st.sampled_from(["classification", "shared_memory_region", "binary_data"])
        fill_parameters(output.parameters, draw(parameter_maps(keys)))
    fill_parameters(message.parameters, draw(parameter_maps(st.text(max_size=4))))
    message.raw_input_contents.extend(draw(st.lists(st.binary(max_size=32), max_size=3)))
    return bytes(message.SerializeToString())


@given(data=grpc_requests())
def test_arbitrary_grpc_messages_are_a_request_or_refused(data: bytes) -> None:
    with bounded_allocation(len(data)):
        read_grpc(data)


@st.composite
def corrupted_grpc_requests(draw: st.DrawFn) -> bytes:
    """A valid request's encoding with one field corrupted, or some of its bytes."""
    sent = draw(named_tensors())
    request = InferRequest({name: array for name, (_datatype, array) in sent.items()}, model_name="m")
    data = grpc_codec.encode_request(request)
    if draw(st.booleans()):
        # Flip, cut or insert bytes of the encoding.
        position = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip" and position < len(data):
            return (
                data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1 :]
            )
        if how == "cut":
            return data[:position]
        return data[:position] + draw(st.binary(min_size=1, max_size=4)) + data[position:]
    message = Request.FromString(data)
    what = draw(st.sampled_from(["datatype", "shape", "raw", "contents", "parameters", "extra_input"]))
    tensor = message.inputs[draw(st.integers(0, len(message.inputs) - 1))]
    if what == "datatype":
        tensor.datatype = draw(datatypes)
    elif what == "shape":
        del tensor.shape[:]
        tensor.shape.extend(draw(st.lists(dims | st.integers(-(2**63), -1), max_size=4)))
    elif what == "raw":
        raws = list(message.raw_input_contents)
        index = draw(st.integers(0, len(raws)))
        if index == len(raws) or draw(st.booleans()):
            raws.insert(index, draw(st.binary(max_size=16)))
        else:
            raws[index] = raws[index][: draw(st.integers(0, len(raws[index])))]
        del message.raw_input_contents[:]
        message.raw_input_contents.extend(raws)
    elif what == "contents":
        field = draw(st.sampled_from(sorted(_CONTENTS)))
        getattr(tensor.contents, field).extend(draw(st.lists(_CONTENTS[field], max_size=4)))
        if draw(st.booleans()):
            del message.raw_input_contents[:]
    elif what == "parameters":
        fill_parameters(tensor.parameters, draw(tensor_parameters))
    else:
        message.inputs.add().CopyFrom(tensor)
    return bytes(message.SerializeToString())


@given(data=corrupted_grpc_requests())
def test_an_almost_valid_grpc_request_is_decoded_or_refused(data: bytes) -> None:
    with bounded_allocation(len(data)):
        read_grpc(data)


@given(sent=named_tensors())
def test_grpc_request_round_trip_from_the_project_and_tritonclient(
    sent: dict[str, tuple[str, np.ndarray]],
) -> None:
    request = InferRequest({name: array for name, (_datatype, array) in sent.items()}, model_name="m", id="9")
    inputs = []
    for name, (datatype, array) in sent.items():
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array.astype(object) if datatype == "BYTES" else array)
        inputs.append(tensor)
    theirs = grpc_utils._get_inference_request(
        model_name="m",
        inputs=inputs,
        model_version="",
        request_id="9",
        outputs=None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    ).SerializeToString()
    for data in (grpc_codec.encode_request(request), theirs):
        split = split_both_ways(data)
        assert split is not None
        received = grpc_codec.read_request(*split)
        assert (received.model_name, received.id) == ("m", "9")
        for name, (datatype, array) in sent.items():
            assert_same(received.inputs[name], datatype, array)  # type: ignore[arg-type]


@given(sent=named_tensors())
def test_grpc_response_round_trip_to_the_project_and_tritonclient(
    sent: dict[str, tuple[str, np.ndarray]],
) -> None:
    outputs = [OutputTensor(name, array, datatype, True) for name, (datatype, array) in sent.items()]
    data = grpc_codec.encode_response(InferResponse(outputs, "m", "1", "7"))
    received = grpc_codec.decode_response(data)
    for output, (name, (datatype, array)) in zip(received.outputs, sent.items(), strict=True):
        assert (output.name, output.datatype) == (name, datatype)
        assert_same(output.array, datatype, array)
    result = grpcclient.InferResult(Response.FromString(data))
    for name, (datatype, array) in sent.items():
        assert_same(result.as_numpy(name), datatype, array)


@settings(max_examples=examples(0.25))
@given(data=st.binary(max_size=2000), padding=st.integers(0, 3))
def test_the_field_walk_agrees_with_protobuf_on_padded_bytes(data: bytes, padding: int) -> None:
    """A valid field, then arbitrary bytes: the walk steps over it and agrees with protobuf on the rest."""
    prefix = Request(id="p" * padding, model_name="m").SerializeToString()
    with bounded_allocation(len(data)):
        read_grpc(prefix + data)
