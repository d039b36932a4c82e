"""``NeuropodModel.infer_stream`` and decoupled packages, in process and through workers
(``use_ope=True``): responses as the model yields them, each checked against the output spec,
and an early close that stops the model's generator and leaves the model ready for the next call.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from neuropod import InferenceError, OptionError, PackageError, ValidationError, WorkerCrashed, load_neuropod
from neuropod.dynamic_batching import DynamicBatcher
from neuropod.package.config import ModelConfig
from neuropod.packagers.python import create_python_neuropod
from tests.stream_models import MARKER_VARIABLE, build_counter

N = np.array([3], np.int64)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    marker = root / "closed.log"
    previous = os.environ.get(MARKER_VARIABLE)
    os.environ[MARKER_VARIABLE] = str(marker)  # read by the model at load, in workers too
    try:
        yield {
            "counter": build_counter(root, root / "counter.zip"),
            "plain": build_counter(root, root / "plain.zip", decoupled=False, name="plain"),
            "marker": marker,
        }
    finally:
        if previous is None:
            os.environ.pop(MARKER_VARIABLE, None)
        else:
            os.environ[MARKER_VARIABLE] = previous


@pytest.fixture(scope="module", params=[False, True], ids=["in_process", "use_ope"])
def counter(request, packages):
    with load_neuropod(packages["counter"], use_ope=request.param) as model:
        yield model


def closed(packages) -> list[str]:
    marker: Path = packages["marker"]
    return marker.read_text().split("\n")[:-1] if marker.exists() else []


def numbers(responses) -> list[int]:
    return [int(response["i"][0]) for response in responses]


@pytest.mark.parametrize("count", [0, 1, 5])
def test_a_decoupled_model_yields_each_response(counter, count):
    assert counter.decoupled
    responses = list(counter.infer_stream({"n": np.array([count])}))
    assert numbers(responses) == list(range(count))
    assert all(response["i"].dtype == np.int64 for response in responses)


def test_infer_refuses_a_decoupled_model(counter):
    with pytest.raises(InferenceError, match=r"Model 'counter' is decoupled: .* run it with infer_stream"):
        counter.infer({"n": N})


def test_inputs_are_checked_when_the_stream_is_asked_for(counter):
    with pytest.raises(ValidationError, match="'n'"):
        counter.infer_stream({"n": np.array([1.5])})  # raised here, before any iteration


def test_a_failure_after_a_response_ends_the_stream(counter):
    stream = counter.infer_stream({"n": np.array([-1])})
    assert numbers([next(stream)]) == [0]
    with pytest.raises(InferenceError, match="asked to fail after one response"):
        next(stream)
    assert numbers(counter.infer_stream({"n": N})) == [0, 1, 2]  # the model still serves


def test_each_response_is_checked_against_the_output_spec(counter):
    with pytest.raises(ValidationError, match=r"'i'.*int64"):
        list(counter.infer_stream({"n": np.array([-2])}))
    assert numbers(counter.infer_stream({"n": np.array([1])})) == [0]


def test_closing_the_stream_early_closes_the_models_generator(counter, packages):
    before = closed(packages).count("closed -3")
    stream = counter.infer_stream({"n": np.array([-3])})  # endless
    assert numbers([next(stream), next(stream), next(stream)]) == [0, 1, 2]
    stream.close()
    assert closed(packages).count("closed -3") == before + 1
    assert numbers(counter.infer_stream({"n": N})) == [0, 1, 2]


def test_a_stream_dropped_unfinished_is_closed_too(counter, packages):
    before = closed(packages).count("closed -3")
    stream = counter.infer_stream({"n": np.array([-3])})
    next(stream)
    del stream
    assert closed(packages).count("closed -3") == before + 1
    assert numbers(counter.infer_stream({"n": np.array([2])})) == [0, 1]


def test_a_closed_stream_leaves_no_thread_behind(counter):
    threads = threading.active_count()
    for _ in range(3):
        stream = counter.infer_stream({"n": np.array([-3])})
        next(stream)
        stream.close()
    assert threading.active_count() == threads


def test_a_model_that_is_not_decoupled_yields_its_one_response(packages):
    with load_neuropod(packages["plain"]) as model:
        assert not model.decoupled
        # Its function is a generator, which infer refuses with a hint at decoupled=True.
        with pytest.raises(InferenceError, match=r"returned generator; .* decoupled=True"):
            model.infer({"n": N})
        with pytest.raises(InferenceError, match="returned generator"):
            list(model.infer_stream({"n": N}))


def test_a_plain_model_streams_its_one_response(tmp_path):
    source = tmp_path / "src" / "plain_adder"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("def get_model(data_dir):\n    return lambda x: {'y': x + 1}\n")
    path = tmp_path / "adder.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="adder",
        input_spec=[{"name": "x", "dtype": "float32", "shape": [None]}],
        output_spec=[{"name": "y", "dtype": "float32", "shape": [None]}],
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["plain_adder"]}],
        entrypoint_package="plain_adder",
        entrypoint="get_model",
    )
    for use_ope in (False, True):
        with load_neuropod(path, use_ope=use_ope) as model:
            [response] = model.infer_stream({"x": np.zeros(2, np.float32)})
            np.testing.assert_array_equal(response["y"], [1, 1])


def test_a_decoupled_model_must_return_an_iterable(tmp_path):
    source = tmp_path / "src" / "dict_model"
    source.mkdir(parents=True)
    code = "import numpy as np\ndef get_model(data_dir):\n    return lambda n: {'i': n}\n"
    (source / "__init__.py").write_text(code)
    path = tmp_path / "dict.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="dict_model",
        input_spec=[{"name": "n", "dtype": "int64", "shape": [1]}],
        output_spec=[{"name": "i", "dtype": "int64", "shape": [1]}],
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["dict_model"]}],
        entrypoint_package="dict_model",
        entrypoint="get_model",
        decoupled=True,
    )
    with (
        load_neuropod(path) as model,
        pytest.raises(InferenceError, match="decoupled, so it must return an iterable"),
    ):
        list(model.infer_stream({"n": N}))


def test_the_package_declares_decoupled(packages):
    with zipfile.ZipFile(packages["counter"]) as archive:
        assert json.loads(archive.read("config.json"))["decoupled"] is True
    with zipfile.ZipFile(packages["plain"]) as archive:
        assert "decoupled" not in json.loads(archive.read("config.json"))


def test_a_config_with_a_decoupled_that_is_not_a_bool_is_refused():
    config = {"name": "m", "platform": "python", "input_spec": [], "output_spec": [], "decoupled": "yes"}
    with pytest.raises(PackageError, match="field 'decoupled' must be true or false, got 'yes'"):
        ModelConfig.from_json(config)


def test_the_self_test_of_a_decoupled_package_checks_its_last_response(tmp_path):
    source = tmp_path / "src" / "tested"
    source.mkdir(parents=True)
    code = """
        import numpy as np

        def get_model(data_dir):
            def run(n):
                for k in range(int(n[0])):
                    yield {"i": np.array([k])}
            return run
    """
    (source / "__init__.py").write_text(textwrap.dedent(code))
    arguments = {
        "model_name": "tested",
        "input_spec": [{"name": "n", "dtype": "int64", "shape": [1]}],
        "output_spec": [{"name": "i", "dtype": "int64", "shape": [1]}],
        "code_path_spec": [{"python_root": str(source.parent), "dirs_to_package": ["tested"]}],
        "entrypoint_package": "tested",
        "entrypoint": "get_model",
        "decoupled": True,
        "test_input_data": {"n": np.array([3])},
    }
    create_python_neuropod(
        neuropod_path=tmp_path / "good.zip", test_expected_out={"i": np.array([2])}, **arguments
    )
    with pytest.raises(ValueError, match="i does not match expected value"):
        create_python_neuropod(
            neuropod_path=tmp_path / "bad.zip", test_expected_out={"i": np.array([0])}, **arguments
        )


def test_a_decoupled_model_is_not_batched(packages):
    with load_neuropod(packages["counter"]) as model, pytest.raises(OptionError, match="is decoupled"):
        DynamicBatcher(model, max_batch_size=4)


def test_a_worker_that_dies_mid_stream_fails_the_stream_and_is_replaced(packages):
    with load_neuropod(packages["counter"], use_ope=True) as model:
        stream = model.infer_stream({"n": np.array([-6])})
        assert numbers([next(stream)]) == [0]
        with pytest.raises(WorkerCrashed, match="exited with status 3 during a call"):
            next(stream)
        assert numbers(model.infer_stream({"n": N})) == [0, 1, 2]


def test_a_worker_stream_keeps_its_worker_between_calls(packages):
    with load_neuropod(packages["counter"], use_ope=True) as model:
        pids = model._backend.pids  # type: ignore[union-attr]
        stream = model.infer_stream({"n": np.array([-3])})
        next(stream)
        stream.close()
        assert numbers(model.infer_stream({"n": N})) == [0, 1, 2]
        assert model._backend.pids == pids  # type: ignore[union-attr]  # cancelled, not killed


def test_large_responses_through_a_worker(tmp_path):
    source = tmp_path / "src" / "big"
    source.mkdir(parents=True)
    code = """
        import numpy as np

        def get_model(data_dir):
            def run(x):
                for k in range(4):
                    yield {"y": x + k}  # 1 MB each: through shared blocks, not the arena
            return run
    """
    (source / "__init__.py").write_text(textwrap.dedent(code))
    path = tmp_path / "big.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="big",
        input_spec=[{"name": "x", "dtype": "float32", "shape": [None]}],
        output_spec=[{"name": "y", "dtype": "float32", "shape": [None]}],
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["big"]}],
        entrypoint_package="big",
        entrypoint="get_model",
        decoupled=True,
    )
    x = np.arange(256 * 1024, dtype=np.float32)
    with load_neuropod(path, use_ope=True) as model:
        for _ in range(3):  # blocks are released and reused across streams
            responses = list(model.infer_stream({"x": x}))
            assert len(responses) == 4
            for k, response in enumerate(responses):
                np.testing.assert_array_equal(response["y"], x + k)
