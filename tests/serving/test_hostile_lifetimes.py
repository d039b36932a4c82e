"""What a failed request leaves behind (issue 12 item 6): nothing. Its body and tensors are
freed when it is answered, not at the next garbage collection."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc

import numpy as np
import pytest

from neuropod.serving import ModelOptions, Server
from tests.serving.helpers import build_model, request

pytest.importorskip("uvicorn")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

ELEMENTS = 4_000_000  # 16 MB of INT32


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    # Two slots: every call goes through the thread pool and its futures.
    options = {"flaky": ModelOptions(concurrency=2)}
    with Server([build_model(root, "flaky")], http_port=0, grpc_port=0, model_options=options) as server:
        yield server


def _fail_over_http(server: Server) -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [ELEMENTS], "datatype": "INT32",
                     "parameters": {"binary_data_size": 4 * ELEMENTS}}]}
    ).encode()  # fmt: skip
    body = header + np.full(ELEMENTS, -1, np.int32).tobytes()  # -1: the model raises
    status, _, answer = request(
        server.http_port, "POST", "/v2/models/flaky/infer", body,
        {"Inference-Header-Content-Length": str(len(header))},
    )  # fmt: skip
    assert status == 500 and b"asked to fail" in answer


def _fail_over_grpc(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        tensor = grpcclient.InferInput("x", [ELEMENTS], "INT32")
        tensor.set_data_from_numpy(np.full(ELEMENTS, -1, np.int32))
        with pytest.raises(InferenceServerException, match="asked to fail"):
            client.infer("flaky", [tensor])
    finally:
        client.close()


@pytest.mark.parametrize("fail", [_fail_over_http, _fail_over_grpc], ids=["http", "grpc"])
def test_a_failed_request_frees_its_tensors_at_once(server, fail):
    fail(server)  # warm: buffers and pools that live on
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            fail(server)
        time.sleep(0.1)  # the server's threads finish answering
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert retained < 4 * ELEMENTS // 2, f"{retained / 1e6:.1f} MB held after 3 failed 16 MB requests"
