"""Ray Data and Ray Serve, against a real local Ray (one session for the module, on loopback)."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Before Ray starts: otherwise it binds its services to the machine's external address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from neuropod.batch import STATE_FILE, run  # noqa: E402
from neuropod.cli.main import main  # noqa: E402
from neuropod.packagers import create_python_neuropod  # noqa: E402

pytestmark = [
    # When JAX was imported earlier in the session (its own tests), its fork hook warns as Ray
    # starts its processes; nothing here runs JAX in the forked child.
    pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning"),
    # Ray Data copies its DataContext field by field, and the setters of its own deprecated
    # fields warn; nothing here sets them.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    # Importing Ray Serve declares pydantic fields in a way pydantic 2 deprecates.
    pytest.mark.filterwarnings(
        "ignore:Using extra keyword arguments on `Field`:DeprecationWarning:ray.serve"
    ),
]

# x (batch, 3) -> y = 2x, total = row sums; logs the pid of every load and every call.
COUNTING = """
import os
import numpy as np

def get_model(data_dir):
    with open({loads!r}, "a") as log:
        log.write(f"{{os.getpid()}}\\n")

    def model(x):
        with open({calls!r}, "a") as log:
            log.write(f"{{os.getpid()}}\\n")
        if (x < 0).any():
            raise ValueError("negative input")
        return {{"y": x * 2, "total": x.sum(axis=1)}}
    return model
"""


@pytest.fixture(scope="module")
def ray_session() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if "ray.serve" in __import__("sys").modules:
        from ray import serve

        serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ray-model")
    logs = {"loads": root / "loads.log", "calls": root / "calls.log"}
    code = root / "code" / "counting"
    code.mkdir(parents=True)
    (code / "main.py").write_text(textwrap.dedent(COUNTING.format(**{k: str(v) for k, v in logs.items()})))
    create_python_neuropod(
        neuropod_path=root / "counting",
        model_name="counting",
        input_spec=[{"name": "x", "dtype": "float32", "shape": ("batch", 3)}],
        output_spec=[
            {"name": "y", "dtype": "float32", "shape": ("batch", 3)},
            {"name": "total", "dtype": "float32", "shape": ("batch",)},
        ],
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["counting"]}],
        entrypoint_package="counting.main",
        entrypoint="get_model",
        package_as_zip=True,
    )
    return {"package": root / "counting", **logs}


@pytest.fixture(autouse=True)
def fresh_logs(model: dict[str, Path]) -> None:
    pids(model["loads"]), pids(model["calls"])


def pids(log: Path) -> list[int]:
    """The pids logged, and the log emptied for the next test."""
    if not log.exists():
        return []
    lines = [int(line) for line in log.read_text().split()]
    log.unlink()
    return lines


def assert_loaded_once_per_actor(loads: list[int], calls: list[int], actors: int) -> None:
    """Every process that ran batches loaded the package once; ``actors`` processes at most.

    Loads are not counted directly: an actor of an earlier test's pool may still be starting.
    """
    assert 1 <= len(set(calls)) <= actors and os.getpid() not in calls
    assert all(loads.count(pid) == 1 for pid in set(calls)), (loads, calls)


def rows(start: int, count: int) -> np.ndarray:
    return np.arange(3 * start, 3 * (start + count), dtype=np.float32).reshape(count, 3)


def test_ray_engine_matches_the_local_runner_and_reports_failures(ray_session, model, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        x = rows(8 * i, 8)
        if i == 1:
            x[5, 0] = -1  # fails the batch of rows 4-7 of part-1
        np.savez(data / f"part-{i}.npz", x=x)
    command = ["run", str(model["package"]), "-i", str(data), "-b", "4", "-q"]

    assert main([*command, "-o", str(tmp_path / "ray"), "--engine", "ray", "--concurrency", "2"]) == 1
    printed = capsys.readouterr().out
    loads, calls = pids(model["loads"]), pids(model["calls"])
    assert main([*command, "-o", str(tmp_path / "local")]) == 1
    assert capsys.readouterr().out.splitlines()[1:3] == printed.splitlines()[1:3]

    # One load per actor, not one per batch.
    assert len(calls) == 6
    assert_loaded_once_per_actor(loads, calls, actors=2)
    assert (
        "shard part-1.npz rows 4-7: InferenceError: Model 'counting' (python) failed: "
        "ValueError: negative input" in printed
    )
    ray_state = json.loads((tmp_path / "ray" / STATE_FILE).read_text())
    local_state = json.loads((tmp_path / "local" / STATE_FILE).read_text())
    assert ray_state["shards"] == local_state["shards"]
    for i in range(3):
        with (
            np.load(tmp_path / "ray" / f"part-{i}.npz") as got,
            np.load(tmp_path / "local" / f"part-{i}.npz") as want,
        ):
            assert sorted(got.files) == ["total", "y"]
            for name in got.files:
                np.testing.assert_array_equal(got[name], want[name])


def test_ray_engine_ships_the_package_and_in_memory_data(ray_session, model):
    from neuropod.integrations.ray import RayEngine

    x = rows(0, 10)
    engine = RayEngine(concurrency=1, ship_package=True)
    result = run(model["package"], {"x": x}, batch_size=3, engine=engine, progress=False)
    assert (result.rows, result.failures) == (10, ())
    np.testing.assert_array_equal(result.outputs["y"], x * 2)
    np.testing.assert_array_equal(result.outputs["total"], x.sum(axis=1))
    calls = pids(model["calls"])
    assert len(calls) == 4
    assert_loaded_once_per_actor(pids(model["loads"]), calls, actors=1)


def test_infer_dataset_loads_once_per_actor(ray_session, model):
    from neuropod.integrations.ray import infer_dataset

    x = rows(0, 40)
    items = [{"x": row, "id": i} for i, row in enumerate(x)]
    dataset = ray.data.from_items(items, override_num_blocks=4)
    out = infer_dataset(
        dataset, model["package"], batch_size=5, concurrency=2, keep_columns=["id"]
    ).take_all()
    got = sorted(out, key=lambda row: row["id"])
    np.testing.assert_array_equal(np.stack([row["y"] for row in got]), x * 2)
    np.testing.assert_array_equal(np.array([row["total"] for row in got]), x.sum(axis=1))
    calls = pids(model["calls"])
    assert len(calls) == 8
    assert_loaded_once_per_actor(pids(model["loads"]), calls, actors=2)


def test_infer_dataset_failure_is_raised(ray_session, model):
    from neuropod.integrations.ray import infer_dataset

    x = rows(0, 12)
    x[7, 1] = -1
    dataset = ray.data.from_items([{"x": row} for row in x], override_num_blocks=2)
    with pytest.raises(
        Exception, match="InferenceError: Model 'counting' \\(python\\) failed: ValueError: negative input"
    ):
        infer_dataset(dataset, model["package"], batch_size=4, concurrency=2).materialize()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


def test_serve_deployment_answers_the_inference_protocol(ray_session, model):
    from ray import serve

    from neuropod.integrations.ray import neuropod_deployment

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = neuropod_deployment(model["package"], max_batch_size=8, batch_wait_timeout_s=0.05)
    serve.run(app, name="counting", route_prefix="/")
    base = f"http://127.0.0.1:{port}/v2"

    def request(start: int, count: int) -> dict[str, Any]:
        x = rows(start, count)
        return {
            "id": str(start),
            "inputs": [{"name": "x", "shape": [count, 3], "datatype": "FP32", "data": x.ravel().tolist()}],
        }

    status, body = post(f"{base}/models/counting/infer", request(0, 2))
    assert status == 200
    assert body == {
        "model_name": "counting",
        "model_version": "1",
        "id": "0",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": (rows(0, 2) * 2).ravel().tolist()},
            {"name": "total", "datatype": "FP32", "shape": [2], "data": rows(0, 2).sum(axis=1).tolist()},
        ],
    }
    # Concurrent requests of different sizes, merged or not, each get their own rows back.
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda i: post(f"{base}/models/counting/infer", request(10 * i, i + 1)), range(6))
        )
    for i, (status, body) in enumerate(answers):
        assert status == 200 and body["id"] == str(10 * i)
        assert body["outputs"][0]["data"] == (rows(10 * i, i + 1) * 2).ravel().tolist()

    bad = request(0, 1)
    bad["inputs"][0]["datatype"] = "FP64"
    status, body = post(f"{base}/models/counting/infer", bad)
    assert status == 400
    assert (
        "Tensor 'x' in the input spec is expected to be of type float32, but was of type float64"
        in body["error"]
    )
    status, body = post(f"{base}/models/other/infer", request(0, 1))
    assert (status, body) == (404, {"error": "No model named 'other' here; this is 'counting'"})
    with urllib.request.urlopen(f"{base}/models/counting", timeout=60) as response:
        metadata = json.loads(response.read())
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    with urllib.request.urlopen(f"{base}/health/ready", timeout=60) as response:
        assert json.loads(response.read()) == {"ready": True}
    assert_loaded_once_per_actor(pids(model["loads"]), pids(model["calls"]), actors=1)
    serve.delete("counting")


def test_columns_of_per_row_arrays_are_stacked_when_their_shapes_agree():
    from neuropod import ValidationError
    from neuropod.integrations.ray.data import stack_rows

    column = np.empty(2, dtype=object)
    column[0], column[1] = np.ones(3, np.float32), np.zeros(3, np.float32)
    assert stack_rows(column, "x").shape == (2, 3)
    column[1] = np.zeros(2, np.float32)
    with pytest.raises(
        ValidationError, match=r"Column 'x' holds rows of different shapes \(\(2,\), \(3,\)\)"
    ):
        stack_rows(column, "x")


def test_actor_load_options_pin_the_actors_gpu_unless_given():
    from neuropod.integrations.ray.actor import actor_load_options

    given = {"visible_gpu": 1}
    assert actor_load_options(None, num_gpus=0) == {}
    assert actor_load_options(None, num_gpus=0.5, use_ope=True) == {"use_ope": True, "visible_gpu": 0}
    assert actor_load_options(given, num_gpus=1) == {"visible_gpu": 1}
    assert actor_load_options(given, num_gpus=1) is not given


def test_a_model_actor_closes_its_model_when_collected(model, tmp_path):
    from neuropod import ModelClosedError, PackageError
    from neuropod.integrations.ray.actor import ModelActor

    actor = ModelActor(model["package"], {})
    loaded = actor.model
    assert loaded.infer({"x": rows(0, 1)})["total"].tolist() == [3.0]
    del actor
    with pytest.raises(ModelClosedError):
        loaded.infer({"x": rows(0, 1)})
    with pytest.raises(PackageError, match=r"missing\.zip"):
        ModelActor(tmp_path / "missing.zip", {})  # and its __del__ finds no model to close
