"""``DynamicBatcher``: concurrent calls merged into one model call and split back.

The model under test reports the batches it saw: its output ``seen`` holds, for every row, the
number of rows of the call that row was part of.
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import (
    InferenceError,
    ModelClosedError,
    NeuropodModel,
    OptionError,
    SpecError,
    ValidationError,
    load_neuropod,
)
from neuropod.dynamic_batching import DynamicBatcher
from neuropod.packagers import create_python_neuropod

COUNTING_MODEL = """
    import numpy as np


    def get_model(data_dir):
        def model(x, s=None):
            if (x < 0).any():
                raise ValueError("negative input")
            rows = len(x)
            if (x == 99).any():
                rows = 1  # a broken model: fewer rows out than in
            out = {"out": x[:rows] * 2, "seen": np.full(rows, len(x), np.int64)}
            if s is not None:
                out["echo"] = np.array(["<" + str(word) + ">" for word in s], dtype=str)
            return out

        return model
"""

SPEC = {
    "input_spec": [
        {"name": "x", "dtype": "float32", "shape": ("batch", None)},
        {"name": "s", "dtype": "string", "shape": ("batch",)},
    ],
    "output_spec": [
        {"name": "out", "dtype": "float32", "shape": ("batch", None)},
        {"name": "seen", "dtype": "int64", "shape": ("batch",)},
        {"name": "echo", "dtype": "string", "shape": ("batch",)},
    ],
}


def _build(root: Path, name: str, spec: dict[str, Any]) -> Path:
    code = root / f"{name}-code" / "counting"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(COUNTING_MODEL))
    path = root / name
    create_python_neuropod(
        neuropod_path=path,
        model_name=name,
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["counting"]}],
        entrypoint_package="counting",
        entrypoint="get_model",
        package_as_zip=False,
        **spec,
    )
    return path


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("batching"), "counting", SPEC)


def _rows(n: int, value: float = 1.0, width: int = 3) -> np.ndarray:
    return np.full((n, width), value, np.float32)


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads started together; each result is the return value or the exception."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_calls_are_merged_and_split_back(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=8, max_queue_delay_ms=2000) as model:
        results = _concurrently([lambda i=i: model.infer({"x": _rows(1, value=i)}) for i in range(8)])
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["out"], _rows(1, value=2 * i))
        # a full batch runs at once, long before the delay is up
        assert out["seen"].tolist() == [8]


def test_batches_never_exceed_max_batch_size(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=4, max_queue_delay_ms=200) as model:
        results = _concurrently([lambda: model.infer({"x": _rows(2)}) for _ in range(6)])
    seen = [out["seen"][0] for out in results]
    assert all(size in (2, 4) for size in seen)
    assert 4 in seen
    assert all(out["out"].shape == (2, 3) for out in results)


def test_a_call_larger_than_max_batch_size_runs_alone(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=4) as model:
        out = model.infer({"x": _rows(10)})
    assert out["seen"].tolist() == [10] * 10
    assert out["out"].shape == (10, 3)


def test_a_bad_call_fails_alone(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=3, max_queue_delay_ms=2000) as model:
        bad = {"x": _rows(1).astype(np.float64)}
        results = _concurrently(
            [
                lambda: model.infer(bad),
                lambda: model.infer({"x": _rows(1)}),
                lambda: model.infer({"x": _rows(2)}),
            ]
        )
    assert isinstance(results[0], ValidationError)
    assert "Tensor 'x' in the input spec is expected to be of type float32, but was of type float64" in str(
        results[0]
    )
    # the two good calls filled the batch together
    assert results[1]["seen"].tolist() == [3]
    assert results[2]["seen"].tolist() == [3, 3]


def test_the_error_of_a_merged_call_goes_to_each_caller(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=3, max_queue_delay_ms=2000) as model:
        results = _concurrently(
            [lambda: model.infer({"x": _rows(1, value=-1)})] + [lambda: model.infer({"x": _rows(1)})] * 2
        )
        assert all(isinstance(result, InferenceError) for result in results)
        assert all("ValueError: negative input" in str(result) for result in results)
        # the batcher goes on (three rows fill a batch: no waiting for company)
        assert model.infer({"x": _rows(3)})["seen"].tolist() == [3, 3, 3]


def test_outputs_without_one_row_per_input_row_fail_every_caller(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=2, max_queue_delay_ms=2000) as model:
        results = _concurrently(
            [lambda: model.infer({"x": _rows(1, value=99)}), lambda: model.infer({"x": _rows(1)})]
        )
    for result in results:
        assert isinstance(result, InferenceError)
        assert "returned output 'out' of shape (1, 3) for a merged batch of 2 rows" in str(result)


def test_calls_with_other_sizes_past_dim_0_are_not_merged(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=4, max_queue_delay_ms=300) as model:
        results = _concurrently(
            [
                lambda: model.infer({"x": _rows(1, width=3)}),
                lambda: model.infer({"x": _rows(1, width=3)}),
                lambda: model.infer({"x": _rows(1, width=5)}),
            ]
        )
    assert [out["out"].shape for out in results] == [(1, 3), (1, 3), (1, 5)]
    assert [out["seen"][0] for out in results] == [2, 2, 1]


def test_calls_with_other_inputs_are_not_merged(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=4, max_queue_delay_ms=300) as model:
        results = _concurrently(
            [
                lambda: model.infer({"x": _rows(1)}),
                lambda: model.infer({"x": _rows(1), "s": np.array(["a"])}),
            ]
        )
    assert [out["seen"][0] for out in results] == [1, 1]
    assert "echo" not in results[0] and results[1]["echo"].tolist() == ["<a>"]


def test_strings_of_different_lengths_are_merged(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=3, max_queue_delay_ms=2000) as model:
        results = _concurrently(
            [
                lambda: model.infer({"x": _rows(1), "s": np.array(["a"])}),
                lambda: model.infer({"x": _rows(2), "s": np.array(["héllo", "日本語"], dtype=object)}),
            ]
        )
    assert results[0]["echo"].tolist() == ["<a>"]
    assert results[1]["echo"].tolist() == ["<héllo>", "<日本語>"]
    assert results[0]["seen"].tolist() == [3]


def test_without_delay_a_lone_call_runs_at_once(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=8) as model:
        for _ in range(3):
            assert model.infer({"x": _rows(1)})["seen"].tolist() == [1]


def test_the_old_import_path_gives_the_same_class() -> None:
    from neuropod.batching import DynamicBatcher as OldName

    assert OldName is DynamicBatcher


def test_the_batcher_has_the_models_interface(package: Path) -> None:
    with load_neuropod(package) as plain:
        specs = (plain.name, plain.platform, plain.path, plain.input_specs, plain.output_specs, plain.inputs)
    with DynamicBatcher(load_neuropod(package), max_batch_size=2) as model:
        assert (
            model.name,
            model.platform,
            model.path,
            model.input_specs,
            model.output_specs,
            model.inputs,
        ) == specs
        assert model.outputs[1] == {"name": "seen", "dtype": "int64", "shape": ["batch"]}
        assert model.batch_symbol == "batch"
        assert isinstance(model, NeuropodModel)
        assert repr(model).startswith("<DynamicBatcher 'batch' max_batch_size=2 max_queue_delay_ms=0 of ")


def test_close_is_idempotent_and_closes_the_model(package: Path) -> None:
    inner = load_neuropod(package)
    model = DynamicBatcher(inner, max_batch_size=2)
    model.infer({"x": _rows(1)})
    model.close()
    model.close()
    with pytest.raises(ModelClosedError, match="Model 'counting' is closed"):
        model.infer({"x": _rows(1)})
    with pytest.raises(ModelClosedError):
        inner.infer({"x": _rows(1)})
    assert repr(model).endswith(" closed> closed>")
    assert model.name == "counting"  # like any closed model, it still says what it was


def test_close_answers_the_queued_calls(package: Path) -> None:
    model = DynamicBatcher(load_neuropod(package), max_batch_size=4, max_queue_delay_ms=60_000)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(model.infer({"x": _rows(1)})))
    thread.start()
    while not model._batching._queue and thread.is_alive():  # the call is queued, waiting for company
        threading.Event().wait(0.01)
    model.close()  # does not wait out the minute
    thread.join(timeout=10)
    assert results[0]["seen"].tolist() == [1]


@pytest.mark.parametrize(
    ("input_shape", "output_shape", "message"),
    [
        ((None, 3), ("batch", 3), "input 'x' has shape (None, 3)"),
        (("batch", 3), ("rows", 3), "output 'out' has shape ('rows', 3)"),
        (("batch", "batch"), ("batch", 3), "input 'x' has shape ('batch', 'batch')"),
        ((), ("batch",), "input 'x' has shape ()"),
    ],
)
def test_models_without_a_shared_batch_symbol_are_refused(
    tmp_path: Path, input_shape: tuple[Any, ...], output_shape: tuple[Any, ...], message: str
) -> None:
    spec = {
        "input_spec": [{"name": "x", "dtype": "float32", "shape": input_shape}],
        "output_spec": [{"name": "out", "dtype": "float32", "shape": output_shape}],
    }
    with load_neuropod(_build(tmp_path, "unbatchable", spec)) as model, pytest.raises(SpecError) as info:
        DynamicBatcher(model, max_batch_size=4)
    assert f"Model 'unbatchable' cannot be batched: {message}" in str(info.value)
    assert "one shared batch symbol" in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be an int >= 1, got 0"),
        (
            {"max_batch_size": 2, "max_queue_delay_ms": -1},
            "max_queue_delay_ms must be a number of milliseconds >= 0, got -1",
        ),
        ({"max_batch_size": 2, "max_queue_delay_ms": float("nan")}, "max_queue_delay_ms must be .*, got nan"),
        ({"max_batch_size": 2, "concurrency": True}, "concurrency must be an int >= 1, got True"),
    ],
)
def test_invalid_options(package: Path, options: dict[str, Any], message: str) -> None:
    with load_neuropod(package) as model, pytest.raises(OptionError, match=message):
        DynamicBatcher(model, **options)


def test_concurrency_runs_merged_calls_side_by_side(package: Path) -> None:
    with DynamicBatcher(load_neuropod(package), max_batch_size=2, concurrency=2) as model:
        results = _concurrently([lambda i=i: model.infer({"x": _rows(1, value=i)}) for i in range(6)])
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["out"], _rows(1, value=2 * i))


# --- the batching core that the batcher, the dataset runner and Ray Serve share -----------------


def test_calls_merge_when_they_have_the_same_inputs_with_the_same_sizes_past_dim_0() -> None:
    from neuropod.spec.batch_dim import merge, merge_key, output_without_rows, rows, split

    one = {"x": _rows(1), "s": np.array(["a"])}
    two = {"s": np.array(["héllo", "日本語"], dtype=object), "x": _rows(2, value=2)}
    assert merge_key(one) == merge_key(two)  # in any order, strings of any width
    assert merge_key(one) != merge_key({"x": _rows(1, width=5), "s": np.array(["a"])})
    assert merge_key(one) != merge_key({"x": _rows(1)})
    assert merge_key({}) is None and merge_key({"x": np.float32(1)}) is None
    merged = merge([one, two])
    assert merged["x"].shape == (3, 3) and merged["s"].tolist() == ["a", "héllo", "日本語"]
    assert output_without_rows({"y": merged["x"]}, 3) is None
    assert output_without_rows({"y": merged["x"], "z": np.float32(0)}, 3) == "z"
    assert output_without_rows({"y": merged["x"][:2]}, 3) == "y"
    first, second = split({"y": merged["x"]}, [rows(one), rows(two)])
    np.testing.assert_array_equal(first["y"], _rows(1))
    np.testing.assert_array_equal(second["y"], _rows(2, value=2))
    assert second["y"].base is merged["x"]  # views: splitting copies nothing


def test_a_model_without_inputs_cannot_be_batched() -> None:
    from neuropod.spec import TensorSpec
    from neuropod.spec.batch_dim import merge_symbol

    with pytest.raises(SpecError, match=r"^Model 'm' cannot be batched: it has no inputs$"):
        merge_symbol("m", [], [TensorSpec("y", "float32", ("batch",))])
