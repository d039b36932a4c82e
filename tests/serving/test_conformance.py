"""Protocol conformance that other clients found (issue 18), with real clients on loopback.

KServe's Python client (``kserve``) cannot be installed into this environment without changing
the versions of packages already there (it pins older pandas and python-dateutil), so the
clients here are tritonclient (HTTP and gRPC), raw HTTP, and raw gRPC with a message compiled
from the Open Inference Protocol's own proto. No request may log a traceback on the server.
"""

from __future__ import annotations

import json
import logging

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from neuropod.loader import load_neuropod
from neuropod.protocol.grpc import service_pb2
from neuropod.protocol.grpc_codec import PROPERTIES_FIELD
from neuropod.serving import Server
from tests.serving.helpers import build_model, error_of, request

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    packages = [build_model(root, "partial"), build_model(root, "wide_ints")]
    with Server(packages, http_port=0, grpc_port=0) as server:
        yield server


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_server_traceback():
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("neuropod.serving", "uvicorn.error", "grpc")]
    for logger in loggers:
        logger.addHandler(records)
    yield
    for logger in loggers:
        logger.removeHandler(records)
    tracebacks = [r.getMessage() for r in records.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not tracebacks, f"the server logged: {tracebacks}"


def infer_url(server, model: str) -> str:
    return f"/v2/models/{model}/infer"


# 1. Integers over their whole range, in JSON.


def test_uint64_and_int64_json_round_trip_exactly(server):
    body = {
        "inputs": [
            {"name": "u64", "shape": [3], "datatype": "UINT64", "data": [0, 1, U64_MAX]},
            {"name": "i64", "shape": [3], "datatype": "INT64", "data": [I64_MIN, -1, I64_MAX]},
        ]
    }
    status, _, data = request(server.http_port, "POST", infer_url(server, "wide_ints"), body)
    assert status == 200, data
    outputs = {o["name"]: o for o in json.loads(data)["outputs"]}
    assert outputs["u64"] == {"name": "u64", "datatype": "UINT64", "shape": [3], "data": [0, 1, U64_MAX]}
    assert outputs["i64"]["data"] == [I64_MIN, -1, I64_MAX]


def test_nested_json_integers_beyond_int64_keep_their_shape(server):
    body = {
        "inputs": [
            {"name": "u64", "shape": [2, 2], "datatype": "UINT64", "data": [[U64_MAX, 2], [3, U64_MAX - 1]]},
            {"name": "i64", "shape": [1], "datatype": "INT64", "data": [0]},
        ]
    }
    # The model's spec wants rank 1: the decoded tensor reaches the spec check with its shape.
    status, message = error_of(server.http_port, "POST", infer_url(server, "wide_ints"), body)
    assert status == 400
    assert (
        message == "Tensor 'u64' in the input spec is expected to have 1 dimensions, but had 2 (shape (2, 2))"
    )


@pytest.mark.parametrize(
    ("datatype", "values", "expected"),
    [
        # orjson parses integers past 64 bits as floats: the value is named as such.
        (
            "UINT64",
            [0, U64_MAX + 1],
            f"UINT64 data must lie in [0, {U64_MAX}], but holds 1.8446744073709552e+19",
        ),
        ("UINT64", [-1, U64_MAX], f"UINT64 data must lie in [0, {U64_MAX}], but holds -1"),
        (
            "INT64",
            [I64_MIN - 1, 0],
            f"INT64 data must lie in [{I64_MIN}, {I64_MAX}], but holds -9.2233720368547758e+18",
        ),
        ("INT64", [U64_MAX, 0], f"INT64 data must lie in [{I64_MIN}, {I64_MAX}], but holds {U64_MAX}"),
        ("UINT64", [1.5, U64_MAX], "UINT64 data must hold integers, but holds non-integral numbers"),
        ("UINT64", ["1", U64_MAX], "UINT64 data must hold integers, but holds strings or other values"),
        ("UINT64", [None, U64_MAX], "UINT64 data must hold integers, but holds strings or other values"),
    ],
)
def test_integers_out_of_range_are_a_400_naming_the_tensor(server, datatype, values, expected):
    name = datatype.lower().replace("uint", "u").replace("int", "i")
    other = "i64" if name == "u64" else "u64"
    body = {
        "inputs": [
            {"name": name, "shape": [2], "datatype": datatype, "data": values},
            {
                "name": other,
                "shape": [1],
                "datatype": other.upper().replace("U", "UINT").replace("I", "INT"),
                "data": [0],
            },
        ]
    }
    status, message = error_of(server.http_port, "POST", infer_url(server, "wide_ints"), body)
    assert status == 400
    assert message == f"Tensor '{name}': {expected}"


def test_tritonclient_json_tensors_hold_uint64_max(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        u64 = np.array([0, U64_MAX], np.uint64)
        i64 = np.array([I64_MIN, I64_MAX], np.int64)
        inputs = [httpclient.InferInput("u64", [2], "UINT64"), httpclient.InferInput("i64", [2], "INT64")]
        inputs[0].set_data_from_numpy(u64, binary_data=False)
        inputs[1].set_data_from_numpy(i64, binary_data=False)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("u64", "i64")]
        result = client.infer("wide_ints", inputs, outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("u64"), u64)
        np.testing.assert_array_equal(result.as_numpy("i64"), i64)
    finally:
        client.close()


@pytest.mark.parametrize("binary", [False, True])
def test_remote_http_backend_decodes_uint64_max(server, binary):
    with load_neuropod(f"{server.http_url}/v2/models/wide_ints", binary=binary) as model:
        u64 = np.array([U64_MAX, 7], np.uint64)
        i64 = np.array([I64_MIN, I64_MAX], np.int64)
        outputs = model.infer({"u64": u64, "i64": i64})
    assert outputs["u64"].dtype == np.uint64 and outputs["u64"].tolist() == [U64_MAX, 7]
    assert outputs["i64"].tolist() == [I64_MIN, I64_MAX]


def test_grpc_typed_contents_hold_uint64_max(server):
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=service_pb2.ModelInferRequest.SerializeToString,
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        message = service_pb2.ModelInferRequest(model_name="wide_ints")
        u64 = message.inputs.add(name="u64", datatype="UINT64", shape=[2])
        u64.contents.uint64_contents.extend([0, U64_MAX])
        i64 = message.inputs.add(name="i64", datatype="INT64", shape=[2])
        i64.contents.int64_contents.extend([I64_MIN, I64_MAX])
        reply = infer(message, timeout=30)
    finally:
        channel.close()
    raw = dict(zip((o.name for o in reply.outputs), reply.raw_output_contents, strict=True))
    assert np.frombuffer(raw["u64"], "<u8").tolist() == [0, U64_MAX]
    assert np.frombuffer(raw["i64"], "<i8").tolist() == [I64_MIN, I64_MAX]


# 2. Outputs the model did not produce.


def partial_request(**extra):
    return {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2]}], **extra}


def test_binary_data_output_without_outputs_returns_what_the_model_produced(server):
    body = json.dumps(partial_request(parameters={"binary_data_output": True})).encode()
    status, headers, data = request(server.http_port, "POST", infer_url(server, "partial"), body)
    assert status == 200, data
    length = int(headers["inference-header-content-length"])
    header = json.loads(data[:length])
    assert header["outputs"] == [
        {"name": "o_int", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}}
    ]
    assert np.frombuffer(data[length:], "<i8").tolist() == [2, 4]


def test_json_without_outputs_returns_what_the_model_produced(server):
    status, _, data = request(server.http_port, "POST", infer_url(server, "partial"), partial_request())
    assert status == 200
    assert json.loads(data)["outputs"] == [
        {"name": "o_int", "datatype": "INT64", "shape": [2], "data": [2, 4]}
    ]


def test_tritonclient_http_without_outputs_gets_what_the_model_produced(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        x = httpclient.InferInput("x", [2], "INT64")
        x.set_data_from_numpy(np.array([1, 2], np.int64))
        result = client.infer("partial", [x])
        assert result.as_numpy("o_int").tolist() == [2, 4]
        assert result.as_numpy("o_bool") is None
    finally:
        client.close()


@pytest.mark.parametrize("binary", [False, True])
def test_an_explicitly_requested_output_not_produced_is_a_400_naming_it(server, binary):
    body = partial_request(
        outputs=[{"name": "o_int"}, {"name": "o_bool", "parameters": {"binary_data": binary}}]
    )
    status, message = error_of(server.http_port, "POST", infer_url(server, "partial"), body)
    assert status == 400
    assert message == (
        "Output 'o_bool' was requested, but model 'partial' did not produce it for this request "
        "(it produced: o_int); leave 'outputs' out to get every output it produced"
    )


def test_over_grpc_the_same_is_invalid_argument_and_all_produced_come_back(server):
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        x = grpcclient.InferInput("x", [2], "INT64")
        x.set_data_from_numpy(np.array([1, 2], np.int64))
        result = client.infer("partial", [x])
        assert result.as_numpy("o_int").tolist() == [2, 4]
        assert [o.name for o in result.get_response().outputs] == ["o_int"]
        with pytest.raises(InferenceServerException) as info:
            client.infer("partial", [x], outputs=[grpcclient.InferRequestedOutput("o_bool")])
    finally:
        client.close()
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "Output 'o_bool' was requested, but model 'partial' did not produce it" in info.value.message()


# 3. ModelMetadataResponse.properties, as a client compiled from the protocol's proto reads it.


def spec_metadata_message():
    """``ModelMetadataResponse`` as the Open Inference Protocol's proto declares it."""
    proto = descriptor_pb2.FileDescriptorProto(name="oip_metadata.proto", package="oip", syntax="proto3")
    message = proto.message_type.add(name="ModelMetadataResponse")
    tensor = message.nested_type.add(name="TensorMetadata")
    field = descriptor_pb2.FieldDescriptorProto
    for number, name, kind, label in (
        (1, "name", field.TYPE_STRING, field.LABEL_OPTIONAL),
        (2, "datatype", field.TYPE_STRING, field.LABEL_OPTIONAL),
        (3, "shape", field.TYPE_INT64, field.LABEL_REPEATED),
    ):
        tensor.field.add(name=name, number=number, type=kind, label=label)
    entry = message.nested_type.add(name="PropertiesEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    for number, name, kind, label, type_name in (
        (1, "name", field.TYPE_STRING, field.LABEL_OPTIONAL, ""),
        (2, "versions", field.TYPE_STRING, field.LABEL_REPEATED, ""),
        (3, "platform", field.TYPE_STRING, field.LABEL_OPTIONAL, ""),
        (4, "inputs", field.TYPE_MESSAGE, field.LABEL_REPEATED, ".oip.ModelMetadataResponse.TensorMetadata"),
        (5, "outputs", field.TYPE_MESSAGE, field.LABEL_REPEATED, ".oip.ModelMetadataResponse.TensorMetadata"),
        (
            PROPERTIES_FIELD,
            "properties",
            field.TYPE_MESSAGE,
            field.LABEL_REPEATED,
            ".oip.ModelMetadataResponse.PropertiesEntry",
        ),
    ):
        added = message.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            added.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("oip.ModelMetadataResponse"))


def test_grpc_model_metadata_has_the_protocols_properties(server):
    spec_message = spec_metadata_message()
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        metadata = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=service_pb2.ModelMetadataRequest.SerializeToString,
            response_deserializer=spec_message.FromString,
        )
        reply = metadata(service_pb2.ModelMetadataRequest(name="partial"), timeout=30)
    finally:
        channel.close()
    assert reply.name == "partial" and list(reply.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in reply.outputs] == [
        ("o_int", "INT64", [-1]),
        ("o_bool", "BOOL", [-1]),
    ]
    properties = dict(reply.properties)
    assert properties["neuropod_platform"] == "python"
    assert json.loads(properties["neuropod_inputs"]) == [{"name": "x", "dtype": "int64", "shape": [None]}]
    assert [spec["name"] for spec in json.loads(properties["neuropod_outputs"])] == ["o_int", "o_bool"]


def test_tritonclient_still_reads_the_metadata(server):
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        metadata = client.get_model_metadata("partial", as_json=True)
    finally:
        client.close()
    assert metadata["name"] == "partial"
    assert [o["name"] for o in metadata["outputs"]] == ["o_int", "o_bool"]
