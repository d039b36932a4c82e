"""Out-of-process execution (``use_ope=True``): the same answers and errors as in process,
shared-memory transport, zero-copy inputs, instances, isolation.

Failures of the worker (crashes, timeouts, leaks, a dying application) are in
``test_ope_failures.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neuropod import (
    InferenceError,
    ModelClosedError,
    NeuropodModel,
    OptionError,
    PackageError,
    ValidationError,
)
from neuropod.loader import load_neuropod
from neuropod.worker import RemoteTraceback
from tests.models import ADDITION_SPEC
from tests.worker.ope_models import (
    BEHAVIOUR,
    BEHAVIOUR_SPEC,
    MIXED,
    MIXED_SPEC,
    build_python_model,
    mode,
    process_gone,
)

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def mixed_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_python_model(tmp_path_factory.mktemp("mixed") / "mixed.zip", MIXED, MIXED_SPEC)


@pytest.fixture(scope="module")
def behaviour_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_python_model(tmp_path_factory.mktemp("behaviour") / "behaviour", BEHAVIOUR, BEHAVIOUR_SPEC)


@pytest.fixture(scope="module")
def models(mixed_path: Path) -> Iterator[tuple[NeuropodModel, NeuropodModel]]:
    """The mixed model in process and out of process."""
    with load_neuropod(mixed_path) as local, load_neuropod(mixed_path, use_ope=True) as remote:
        yield local, remote


def mixed_inputs(rows: int = 3, cols: int = 4) -> dict[str, np.ndarray]:
    return {
        "f32": RNG.standard_normal((rows, cols)).astype(np.float32),
        "f16": np.arange(5, dtype=np.float16),
        "f64": RNG.standard_normal(7),
        "u8": RNG.integers(0, 255, (4, 5, 3), dtype=np.uint8),
        "i64": np.array(41, np.int64),
        "flag": np.array([True, False, True]),
        "s": np.array(["a", "bé", "", "日本"]),
        "b": byte_array([b"\x00\xff\xd8", b"a\x00b\x00\x00", b"", "日本".encode(), b"\x80"] * rows),
    }


def byte_array(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype or {a[name].dtype.kind, b[name].dtype.kind} <= {"U", "O"}, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --- Same answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "cols"),
    [(3, 4), (0, 4), (1024, 1024)],  # small (arena), empty, 4 MB (pooled blocks, leased outputs)
)
def test_results_match_in_process(models, rows, cols):
    local, remote = models
    inputs = mixed_inputs(rows, cols)
    expected = local.infer(inputs)
    got = remote.infer(inputs)
    assert_same(expected, got)
    assert got["s"].dtype.kind == "U"  # strings come back as unicode
    assert got["b"].dtype == object and got["b"].tolist() == [b"<" + item + b">" for item in inputs["b"]]


def test_non_contiguous_and_object_string_inputs(models):
    local, remote = models
    base = RNG.standard_normal((6, 8)).astype(np.float32)
    inputs = {"f32": base[::2, ::-1], "s": np.array(["x", "yz"], dtype=object)}
    assert_same(local.infer(inputs), remote.infer(inputs))


def test_bytes_of_every_size_and_form_cross_exactly(models):
    local, remote = models
    big = RNG.integers(0, 256, 200_000, dtype=np.uint8).tobytes() + b"\x00\x00"  # past the arena
    for value in (byte_array([big, b"\x00"]), np.array([b"a\x00b", b"\xff"]), byte_array([])):
        expected, got = local.infer({"b": value})["b"], remote.infer({"b": value})["b"]
        assert got.dtype == object and got.shape == value.shape
        assert got.tolist() == expected.tolist() == [b"<" + bytes(item) + b">" for item in value]
    with pytest.raises(ValidationError, match="Tensor 'b' in the input spec is expected to be of type bytes"):
        remote.infer({"b": np.array(["text"])})


def test_inputs_are_not_modified(models):
    _, remote = models
    inputs = mixed_inputs()
    before = {name: array.copy() for name, array in inputs.items()}
    remote.infer(inputs)
    assert_same(before, inputs)


def test_large_outputs_view_shared_memory_and_outlive_later_calls_and_close(mixed_path):
    with load_neuropod(mixed_path, use_ope=True) as model:
        first = model.infer({"f32": np.ones((512, 1024), np.float32)})["f32"]
        second = model.infer({"f32": np.full((512, 1024), 3, np.float32)})["f32"]
        # The first output's block is not reused while the array views it.
        assert first.base is not None and not first.flags.owndata
        np.testing.assert_array_equal(first, 2)
        np.testing.assert_array_equal(second, 6)
    np.testing.assert_array_equal(first, 2)  # still readable after the workers are gone
    first += 1  # and writable, like any output


def test_torchscript_model_runs_out_of_process_without_torch_in_the_application(tmp_path):
    torch = pytest.importorskip("torch")
    from neuropod.packagers import create_torchscript_neuropod

    class Scale(torch.nn.Module):
        def forward(self, x, y):
            return {"out": x * 2 + y}

    path = tmp_path / "scale.zip"
    module = torch.jit.script(Scale())
    create_torchscript_neuropod(neuropod_path=path, model_name="scale", module=module, **ADDITION_SPEC)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    y = RNG.standard_normal((2, 3)).astype(np.float32)
    with load_neuropod(path) as local, load_neuropod(path, use_ope=True) as remote:
        assert_same(local.infer({"x": x, "y": y}), remote.infer({"x": x, "y": y}))

    # In a fresh application: the worker imports torch, the application never does.
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from neuropod import load_neuropod
        with load_neuropod({str(path)!r}, use_ope=True) as model:
            out = model.infer({{"x": np.ones((1, 2), np.float32), "y": np.ones((1, 2), np.float32)}})
        print(out["out"].tolist(), "torch" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("]")[-1].strip() == "False"
    assert result.stdout.startswith("[[3.0, 3.0]]")


# --- Same errors -------------------------------------------------------------------------------


def test_input_validation_happens_before_sending(models):
    local, remote = models
    bad = {"f32": np.ones((2, 2), np.float64)}
    with pytest.raises(ValidationError) as in_process:
        local.infer(bad)
    with pytest.raises(ValidationError) as out_of_process:
        remote.infer(bad)
    assert str(out_of_process.value) == str(in_process.value)
    assert "expected to be of type float32, but was of type float64" in str(in_process.value)


def test_model_errors_arrive_with_type_message_and_worker_traceback(behaviour_path):
    with load_neuropod(behaviour_path) as local, load_neuropod(behaviour_path, use_ope=True) as remote:
        with pytest.raises(InferenceError) as in_process:
            local.infer(mode("raise"))
        with pytest.raises(InferenceError) as out_of_process:
            remote.infer(mode("raise"))
        assert str(out_of_process.value) == str(in_process.value)
        assert str(in_process.value) == (
            "Model 'behaviour' (python) failed: ZeroDivisionError: the model divided by zero"
        )
        cause = out_of_process.value.__cause__
        assert type(cause) is ZeroDivisionError and str(cause) == "the model divided by zero"
        assert isinstance(cause.__cause__, RemoteTraceback)
        assert 'in behave\n    raise ZeroDivisionError("the model divided by zero")' in cause.__cause__.text

        # A class the application does not have: the same text, as neuropod's own error.
        with pytest.raises(InferenceError) as in_process:
            local.infer(mode("raise-own"))
        with pytest.raises(InferenceError) as out_of_process:
            remote.infer(mode("raise-own"))
        assert str(out_of_process.value) == str(in_process.value)
        assert "ModelSpecificError: a class only the worker knows" in str(out_of_process.value)

        # The worker survives errors.
        assert remote.infer(mode("owner"))["pid"] == remote.infer(mode("owner"))["pid"]


def test_output_validation_errors_match_in_process(tmp_path):
    source = """
        import numpy as np
        def get_model(data_dir):
            def bad(x, y):
                return {"out": [1, 2]} if x.size == 1 else {"out": x.astype(np.int32)}
            return bad
    """
    path = build_python_model(tmp_path / "bad", source, ADDITION_SPEC)
    with load_neuropod(path) as local, load_neuropod(path, use_ope=True) as remote:
        for size in (1, 2):
            inputs = {"x": np.ones((1, size), np.float32), "y": np.ones((1, size), np.float32)}
            with pytest.raises(ValidationError) as in_process:
                local.infer(inputs)
            with pytest.raises(ValidationError) as out_of_process:
                remote.infer(inputs)
            assert str(out_of_process.value) == str(in_process.value)


def test_load_errors_arrive_with_type_and_message(tmp_path):
    source = "get_model = 42\n"
    path = build_python_model(tmp_path / "not_callable", source, ADDITION_SPEC)
    with pytest.raises(PackageError) as in_process:
        load_neuropod(path)
    with pytest.raises(PackageError) as out_of_process:
        load_neuropod(path, use_ope=True)
    assert str(out_of_process.value) == str(in_process.value)
    assert str(path) in str(out_of_process.value)  # names the package, not the worker's copy


@pytest.fixture
def no_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if a worker process is started."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr("neuropod.worker.backend.WorkerSession", refuse)


def test_unknown_options_are_rejected_by_name_before_a_worker_starts(addition_package, no_worker_starts):
    path = addition_package("python")
    with pytest.raises(OptionError) as error:
        load_neuropod(path, use_ope=True, colour="red")
    assert str(error.value) == (
        "load_neuropod() got unknown option(s) 'colour' for platform 'python'; accepted options: "
        "visible_gpu, use_ope, require_all_inputs, instances, max_restarts, memory_limit, timeout, "
        "sandbox, environment, env_cache, env_progress, worker_prefix, worker_socket, worker_python"
    )


def test_worker_options_without_use_ope_say_so(addition_package):
    path = addition_package("python")
    with pytest.raises(OptionError) as error:
        load_neuropod(path, instances=2)
    message = str(error.value)
    assert message.startswith("load_neuropod() got unknown option(s) 'instances' for platform 'python'")
    assert message.endswith("(instances applies with use_ope=True)")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("instances", 0, "instances must be an int >= 1, got 0"),
        ("instances", 1.5, "instances must be an int >= 1, got 1.5"),
        ("timeout", 0, "timeout must be None or a number of seconds > 0, got 0"),
        ("timeout", "1", "timeout must be None or a number of seconds > 0, got '1'"),
        ("max_restarts", -1, "max_restarts must be None or an int >= 0, got -1"),
        ("memory_limit", 0, "memory_limit must be None or an int >= 1, got 0"),
        ("require_all_inputs", "yes", "require_all_inputs must be True or False, got 'yes'"),
    ],
)
def test_invalid_worker_options(addition_package, no_worker_starts, option, value, message):
    path = addition_package("python")
    with pytest.raises(OptionError) as error:
        load_neuropod(path, use_ope=True, **{option: value})
    assert str(error.value) == message


# --- Zero-copy inputs --------------------------------------------------------------------------


def test_allocate_gives_shared_inputs_that_are_sent_without_a_copy(mixed_path):
    with load_neuropod(mixed_path, use_ope=True) as model:
        x = model.allocate("f32", (256, 1024))
        assert x.dtype == np.float32 and x.shape == (256, 1024)
        x[...] = 1.5
        out = model.infer({"f32": x})
        # "echo" is the worker's view of its input: the same memory as x, so neither the input
        # nor that output was copied.
        assert np.shares_memory(out["echo"], x)
        np.testing.assert_array_equal(out["f32"], 3.0)
        x[...] = 2.0  # reusable for the next call
        np.testing.assert_array_equal(model.infer({"f32": x})["f32"], 4.0)
        # A (large) view of an allocated array is sent where it is, too.
        assert np.shares_memory(model.infer({"f32": x[10:200]})["echo"], x[10:200])


def test_allocate_checks_the_spec(mixed_path):
    with load_neuropod(mixed_path, use_ope=True) as model:
        with pytest.raises(ValidationError, match="expected to have 2 dimensions, but had 1"):
            model.allocate("f32", (4,))
        with pytest.raises(ValidationError, match="'nope' are not found in the input spec"):
            model.allocate("nope", (4,))
        with pytest.raises(ValidationError, match="'b' in the input spec is a bytes tensor; allocate"):
            model.allocate("b", (4,))
        with pytest.raises(ValidationError, match="string tensor"):
            model.allocate("s", (4,))
        with pytest.raises(ValidationError, match="invalid shape"):
            model.allocate("f32", (-1, 2))
        assert model.allocate("f32", (0, 3)).shape == (0, 3)


def test_seal_moves_inputs_to_shared_memory_ahead_of_infer(mixed_path):
    with load_neuropod(mixed_path, use_ope=True) as model:
        allocated = model.allocate("f32", (128, 1024))
        allocated[...] = 1
        assert model.seal("f32", allocated) is allocated  # in shared memory already
        plain = np.full((128, 1024), 2, np.float32)
        sealed = model.seal("f32", plain)
        assert sealed is not plain and not np.shares_memory(sealed, plain)
        out = model.infer({"f32": sealed})
        assert np.shares_memory(out["echo"], sealed)
        np.testing.assert_array_equal(out["f32"], 4)
        strings = model.seal("s", np.array(["a", "b"], dtype=object))
        assert model.infer({"s": strings})["s"].tolist() == ["<a>", "<b>"]
        with pytest.raises(ValidationError, match="expected to be of type float32"):
            model.seal("f32", np.ones((2, 2)))


def test_allocate_and_seal_work_in_process_too(mixed_path):
    with load_neuropod(mixed_path) as model:
        x = model.allocate("f32", (2, 3))
        x[...] = 1
        assert model.seal("f32", x) is x
        np.testing.assert_array_equal(model.infer({"f32": x})["f32"], 2)


# --- Instances, GPUs, isolation ----------------------------------------------------------------


def test_two_instances_run_calls_from_two_threads_at_once(behaviour_path):
    with load_neuropod(behaviour_path, use_ope=True, instances=2) as model:
        barrier = threading.Barrier(2)
        results: list[dict[str, np.ndarray]] = []

        def call() -> None:
            barrier.wait()
            results.append(model.infer(mode("spin")))

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 2
        assert results[0]["pid"] != results[1]["pid"]  # each went to its own worker
        (a_start, a_end), (b_start, b_end) = ((float(r["start"]), float(r["end"])) for r in results)
        # Both GIL-bound calls were running at the same time (CLOCK_MONOTONIC is system-wide).
        assert a_start < b_end and b_start < a_end


def test_a_call_can_be_pinned_to_an_instance(behaviour_path):
    # What a served sequence relies on: its calls all reach the worker that holds its state.
    with load_neuropod(behaviour_path, use_ope=True, instances=2) as model:
        assert model.instances == 2
        pids = [{int(model.infer(mode("pid"), instance=i)["pid"]) for _ in range(3)} for i in (0, 1)]
        assert all(len(found) == 1 for found in pids) and pids[0] != pids[1]
        assert pids == [{pid} for pid in model._backend.pids]  # type: ignore[union-attr]
        with pytest.raises(IndexError, match="has 2 instance"):
            model.infer(mode("pid"), instance=2)
    with load_neuropod(behaviour_path) as local:  # in process: one instance
        assert local.instances == 1 and int(local.infer(mode("pid"), instance=0)["pid"]) == os.getpid()


def test_visible_gpu_becomes_the_workers_only_gpu(behaviour_path):
    with load_neuropod(behaviour_path, use_ope=True) as cpu_only:
        assert cpu_only.infer(mode("env"))["value"][0] == ""
    with load_neuropod(behaviour_path, visible_gpu=1, use_ope=True) as on_gpu_1:
        assert on_gpu_1.infer(mode("env"))["value"][0] == "1"


def test_models_that_patch_the_same_global_are_isolated(tmp_path):
    first = build_python_model(tmp_path / "first", BEHAVIOUR, BEHAVIOUR_SPEC, owner="first")
    second = build_python_model(tmp_path / "second", BEHAVIOUR, BEHAVIOUR_SPEC, owner="second")
    # In one process the second load overwrites the first model's global...
    with load_neuropod(first) as a, load_neuropod(second) as b:
        assert a.infer(mode("owner"))["value"][0] == "second"
        assert b.infer(mode("owner"))["value"][0] == "second"
    # ...in workers each keeps its own.
    with load_neuropod(first, use_ope=True) as a, load_neuropod(second, use_ope=True) as b:
        assert a.infer(mode("owner"))["value"][0] == "first"
        assert b.infer(mode("owner"))["value"][0] == "second"


# --- Lifetime ----------------------------------------------------------------------------------


def test_close_is_idempotent_and_final(behaviour_path):
    model = load_neuropod(behaviour_path, use_ope=True)
    pid = int(model.infer(mode("owner"))["pid"])
    model.close()
    model.close()
    assert process_gone(pid, within=5)
    with pytest.raises(ModelClosedError):
        model.infer(mode("owner"))
    with pytest.raises(ModelClosedError):
        model.allocate("x", (3,))
