"""The protocol model: requests and responses through the HTTP and gRPC codecs, both ways."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neuropod.protocol import (
    InferRequest,
    InferResponse,
    OutputTensor,
    ProtocolError,
    RequestedOutput,
    SharedMemoryInput,
    http_codec,
    respond,
)
from neuropod.protocol.tensors import tensor_from_json
from neuropod.serving.stats import ModelStats, RequestTimer

grpc_codec = pytest.importorskip("neuropod.protocol.grpc_codec")
from neuropod.protocol.grpc import service_pb2  # noqa: E402


def sample_inputs() -> dict[str, np.ndarray]:
    return {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "s": np.array(["a", "bc"]),
        "u": np.array([0, 2**64 - 1], np.uint64),
    }


def as_decoded(array: np.ndarray) -> np.ndarray:
    """What the decoders give for an array: BYTES elements as object arrays of their bytes."""
    if array.dtype.kind != "U":
        return array
    out = np.empty(array.shape, dtype=object)
    out.flat[:] = [item.encode() for item in array.flat]
    return out


def body_of(header: bytes, raws: list[memoryview]) -> bytes:
    return b"".join([header, *raws])


@pytest.mark.parametrize("binary", [False, True])
def test_http_request_round_trip(binary):
    outputs = [RequestedOutput("y", True), RequestedOutput("z", None, {"shared_memory_region": "r"})]
    sent = InferRequest(sample_inputs(), outputs=outputs, id="7", parameters={"priority": 1})
    header, raws = http_codec.encode_request(sent, binary=binary)
    assert bool(raws) == binary
    received = http_codec.decode_request(body_of(header, raws), len(header) if binary else None)
    assert received.id == "7" and received.parameters == {"priority": 1, "binary_data_output": False}
    for name, array in sample_inputs().items():
        np.testing.assert_array_equal(received.inputs[name], as_decoded(array))
        assert received.inputs[name].dtype == as_decoded(array).dtype
    assert [(o.name, o.binary, o.parameters) for o in received.outputs or ()] == [
        ("y", True, {"binary_data": True}),
        ("z", None, {"shared_memory_region": "r"}),
    ]


@pytest.mark.parametrize("binary", [False, True])
def test_http_response_round_trip(binary):
    x = np.array([1.0, math.nan, math.inf], np.float64)
    sent = InferResponse(
        [
            OutputTensor("x", x, binary=binary),
            OutputTensor("s", np.array(["é"]), binary=binary),
            OutputTensor("in_shm", np.zeros((2, 2), np.int32), shared_memory={"shared_memory_region": "r"}),
        ],
        "m",
        "1",
        "id-1",
    )
    header, raws = http_codec.encode_response(sent)
    document = json.loads(header)  # NaN and Infinity, as Triton's clients read them
    assert document["outputs"][2] == {"name": "in_shm", "datatype": "INT32", "shape": [2, 2]}
    with pytest.raises(ProtocolError, match="Tensor 'in_shm' has no 'data'"):
        http_codec.decode_response(body_of(header, raws), len(header) if binary else None)
    document["outputs"].pop()
    header = json.dumps(document).encode()
    received = http_codec.decode_response(body_of(header, raws), len(header) if binary else None)
    assert (received.model_name, received.model_version, received.id) == ("m", "1", "id-1")
    np.testing.assert_array_equal(received.arrays()["x"], x)
    assert received.arrays()["s"].tolist() == ["é".encode()]
    assert [o.binary for o in received.outputs] == [binary, binary]


def test_grpc_request_round_trip():
    outputs = [RequestedOutput("y", None, {"shared_memory_region": "r", "shared_memory_byte_size": 8})]
    sent = InferRequest(sample_inputs(), outputs=outputs, id="7", model_name="m", model_version="1")
    received = grpc_codec.read_request(*grpc_codec.split_request(grpc_codec.encode_request(sent)))
    assert (received.model_name, received.model_version, received.id) == ("m", "1", "7")
    for name, array in sample_inputs().items():
        np.testing.assert_array_equal(received.inputs[name], as_decoded(array))
    assert [(o.name, o.parameters) for o in received.outputs or ()] == [
        ("y", {"shared_memory_region": "r", "shared_memory_byte_size": 8})
    ]


def test_grpc_response_round_trip_with_an_output_in_shared_memory():
    region = {"shared_memory_region": "r", "shared_memory_byte_size": 16}
    sent = InferResponse(
        [
            OutputTensor("u", np.array([2**64 - 1], np.uint64)),
            OutputTensor("in_shm", np.zeros(4, np.int32), shared_memory=region),
        ],
        "m",
    )
    data = grpc_codec.encode_response(sent)
    message = service_pb2.ModelInferResponse.FromString(data)
    assert list(message.raw_output_contents) == [np.array([2**64 - 1], "<u8").tobytes(), b""]
    assert message.outputs[1].parameters["shared_memory_region"].string_param == "r"
    with pytest.raises(ProtocolError, match="Tensor 'in_shm': INT32 data of shape \\[4\\] needs 16 bytes"):
        grpc_codec.decode_response(data)
    del message.outputs[1]
    del message.raw_output_contents[1]
    received = grpc_codec.decode_response(message.SerializeToString())
    assert received.arrays()["u"].tolist() == [2**64 - 1] and received.id is None


def test_a_client_cannot_send_shared_memory_references():
    request = InferRequest({"x": SharedMemoryInput("FP32", (1,), {"shared_memory_region": "r"})})
    message = "Input 'x': a client sends arrays, not shared-memory references"
    with pytest.raises(ProtocolError, match=message):
        http_codec.encode_request(request, binary=True)
    with pytest.raises(ProtocolError, match=message):
        grpc_codec.encode_request(request)


def test_shared_memory_inputs_are_references_until_a_server_resolves_them():
    body = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [2],
                "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 8},
            }
        ]
    }
    request = http_codec.decode_request(json.dumps(body).encode(), None)
    assert repr(request.inputs["x"]) == (
        "SharedMemoryInput('FP32', (2,), {'shared_memory_region': 'r', 'shared_memory_byte_size': 8})"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "The request must be a JSON object, got list"),
        (b"{", "The request's JSON is malformed"),
        ({"inputs": []}, "The request must have 'inputs': a non-empty list of tensors"),
        (
            {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}] * 2},
            "Input 'x' is given more than once",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "INT8",
                        "shape": [1],
                        "data": [1],
                        "parameters": {"shared_memory_region": "r"},
                    }
                ]
            },
            "Input 'x' names a shared memory region and also carries data; give one",
        ),
        (
            {
                "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
                "parameters": {"binary_data_output": 1},
            },
            "Parameter binary_data_output must be true or false, got 1",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}], "outputs": "y"},
            "'outputs' must be a list",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}], "outputs": [{}]},
            "Each requested output needs a 'name' string, got {}",
        ),
        (
            {
                "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}],
            },
            "Output 'y': binary_data must be true or false, got 'yes'",
        ),
    ],
)
def test_malformed_http_requests(body, message):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ProtocolError) as info:
        http_codec.decode_request(data, None)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"nope", "The response's JSON is malformed"),
        (b'{"model_name": "m"}', "The response has no list of 'outputs'"),
    ],
)
def test_malformed_http_responses(body, message):
    with pytest.raises(ProtocolError, match=message):
        http_codec.decode_response(body, None)


def grpc_request(raw_count: int, names: tuple[str, ...]) -> bytes:
    message = service_pb2.ModelInferRequest(model_name="m")
    for name in names:
        message.inputs.add(name=name, datatype="INT8", shape=[1])
    message.raw_input_contents.extend([b"\x01"] * raw_count)
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (grpc_request(0, ()), "The request has no inputs"),
        (
            grpc_request(3, ("x", "y")),
            "raw_input_contents has 3 entries, but 2 inputs take their data from it",
        ),
        (grpc_request(2, ("x", "x")), "Input 'x' is given more than once"),
    ],
)
def test_malformed_grpc_requests(data, message):
    with pytest.raises(ProtocolError, match=message):
        grpc_codec.read_request(*grpc_codec.split_request(data))


def test_a_grpc_shared_memory_input_with_a_negative_dim_is_refused():
    message = service_pb2.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype="INT8", shape=[-1])
    tensor.parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(ProtocolError, match="Tensor 'x': shape must hold non-negative sizes, got \\[-1\\]"):
        grpc_codec.read_request(*grpc_codec.split_request(message.SerializeToString()))


def test_respond_returns_what_was_asked_else_what_was_produced():
    produced = {"a": np.ones(1, np.float32), "b": np.zeros(1, np.int64)}
    everything = respond(InferRequest({}, binary_data_output=True), produced, "m", {"a": "FP32"})
    assert [(o.name, o.datatype, o.binary) for o in everything.outputs] == [
        ("a", "FP32", True),
        ("b", "INT64", True),
    ]
    asked = InferRequest({}, outputs=[RequestedOutput("b", False)], id="9", binary_data_output=True)
    answer = respond(asked, produced, "m")
    assert [(o.name, o.binary) for o in answer.outputs] == [("b", False)] and answer.id == "9"
    with pytest.raises(ProtocolError) as info:
        respond(InferRequest({}, outputs=[RequestedOutput("c")]), produced, "m")
    assert str(info.value) == (
        "Output 'c' was requested, but model 'm' did not produce it for this request (it produced: a, b); "
        "leave 'outputs' out to get every output it produced"
    )


def test_check_outputs_names_the_models_outputs():
    request = InferRequest({}, outputs=[RequestedOutput("c")])
    request.check_outputs(["a", "c"], "m")
    with pytest.raises(ProtocolError, match="Output 'c' is not an output of model 'm' \\(outputs: a, b\\)"):
        request.check_outputs(["a", "b"], "m")


def test_integers_beyond_int64_keep_their_value_and_shape():
    array = tensor_from_json([[2**64 - 1, 0], [1, 2**63]], "UINT64", (2, 2), name="t")
    assert array.dtype == np.uint64 and array.tolist() == [[2**64 - 1, 0], [1, 2**63]]
    with pytest.raises(
        ProtocolError, match="Tensor 't': UINT8 data must lie in \\[0, 255\\], but holds 18446744073709551615"
    ):
        tensor_from_json([2**64 - 1, 0], "UINT8", (2,), name="t")


def test_model_metadata_properties_are_ignored_by_tritons_message():
    metadata = {
        "name": "m",
        "versions": ["1"],
        "platform": "p",
        "inputs": [],
        "outputs": [],
        "parameters": {},
    }
    data = grpc_codec.encode_model_metadata(metadata, {"neuropod_platform": "python"})
    parsed = service_pb2.ModelMetadataResponse.FromString(data)
    assert (parsed.name, list(parsed.versions), parsed.platform) == ("m", ["1"], "p")
    assert data.endswith(b"\x0a\x11neuropod_platform\x12\x06python")


def test_the_request_timer_counts_successes_and_failures():
    stats = ModelStats("m")
    with RequestTimer(stats) as timer:
        timer.decoded()
        timer.ran(0.0, 0.001)
    with pytest.raises(ValueError), RequestTimer(stats):
        raise ValueError("before the model ran")
    with pytest.raises(ValueError), RequestTimer(stats) as timer:
        timer.decoded()
        raise ValueError("while the model ran")
    counts = stats.to_dict()
    assert counts["inference_count"] == 1 and counts["inference_stats"]["fail"]["count"] == 2
    assert counts["execution_count"] == 2  # the success, and the failure that reached the model
