"""Stateful models (issue 14, item 2): sequences over HTTP and gRPC with unchanged tritonclient
clients against a real server on loopback. Correlation ids (integer and string), start and end,
the control inputs and implicit state the server feeds the model, the idle timeout, the cap on
active sequences, Triton's error texts, and sequences pinned to one of two worker instances."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from neuropod.errors import OptionError
from neuropod.packagers.python import create_python_neuropod
from neuropod.serving import Server
from neuropod.serving.options import OPTIONS_FILE, ModelOptions
from neuropod.serving.sequence_batching import parse_sequence_batching
from tests.serving.helpers import build_model, error_of

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

# Keeps the running sum as implicit state (ACC_IN -> ACC_OUT) and reports the controls it got.
ACCUMULATOR = """
import numpy as np

def get_model(data_dir):
    def run(INPUT, START, END, READY, CORRID, ACC_IN):
        total = ACC_IN + INPUT
        flags = np.concatenate([START, END, READY], axis=-1).astype(np.int32)
        if (INPUT == -1).any():  # forgets its state output
            return {"OUTPUT": total, "FLAGS": flags, "CORRID_OUT": CORRID}
        if (INPUT == -2).any():
            raise RuntimeError("asked to fail")
        return {"OUTPUT": total, "ACC_OUT": total, "FLAGS": flags, "CORRID_OUT": CORRID}
    return run
"""

# Keeps its state in its own memory, keyed by the CORRID control, and says which process ran it.
IN_MEMORY = """
import os
import numpy as np

def get_model(data_dir):
    totals = {}
    def run(INPUT, START, END, CORRID):
        key = int(CORRID[0])
        if START[0]:
            totals[key] = 0
        totals[key] += int(INPUT[0])
        total = totals[key]
        if END[0]:
            del totals[key]
        return {"OUTPUT": np.array([total], np.int32), "PID": np.array([os.getpid()], np.int64),
                "HELD": np.array([len(totals)], np.int32)}
    return run
"""


def controls(corrid_type: str) -> list[dict]:
    return [
        {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}]},
        {"name": "END", "control": [{"kind": "CONTROL_SEQUENCE_END", "bool_false_true": [False, True]}]},
        {"name": "READY", "control": [{"kind": "CONTROL_SEQUENCE_READY", "fp32_false_true": [0, 1]}]},
        {"name": "CORRID", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": corrid_type}]},
    ]


def accumulator_batching(corrid_type: str = "TYPE_UINT64", idle_us: int = 10_000_000) -> dict:
    return {
        "max_sequence_idle_microseconds": idle_us,
        "control_input": controls(corrid_type),
        "state": [
            {
                "input_name": "ACC_IN",
                "output_name": "ACC_OUT",
                "data_type": "TYPE_INT32",
                "dims": [1],
                "initial_state": [
                    {"name": "zero", "data_type": "TYPE_INT32", "dims": [1], "zero_data": True}
                ],
            }
        ],
    }


def package(root: Path, name: str, code: str, inputs: list, outputs: list) -> Path:
    source = root / f"src_{name}" / f"seq_{name}"
    source.mkdir(parents=True, exist_ok=True)
    (source / "__init__.py").write_text("")
    (source / "main.py").write_text(textwrap.dedent(code))
    path = root / f"{name}.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name=name,
        input_spec=inputs,
        output_spec=outputs,
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": [f"seq_{name}"]}],
        entrypoint_package=f"seq_{name}.main",
        entrypoint="get_model",
    )
    return path


def accumulator(root: Path, name: str, corrid: str, batched: bool) -> Path:
    """The accumulator package: every tensor is [1], or [batch, 1] for a batching model."""
    lead = ["batch"] if batched else []

    def spec(tensor: str, dtype: str, width: int = 1) -> dict:
        return {"name": tensor, "dtype": dtype, "shape": [*lead, width]}

    inputs = [
        spec("INPUT", "int32"),
        spec("START", "int32"),
        spec("END", "bool"),
        spec("READY", "float32"),
        spec("CORRID", corrid),
        spec("ACC_IN", "int32"),
    ]
    outputs = [
        spec("OUTPUT", "int32"),
        spec("ACC_OUT", "int32"),
        spec("FLAGS", "int32", 3),
        spec("CORRID_OUT", corrid),
    ]
    return package(root, name, ACCUMULATOR, inputs, outputs)


def model_folder(repository: Path, name: str, zip_path: Path, options: dict) -> None:
    folder = repository / name
    folder.mkdir(parents=True)
    shutil.copy(zip_path, folder / "model.zip")
    (folder / OPTIONS_FILE).write_text(json.dumps(options))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequences")
    repository = root / "repository"
    repository.mkdir()
    plain = accumulator(root, "acc", "uint64", batched=False)
    strings = accumulator(root, "acc_str", "string", batched=True)
    # "acc": sequence_batching in neuropod-serve.json; "acc_str": in its config, batching.
    model_folder(repository, "acc", plain, {"sequence_batching": accumulator_batching()})
    config = {"max_batch_size": 4, "sequence_batching": accumulator_batching("TYPE_STRING")}
    model_folder(repository, "acc_str", strings, {"config": config})
    model_folder(repository, "acc_idle", plain, {"sequence_batching": accumulator_batching(idle_us=300_000)})
    model_folder(
        repository, "acc_capped", plain, {"sequence_batching": accumulator_batching(), "max_sequences": 2}
    )
    shutil.copy(plain, repository / "acc_plain.zip")  # stateless until a load gives it a config
    build_model(root, "adder", repository / "adder")
    one = {"dtype": "int32", "shape": [1]}
    in_memory = package(
        root,
        "pinned",
        IN_MEMORY,
        [
            {"name": "INPUT", **one},
            {"name": "START", **one},
            {"name": "END", **one},
            {"name": "CORRID", "dtype": "uint64", "shape": [1]},
        ],
        [{"name": "OUTPUT", **one}, {"name": "PID", "dtype": "int64", "shape": [1]}, {"name": "HELD", **one}],
    )
    pinned_options = ModelOptions(
        {"use_ope": True, "instances": 2},
        sequence_batching={
            "control_input": [
                {
                    "name": "START",
                    "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}],
                },
                {"name": "END", "control": [{"kind": "CONTROL_SEQUENCE_END", "int32_false_true": [0, 1]}]},
                {
                    "name": "CORRID",
                    "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_UINT64"}],
                },
            ]
        },
    )
    shutil.copy(in_memory, repository / "pinned.zip")
    # In code this time: ModelOptions over a repository model.
    with Server(
        repository=repository, http_port=0, grpc_port=0, model_options={"pinned": pinned_options}
    ) as server:
        yield server


def infer(client, model: str, value: int, sequence_id, start=False, end=False, batched=False, **kwargs):
    """One request of a sequence with either client: the result's arrays."""
    module = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    data = np.array([[value]] if batched else [value], np.int32)
    tensor = module.InferInput("INPUT", list(data.shape), "INT32")
    tensor.set_data_from_numpy(data)
    result = client.infer(
        model, [tensor], sequence_id=sequence_id, sequence_start=start, sequence_end=end, **kwargs
    )
    response = result.get_response()
    names = (
        [o["name"] for o in response["outputs"]]
        if isinstance(response, dict)
        else [o.name for o in response.outputs]
    )
    return {name: result.as_numpy(name) for name in names}


@pytest.fixture(params=["http", "grpc"])
def client(request, http, grpc):
    return http if request.param == "http" else grpc


def test_two_interleaved_sequences_accumulate_apart(client):
    a, b = 1001, 1002
    assert infer(client, "acc", 1, a, start=True)["OUTPUT"].tolist() == [1]
    assert infer(client, "acc", 10, b, start=True)["OUTPUT"].tolist() == [10]
    assert infer(client, "acc", 2, a)["OUTPUT"].tolist() == [3]
    assert infer(client, "acc", 20, b)["OUTPUT"].tolist() == [30]
    last_a = infer(client, "acc", 3, a, end=True)
    assert last_a["OUTPUT"].tolist() == [6]
    assert infer(client, "acc", 30, b, end=True)["OUTPUT"].tolist() == [60]
    # The state output is the server's, never sent; the controls reached the model.
    assert set(last_a) == {"OUTPUT", "FLAGS", "CORRID_OUT"}


def test_the_model_reads_the_controls(client):
    first = infer(client, "acc", 5, 77, start=True)
    assert first["FLAGS"].tolist() == [1, 0, 1]  # START true, END false, READY true
    assert first["CORRID_OUT"].dtype == np.uint64 and first["CORRID_OUT"].tolist() == [77]
    assert infer(client, "acc", 5, 77)["FLAGS"].tolist() == [0, 0, 1]
    both = infer(client, "acc", 5, 77, end=True)
    assert both["FLAGS"].tolist() == [0, 1, 1] and both["OUTPUT"].tolist() == [15]
    # A request both starting and ending a sequence sets both.
    single = infer(client, "acc", 4, 78, start=True, end=True)
    assert single["FLAGS"].tolist() == [1, 1, 1] and single["OUTPUT"].tolist() == [4]


def test_string_ids_and_batched_control_shapes(client):
    first = infer(client, "acc_str", 2, "user-a", start=True, batched=True)
    infer(client, "acc_str", 7, "user-b", start=True, batched=True)
    second = infer(client, "acc_str", 3, "user-a", batched=True, end=True)
    assert second["OUTPUT"].tolist() == [[5]]
    assert first["FLAGS"].tolist() == [[1, 0, 1]]
    texts = [v.decode() if isinstance(v, bytes) else v for v in first["CORRID_OUT"].reshape(-1).tolist()]
    assert texts == ["user-a"]
    assert infer(client, "acc_str", 1, "user-b", batched=True, end=True)["OUTPUT"].tolist() == [[8]]


def test_integer_ids_take_all_64_bits(grpc, http):
    # gRPC carries ids as int64_param: the bits are read back as unsigned, as Triton does.
    big = 2**64 - 5
    assert infer(http, "acc", 1, big, start=True)["CORRID_OUT"].tolist() == [big]
    assert infer(grpc, "acc", 1, big - 2**64, end=True)["OUTPUT"].tolist() == [2]


def test_start_on_an_active_sequence_begins_it_anew(client):
    infer(client, "acc", 100, 500, start=True)
    assert infer(client, "acc", 1, 500, start=True)["OUTPUT"].tolist() == [1]
    assert infer(client, "acc", 1, 500, end=True)["OUTPUT"].tolist() == [2]


def test_errors_as_triton_gives_them(client):
    code = 400 if isinstance(client, httpclient.InferenceServerClient) else None
    cases = [
        (0, False, "inference request to model 'acc' must specify a non-zero or non-empty correlation ID"),
        (
            4242,
            False,
            "inference request for sequence 4242 to model 'acc' must specify the START flag on the first "
            "request of the sequence",
        ),
        (
            "text",
            True,
            "[request id: r1] sequence batching control 'CORRID' data-type is 'BYTES', but model 'acc' "
            "expects 'UINT64'",
        ),
    ]
    for sequence_id, start, message in cases:
        with pytest.raises(InferenceServerException) as raised:
            infer(client, "acc", 1, sequence_id, start=start, request_id="r1")
        assert message in str(raised.value)
        if code is not None:
            assert raised.value.status() == "400"
        else:
            assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(
        InferenceServerException, match="data-type is 'UINT64', but model 'acc_str' expects 'BYTES'"
    ):
        infer(client, "acc_str", 1, 5, start=True, batched=True)
    # An ended sequence is gone.
    infer(client, "acc", 1, 808, start=True, end=True)
    with pytest.raises(
        InferenceServerException, match="sequence 808 to model 'acc' must specify the START flag"
    ):
        infer(client, "acc", 1, 808)


def test_batch_size_and_control_inputs_are_not_the_clients(http, server):
    data = np.ones((2, 1), np.int32)
    tensor = httpclient.InferInput("INPUT", [2, 1], "INT32")
    tensor.set_data_from_numpy(data)
    with pytest.raises(
        InferenceServerException, match="must specify batch-size 1 due to requirements of sequence batcher"
    ):
        http.infer("acc_str", [tensor], sequence_id="x", sequence_start=True)
    body = {
        "inputs": [
            {"name": "INPUT", "shape": [1], "datatype": "INT32", "data": [1]},
            {"name": "ACC_IN", "shape": [1], "datatype": "INT32", "data": [1000]},
        ],
        "parameters": {"sequence_id": 9, "sequence_start": True},
    }
    status, message = error_of(server.http_port, "POST", "/v2/models/acc/infer", body)
    assert (status, message) == (400, "unexpected inference input 'ACC_IN' for model 'acc'")
    # A request that breaks the spec does not start its sequence.
    body["inputs"] = [{"name": "INPUT", "shape": [2], "datatype": "INT32", "data": [1, 2]}]
    status, message = error_of(server.http_port, "POST", "/v2/models/acc/infer", body)
    assert status == 400 and "INPUT" in message, message
    with pytest.raises(
        InferenceServerException, match="sequence 9 to model 'acc' must specify the START flag"
    ):
        infer(http, "acc", 1, 9)


def test_malformed_sequence_parameters(server, grpc):
    port = server.http_port
    base = {"inputs": [{"name": "INPUT", "shape": [1], "datatype": "INT32", "data": [1]}]}
    for parameters, message in [
        ({"sequence_id": -1}, "Unable to parse 'sequence_id'"),
        ({"sequence_id": 1.5}, "Unable to parse 'sequence_id'"),
        ({"sequence_id": True}, "Unable to parse 'sequence_id'"),
        ({"sequence_id": 3, "sequence_start": "yes"}, "Unable to parse 'sequence_start'"),
        ({"sequence_id": 3, "sequence_end": 1}, "Unable to parse 'sequence_end'"),
    ]:
        for model in ("acc", "adder"):  # checked on a stateless model too, as Triton does
            status, text = error_of(
                port, "POST", f"/v2/models/{model}/infer", {**base, "parameters": parameters}
            )
            assert status == 400 and text.startswith(message), text
    # gRPC: the kinds Triton accepts, checked with a hand-built message.
    for key, slot, value, message in [
        (
            "sequence_id",
            "uint64_param",
            3,
            "invalid value type for 'sequence_id' parameter, expected int64_param or string_param.",
        ),
        (
            "sequence_id",
            "bool_param",
            True,
            "invalid value type for 'sequence_id' parameter, expected int64_param or string_param.",
        ),
        (
            "sequence_start",
            "int64_param",
            1,
            "invalid value type for 'sequence_start' parameter, expected bool_param.",
        ),
        (
            "sequence_end",
            "string_param",
            "true",
            "invalid value type for 'sequence_end' parameter, expected bool_param.",
        ),
    ]:
        message_ = service_pb2.ModelInferRequest(model_name="acc")
        tensor = message_.inputs.add(name="INPUT", datatype="INT32", shape=[1])
        tensor.contents.int_contents.append(1)
        setattr(message_.parameters[key], slot, value)
        with pytest.raises(Exception) as raised:
            grpc._client_stub.ModelInfer(message_)
        assert raised.value.code().name == "INVALID_ARGUMENT" and raised.value.details() == message


def test_a_failed_request_leaves_the_state_as_it_was(http):
    assert infer(http, "acc", 1, 700, start=True)["OUTPUT"].tolist() == [1]
    with pytest.raises(InferenceServerException) as raised:
        infer(http, "acc", -1, 700)
    assert raised.value.status() == "500"
    assert "Model 'acc' did not return its state output 'ACC_OUT'" in str(raised.value)
    assert infer(http, "acc", 2, 700)["OUTPUT"].tolist() == [3]
    with pytest.raises(InferenceServerException, match="asked to fail"):
        infer(http, "acc", -2, 700)
    assert infer(http, "acc", 3, 700, end=True)["OUTPUT"].tolist() == [6]
    # A failed request flagged end still ends its sequence.
    infer(http, "acc", 1, 701, start=True)
    with pytest.raises(InferenceServerException, match="asked to fail"):
        infer(http, "acc", -2, 701, end=True)
    with pytest.raises(InferenceServerException, match="sequence 701 to model 'acc' must specify"):
        infer(http, "acc", 1, 701)


def test_initial_state_from_a_data_file(tmp_path):
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "start.bin").write_bytes(np.array([7, 8], "<i4").tobytes())
    initial = {"name": "s", "data_type": "TYPE_INT32", "dims": [2], "data_file": "start.bin"}
    state = {"input_name": "a", "output_name": "b", "data_type": "TYPE_INT32", "dims": [-1]}
    settings = parse_sequence_batching({"state": [{**state, "initial_state": [initial]}]}, "test", tmp_path)
    assert settings.states[0].first().tolist() == [7, 8]
    config = settings.to_config()
    assert config["state"][0]["initial_state"] == [initial]
    assert parse_sequence_batching(config, "again", tmp_path).to_config() == config  # reads back
    for changed, message in [
        ({"dims": [3]}, "does not hold a INT32 tensor of dims [3]"),
        ({"data_file": "../start.bin"}, "is outside"),
        ({"data_file": "missing.bin"}, "cannot be read"),
        ({"data_type": "TYPE_FP32"}, "differs from the state's TYPE_INT32"),
    ]:
        with pytest.raises(OptionError, match=re.escape(message)):
            parse_sequence_batching(
                {"state": [{**state, "initial_state": [{**initial, **changed}]}]}, "t", tmp_path
            )


def test_a_stateless_model_ignores_sequence_parameters(client):
    module = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    tensors = []
    for name in ("x", "y"):
        tensor = module.InferInput(name, [1, 2], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 2), np.float32))
        tensors.append(tensor)
    result = client.infer("adder", tensors, sequence_id=12, sequence_start=True)
    assert result.as_numpy("sum").tolist() == [[2.0, 2.0]]


def test_idle_sequences_are_freed(client, server):
    infer(client, "acc_idle", 1, 31, start=True)
    infer(client, "acc_idle", 1, 32, start=True)
    scheduler = server.core.repository.get("acc_idle").sequences
    deadline = time.monotonic() + 10
    while scheduler.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.active == 0
    with pytest.raises(
        InferenceServerException, match="sequence 31 to model 'acc_idle' must specify the START flag"
    ):
        infer(client, "acc_idle", 1, 31)


def test_the_cap_on_active_sequences(client, server):
    infer(client, "acc_capped", 1, 1, start=True)
    infer(client, "acc_capped", 1, 2, start=True)
    with pytest.raises(InferenceServerException) as raised:
        infer(client, "acc_capped", 1, 3, start=True)
    assert "has 2 active sequences, its limit (max_sequences)" in str(raised.value)
    assert raised.value.status() in ("503", "StatusCode.UNAVAILABLE")
    infer(client, "acc_capped", 1, 1, end=True)
    assert infer(client, "acc_capped", 5, 3, start=True)["OUTPUT"].tolist() == [5]
    infer(client, "acc_capped", 1, 2, end=True)
    infer(client, "acc_capped", 1, 3, end=True)
    assert server.core.repository.get("acc_capped").sequences.active == 0


def test_sequences_are_pinned_to_one_of_two_instances(client):
    # The model keeps each sequence's sum in its own worker's memory: only requests that all
    # reach the same worker add up.
    pids = {}
    for step in range(1, 5):
        for sequence in (41, 42):
            out = infer(client, "pinned", step, sequence, start=step == 1, end=step == 4)
            assert out["OUTPUT"].tolist() == [sum(range(1, step + 1))]
            pids.setdefault(sequence, set()).add(int(out["PID"][0]))
    assert all(len(found) == 1 for found in pids.values()), pids
    assert pids[41] != pids[42]  # two sequences, two instances


def test_requests_of_one_sequence_run_in_order(server):
    # Many requests of one sequence in flight at once: each is answered with the sum so far,
    # which only running them one at a time can give.
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        infer(client, "acc", 0, 900, start=True)
        results: list = []
        lock = threading.Lock()

        def send():
            out = infer(client, "acc", 1, 900)["OUTPUT"][0]
            with lock:
                results.append(int(out))

        threads = [threading.Thread(target=send) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == list(range(1, 17))
        assert infer(client, "acc", 0, 900, end=True)["OUTPUT"].tolist() == [16]
    finally:
        client.close()


def test_the_model_configuration_reports_sequence_batching(http, grpc):
    config = http.get_model_config("acc")
    section = config["sequence_batching"]
    assert section["max_sequence_idle_microseconds"] == 10_000_000
    kinds = {c["name"]: c["control"][0]["kind"] for c in section["control_input"]}
    assert kinds == {
        "START": "CONTROL_SEQUENCE_START",
        "END": "CONTROL_SEQUENCE_END",
        "READY": "CONTROL_SEQUENCE_READY",
        "CORRID": "CONTROL_SEQUENCE_CORRID",
    }
    assert section["state"][0]["input_name"] == "ACC_IN" and section["state"][0]["dims"] == [1]
    # Clients see neither control nor state tensors.
    assert [i["name"] for i in config["input"]] == ["INPUT"]
    assert [o["name"] for o in config["output"]] == ["OUTPUT", "FLAGS", "CORRID_OUT"]
    metadata = http.get_model_metadata("acc")
    assert [i["name"] for i in metadata["inputs"]] == ["INPUT"]
    over_grpc = grpc.get_model_config("acc_str", as_json=True)["config"]["sequence_batching"]
    assert over_grpc["control_input"][3]["control"][0]["data_type"] == "TYPE_STRING"
    assert "sequence" in http.get_server_metadata()["extensions"]


def test_a_repository_load_config_makes_a_model_stateful(http):
    config = json.dumps({"sequence_batching": accumulator_batching()})
    http.load_model("acc_plain", config=config)
    assert infer(http, "acc_plain", 4, 1, start=True)["OUTPUT"].tolist() == [4]
    assert infer(http, "acc_plain", 4, 1, end=True)["OUTPUT"].tolist() == [8]
    assert "sequence_batching" in http.get_model_config("acc_plain")
    with pytest.raises(InferenceServerException, match="'NOPE' is not an input of the model"):
        bad = accumulator_batching()
        bad["control_input"][0]["name"] = "NOPE"
        http.load_model("acc_plain", config=json.dumps({"sequence_batching": bad}))


def test_asyncio_clients(server):
    import tritonclient.grpc.aio as grpc_aio
    import tritonclient.http.aio as http_aio

    async def run():
        async with http_aio.InferenceServerClient(f"127.0.0.1:{server.http_port}") as h:
            g = grpc_aio.InferenceServerClient(server.grpc_address)
            try:
                sums = []
                for step, client in enumerate([h, g, h, g], start=1):
                    module = http_aio if client is h else grpc_aio
                    tensor = module.InferInput("INPUT", [1], "INT32")
                    tensor.set_data_from_numpy(np.array([step], np.int32))
                    result = await client.infer(
                        "acc", [tensor], sequence_id=6000, sequence_start=step == 1, sequence_end=step == 4
                    )
                    sums.append(int(result.as_numpy("OUTPUT")[0]))
                return sums
            finally:
                await g.close()

    assert asyncio.run(run()) == [1, 3, 6, 10]


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ({"oldest": {}}, "the 'oldest' strategy is not supported"),
        (
            {"control_input": [{"name": "S", "control": [{"kind": "CONTROL_SEQUENCE_START"}]}]},
            "must set exactly one of",
        ),
        (
            {
                "control_input": [
                    {"name": "C", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_FP32"}]}
                ]
            },
            "'data_type' must be one of TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32, TYPE_STRING",
        ),
        (
            {"state": [{"input_name": "a", "output_name": "b", "data_type": "TYPE_INT32"}]},
            "'dims' must be a list",
        ),
        ({"max_sequence_idle_microseconds": -1}, "must be an integer >= 0"),
        ({"priority": 1}, "unknown field(s) 'priority'"),
    ],
)
def test_malformed_settings_are_refused(batching, message):
    with pytest.raises(OptionError) as raised:
        ModelOptions(sequence_batching=batching)
    assert message in str(raised.value)


def test_sequence_and_dynamic_batching_exclude_each_other():
    with pytest.raises(OptionError, match="exclude each other"):
        ModelOptions(max_batch_size=4, dynamic_batching={}, sequence_batching={})
    with pytest.raises(OptionError, match="give it once"):
        ModelOptions(config={"sequence_batching": {}}, sequence_batching={})


@pytest.mark.parametrize(
    ("corrid", "spec_dtype", "expected"),
    [
        ("TYPE_INT64", "int64", -(2**63) + 5),  # the same 64 bits
        ("TYPE_UINT32", "uint32", 7),  # the low 32 bits
        ("TYPE_INT32", "int32", -1),
    ],
)
def test_integer_corrid_types(tmp_path, corrid, spec_dtype, expected):
    from neuropod.loader import load_neuropod
    from neuropod.protocol.infer import InferRequest
    from neuropod.serving.served_model import ServedModel
    from neuropod.serving.shm import SharedMemoryRegistry
    from neuropod.serving.stats import RequestTimer

    identifier = {"TYPE_INT64": 2**63 + 5, "TYPE_UINT32": 2**32 + 7, "TYPE_INT32": 2**32 - 1}[corrid]
    path = accumulator(tmp_path, f"acc_{spec_dtype}", spec_dtype, batched=False)
    served = ServedModel(
        "m", load_neuropod(path), ModelOptions(sequence_batching=accumulator_batching(corrid))
    )
    try:
        request = InferRequest(
            {"INPUT": np.array([1], np.int32)},
            parameters={"sequence_id": identifier, "sequence_start": True, "sequence_end": True},
        )
        with RequestTimer(served.stats) as timer:
            response = served.answer(request, SharedMemoryRegistry(), timer)
        out = response.arrays()["CORRID_OUT"]
        assert out.dtype == np.dtype(spec_dtype) and out.tolist() == [expected]
    finally:
        served.close()
