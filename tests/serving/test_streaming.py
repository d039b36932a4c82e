"""gRPC ``ModelStreamInfer`` and decoupled models, with unchanged Triton clients (issue 14 item 1).

One embedded server on loopback serves a decoupled model (``tests.stream_models``' counter)
and two plain ones; tritonclient's streaming API (``start_stream`` / ``async_stream_infer``,
and the asyncio client's ``stream_infer``) talks to it, and so does a remote model
(``load_neuropod("grpc://...")``) for ``infer_stream``.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
from collections import defaultdict
from typing import Any

import grpc
import numpy as np
import pytest

from neuropod import InferenceError, load_neuropod
from neuropod.serving import ModelOptions, Server
from tests.serving.helpers import build_model, error_of, request
from tests.stream_models import MARKER_VARIABLE, build_counter

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import aio as grpcaio  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    path = tmp_path_factory.mktemp("marker") / "closed.log"
    previous = os.environ.get(MARKER_VARIABLE)
    os.environ[MARKER_VARIABLE] = str(path)  # read by the counter model when it loads
    yield path
    if previous is None:
        os.environ.pop(MARKER_VARIABLE, None)
    else:
        os.environ[MARKER_VARIABLE] = previous


@pytest.fixture(scope="module")
def server(tmp_path_factory, marker):
    root = tmp_path_factory.mktemp("streaming")
    paths = [
        build_counter(root, root / "counter.zip"),
        build_model(root, "adder"),
        build_model(root, "flaky"),
    ]
    options = {"counter": ModelOptions(concurrency=2), "flaky": ModelOptions(concurrency=2)}
    with Server(paths, http_port=0, grpc_port=0, model_options=options) as server:
        yield server


@pytest.fixture
def client(server):
    client = grpcclient.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


def counter_inputs(n: int) -> list[Any]:
    tensor = grpcclient.InferInput("n", [1], "INT64")
    tensor.set_data_from_numpy(np.array([n], np.int64))
    return [tensor]


def adder_inputs(x: float) -> list[Any]:
    tensors = []
    for name in ("x", "y"):
        tensor = grpcclient.InferInput(name, [1, 2], "FP32")
        tensor.set_data_from_numpy(np.full((1, 2), x, np.float32))
        tensors.append(tensor)
    return tensors


class Collector:
    """The stream's callback: every ``(result, error)`` in arrival order."""

    def __init__(self) -> None:
        self.answers: queue.Queue[tuple[Any, Any]] = queue.Queue()

    def __call__(self, result: Any, error: Any) -> None:
        self.answers.put((result, error))

    def take(self, count: int, timeout: float = 10.0) -> list[tuple[Any, Any]]:
        return [self.answers.get(timeout=timeout) for _ in range(count)]

    def rest(self) -> list[tuple[Any, Any]]:
        out = []
        while not self.answers.empty():
            out.append(self.answers.get_nowait())
        return out


def final(result: Any) -> bool:
    return bool(result.get_response().parameters["triton_final_response"].bool_param)


def stream(client: Any, requests: list[dict[str, Any]], *, headers: dict[str, str] | None = None) -> list:
    """Send the requests on one stream, half-close it, and return every answer."""
    collector = Collector()
    client.start_stream(collector, headers=headers)
    for kwargs in requests:
        client.async_stream_infer(**kwargs)
    client.stop_stream()  # waits until the server ended the call
    return collector.rest()


def by_id(answers: list) -> dict[str, list[tuple[Any, Any]]]:
    grouped: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for result, error in answers:
        assert error is None, error
        grouped[result.get_response().id].append(
            (int(result.as_numpy("i")[0]) if result.as_numpy("i") is not None else None, final(result))
        )
    return grouped


# --- what clients are told before any call --------------------------------------------------


def test_the_model_config_says_decoupled(client, server):
    config = client.get_model_config("counter", as_json=True)["config"]
    assert config["model_transaction_policy"] == {"decoupled": True}
    assert "model_transaction_policy" not in client.get_model_config("adder", as_json=True)["config"]
    status, _, body = request(server.http_port, "GET", "/v2/models/counter/config")
    assert status == 200 and json.loads(body)["model_transaction_policy"] == {"decoupled": True}


# --- decoupled responses ----------------------------------------------------------------------


def test_zero_one_and_many_responses_with_empty_final_responses(client):
    answers = stream(
        client,
        [
            {
                "model_name": "counter",
                "inputs": counter_inputs(n),
                "request_id": f"n{n}",
                "enable_empty_final_response": True,
            }
            for n in (0, 1, 4)
        ],
    )
    grouped = by_id(answers)
    assert grouped["n0"] == [(None, True)]  # the bare final flag, as an empty response
    assert grouped["n1"] == [(0, False), (None, True)]
    assert grouped["n4"] == [(0, False), (1, False), (2, False), (3, False), (None, True)]
    empty = next(result for result, _ in answers if result.get_response().id == "n0").get_response()
    assert empty.model_name == "counter" and empty.model_version == "1" and not empty.outputs


def test_without_the_empty_final_response_the_bare_flag_sends_nothing(client):
    answers = stream(
        client,
        [
            {"model_name": "counter", "inputs": counter_inputs(0), "request_id": "none"},
            {"model_name": "counter", "inputs": counter_inputs(2), "request_id": "two"},
        ],
    )
    assert by_id(answers) == {"two": [(0, False), (1, False)]}


def test_responses_of_concurrent_requests_interleave(client):
    # -4 answers only once a -5 runs at the same time: both run at once on one stream, and
    # the later request's response goes out first.
    answers = stream(
        client,
        [
            {"model_name": "counter", "inputs": counter_inputs(-4), "request_id": "waits"},
            {"model_name": "counter", "inputs": counter_inputs(-5), "request_id": "wakes"},
        ],
    )
    assert [result.get_response().id for result, error in answers] == ["wakes", "waits"]
    assert all(error is None for _, error in answers)


# --- models that are not decoupled -------------------------------------------------------


def test_a_plain_model_answers_once_per_request_in_order(client):
    def flaky(ms: int) -> list[Any]:
        tensor = grpcclient.InferInput("x", [1], "INT32")
        tensor.set_data_from_numpy(np.array([ms], np.int32))
        return [tensor]

    answers = stream(
        client,
        [
            {"model_name": "flaky", "inputs": flaky(300), "request_id": "slow"},
            {"model_name": "flaky", "inputs": flaky(1), "request_id": "quick"},
            {"model_name": "adder", "inputs": adder_inputs(1.0), "request_id": "add",
             "enable_empty_final_response": True},
        ],
    )  # fmt: skip
    assert [result.get_response().id for result, _ in answers] == ["slow", "quick", "add"]
    assert all(final(result) for result, _ in answers)  # one response each, and no empty one
    np.testing.assert_array_equal(answers[0][0].as_numpy("y"), [600])
    np.testing.assert_array_equal(answers[2][0].as_numpy("sum"), [[2.0, 2.0]])


# --- errors in the stream ---------------------------------------------------------------------


def test_errors_are_answered_in_the_stream_which_goes_on(client):
    bad_shape = grpcclient.InferInput("n", [2], "INT64")
    bad_shape.set_data_from_numpy(np.array([1, 2], np.int64))
    answers = stream(
        client,
        [
            {"model_name": "nope", "inputs": counter_inputs(1), "request_id": "unknown"},
            {"model_name": "counter", "inputs": [bad_shape], "request_id": "shape"},
            {"model_name": "counter", "inputs": counter_inputs(-1), "request_id": "fails"},
            {"model_name": "counter", "inputs": counter_inputs(-2), "request_id": "spec"},
            {"model_name": "counter", "inputs": counter_inputs(2), "request_id": "fine"},
        ],
    )
    errors = sorted(str(error) for _, error in answers if error is not None)
    assert len(errors) == 4
    assert "Request for unknown model: 'nope' is not found" in errors
    assert any("Dim 0 of tensor 'n'" in text for text in errors)
    assert any("asked to fail after one response" in text for text in errors)
    assert any("returned outputs that break its spec" in text for text in errors)
    values = [int(result.as_numpy("i")[0]) for result, error in answers if error is None]
    assert sorted(values) == [0, 0, 1]  # the first response of "fails", then the two of "fine"


def raw_stream(server: Any, requests: list[Any], metadata: Any = None) -> list[Any]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return list(stub.ModelStreamInfer(iter(requests), metadata=metadata, timeout=10))


def counter_message(n: int, request_id: str, **parameters: Any) -> Any:
    message = service_pb2.ModelInferRequest(model_name="counter", id=request_id)
    tensor = message.inputs.add(name="n", datatype="INT64", shape=[1])
    tensor.contents.int64_contents.append(n)
    for key, value in parameters.items():
        message.parameters[key].CopyFrom(value)
    return message


def test_error_replies_carry_the_request_id_as_triton_does(server):
    wrong_type = service_pb2.InferParameter(string_param="yes")
    replies = raw_stream(
        server,
        [
            counter_message(1, "typed", triton_enable_empty_final_response=wrong_type),
            counter_message(-1, "model"),
        ],
    )
    errors = {reply.infer_response.id: reply for reply in replies if reply.error_message}
    # A request's own mistake: only its id, no final flag.
    typed = errors["typed"]
    assert typed.error_message == (
        "invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param."
    )
    assert "triton_final_response" not in typed.infer_response.parameters
    # The model's failure: id, model, version and the final flag.
    model = errors["model"].infer_response
    assert (model.model_name, model.model_version) == ("counter", "1")
    assert model.parameters["triton_final_response"].bool_param is True
    assert not model.outputs


def test_with_triton_grpc_error_a_model_failure_ends_the_stream(server):
    with pytest.raises(grpc.RpcError) as info:
        raw_stream(server, [counter_message(-1, "fails"), counter_message(3, "later")],
                   metadata=(("triton_grpc_error", "true"),))  # fmt: skip
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "asked to fail after one response" in info.value.details()


def test_the_python_client_reports_a_failed_call_in_its_callback(client):
    collector = Collector()
    client.start_stream(collector, headers={"triton_grpc_error": "true"})
    client.async_stream_infer("counter", counter_inputs(-1), request_id="fails")
    answers = collector.take(2)
    client.stop_stream()
    assert answers[0][1] is None
    assert "StatusCode.INTERNAL" in str(answers[1][1])


# --- unary calls on a decoupled model ---------------------------------------------------------


def test_unary_infer_of_a_decoupled_model_is_refused_with_tritons_texts(client, server):
    with pytest.raises(InferenceServerException) as info:
        client.infer("counter", counter_inputs(1))
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"
    assert info.value.message() == "ModelInfer RPC doesn't support models with decoupled transaction policy"
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [1]}]}
    assert error_of(server.http_port, "POST", "/v2/models/counter/infer", body) == (
        501,
        "HTTP end point doesn't support models with decoupled transaction policy",
    )


# --- cancellation -----------------------------------------------------------------------------


def stream_threads() -> int:
    return sum(thread.name == "neuropod-serve-stream" for thread in threading.enumerate())


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_cancelling_the_stream_stops_the_model(client, marker):
    before = marker.read_text().count("closed -3") if marker.exists() else 0
    collector = Collector()
    client.start_stream(collector)
    client.async_stream_infer("counter", counter_inputs(-3), request_id="endless")
    assert all(error is None for _, error in collector.take(3))
    client.stop_stream(cancel_requests=True)
    assert wait_for(lambda: marker.exists() and marker.read_text().count("closed -3") == before + 1)
    assert wait_for(lambda: stream_threads() == 0)
    # Both slots are free again: a request that needs two at once runs.
    answers = stream(
        client,
        [
            {"model_name": "counter", "inputs": counter_inputs(-4), "request_id": "waits"},
            {"model_name": "counter", "inputs": counter_inputs(-5), "request_id": "wakes"},
        ],
    )
    assert [error for _, error in answers] == [None, None]


# --- the asyncio client -----------------------------------------------------------------------


def test_the_asyncio_client_streams(server):
    async def run() -> list[tuple[str, int | None, bool]]:
        async with grpcaio.InferenceServerClient(server.grpc_address) as client:

            async def requests():
                for n in (2, 3):
                    yield {"model_name": "counter", "inputs": counter_inputs(n), "request_id": f"n{n}"}

            got = []
            async for result, error in client.stream_infer(requests()):
                assert error is None, error
                got.append((result.get_response().id, int(result.as_numpy("i")[0]), final(result)))
                if len(got) == 5:
                    break
            return got

    got = asyncio.run(run())
    assert sorted(got) == [
        ("n2", 0, False),
        ("n2", 1, False),
        ("n3", 0, False),
        ("n3", 1, False),
        ("n3", 2, False),
    ]


# --- a remote model's infer_stream ------------------------------------------------------------


@pytest.fixture(scope="module")
def remote(server):
    with load_neuropod(f"grpc://{server.grpc_address}/v2/models/counter") as model:
        yield model


def test_a_remote_decoupled_model_streams(remote):
    assert remote.decoupled
    assert [int(r["i"][0]) for r in remote.infer_stream({"n": np.array([3])})] == [0, 1, 2]
    assert list(remote.infer_stream({"n": np.array([0])})) == []
    with pytest.raises(InferenceError, match="is decoupled"):
        remote.infer({"n": np.array([1])})


def test_a_remote_stream_reports_the_models_failure(remote):
    stream = remote.infer_stream({"n": np.array([-1])})
    assert int(next(stream)["i"][0]) == 0
    with pytest.raises(InferenceError, match="asked to fail after one response"):
        next(stream)


def test_closing_a_remote_stream_cancels_it(remote, marker):
    before = marker.read_text().count("closed -3") if marker.exists() else 0
    stream = remote.infer_stream({"n": np.array([-3])})
    assert [int(next(stream)["i"][0]) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert wait_for(lambda: marker.read_text().count("closed -3") == before + 1)
    assert wait_for(lambda: stream_threads() == 0)


def test_a_remote_plain_model_streams_its_one_response(server):
    with load_neuropod(f"grpc://{server.grpc_address}/v2/models/adder") as model:
        x = np.ones((1, 2), np.float32)
        [response] = model.infer_stream({"x": x, "y": x})
        np.testing.assert_array_equal(response["sum"], [[2.0, 2.0]])


# --- shutdown -------------------------------------------------------------------------------------


def test_an_idle_open_stream_does_not_hold_up_the_servers_stop(tmp_path):
    path = build_counter(tmp_path, tmp_path / "counter.zip")
    server = Server([path], http_port=None, grpc_port=0, drain_timeout=30).start()
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        collector = Collector()
        client.start_stream(collector)  # left open, as long-lived clients do
        client.async_stream_infer("counter", counter_inputs(1), request_id="one")
        assert collector.take(1)[0][1] is None
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 10  # not the 30 s drain_timeout
    finally:
        client.close()
        server.stop()
