"""The batch runner, its dataset formats, resuming, the metrics helper and ``neuropod run`` (no Ray).

Every model here is a python-platform package built in a temporary folder, so these tests need
no framework; Parquet and Arrow tests need pyarrow.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import InferenceError, OptionError, SpecError, load_neuropod
from neuropod.batch import STATE_FILE, DatasetError, RunResult, batch_symbol, evaluate, run
from neuropod.batch.progress import Progress
from neuropod.cli.main import main
from neuropod.packagers import create_python_neuropod
from neuropod.spec import TensorSpec

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
ipc = pytest.importorskip("pyarrow.ipc")

# x (batch, 3) -> y = 2x (+ w), total = row sums; a negative input makes the model raise.
DOUBLE = """
import numpy as np

def get_model(data_dir):
    def model(x, w=None):
        if (x < 0).any():
            raise ValueError("negative input")
        y = x * 2 if w is None else x * 2 + w[:, None]
        return {"y": y.astype(np.float32), "total": x.sum(axis=1)}
    return model
"""
DOUBLE_INPUTS = [
    {"name": "x", "dtype": "float32", "shape": ("batch", 3)},
    {"name": "w", "dtype": "float32", "shape": ("batch",)},
]
DOUBLE_OUTPUTS = [
    {"name": "y", "dtype": "float32", "shape": ("batch", 3)},
    {"name": "total", "dtype": "float32", "shape": ("batch",)},
]

# s (batch,) strings -> their lengths and upper-case forms.
TEXT = """
import numpy as np

def get_model(data_dir):
    def model(s):
        return {"n": np.array([len(v) for v in s], np.int64), "upper": np.array([v.upper() for v in s])}
    return model
"""

# b (batch,) bytes -> each reversed, with a NUL in front, and their lengths.
BYTES_MODEL = """
import numpy as np

def get_model(data_dir):
    def model(b):
        out = np.empty(len(b), dtype=object)
        out[:] = [b"\\x00" + item[::-1] for item in b]
        return {"rev": out, "n": np.array([len(item) for item in b], np.int64)}
    return model
"""
#: NULs (leading, inner, trailing), bytes that are not UTF-8, an empty value.
RAW = [b"\x00\xff", b"a\x00b\x00\x00", b"", b"\x80\xfe"]

# x (batch, None) -> 2x, keeping the second dim whatever its size.
RAGGED = """
def get_model(data_dir):
    return lambda x: {"y": x * 2}
"""


def package(
    root: Path, name: str, code: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> Path:
    """A python package at ``root/name`` whose ``get_model`` is in ``code``."""
    source = root / f"{name}-code" / name
    source.mkdir(parents=True)
    (source / "main.py").write_text(textwrap.dedent(code))
    path = root / name
    create_python_neuropod(
        neuropod_path=path,
        model_name=name,
        input_spec=inputs,
        output_spec=outputs,
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": [name]}],
        entrypoint_package=f"{name}.main",
        entrypoint="get_model",
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "double": package(root, "double", DOUBLE, DOUBLE_INPUTS, DOUBLE_OUTPUTS),
        "text": package(
            root,
            "text",
            TEXT,
            [{"name": "s", "dtype": "string", "shape": ("batch",)}],
            [
                {"name": "n", "dtype": "int64", "shape": ("batch",)},
                {"name": "upper", "dtype": "string", "shape": ("batch",)},
            ],
        ),
        "bytes": package(
            root,
            "bytes",
            BYTES_MODEL,
            [{"name": "b", "dtype": "bytes", "shape": ("batch",)}],
            [
                {"name": "rev", "dtype": "bytes", "shape": ("batch",)},
                {"name": "n", "dtype": "int64", "shape": ("batch",)},
            ],
        ),
        "ragged": package(
            root,
            "ragged",
            RAGGED,
            [{"name": "x", "dtype": "float32", "shape": ("batch", None)}],
            [{"name": "y", "dtype": "float32", "shape": ("batch", None)}],
        ),
    }


def rows(start: int, count: int) -> np.ndarray:
    """``count`` rows of x whose first value is the row's number, from ``start``."""
    first = np.arange(start, start + count, dtype=np.float32)[:, None]
    return np.concatenate([first, first + 0.25, first + 0.5], axis=1)


def npz_folder(folder: Path, sizes: list[int], **extra: Any) -> Path:
    folder.mkdir()
    start = 0
    for i, size in enumerate(sizes):
        np.savez(folder / f"part-{i}.npz", x=rows(start, size), label=np.arange(size), **extra)
        start += size
    return folder


def expected_y(x: np.ndarray) -> np.ndarray:
    return x * 2


# --- the batch symbol --------------------------------------------------------------------------


def test_batch_symbol_is_the_symbol_every_input_starts_with():
    specs = [TensorSpec("x", "float32", ("batch", 3)), TensorSpec("y", "int64", ("batch", "seq"))]
    assert batch_symbol(specs) == "batch"


@pytest.mark.parametrize(
    "shapes",
    [[(None, 3)], [("batch", 3), ("n",)], [("batch",), ()], [(3, "batch")]],
    ids=["none", "two-symbols", "scalar", "not-first"],
)
def test_batch_symbol_missing_is_a_clear_spec_error(shapes):
    specs = [TensorSpec(f"t{i}", "float32", shape) for i, shape in enumerate(shapes)]
    with pytest.raises(SpecError, match="dim 0 of every input must be one shared symbol") as info:
        batch_symbol(specs)
    assert "'t0' (" in str(info.value)
    assert "Give dim 0 of every input the same symbol" in str(info.value)


def test_batch_symbol_of_no_inputs():
    with pytest.raises(SpecError, match="no inputs"):
        batch_symbol([])


def test_run_refuses_a_model_without_a_batch_symbol(tmp_path):
    path = package(
        tmp_path,
        "nobatch",
        RAGGED,
        [{"name": "x", "dtype": "float32", "shape": (None, 3)}],
        [{"name": "y", "dtype": "float32", "shape": (None, 3)}],
    )
    with pytest.raises(SpecError, match="'x' \\(None, 3\\)"):
        run(path, {"x": rows(0, 4)}, progress=False)


# --- in memory, .npz, .npy ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_in_memory_outputs_equal_one_call(models, batch_size):
    x, w = rows(0, 7), np.linspace(0, 1, 7, dtype=np.float32)
    result = run(models["double"], {"x": x, "w": w}, batch_size=batch_size, progress=False)
    assert isinstance(result, RunResult) and result.ok
    assert (result.rows, result.failed_rows, result.shards_run) == (7, 0, 1)
    with load_neuropod(models["double"]) as model:
        whole = model.infer({"x": x, "w": w})
    for name in ("y", "total"):
        np.testing.assert_array_equal(result.outputs[name], whole[name])


def test_a_loaded_model_is_used_and_left_open(models):
    with load_neuropod(models["double"]) as model:
        result = run(model, {"x": rows(0, 5)}, batch_size=2, progress=False)
        np.testing.assert_array_equal(result.outputs["y"], expected_y(rows(0, 5)))
        assert "open" in repr(model)


def test_npz_shards_are_written_as_npz_under_their_names(models, tmp_path):
    data = npz_folder(tmp_path / "data", [5, 0, 8])
    out = tmp_path / "out"
    result = run(models["double"], data, output=out, batch_size=3, progress=False)
    assert (result.rows, result.shards_run, result.outputs, result.output) == (13, 3, None, out.resolve())
    assert sorted(p.name for p in out.iterdir()) == [STATE_FILE, "part-0.npz", "part-1.npz", "part-2.npz"]
    start = 0
    for i, size in enumerate([5, 0, 8]):
        with np.load(out / f"part-{i}.npz") as npz:
            assert sorted(npz.files) == ["total", "y"]  # the label column was not read
            np.testing.assert_array_equal(npz["y"], expected_y(rows(start, size)))
            assert npz["y"].shape == (size, 3)
        start += size
    state = json.loads((out / STATE_FILE).read_text())
    assert state["run"]["model"] == "double"
    assert state["shards"] == {f"part-{i}.npz": {"rows": n, "failures": []} for i, n in enumerate([5, 0, 8])}


def test_compressed_npz_gives_compressed_npz(models, tmp_path):
    import zipfile

    (tmp_path / "data").mkdir()
    np.savez_compressed(tmp_path / "data" / "a.npz", x=rows(0, 4))
    run(models["double"], tmp_path / "data", output=tmp_path / "out", progress=False)
    with zipfile.ZipFile(tmp_path / "out" / "a.npz") as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def test_a_single_file_is_a_dataset(models, tmp_path):
    np.savez(tmp_path / "one.npz", x=rows(0, 4))
    run(models["double"], tmp_path / "one.npz", output=tmp_path / "out", progress=False)
    with np.load(tmp_path / "out" / "one.npz") as npz:
        np.testing.assert_array_equal(npz["y"], expected_y(rows(0, 4)))


def test_a_folder_of_npy_files_is_one_shard(models, tmp_path):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", rows(0, 6))
    np.save(tmp_path / "data" / "w.npy", np.ones(6, np.float32))
    run(models["double"], tmp_path / "data", output=tmp_path / "out", batch_size=4, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [STATE_FILE, "total.npy", "y.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "y.npy"), expected_y(rows(0, 6)) + 1)


def test_folders_of_npy_files_are_shards(models, tmp_path):
    for i in range(2):
        (tmp_path / "data" / f"s{i}").mkdir(parents=True)
        np.save(tmp_path / "data" / f"s{i}" / "x.npy", rows(10 * i, 3))
    run(models["double"], tmp_path / "data", output=tmp_path / "out", progress=False)
    for i in range(2):
        np.testing.assert_array_equal(
            np.load(tmp_path / "out" / f"s{i}" / "y.npy"), expected_y(rows(10 * i, 3))
        )


def test_outputs_whose_dims_differ_between_batches_cannot_join_into_npz(models, tmp_path):
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "a.npz", x=np.ones((4, 2), np.float32))
    np.savez(tmp_path / "data" / "b.npz", x=np.ones((4, 5), np.float32))
    # Shards of different widths are fine: each is its own file.
    run(models["ragged"], tmp_path / "data", output=tmp_path / "out", progress=False)
    with np.load(tmp_path / "out" / "b.npz") as npz:
        assert npz["y"].shape == (4, 5)
    # Joined in memory, they are not.
    with pytest.raises(DatasetError, match=r"Output 'y' has different shapes after dim 0.*\(2,\), \(5,\)"):
        run(models["ragged"], tmp_path / "data", progress=False)


# --- Parquet and Arrow -------------------------------------------------------------------------


def test_parquet_list_columns_become_dims_and_outputs_list_columns(models, tmp_path):
    (tmp_path / "data").mkdir()
    x = rows(0, 10)
    table = pa.table({"x": pa.array(x.tolist(), pa.list_(pa.float32())), "id": np.arange(10)})
    pq.write_table(table, tmp_path / "data" / "a.parquet", row_group_size=4)
    result = run(models["double"], tmp_path / "data", output=tmp_path / "out", batch_size=3, progress=False)
    assert result.ok
    written = pq.read_table(tmp_path / "out" / "a.parquet")
    assert written.schema.field("y").type == pa.list_(pa.float32(), 3)  # the spec fixes dim 1
    assert written.schema.field("total").type == pa.float32()
    np.testing.assert_array_equal(np.array(written.column("y").to_pylist(), np.float32), expected_y(x))


def test_parquet_fixed_size_lists_and_nested_lists(models, tmp_path):
    (tmp_path / "data").mkdir()
    x = rows(0, 5)
    pq.write_table(
        pa.table({"x": pa.array(x.tolist(), pa.list_(pa.float32(), 3))}), tmp_path / "data" / "a.parquet"
    )
    result = run(models["double"], tmp_path / "data", progress=False)
    np.testing.assert_array_equal(result.outputs["y"], expected_y(x))


def test_ragged_list_rows_fail_their_batch_only(models, tmp_path):
    (tmp_path / "data").mkdir()
    lists = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0, 7.0], [8.0, 9.0], [1.0], [2.0]]
    pq.write_table(pa.table({"x": pa.array(lists, pa.list_(pa.float32()))}), tmp_path / "data" / "a.parquet")
    result = run(models["ragged"], tmp_path / "data", output=tmp_path / "out", batch_size=2, progress=False)
    assert (result.rows, result.failed_rows) == (4, 2)
    (failure,) = result.failures
    assert (failure.shard, failure.start, failure.stop) == ("a.parquet", 2, 4)
    assert str(failure).startswith(
        "shard a.parquet rows 2-3: ValidationError: Column 'x' holds lists of different"
    )
    assert "row 2 has 3, row 3 has 2" in failure.error
    # The other batches' rows are written, as variable-length lists (the spec leaves dim 1 open).
    written = pq.read_table(tmp_path / "out" / "a.parquet")
    assert written.schema.field("y").type == pa.list_(pa.float32())
    assert written.column("y").to_pylist() == [[2.0, 4.0], [6.0, 8.0], [2.0], [4.0]]


def test_a_list_length_the_spec_does_not_allow_fails_validation(models, tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.table({"x": pa.array([[1.0, 2.0]] * 3, pa.list_(pa.float32()))}), tmp_path / "data" / "a.parquet"
    )
    result = run(models["double"], tmp_path / "data", progress=False)
    (failure,) = result.failures
    assert (
        "Dim 1 of tensor 'x' in the input spec is expected to be of size 3, but was of size 2"
        in failure.error
    )


def test_null_values_fail_their_batch(models, tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"s": pa.array(["a", None, "b", "c"])}), tmp_path / "data" / "a.parquet")
    result = run(models["text"], tmp_path / "data", batch_size=2, progress=False)
    (failure,) = result.failures
    assert (failure.start, failure.stop) == (0, 2)
    assert "Column 's' holds null values (first in row 1)" in failure.error
    assert result.outputs["upper"].tolist() == ["B", "C"]


def test_string_columns_in_and_out_of_arrow_files(models, tmp_path):
    (tmp_path / "data").mkdir()
    table = pa.table({"s": ["a", "bb", "ccc"]})
    with ipc.new_file(str(tmp_path / "data" / "t.arrow"), table.schema) as writer:
        writer.write_table(table)
    run(models["text"], tmp_path / "data", output=tmp_path / "out", batch_size=2, progress=False)
    written = ipc.open_file(str(tmp_path / "out" / "t.arrow")).read_all()
    assert written.to_pydict() == {"n": [1, 2, 3], "upper": ["A", "BB", "CCC"]}


def test_binary_columns_in_and_out_of_parquet_files(models, tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"b": pa.array(RAW, pa.binary())}), tmp_path / "data" / "t.parquet")
    run(models["bytes"], tmp_path / "data", output=tmp_path / "out", batch_size=3, progress=False)
    written = pq.read_table(tmp_path / "out" / "t.parquet")
    assert written.schema.field("rev").type == pa.binary()
    assert written.to_pydict() == {"rev": [b"\x00" + item[::-1] for item in RAW], "n": [2, 5, 0, 2]}
    # in memory: object arrays of bytes, exactly
    result = run(models["bytes"], {"b": np.array(RAW, dtype=object)}, batch_size=3, progress=False)
    assert result.outputs["rev"].dtype == object
    assert result.outputs["rev"].tolist() == [b"\x00" + item[::-1] for item in RAW]


def test_binary_and_string_columns_feed_string_and_bytes_inputs(models, tmp_path):
    (tmp_path / "data").mkdir()
    column = pa.array([b"ab", "é".encode(), b"\xff"], pa.binary())
    pq.write_table(pa.table({"s": column}), tmp_path / "data" / "t.parquet")
    result = run(models["text"], tmp_path / "data", batch_size=2, progress=False)
    assert result.outputs["upper"].tolist() == ["AB", "É"]
    (failure,) = result.failures
    assert str(failure).startswith(
        "shard t.parquet row 2: ValidationError: Tensor 's': element 0 is not UTF-8 text"
    )
    result = run(models["bytes"], {"b": np.array(["é"])}, progress=False)
    assert result.outputs["rev"].tolist() == [b"\x00" + "é".encode()[::-1]]


def test_bytes_outputs_go_to_npz_as_s_arrays_unless_a_nul_would_be_lost(models, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "part-0.npz", b=np.array([b"x\x00y", b"\xff"]))  # S: npz holds no object arrays
    run(models["bytes"], data, output=tmp_path / "out", progress=False)
    with np.load(tmp_path / "out" / "part-0.npz") as npz:
        assert npz["rev"].dtype.kind == "S" and npz["rev"].tolist() == [b"\x00y\x00x", b"\x00\xff"]
    np.savez(data / "part-0.npz", b=np.array([b"ok", b"\x00a"]))  # reversed, it ends with a NUL
    with pytest.raises(DatasetError) as info:
        run(models["bytes"], data, output=tmp_path / "out2", progress=False)
    assert str(info.value) == (
        "Output 'rev' holds bytes ending with a NUL byte (element 1), which a numpy S array, the only "
        "form .npy files store bytes in without pickle, would drop in "
        f"{tmp_path / 'out2' / 'part-0.npz'}; write the outputs as Parquet or Arrow, whose binary "
        "columns hold any bytes"
    )


# --- failures ----------------------------------------------------------------------------------


def test_a_failing_batch_is_reported_with_its_rows_and_the_rest_goes_on(models, tmp_path):
    data = npz_folder(tmp_path / "data", [6, 6])
    x = rows(6, 6)
    x[3, 0] = -1.0  # row 3 of the second shard: its batch of rows 2-3 fails
    np.savez(data / "part-1.npz", x=x)
    result = run(models["double"], data, output=tmp_path / "out", batch_size=2, progress=False)
    assert (result.rows, result.failed_rows) == (10, 2)
    (failure,) = result.failures
    assert str(failure) == (
        "shard part-1.npz rows 2-3: InferenceError: Model 'double' (python) failed: "
        "ValueError: negative input"
    )
    with np.load(tmp_path / "out" / "part-1.npz") as npz:
        np.testing.assert_array_equal(npz["y"], expected_y(np.delete(x, [2, 3], axis=0)))
    state = json.loads((tmp_path / "out" / STATE_FILE).read_text())
    assert state["shards"]["part-1.npz"]["failures"] == [{"start": 2, "stop": 4, "error": failure.error}]


def test_a_shard_that_fails_validation_is_reported(models, tmp_path):
    data = npz_folder(tmp_path / "data", [4])
    np.savez(data / "part-1.npz", x=rows(0, 4).astype(np.float64))
    result = run(models["double"], data, batch_size=3, progress=False)
    assert [(f.shard, f.start, f.stop) for f in result.failures] == [
        ("part-1.npz", 0, 3),
        ("part-1.npz", 3, 4),
    ]
    assert "expected to be of type float32, but was of type float64" in result.failures[0].error
    assert str(result.failures[1]).startswith("shard part-1.npz row 3: ValidationError")
    np.testing.assert_array_equal(result.outputs["y"], expected_y(rows(0, 4)))


def test_stop_on_error_raises_the_first_error_with_its_rows(models, tmp_path):
    data = npz_folder(tmp_path / "data", [4, 4])
    x = rows(4, 4)
    x[1, 0] = -1
    np.savez(data / "part-1.npz", x=x)
    out = tmp_path / "out"
    with pytest.raises(
        InferenceError, match=r"^shard part-1.npz rows 0-1: Model 'double' .*negative input"
    ) as info:
        run(models["double"], data, output=out, batch_size=2, stop_on_error=True, progress=False)
    assert isinstance(info.value.__cause__, InferenceError)
    # The shard before it is finished and kept; the failed shard left nothing behind.
    assert sorted(p.name for p in out.iterdir()) == [STATE_FILE, "part-0.npz"]
    assert list(json.loads((out / STATE_FILE).read_text())["shards"]) == ["part-0.npz"]


def test_run_options_and_dataset_errors(models, tmp_path):
    with pytest.raises(OptionError, match="batch_size must be an int >= 1, got 0"):
        run(models["double"], {"x": rows(0, 2)}, batch_size=0)
    with pytest.raises(OptionError, match="engine must be 'local', 'ray' or an Engine, got 'spark'"):
        run(models["double"], {"x": rows(0, 2)}, engine="spark")
    with pytest.raises(
        DatasetError, match="holds no input of the model \\(it holds 'z'; the inputs are 'x', 'w'\\)"
    ):
        run(models["double"], {"z": rows(0, 2)}, progress=False)
    with pytest.raises(DatasetError, match="the inputs have different numbers of rows \\('x' 2, 'w' 3\\)"):
        run(models["double"], {"x": rows(0, 2), "w": np.ones(3, np.float32)}, progress=False)
    with pytest.raises(DatasetError, match=r"No dataset at .*missing: it does not exist"):
        run(models["double"], tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"holds no dataset: expected .npz, .parquet"):
        run(models["double"], tmp_path / "empty", progress=False)
    (tmp_path / "mixed").mkdir()
    np.savez(tmp_path / "mixed" / "a.npz", x=rows(0, 1))
    pq.write_table(pa.table({"x": [1]}), tmp_path / "mixed" / "b.parquet")
    with pytest.raises(DatasetError, match="mixes dataset formats \\(npz, parquet\\)"):
        run(models["double"], tmp_path / "mixed", progress=False)


def test_output_folder_checks(models, tmp_path):
    data = npz_folder(tmp_path / "data", [2])
    with pytest.raises(DatasetError, match="overlaps the dataset"):
        run(models["double"], data, output=data / "out", progress=False)
    with pytest.raises(DatasetError, match="overlaps the dataset"):
        run(models["double"], data / "part-0.npz", output=data, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="is not empty and holds no run state"):
        run(models["double"], data, output=tmp_path / "busy", progress=False)
    run(models["double"], data, output=tmp_path / "out", progress=False)
    with pytest.raises(
        DatasetError, match=r"holds the outputs of another run \(model 'double' over .*data\)"
    ):
        run(models["ragged"], data, output=tmp_path / "out", progress=False)


# --- resuming ----------------------------------------------------------------------------------

SLOW = """
import time

def get_model(data_dir):
    def model(x):
        time.sleep(0.15)
        with open({log!r}, "a") as log:
            log.write(f"{{int(x[0, 0]) // 100}}\\n")
        return {{"y": x * 2}}
    return model
"""


def test_a_killed_run_resumes_without_redoing_finished_shards(tmp_path):
    log = tmp_path / "calls.log"
    path = package(
        tmp_path,
        "slow",
        SLOW.format(log=str(log)),
        [{"name": "x", "dtype": "float32", "shape": ("batch", 3)}],
        [{"name": "y", "dtype": "float32", "shape": ("batch", 3)}],
    )
    data = tmp_path / "data"
    data.mkdir()
    shards = 6
    for i in range(shards):
        np.savez(data / f"part-{i}.npz", x=rows(100 * i, 8))  # the shard is in x's hundreds
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "neuropod.cli",
        "run",
        str(path),
        "-i",
        str(data),
        "-o",
        str(out),
        "-b",
        "4",
        "-q",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = out / STATE_FILE
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if state_file.is_file() and len(json.loads(state_file.read_text())["shards"]) >= 2:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    finished = set(json.loads(state_file.read_text())["shards"])
    assert 2 <= len(finished) < shards
    log.unlink()

    result = run(path, data, output=out, batch_size=4, progress=False)

    unfinished = {f"part-{i}.npz" for i in range(shards)} - finished
    assert (result.shards_run, result.shards_skipped, result.rows) == (
        len(unfinished),
        len(finished),
        8 * len(unfinished),
    )
    called = sorted(int(line) for line in log.read_text().split())
    assert called == sorted(2 * [int(name[5]) for name in unfinished])  # two batches per shard
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [STATE_FILE, *(f"part-{i}.npz" for i in range(shards))]
    )
    for i in range(shards):
        with np.load(out / f"part-{i}.npz") as npz:
            np.testing.assert_array_equal(npz["y"], expected_y(rows(100 * i, 8)))


def test_a_partial_file_left_by_a_killed_run_is_removed(models, tmp_path):
    data = npz_folder(tmp_path / "data", [2, 2])
    out = tmp_path / "out"
    run(models["double"], data, output=out, progress=False)
    state = json.loads((out / STATE_FILE).read_text())
    del state["shards"]["part-1.npz"]
    (out / STATE_FILE).write_text(json.dumps(state))
    (out / ".part-1.npz.partial").write_bytes(b"half a file")
    result = run(models["double"], data, output=out, progress=False)
    assert (result.shards_run, result.shards_skipped) == (1, 1)
    assert not (out / ".part-1.npz.partial").exists()


# --- progress ----------------------------------------------------------------------------------


def test_progress_bar_shows_rows_and_rate():
    stream = io.StringIO()
    bar = Progress(1000, "model", stream=stream)
    bar.update(250)
    assert bar.render(2.0) == "model  25% [######..................] 250/1,000 rows  125 rows/s  eta 0:06"
    bar.note("error: shard a rows 0-9: bad")
    bar.update(750)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "error: shard a rows 0-9: bad"
    assert lines[-1].startswith("model 100% [########################] 1,000/1,000 rows ")
    assert "rows/s  in 0:00" in lines[-1]


def test_quiet_runs_print_nothing(models, capsys):
    run(models["double"], {"x": rows(0, 3)}, progress=False)
    assert capsys.readouterr() == ("", "")


def test_progress_goes_to_stderr_with_failures(models, capsys):
    x = rows(0, 4)
    x[0, 0] = -1
    run(models["double"], {"x": x}, batch_size=2)
    out, err = capsys.readouterr()
    assert out == ""
    assert "error: shard . rows 0-1: InferenceError" in err
    assert "4/4 rows" in err and "rows/s" in err


# --- the command -------------------------------------------------------------------------------


def test_command_runs_and_summarizes(models, tmp_path, capsys):
    data = npz_folder(tmp_path / "data", [3, 3])
    x = rows(3, 3)
    x[0, 0] = -1
    np.savez(data / "part-1.npz", x=x)
    out = tmp_path / "out"
    args = [
        "run",
        str(models["double"]),
        "--input",
        str(data),
        "--output",
        str(out),
        "--batch-size",
        "2",
        "-q",
    ]
    assert main(args) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("ran 6 rows of 2 shard(s) in ")
    assert printed[1:3] == [
        "1 batch(es) failed (2 rows):",
        "  shard part-1.npz rows 0-1: InferenceError: Model 'double' (python) failed: "
        "ValueError: negative input",
    ]
    assert printed[3] == f"outputs: {out.resolve()} (run state: {out.resolve() / STATE_FILE})"
    assert main(args) == 0
    assert "; 2 shard(s) were done already" in capsys.readouterr().out


def test_command_errors(models, tmp_path, capsys):
    data = npz_folder(tmp_path / "data", [3])
    base = ["run", str(models["double"]), "-i", str(data), "-o", str(tmp_path / "out"), "-q"]
    assert main([*base, "--address", "auto"]) == 2
    assert "--address apply to --engine ray only" in capsys.readouterr().err
    assert main([*base, "--batch-size", "0"]) == 2
    assert "argument -b/--batch-size: expected an int >= 1, got '0'" in capsys.readouterr().err
    assert main([*base, "--concurrency", "two"]) == 2
    assert "argument --concurrency: expected an int >= 1, got 'two'" in capsys.readouterr().err
    x = rows(0, 3)
    x[2, 0] = -1
    np.savez(data / "part-0.npz", x=x)
    assert main([*base, "--stop-on-error"]) == 2
    assert (
        "neuropod: error: shard part-0.npz rows 0-2: Model 'double' (python) failed"
        in capsys.readouterr().err
    )


def test_command_passes_load_options(models, tmp_path, capsys):
    data = npz_folder(tmp_path / "data", [3])
    args = ["run", str(models["double"]), "-i", str(data), "-o", str(tmp_path / "out"), "-q"]
    assert main([*args, "--load-option", "require_all_inputs=true"]) == 1
    assert "Tensor 'w' in the input spec is required" in capsys.readouterr().out


def test_out_of_process_models_run_batches(models):
    result = run(
        models["double"], {"x": rows(0, 5)}, batch_size=2, progress=False, load_options={"use_ope": True}
    )
    np.testing.assert_array_equal(result.outputs["y"], expected_y(rows(0, 5)))


# --- metrics -----------------------------------------------------------------------------------

OFF_BY_ONE = DOUBLE.replace("x * 2 if w", "x * 2 + 1 if w")


def mae(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> float:
    return float(np.abs(outputs["y"] - targets["target"]).mean())


def worst(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> float:
    return float(np.abs(outputs["y"] - targets["target"]).max())


def test_evaluate_compares_models_on_one_dataset(models, tmp_path, capsys):
    off = package(tmp_path, "off", OFF_BY_ONE, DOUBLE_INPUTS, DOUBLE_OUTPUTS)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        x = rows(5 * i, 5)
        np.savez(data / f"part-{i}.npz", x=x, target=x * 2)
    with load_neuropod(models["double"]) as exact:
        evaluation = evaluate(
            {"exact": exact, "off": off},
            data,
            metrics={"mae": mae, "max": worst},
            targets=["target"],
            batch_size=3,
        )
    assert evaluation.scores == {"exact": {"mae": 0.0, "max": 0.0}, "off": {"mae": 1.0, "max": 1.0}}
    assert evaluation.rows == 10
    table = capsys.readouterr().out.splitlines()
    assert [line.split() for line in table[:3]] == [
        ["metric", "exact", "off"],
        ["mae", "0", "1"],
        ["max", "0", "1"],
    ]
    assert table[3].startswith("rows/s ")
    assert str(evaluation) == "\n".join(table)


def test_evaluate_with_targets_in_memory(models, capsys):
    x = rows(0, 4)
    evaluation = evaluate(
        {"m": models["double"]},
        {"x": x},
        metrics={"mae": mae},
        targets={"target": x * 2 + 0.5},
        print_table=False,
    )
    assert evaluation.scores == {"m": {"mae": 0.5}}
    assert capsys.readouterr().out == ""


def test_evaluate_errors(models):
    x = rows(0, 4)
    with pytest.raises(OptionError, match="at least one model and one metric"):
        evaluate({}, {"x": x}, metrics={"mae": mae}, targets={"target": x})
    with pytest.raises(DatasetError, match="Target 'target' has 3 rows, but the dataset has 4"):
        evaluate({"m": models["double"]}, {"x": x}, metrics={"mae": mae}, targets={"target": x[:3]})
    with pytest.raises(DatasetError, match="has no target 'target'"):
        evaluate({"m": models["double"]}, {"x": x}, metrics={"mae": mae}, targets=["target"])
    bad = x.copy()
    bad[0, 0] = -1
    with pytest.raises(InferenceError, match="rows 0-3: Model 'double'"):
        evaluate({"m": models["double"]}, {"x": bad}, metrics={"mae": mae}, targets={"target": x})


# --- the metrics example -----------------------------------------------------------------------


def test_compare_models_example_runs():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    example = Path(__file__).parents[2] / "examples" / "compare_models.py"
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:__main__"}
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=240, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric "))
    assert lines[header].split() == ["metric", "torchscript", "onnx"]
    mae_row = lines[header + 1].split()
    assert mae_row[0] == "mae" and abs(float(mae_row[1]) - float(mae_row[2])) < 1e-4


# --- the public surface ------------------------------------------------------------------------


def test_batch_all_is_pinned_and_sorted():
    import neuropod.batch

    assert neuropod.batch.__all__ == [
        "BatchFailure",
        "Dataset",
        "DatasetError",
        "Engine",
        "Evaluation",
        "Job",
        "LocalEngine",
        "Metric",
        "RunResult",
        "STATE_FILE",
        "Shard",
        "Task",
        "TaskResult",
        "batch_symbol",
        "evaluate",
        "open_dataset",
        "run",
    ]
    assert neuropod.batch.__all__ == sorted(neuropod.batch.__all__)


def test_importing_the_runner_and_its_command_imports_no_framework_nor_pyarrow():
    code = (
        "import sys, neuropod.batch, neuropod.cli.main\n"
        "heavy = ['torch', 'tensorflow', 'jax', 'onnxruntime', 'ray', 'pyarrow']\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- engines by name ---------------------------------------------------------------------------


def _entry_points(monkeypatch: pytest.MonkeyPatch, **engines: str) -> None:
    from importlib.metadata import EntryPoint

    import neuropod.batch.registry as registry

    found = [EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in engines.items()]
    monkeypatch.setattr(
        registry, "entry_points", lambda group: found if group == registry.ENTRY_POINT_GROUP else []
    )


def test_engines_plug_in_through_entry_points(monkeypatch, models):
    from neuropod.batch.engine import LocalEngine
    from neuropod.batch.registry import engine_names, resolve_engine

    _entry_points(monkeypatch, mine="neuropod.batch.engine:LocalEngine", local="neuropod.batch.dataset:Shard")
    assert engine_names() == ["local", "ray", "mine"]
    assert isinstance(resolve_engine("mine"), LocalEngine)
    assert isinstance(resolve_engine("local"), LocalEngine)  # a built-in name cannot be taken over
    result = run(models["double"], {"x": rows(0, 2)}, engine="mine", progress=False)
    assert result.rows == 2
    with pytest.raises(OptionError, match="engine must be 'local', 'ray', 'mine' or an Engine, got 'spark'"):
        resolve_engine("spark")
    with pytest.raises(OptionError, match="got 3"):
        resolve_engine(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "no_such_module_here:Engine",
            "The engine 'broken' \\(no_such_module_here:Engine\\) cannot be imported",
        ),
        ("neuropod.batch.engine:NoSuchEngine", "cannot be imported: .*NoSuchEngine"),
        (
            "neuropod.batch.dataset:Shard",
            "\\(neuropod.batch.dataset:Shard\\) is not a neuropod.batch.Engine subclass",
        ),
    ],
)
def test_a_broken_engine_entry_point_is_a_clear_error(monkeypatch, value, message):
    from neuropod import BackendUnavailable
    from neuropod.batch.registry import resolve_engine

    _entry_points(monkeypatch, broken=value)
    with pytest.raises(BackendUnavailable, match=message):
        resolve_engine("broken")


def test_the_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    from neuropod import BackendUnavailable
    from neuropod.batch.registry import resolve_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    for name in [name for name in sys.modules if name.startswith("neuropod.integrations.ray")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(
        BackendUnavailable, match=r"^neuropod.integrations.ray needs Ray: pip install 'neuropod\[ray\]'$"
    ):
        resolve_engine("ray")


def test_the_batch_package_has_no_import_cycle_and_names_no_integration():
    import ast

    folder = Path(__import__("neuropod.batch").batch.__file__).parent
    imports = {}
    for path in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        assert not any(name.startswith("neuropod.integrations") for name in names), path.name
        imports[path.stem] = {name.rsplit(".", 1)[1] for name in names if name.startswith("neuropod.batch.")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for step in imports.get(start, ()):
            if step == goal or (step not in seen and reaches(step, goal, seen | {step})):
                return True
        return False

    assert [module for module in imports if module != "__init__" and reaches(module, module, set())] == []
