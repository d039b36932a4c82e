"""Raw bytes through the server: BYTES elements reach a bytes tensor exactly (binary data over
HTTP, gRPC), and a string tensor only as UTF-8 text (else a 400 naming the tensor)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from neuropod.serving import Server
from tests.models import RAW_BYTES, byte_array
from tests.serving.helpers import build_model, error_of, request

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
shm_utils = pytest.importorskip("tritonclient.utils.shared_memory")
from tritonclient.utils import InferenceServerException, serialize_byte_tensor  # noqa: E402

WRAPPED = [b"<" + item + b">" for item in RAW_BYTES]
NOT_UTF8 = byte_array([b"ok", b"\xff\xd8\xff"])
STRING_MESSAGE = (
    "Tensor 'text': element 1 is not UTF-8 text (invalid start byte at byte 0), but 'text' is a "
    "string input, which holds text; a tensor of dtype bytes takes any bytes"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    models = [build_model(root, "bytes"), build_model(root, "strings")]
    with Server(models, http_port=0, grpc_port=0) as server:
        yield server


def one_input(module, name: str, value: np.ndarray, **kwargs):
    tensor = module.InferInput(name, list(value.shape), "BYTES")
    tensor.set_data_from_numpy(value, **kwargs)
    return [tensor]


def test_metadata_says_bytes_and_config_type_string(http):
    metadata = http.get_model_metadata("bytes")
    assert metadata["inputs"] == [{"name": "s", "datatype": "BYTES", "shape": [-1]}]
    config = http.get_model_config("bytes")
    assert [(t["name"], t["data_type"]) for t in config["input"] + config["output"]] == [
        ("s", "TYPE_STRING"),
        ("out", "TYPE_STRING"),
    ]


def test_http_binary_data_reaches_a_bytes_tensor_exactly(http):
    result = http.infer("bytes", one_input(httpclient, "s", byte_array(RAW_BYTES), binary_data=True))
    assert result.as_numpy("out").tolist() == WRAPPED


def test_grpc_reaches_a_bytes_tensor_exactly(grpc):
    result = grpc.infer("bytes", one_input(grpcclient, "s", byte_array(RAW_BYTES)))
    assert result.as_numpy("out").tolist() == WRAPPED


def test_bytes_that_are_not_utf8_are_refused_by_a_string_tensor(http, grpc):
    with pytest.raises(InferenceServerException) as info:
        http.infer("strings", one_input(httpclient, "text", NOT_UTF8, binary_data=True))
    assert info.value.status() == "400" and info.value.message() == STRING_MESSAGE
    with pytest.raises(InferenceServerException) as info:
        grpc.infer("strings", one_input(grpcclient, "text", NOT_UTF8))
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and info.value.message() == STRING_MESSAGE
    # UTF-8 bytes are text
    result = grpc.infer("strings", one_input(grpcclient, "text", byte_array(["é".encode()])))
    assert result.as_numpy("upper").tolist() == ["É".encode()]


def test_json_strings_are_their_utf8_bytes(server):
    body = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["é", "a\u0000"]}]}
    status, _, data = request(server.http_port, "POST", "/v2/models/bytes/infer", body)
    assert status == 200
    assert json.loads(data)["outputs"][0]["data"] == ["<é>", "<a\u0000>"]


def test_a_json_output_cannot_carry_bytes_that_are_not_utf8(http, server):
    inputs = one_input(httpclient, "s", byte_array([b"\xff"]), binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        http.infer("bytes", inputs, outputs=[httpclient.InferRequestedOutput("out", binary_data=False)])
    assert info.value.status() == "400"
    assert info.value.message() == (
        "Tensor 'out': BYTES element 0 is not UTF-8 (invalid start byte at byte 1), so JSON cannot "
        "carry it; send it as binary data (the binary tensor extension: parameter binary_data, or gRPC)"
    )
    # a lone surrogate in JSON is not text: refused by a string tensor, whatever follows
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}]}
    status, message = error_of(server.http_port, "POST", "/v2/models/strings/infer", body)
    assert status == 400 and message.startswith("Tensor 'text': element 0 is not UTF-8 text")


def test_system_shared_memory_carries_bytes_both_ways(http):
    sent = byte_array(RAW_BYTES)
    raw = serialize_byte_tensor(sent).item()
    expected = serialize_byte_tensor(byte_array(WRAPPED)).item()
    key = f"/neuropod-bytes-{uuid.uuid4().hex[:8]}"
    handle = shm_utils.create_shared_memory_region("bytes-io", key, len(raw) + len(expected))
    try:
        shm_utils.set_shared_memory_region(handle, [np.frombuffer(raw, np.uint8)])
        http.register_system_shared_memory("bytes-io", key, len(raw) + len(expected))
        inputs = [httpclient.InferInput("s", [len(sent)], "BYTES")]
        inputs[0].set_shared_memory("bytes-io", len(raw))
        output = httpclient.InferRequestedOutput("out")
        output.set_shared_memory("bytes-io", len(expected), offset=len(raw))
        http.infer("bytes", inputs, outputs=[output])
        written = shm_utils.get_contents_as_numpy(handle, np.uint8, [len(expected)], offset=len(raw))
        assert written.tobytes() == expected
        # the same region read by a string tensor: its first element is not UTF-8
        text = [httpclient.InferInput("text", [len(sent)], "BYTES")]
        text[0].set_shared_memory("bytes-io", len(raw))
        with pytest.raises(InferenceServerException, match="Tensor 'text': element 0 is not UTF-8 text"):
            http.infer("strings", text)
        http.unregister_system_shared_memory("bytes-io")
    finally:
        shm_utils.destroy_shared_memory_region(handle)
