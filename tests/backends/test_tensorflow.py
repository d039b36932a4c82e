"""The TensorFlow backend and packager: graphs, SavedModels, strings, init ops, custom ops, threads.

What every backend shares (validation, lifetime, self-test) is in ``tests/test_conformance.py``;
the reference models that it builds are in ``tests/models/tensorflow.py``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import InferenceError, OptionError, PackageError, ValidationError
from neuropod.loader import load_neuropod
from neuropod.packagers import create_tensorflow_neuropod
from tests.models import ADDITION_SPEC, STRING_SPEC

tf = pytest.importorskip("tensorflow")
from tests.models.tensorflow import (  # noqa: E402
    ADDITION_NODES,
    addition_graph_def,
    build_strings,
)

XY_SPEC = ADDITION_SPEC["input_spec"]
OUT_SPEC = ADDITION_SPEC["output_spec"]
STRING_IN = STRING_SPEC["input_spec"]
STRING_OUT = STRING_SPEC["output_spec"]


# --- Models ------------------------------------------------------------------------------


class AdditionModule(tf.Module):
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.float32, "x"),
            tf.TensorSpec([None, None], tf.float32, "y"),
        ]
    )
    def __call__(self, x: Any, y: Any) -> dict[str, Any]:
        return {"out": x + y, "extra": x - y}


class StringsModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "s")])
    def __call__(self, s: Any) -> dict[str, Any]:
        return {"out": tf.strings.join(["<", s, ">"])}


def string_package(tmp_dir: Path) -> Path:
    """The standard string model: s string ``("batch",)``, ``out = "<" + s + ">"``."""
    path = Path(tmp_dir) / "tensorflow_strings.zip"
    build_strings(path, Path(tmp_dir), input_spec=STRING_IN, output_spec=STRING_OUT)
    return path


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tensorflow")


@pytest.fixture(scope="module")
def frozen_graph(root: Path) -> Path:
    path = root / "addition.pb"
    path.write_bytes(addition_graph_def().SerializeToString())
    return path


@pytest.fixture(scope="module")
def saved_model(root: Path) -> Path:
    path = root / "addition_savedmodel"
    tf.saved_model.save(AdditionModule(), str(path))
    return path


@pytest.fixture(scope="module")
def graph_package(addition_package: Callable[..., Path]) -> Path:
    return addition_package("tensorflow", name="tensorflow_addition.zip")


@pytest.fixture(scope="module")
def savedmodel_package(root: Path) -> Path:
    path = root / "savedmodel.zip"
    package(path, trackable_obj=AdditionModule())
    return path


def package(path: Path, **kwargs: Any) -> Path:
    kwargs.setdefault("input_spec", XY_SPEC)
    kwargs.setdefault("output_spec", OUT_SPEC)
    create_tensorflow_neuropod(neuropod_path=path, model_name=path.stem, **kwargs)
    return path


def xy(batch: int = 2, width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(batch * width, dtype=np.float32).reshape(batch, width)
    return x, np.full((batch, width), 0.5, np.float32)


def aligned(array: np.ndarray) -> np.ndarray:
    buffer = np.empty(array.nbytes + 64, np.uint8)
    offset = -buffer.ctypes.data % 64
    out = buffer[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


# --- Sources -----------------------------------------------------------------------------


def _with_suffix(mapping: dict[str, str]) -> dict[str, str]:
    return {name: f"{node}:0" for name, node in mapping.items()}


@pytest.mark.parametrize(
    "source",
    [
        "frozen_graph_path",
        "graph_def",
        "graph_def:0",
        "frozen_graph_path:0",
        "saved_model_dir",
        "trackable_obj",
    ],
)
def test_every_source_packages_the_addition_model(
    source: str, root: Path, frozen_graph: Path, saved_model: Path
) -> None:
    kind, _, suffix = source.partition(":")
    mapping = _with_suffix(ADDITION_NODES) if suffix else ADDITION_NODES
    sources: dict[str, dict[str, Any]] = {
        "frozen_graph_path": {"frozen_graph_path": frozen_graph, "node_name_mapping": mapping},
        "graph_def": {"graph_def": addition_graph_def(), "node_name_mapping": mapping},
        "saved_model_dir": {"saved_model_dir": saved_model},
        "trackable_obj": {"trackable_obj": AdditionModule()},
    }
    x, y = xy()
    path = package(
        root / f"{kind}{suffix}.zip",
        **sources[kind],
        test_input_data={"x": x, "y": y},
        test_expected_out={"out": x + y},
    )
    with load_neuropod(path) as model:
        assert model.platform == "tensorflow"
        for batch, width in [(1, 1), (5, 4)]:
            x, y = xy(batch, width)
            out = model.infer({"x": x, "y": y})
            assert list(out) == ["out"]  # the SavedModel's extra output is not returned
            np.testing.assert_array_equal(out["out"], x + y)
            assert out["out"].dtype == np.float32


def test_graph_layout_and_settings(root: Path) -> None:
    path = package(
        root / "layout",
        graph_def=addition_graph_def(),
        node_name_mapping=ADDITION_NODES,
        package_as_zip=False,
    )
    assert (path / "0" / "data" / "model.pb").is_file()
    assert (path / "0" / "ops").is_dir()
    # One line, keys in the original's (unsorted) order, mapping as given.
    assert (path / "0" / "config.json").read_bytes() == (
        b'{"node_name_mapping": {"x": "model/x", "y": "model/y", "out": "model/out"}, '
        b'"init_op_names": []}'
    )


def test_frozen_graph_is_copied_byte_for_byte(root: Path, frozen_graph: Path) -> None:
    path = package(
        root / "frozen",
        frozen_graph_path=frozen_graph,
        node_name_mapping=ADDITION_NODES,
        package_as_zip=False,
    )
    assert (path / "0" / "data" / "model.pb").read_bytes() == frozen_graph.read_bytes()


def test_savedmodel_layout(root: Path, saved_model: Path) -> None:
    path = package(root / "sm-layout", saved_model_dir=saved_model, package_as_zip=False)
    assert (path / "0" / "data" / "savedmodel" / "saved_model.pb").is_file()
    # What the original wrote for SavedModels, byte for byte.
    assert (path / "0" / "config.json").read_bytes() == b'{"node_name_mapping": null, "init_op_names": []}'


def test_graph_input_with_a_default_may_be_left_out(graph_package: Path) -> None:
    x, _ = xy()
    with load_neuropod(graph_package) as model:
        np.testing.assert_array_equal(model.infer({"x": x})["out"], x)
        # and the full set again, after a call with fewer inputs
        x, y = xy()
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


def test_savedmodel_needs_every_input(savedmodel_package: Path) -> None:
    x, _ = xy()
    with load_neuropod(savedmodel_package) as model, pytest.raises(InferenceError, match="tensorflow"):
        model.infer({"x": x})


# --- Strings -----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["graph", "savedmodel"])
@pytest.mark.parametrize("dtype", [str, object])
def test_strings(root: Path, form: str, dtype: type) -> None:
    path = root / f"strings-{form}.zip"
    if not path.exists():
        if form == "graph":
            build_strings(path, root, input_spec=STRING_IN, output_spec=STRING_OUT)
        else:
            package(path, trackable_obj=StringsModule(), input_spec=STRING_IN, output_spec=STRING_OUT)
    words = np.array(["héllo", "日本語", "", "a b"], dtype=dtype)
    with load_neuropod(path) as model:
        out = model.infer({"s": words})["out"]
        assert out.dtype.kind == "U"
        assert out.tolist() == ["<héllo>", "<日本語>", "<>", "<a b>"]
        empty = model.infer({"s": np.array([], dtype=str)})["out"]
        assert empty.dtype.kind == "U" and empty.shape == (0,)


def test_string_package_helper(tmp_path: Path) -> None:
    with load_neuropod(string_package(tmp_path)) as model:
        assert model.infer({"s": np.array(["a"])})["out"].tolist() == ["<a>"]


# --- Bytes -------------------------------------------------------------------------------

BYTES_IN = [{"name": "s", "dtype": "bytes", "shape": ("batch",)}]
BYTES_OUT = [{"name": "out", "dtype": "bytes", "shape": ("batch",)}]
#: NULs (leading, inner, trailing), bytes that are not UTF-8, an empty element.
RAW = [b"\x00\xff\xd8\xff", b"a\x00b\x00\x00", b"", b"\x80", "é".encode()]


def byte_array(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@pytest.mark.parametrize("form", ["graph", "savedmodel"])
def test_bytes_pass_exactly(root: Path, form: str) -> None:
    path = root / f"bytes-{form}.zip"
    if form == "graph":
        build_strings(path, root, input_spec=BYTES_IN, output_spec=BYTES_OUT)
    else:
        package(path, trackable_obj=StringsModule(), input_spec=BYTES_IN, output_spec=BYTES_OUT)
    with load_neuropod(path) as model:
        out = model.infer({"s": byte_array(RAW)})["out"]
        assert out.dtype == object and out.tolist() == [b"<" + item + b">" for item in RAW]
        # numpy S arrays are accepted too (numpy itself dropped their trailing NULs)
        assert model.infer({"s": np.array([b"a\x00b", b"\xff"])})["out"].tolist() == [b"<a\x00b>", b"<\xff>"]
        with pytest.raises(ValidationError, match="expected to be of type bytes, but was of type string"):
            model.infer({"s": np.array(["text"])})


def test_a_string_output_that_is_not_utf8_is_the_models_fault(root: Path) -> None:
    path = root / "bytes-to-string.zip"
    build_strings(path, root, input_spec=BYTES_IN, output_spec=STRING_OUT)
    with load_neuropod(path) as model:
        assert model.infer({"s": byte_array([b"ok"])})["out"].tolist() == ["<ok>"]
        with pytest.raises(ValidationError) as info:
            model.infer({"s": byte_array([b"ok", b"\xff"])})
    assert str(info.value) == (
        "Tensor 'out': element 1 is not UTF-8 text (invalid start byte at byte 1), but 'out' is a "
        "string output, which holds text; a tensor of dtype bytes takes any bytes"
    )


def test_the_packager_checks_bytes_against_the_signature(root: Path) -> None:
    spec_in = [{"name": "x", "dtype": "bytes", "shape": (None, None)}, XY_SPEC[1]]
    with pytest.raises(PackageError, match="input 'x' of type float32, but the input spec says bytes"):
        package(root / "wrong-bytes.zip", trackable_obj=AdditionModule(), input_spec=spec_in)


# --- Init ops ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variable_graph() -> Any:
    """``out = x * w``, where the variable ``w`` holds 3 once the op ``init`` has run."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant(3.0), use_resource=True)
        tf.compat.v1.variables_initializer([w], name="init")
        tf.multiply(x, w, name="out")
    return graph.as_graph_def()


def test_init_ops_run_at_load(root: Path, variable_graph: Any) -> None:
    spec_in = [{"name": "x", "dtype": "float32", "shape": (None,)}]
    spec_out = [{"name": "out", "dtype": "float32", "shape": (None,)}]
    mapping = {"x": "x", "out": "out:0"}
    path = package(
        root / "init.zip",
        graph_def=variable_graph,
        node_name_mapping=mapping,
        init_op_names=["init"],
        input_spec=spec_in,
        output_spec=spec_out,
    )
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": np.ones(2, np.float32)})["out"], [3.0, 3.0])

    uninitialised = package(
        root / "no-init.zip",
        graph_def=variable_graph,
        node_name_mapping=mapping,
        input_spec=spec_in,
        output_spec=spec_out,
    )
    with load_neuropod(uninitialised) as model, pytest.raises(InferenceError) as info:
        model.infer({"x": np.ones(2, np.float32)})
    assert isinstance(info.value.__cause__, tf.errors.FailedPreconditionError)


def test_unknown_init_op_is_refused(root: Path, variable_graph: Any) -> None:
    with pytest.raises(PackageError, match="init op 'setup'"):
        package(
            root / "bad-init.zip",
            graph_def=variable_graph,
            node_name_mapping={"x": "x", "out": "out"},
            init_op_names=["setup"],
            input_spec=[{"name": "x", "dtype": "float32", "shape": (None,)}],
            output_spec=[{"name": "out", "dtype": "float32", "shape": (None,)}],
        )
    assert not (root / "bad-init.zip").exists()


# --- Packaging errors --------------------------------------------------------------------


@pytest.mark.parametrize("given", [{}, {"graph_def": "both", "trackable_obj": "both"}])
def test_exactly_one_source(root: Path, given: dict[str, Any]) -> None:
    sources = {key: (addition_graph_def() if key == "graph_def" else AdditionModule()) for key in given}
    got = " and ".join(given) or "none"
    with pytest.raises(
        PackageError,
        match=r"exactly one of frozen_graph_path= \(a serialized GraphDef file\), graph_def= .*, "
        rf"saved_model_dir= .* or trackable_obj= \(a tf.Module to save\); got {got}$",
    ):
        package(root / "none.zip", node_name_mapping=ADDITION_NODES, **sources)
    assert not (root / "none.zip").exists()


def test_graph_needs_a_node_name_mapping(root: Path) -> None:
    with pytest.raises(PackageError, match="node_name_mapping is required for graphs"):
        package(root / "nomap.zip", graph_def=addition_graph_def())
    with pytest.raises(PackageError, match="no node for tensor\\(s\\) 'out'"):
        package(
            root / "nomap.zip",
            graph_def=addition_graph_def(),
            node_name_mapping={"x": "model/x", "y": "model/y"},
        )
    with pytest.raises(PackageError, match="The graph has no node for: 'x' -> 'x:0'"):
        package(
            root / "nomap.zip",
            graph_def=addition_graph_def(),
            node_name_mapping={**ADDITION_NODES, "x": "x:0"},
        )
    assert not (root / "nomap.zip").exists()


def test_graph_settings_are_refused_for_savedmodels(root: Path, saved_model: Path) -> None:
    with pytest.raises(PackageError, match="apply to graphs"):
        package(root / "sm-map.zip", saved_model_dir=saved_model, node_name_mapping=ADDITION_NODES)


def test_signature_must_take_the_spec_inputs(root: Path, saved_model: Path) -> None:
    renamed = [{**XY_SPEC[0], "name": "a"}, XY_SPEC[1]]
    with pytest.raises(PackageError) as info:
        package(root / "sig-in.zip", saved_model_dir=saved_model, input_spec=renamed)
    assert str(info.value) == (
        "The SavedModel's 'serving_default' signature takes inputs ['x', 'y'], but the input spec "
        "names ['a', 'y']: they must be the same names"
    )
    assert not (root / "sig-in.zip").exists()


def test_signature_must_return_the_spec_outputs(root: Path) -> None:
    outputs = [*OUT_SPEC, {"name": "total", "dtype": "float32", "shape": ("batch",)}]
    with pytest.raises(
        PackageError, match=r"returns \['extra', 'out'\], which lacks the output spec's 'total'"
    ):
        package(root / "sig-out.zip", trackable_obj=AdditionModule(), output_spec=outputs)
    assert not (root / "sig-out.zip").exists()


def test_signature_dtypes_must_match_the_spec(root: Path) -> None:
    doubles = [{**spec, "dtype": "float64"} for spec in XY_SPEC]
    with pytest.raises(PackageError, match="input 'x' of type float32, but the input spec says float64"):
        package(root / "sig-dtype.zip", trackable_obj=AdditionModule(), input_spec=doubles)


def test_trackable_without_a_signature(root: Path) -> None:
    with pytest.raises(PackageError, match="no 'serving_default' signature"):
        package(root / "nosig.zip", trackable_obj=tf.Module())


def test_unknown_keyword_is_refused(root: Path) -> None:
    with pytest.raises(TypeError, match="'node_names'"):
        package(root / "kw.zip", trackable_obj=AdditionModule(), node_names={})


# --- Packages laid out by the original -------------------------------------------------


def _original_layout(
    root: Path, model_files: dict[str, bytes], backend_config: dict[str, Any] | None
) -> Path:
    root.mkdir()
    config = {
        "name": "addition_model",
        "platform": "tensorflow",
        "input_spec": [{"name": s["name"], "dtype": s["dtype"], "shape": list(s["shape"])} for s in XY_SPEC],
        "output_spec": [{"name": "out", "dtype": "float32", "shape": ["batch", None]}],
        "custom_ops": [],
    }
    (root / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True))
    (root / "0" / "ops").mkdir(parents=True)
    if backend_config is not None:
        (root / "0" / "config.json").write_text(json.dumps(backend_config))
    for name, data in model_files.items():
        target = root / "0" / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def _zip_tree(directory: Path) -> Path:
    archive = directory.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(directory.rglob("*")):
            zf.write(path, path.relative_to(directory).as_posix())
    return archive


@pytest.mark.parametrize("form", ["graph", "savedmodel"])
def test_original_layout_loads(root: Path, saved_model: Path, form: str) -> None:
    if form == "graph":
        files = {"model.pb": addition_graph_def().SerializeToString()}
        settings: dict[str, Any] | None = {"node_name_mapping": ADDITION_NODES, "init_op_names": []}
    else:
        files = {
            f"savedmodel/{p.relative_to(saved_model).as_posix()}": p.read_bytes()
            for p in saved_model.rglob("*")
            if p.is_file()
        }
        settings = {"node_name_mapping": None, "init_op_names": []}
    directory = _original_layout(root / f"original-{form}", files, settings)
    assert not (directory / "manifest.json").exists()
    x, y = xy()
    for path in (directory, _zip_tree(directory)):
        with load_neuropod(path) as model:
            assert model.name == "addition_model"
            np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


def test_package_without_a_model_is_refused(root: Path) -> None:
    directory = _original_layout(root / "empty-original", {}, None)
    with pytest.raises(PackageError, match=r"needs 0/data/model.pb .* or 0/data/savedmodel/"):
        load_neuropod(directory)


def test_broken_graph_settings_are_refused(root: Path) -> None:
    files = {"model.pb": addition_graph_def().SerializeToString()}
    no_mapping = _original_layout(root / "no-mapping", files, {"init_op_names": []})
    with pytest.raises(PackageError, match="'node_name_mapping'"):
        load_neuropod(no_mapping)
    wrong_node = _original_layout(
        root / "wrong-node", files, {"node_name_mapping": {**ADDITION_NODES, "x": "nope"}}
    )
    with pytest.raises(PackageError, match="tensor 'x' maps to 'nope', which is not in the graph"):
        load_neuropod(wrong_node)
    not_a_graph = _original_layout(
        root / "not-a-graph", {"model.pb": b"\xff\xff not a proto"}, {"node_name_mapping": {}}
    )
    with pytest.raises(PackageError, match="is not a GraphDef"):
        load_neuropod(not_a_graph)


# --- Tensors in and out ------------------------------------------------------------------


@pytest.mark.parametrize("form", ["graph", "savedmodel"])
def test_awkward_inputs(graph_package: Path, savedmodel_package: Path, form: str) -> None:
    path = graph_package if form == "graph" else savedmodel_package
    x, y = xy(4, 6)
    readonly = y.copy()
    readonly.flags.writeable = False
    strided = x[:, ::2]
    with load_neuropod(path) as model:
        for a, b in [(aligned(x), aligned(y)), (x, readonly), (strided, readonly[:, :3]), (x[:0], y[:0])]:
            before = a.copy(), b.copy()
            np.testing.assert_array_equal(model.infer({"x": a, "y": b})["out"], a + b)
            np.testing.assert_array_equal(a, before[0])
            np.testing.assert_array_equal(b, before[1])


def test_savedmodel_outputs_are_views(savedmodel_package: Path) -> None:
    x, y = xy(64, 64)
    with load_neuropod(savedmodel_package) as model:
        out = model.infer({"x": aligned(x), "y": aligned(y)})["out"]
    # a view of TensorFlow's buffer, which the array keeps alive after the model is closed
    assert not out.flags.owndata and not out.flags.writeable
    np.testing.assert_array_equal(out, x + y)


def test_graph_outputs_are_views(graph_package: Path) -> None:
    x, y = xy(64, 64)
    with load_neuropod(graph_package) as model:
        out = model.infer({"x": x, "y": y})["out"]
    assert not out.flags.owndata
    np.testing.assert_array_equal(out, x + y)


# --- Load options ------------------------------------------------------------------------


def test_graph_threads_are_per_model(graph_package: Path) -> None:
    x, y = xy()
    with load_neuropod(graph_package, intra_op_threads=1, inter_op_threads=2) as model:
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


@pytest.mark.parametrize("value", [-1, 1.5, "2", True])
def test_invalid_thread_counts(graph_package: Path, value: Any) -> None:
    expected = r"intra_op_threads must be None or an int >= 0 \(0: TensorFlow decides\)"
    with pytest.raises(OptionError, match=expected):
        load_neuropod(graph_package, intra_op_threads=value)


def test_savedmodel_threads_after_tensorflow_started(savedmodel_package: Path) -> None:
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with load_neuropod(savedmodel_package, intra_op_threads=current):
        pass  # the setting in force is accepted
    with pytest.raises(
        OptionError, match="intra_op_threads=7 cannot be applied: TensorFlow's eager thread pools"
    ):
        load_neuropod(savedmodel_package, intra_op_threads=7)


FRESH_PROCESS = """
import json, sys
import numpy as np
from neuropod import load_neuropod
import tensorflow as tf
with load_neuropod(sys.argv[1], intra_op_threads=2, inter_op_threads=3) as model:
    out = model.infer({"x": np.ones((1, 2), np.float32), "y": np.ones((1, 2), np.float32)})
print(json.dumps({
    "out": out["out"].tolist(),
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
}))
"""


def test_savedmodel_threads_in_a_fresh_process(savedmodel_package: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(FRESH_PROCESS), str(savedmodel_package)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"out": [[2.0, 2.0]], "intra": 2, "inter": 3}


def test_visible_gpu_without_a_gpu_runs_on_the_cpu(
    graph_package: Path, savedmodel_package: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU")
    x, y = xy()
    for path in (graph_package, savedmodel_package):
        with caplog.at_level(logging.WARNING), load_neuropod(path, visible_gpu=0) as model:
            np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)
        assert "TensorFlow sees no GPU; running on the CPU" in caplog.text


# --- Custom ops --------------------------------------------------------------------------

CUSTOM_OP = r"""
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

using namespace tensorflow;

REGISTER_OP("NeuropodTestTimesTwo")
    .Input("x: float")
    .Output("y: float")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return OkStatus();
    });

class NeuropodTestTimesTwo : public OpKernel {
 public:
  explicit NeuropodTestTimesTwo(OpKernelConstruction* context) : OpKernel(context) {}
  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, input.shape(), &output));
    auto in = input.flat<float>();
    auto out = output->flat<float>();
    for (int64_t i = 0; i < in.size(); ++i) out(i) = 2 * in(i);
  }
};

REGISTER_KERNEL_BUILDER(Name("NeuropodTestTimesTwo").Device(DEVICE_CPU), NeuropodTestTimesTwo);
"""


@pytest.fixture(scope="module")
def custom_op(root: Path) -> Path:
    """A real TensorFlow op library, compiled against the installed TensorFlow's headers."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no g++ to build a TensorFlow custom op")
    source = root / "times_two.cc"
    source.write_text(CUSTOM_OP)
    library = root / "neuropod_test_times_two.so"
    command = [
        compiler,
        "-shared",
        "-fPIC",
        "-O1",
        "-w",
        str(source),
        "-o",
        str(library),
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"the custom op does not compile here: {done.stderr[-2000:]}")
    return library


def _times_two_graph_def() -> Any:
    # Written node by node: building it through the op's Python wrapper would load the library
    # in this process, and the test is that the backend loads it.
    graph_def = tf.compat.v1.GraphDef()
    x = graph_def.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = tf.float32.as_datatype_enum
    x.attr["shape"].shape.CopyFrom(tf.TensorShape([None]).as_proto())
    graph_def.node.add(name="out", op="NeuropodTestTimesTwo", input=["x"])
    return graph_def


def test_custom_op_is_loaded_before_the_model(root: Path, custom_op: Path) -> None:
    spec_in = [{"name": "x", "dtype": "float32", "shape": (None,)}]
    spec_out = [{"name": "out", "dtype": "float32", "shape": (None,)}]
    path = package(
        root / "custom-op",
        graph_def=_times_two_graph_def(),
        node_name_mapping={"x": "x", "out": "out"},
        custom_ops=[str(custom_op)],
        input_spec=spec_in,
        output_spec=spec_out,
        package_as_zip=False,
        test_input_data={"x": np.arange(3, dtype=np.float32)},
        test_expected_out={"out": np.arange(3, dtype=np.float32) * 2},
    )
    assert (path / "0" / "ops" / custom_op.name).is_file()
    assert json.loads((path / "config.json").read_text())["custom_ops"] == [custom_op.name]
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": np.ones(4, np.float32)})["out"], np.full(4, 2.0))

    (path / "manifest.json").unlink()  # so that the missing library, not the manifest, is reported
    (path / "0" / "ops" / custom_op.name).unlink()
    with pytest.raises(
        PackageError, match=f"custom op 0/ops/{custom_op.name} listed in config.json is missing"
    ):
        load_neuropod(path)


def test_scalar_outputs_are_arrays(root: Path) -> None:
    graph = tf.Graph()
    with graph.as_default():
        s = tf.compat.v1.placeholder(tf.string, [None], name="s")
        tf.identity(tf.strings.reduce_join(s), name="joined")
        tf.size(s, name="count")
    path = package(
        root / "scalars.zip",
        graph_def=graph.as_graph_def(),
        node_name_mapping={"s": "s", "joined": "joined", "count": "count"},
        input_spec=[{"name": "s", "dtype": "string", "shape": (None,)}],
        output_spec=[
            {"name": "joined", "dtype": "string", "shape": ()},
            {"name": "count", "dtype": "int32", "shape": ()},
        ],
    )
    with load_neuropod(path) as model:
        out = model.infer({"s": np.array(["a", "é"])})
    assert (
        isinstance(out["joined"], np.ndarray)
        and out["joined"].shape == ()
        and out["joined"].dtype.kind == "U"
    )
    assert out["joined"].item() == "aé"
    assert isinstance(out["count"], np.ndarray) and out["count"].shape == () and out["count"].item() == 2
