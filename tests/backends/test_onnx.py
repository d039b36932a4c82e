"""The ONNX platform: graphs run by onnxruntime, specs read from the graph, providers, threads."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import InferenceError, OptionError, PackageError
from neuropod.loader import load_neuropod
from neuropod.packagers import create_onnx_neuropod
from tests.models import ADDITION_SPEC

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import neuropod.packagers.onnx as onnx_packager  # noqa: E402
from tests.models.onnx import build_strings, make_model, value  # noqa: E402

XY_SPEC = ADDITION_SPEC["input_spec"]
OUT_SPEC = ADDITION_SPEC["output_spec"]


# --- Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def addition(addition_package: Callable[..., Path]) -> Path:
    return addition_package("onnx", name="onnx_addition.zip")


def string_package(tmp_dir: Path) -> Path:
    """A string model: x string ``(None,)``, ``out = "<" + x + ">"``."""
    path = Path(tmp_dir) / "onnx_strings.zip"
    spec = {"dtype": "string", "shape": (None,)}
    build_strings(
        path, Path(tmp_dir), input_spec=[{"name": "x", **spec}], output_spec=[{"name": "out", **spec}]
    )
    return path


def add_model() -> Any:
    return make_model(
        [helper.make_node("Add", ["x", "y"], ["out"])],
        [value("x", TensorProto.FLOAT, ["batch", None]), value("y", TensorProto.FLOAT, ["batch", None])],
        [value("out", TensorProto.FLOAT, ["batch", None])],
    )


def package(root: Path, name: str, model: Any = None, **kwargs: Any) -> Path:
    path = root / name
    create_onnx_neuropod(
        neuropod_path=path, model_name=name, model=add_model() if model is None else model, **kwargs
    )
    return path


def xy(batch: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(batch * width, dtype=np.float32).reshape(batch, width)
    return x, np.full((batch, width), 0.5, np.float32)


# --- Running -------------------------------------------------------------------------------


def test_one_package_serves_every_batch_size(addition: Path) -> None:
    with load_neuropod(addition) as model:
        assert model.platform == "onnx"
        for batch, width in [(1, 1), (4, 3), (33, 7)]:
            x, y = xy(batch, width)
            np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


def test_input_with_an_initializer_is_optional(addition: Path) -> None:
    x, _ = xy(2, 3)
    with load_neuropod(addition) as model:
        np.testing.assert_array_equal(model.infer({"x": x})["out"], x)


def test_missing_required_input(root: Path) -> None:
    path = package(root, "required.zip")
    x, _ = xy(2, 3)
    with load_neuropod(path) as model, pytest.raises(InferenceError, match="y"):
        model.infer({"x": x})


@pytest.mark.parametrize("dtype", [str, object])
def test_strings(root: Path, dtype: type) -> None:
    path = root / f"strings-{dtype.__name__}"
    path.mkdir()
    with load_neuropod(string_package(path)) as model:
        out = model.infer({"x": np.array(["héllo", "日本語", ""], dtype=dtype)})["out"]
    assert out.dtype.kind == "U"
    assert out.tolist() == ["<héllo>", "<日本語>", "<>"]


def test_bytes_tensors_carry_utf8_bytes_with_nuls(root: Path) -> None:
    path = root / "onnx_bytes.zip"
    spec = {"dtype": "bytes", "shape": (None,)}
    build_strings(path, root, input_spec=[{"name": "x", **spec}], output_spec=[{"name": "out", **spec}])
    items = [b"a\x00b\x00\x00", "héllo".encode(), b""]
    sent = np.empty(len(items), dtype=object)
    sent[:] = items
    with load_neuropod(path) as model:
        out = model.infer({"x": sent})["out"]
        assert out.dtype == object and out.tolist() == [b"<" + item + b">" for item in items]
        # an S array is read whole (onnxruntime itself would cut it at the first NUL)
        assert model.infer({"x": np.array([b"a\x00b"])})["out"].tolist() == [b"<a\x00b>"]
        sent[1] = b"\xff\xd8"
        with pytest.raises(InferenceError) as info:
            model.infer({"x": sent})
    assert str(info.value) == (
        "Tensor 'x': element [1] is not UTF-8 (invalid start byte at byte 0); onnxruntime's Python "
        "API passes string tensors as UTF-8 text, so the bytes inputs of an ONNX model take UTF-8 "
        "bytes only"
    )


def test_only_the_specd_outputs_are_returned(root: Path) -> None:
    model = make_model(
        [helper.make_node("Add", ["x", "x"], ["double"]), helper.make_node("Neg", ["x"], ["negative"])],
        [value("x", TensorProto.FLOAT, ["n"])],
        [value("double", TensorProto.FLOAT, ["n"]), value("negative", TensorProto.FLOAT, ["n"])],
    )
    spec = [{"name": "negative", "dtype": "float32", "shape": ("n",)}]
    with load_neuropod(package(root, "one-output.zip", model, output_spec=spec)) as loaded:
        assert loaded.infer({"x": np.ones(2, np.float32)}) == {"negative": pytest.approx(-np.ones(2))}


# --- Specs from the graph ------------------------------------------------------------------


def test_specs_are_read_from_the_graph(root: Path) -> None:
    model = make_model(
        [
            helper.make_node("Cast", ["ids"], ["ids_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["features", "ids_float"], ["scores"]),
            helper.make_node("Not", ["flag"], ["flipped"]),
        ],
        [
            value("features", TensorProto.FLOAT, ["batch", 3, None]),
            value("ids", TensorProto.INT64, ["batch", 1, 1]),
            value("flag", TensorProto.BOOL, []),
        ],
        [value("scores", TensorProto.FLOAT, ["batch", 3, None]), value("flipped", TensorProto.BOOL, [])],
        initializer=[numpy_helper.from_array(np.zeros(1, np.float32), "unused_weight")],
    )
    with load_neuropod(package(root, "inferred.zip", model)) as loaded:
        assert loaded.inputs == [
            {"name": "features", "dtype": "float32", "shape": ["batch", 3, None]},
            {"name": "ids", "dtype": "int64", "shape": ["batch", 1, 1]},
            {"name": "flag", "dtype": "bool", "shape": []},
        ]
        assert loaded.outputs == [
            {"name": "scores", "dtype": "float32", "shape": ["batch", 3, None]},
            {"name": "flipped", "dtype": "bool", "shape": []},
        ]
        out = loaded.infer(
            {
                "features": np.ones((2, 3, 4), np.float32),
                "ids": np.array([[[1]], [[2]]]),
                "flag": np.array(True),
            }
        )
    np.testing.assert_array_equal(out["scores"][:, 0, 0], [2, 3])
    assert out["flipped"] == np.array(False)


def test_unsupported_element_type(root: Path) -> None:
    model = make_model(
        [helper.make_node("Identity", ["x"], ["out"])],
        [value("x", TensorProto.BFLOAT16, [None])],
        [value("out", TensorProto.BFLOAT16, [None])],
    )
    with pytest.raises(PackageError) as info:
        package(root, "bf16.zip", model)
    assert "Graph input 'x' has ONNX element type BFLOAT16, which no spec dtype stands for" in str(info.value)
    assert "supported: FLOAT, DOUBLE" in str(info.value)


def test_input_that_is_not_a_tensor(root: Path) -> None:
    sequence = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, None)
    model = make_model(
        [helper.make_node("SequenceLength", ["x"], ["out"])],
        [sequence],
        [value("out", TensorProto.INT64, [])],
    )
    with pytest.raises(PackageError, match="Graph input 'x' is a sequence_type, not a tensor"):
        package(root, "sequence.zip", model)


def test_input_without_a_shape(root: Path) -> None:
    model = make_model(
        [helper.make_node("Identity", ["x"], ["out"])],
        [value("x", TensorProto.FLOAT, None)],
        [value("out", TensorProto.FLOAT, None)],
    )
    with pytest.raises(
        PackageError, match="Graph input 'x' has no shape, so its rank is unknown; pass input_spec"
    ):
        package(root, "shapeless.zip", model)
    spec = [{"name": "x", "dtype": "float32", "shape": (None, 2)}]
    path = package(
        root, "shapeless-given.zip", model, input_spec=spec, output_spec=[{**spec[0], "name": "out"}]
    )
    with load_neuropod(path) as loaded:
        assert loaded.infer({"x": np.ones((3, 2), np.float32)})["out"].shape == (3, 2)


X64 = {"name": "x", "dtype": "float64", "shape": ("batch", None)}
X_RANK_1 = {"name": "x", "dtype": "float32", "shape": ("batch",)}
Z = {"name": "z", "dtype": "float32", "shape": ()}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([X64, XY_SPEC[1]], "Tensor 'x' is float64 in the input spec, but float32 in the graph"),
        ([X_RANK_1, XY_SPEC[1]], "Tensor 'x' has 1 dimension(s) in the input spec, but 2 in the graph"),
        ([*XY_SPEC, Z], "The input spec names 'z', but the graph's inputs are 'x', 'y'"),
        (XY_SPEC[:1], "Graph input(s) 'y' are not in the input spec; onnxruntime needs every one"),
    ],
)
def test_given_specs_must_agree_with_the_graph(
    root: Path, inputs: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(PackageError) as info:
        package(root, "disagree.zip", input_spec=inputs, output_spec=OUT_SPEC)
    assert message in str(info.value)
    assert not (root / "disagree.zip").exists()


def test_fixed_size_must_agree_with_the_graph(root: Path) -> None:
    model = make_model(
        [helper.make_node("Identity", ["x"], ["out"])],
        [value("x", TensorProto.FLOAT, [3])],
        [value("out", TensorProto.FLOAT, [3])],
    )
    spec = [{"name": "x", "dtype": "float32", "shape": (4,)}]
    with pytest.raises(PackageError, match="Dim 0 of tensor 'x' is 4 in the input spec, but 3 in the graph"):
        package(root, "fixed.zip", model, input_spec=spec)


# --- Model sources -------------------------------------------------------------------------


def weighted_model() -> Any:
    weight = numpy_helper.from_array(np.arange(1024, dtype=np.float32), "w")
    return make_model(
        [helper.make_node("Mul", ["x", "w"], ["out"])],
        [value("x", TensorProto.FLOAT, ["batch", 1024])],
        [value("out", TensorProto.FLOAT, ["batch", 1024])],
        initializer=[weight],
    )


def test_model_path_with_external_data(root: Path) -> None:
    source = root / "external"
    (source / "weights").mkdir(parents=True)
    onnx.save_model(
        weighted_model(),
        source / "m.onnx",
        save_as_external_data=True,
        location="weights/w.bin",
        size_threshold=0,
    )
    path = root / "external.zip"
    create_onnx_neuropod(neuropod_path=path, model_name="m", model_path=source / "m.onnx")
    with zipfile.ZipFile(path) as archive:
        assert {"0/data/model.onnx", "0/data/weights/w.bin"} <= set(archive.namelist())
    with load_neuropod(path) as model:
        out = model.infer({"x": np.ones((2, 1024), np.float32)})["out"]
    np.testing.assert_array_equal(out[1], np.arange(1024))


def test_large_proto_is_saved_with_external_data(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_packager, "_PROTO_LIMIT", 0)
    model = weighted_model()
    before = model.SerializeToString()
    path = package(root, "large.zip", model)
    assert model.SerializeToString() == before  # the caller's proto keeps its tensors
    with zipfile.ZipFile(path) as archive:
        assert "0/data/model.onnx.data" in archive.namelist()
    with load_neuropod(path) as loaded:
        np.testing.assert_array_equal(
            loaded.infer({"x": np.ones((1, 1024), np.float32)})["out"][0], np.arange(1024)
        )


def test_proto_with_unloaded_external_data(root: Path) -> None:
    source = root / "unloaded"
    source.mkdir()
    onnx.save_model(weighted_model(), source / "m.onnx", save_as_external_data=True, size_threshold=0)
    model = onnx.load(source / "m.onnx", load_external_data=False)
    with pytest.raises(
        PackageError, match="external data files whose directory is unknown; pass model_path="
    ):
        package(root, "unloaded.zip", model)


def test_model_sources(root: Path) -> None:
    with pytest.raises(PackageError, match="exactly one of model_path="):
        create_onnx_neuropod(neuropod_path=root / "none.zip", model_name="m")
    with pytest.raises(PackageError, match="does not exist or is not a file"):
        create_onnx_neuropod(
            neuropod_path=root / "missing.zip", model_name="m", model_path=root / "nope.onnx"
        )
    (root / "garbage.onnx").write_bytes(b"\xff\xfenot a protobuf")
    with pytest.raises(PackageError, match="is not an ONNX model"):
        create_onnx_neuropod(
            neuropod_path=root / "garbage.zip", model_name="m", model_path=root / "garbage.onnx"
        )
    with pytest.raises(PackageError, match=r"model must be an onnx.ModelProto, got str"):
        create_onnx_neuropod(neuropod_path=root / "str.zip", model_name="m", model="m.onnx")


# --- Load options --------------------------------------------------------------------------


def test_providers_and_threads(addition: Path) -> None:
    x, y = xy(2, 2)
    options = {"providers": [("CPUExecutionProvider", {})], "intra_op_threads": 1, "inter_op_threads": 1}
    with load_neuropod(addition, **options) as model:
        backend = model._backend
        assert backend.providers == ["CPUExecutionProvider"]
        settings = backend._session.get_session_options()
        assert (settings.intra_op_num_threads, settings.inter_op_num_threads) == (1, 1)
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"providers": ["NoSuchExecutionProvider"]},
            "'NoSuchExecutionProvider' is not available in this onnxruntime; available: ",
        ),
        (
            {"providers": "CPUExecutionProvider"},
            "providers must be None or a list of provider names or (name, options dict) pairs, "
            "got 'CPUExecutionProvider'",
        ),
        ({"providers": [("CPUExecutionProvider",)]}, "or (name, options dict) pairs, got [("),
        ({"intra_op_threads": -1}, "intra_op_threads must be None or an int >= 0 (0: onnxruntime's default)"),
        ({"inter_op_threads": True}, "inter_op_threads must be None or an int >= 0"),
        ({"bogus": 1}, "unknown option(s) 'bogus' for platform 'onnx'"),
    ],
)
def test_bad_options(addition: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError) as info:
        load_neuropod(addition, **options)
    assert message in str(info.value)


def test_visible_gpu_without_cuda_runs_on_the_cpu(addition: Path, caplog: pytest.LogCaptureFixture) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime has CUDA here")
    x, y = xy(2, 2)
    with caplog.at_level(logging.WARNING), load_neuropod(addition, visible_gpu=0) as model:
        assert model._backend.providers == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)
    assert "onnxruntime without CUDAExecutionProvider sees no GPU; running on the CPU" in caplog.text


def test_unknown_packager_argument(root: Path) -> None:
    with pytest.raises(OptionError, match="'bogus'"):
        package(root, "bogus.zip", bogus=1)
