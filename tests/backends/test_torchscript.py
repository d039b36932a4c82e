"""The TorchScript backend: calling conventions, outputs, zero copy, devices, custom ops.

What every backend shares (validation, lifetime, self-test) is in ``tests/test_conformance.py``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from neuropod import InferenceError, OptionError, PackageError
from neuropod.loader import load_neuropod
from neuropod.packagers import create_torchscript_neuropod
from neuropod.packagers.common import create_package

torch = pytest.importorskip("torch")


def script(module: Any) -> Any:
    """``torch.jit.script``, without its deprecation warning (TorchScript is the point here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is", DeprecationWarning)
        return torch.jit.script(module)


def spec(name: str, dtype: str = "float32", shape: tuple[Any, ...] = (None,)) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def package(
    path: Path, module: Any, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], **kw: Any
) -> Path:
    create_torchscript_neuropod(
        neuropod_path=path, model_name=path.name, module=module, input_spec=inputs, output_spec=outputs, **kw
    )
    return path


# --- Models --------------------------------------------------------------------------------


class Subtract(torch.nn.Module):
    """Order matters: x - y is not y - x."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": x - y}


class SubtractDict(torch.nn.Module):
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"out": inputs["x"] - inputs["y"]}


class Identity(torch.nn.Module):
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return inputs


class Words(torch.nn.Module):
    """Strings in and out, beside a tensor, returned as a tuple in output spec order."""

    def forward(self, words: list[str], counts: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        return [w + "!" for w in words], counts * 2


class Single(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


class Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, x + 2


class PairNames(NamedTuple):
    second: torch.Tensor
    first: torch.Tensor


class Named(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> PairNames:
        return PairNames(second=x + 2, first=x + 1)


class DictPair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return {"first": x + 1}, {"second": x + 2}


class DictPairClash(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return {"first": x + 1}, {"first": x + 2}


class Linear(torch.nn.Module):
    """Parameters that require grad; one is returned as is."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.linear.weight.fill_(1.0)
            self.linear.bias.fill_(0.5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.linear(x), "bias": self.linear.bias}


class Views(torch.nn.Module):
    """Returns its input itself, a new tensor, and a buffer that it increments in place."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(1, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.count.add_(1)
        return {"same": x, "doubled": x * 2, "count": self.count}


class Failing(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            raise RuntimeError("positive input")
        return x


class Devices(torch.nn.Module):
    """Reports the device index (-1: CPU) of its inputs, its buffer and what it creates."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.ones(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        created = torch.zeros(1, device=self.w.device)
        return {
            "x_device": torch.tensor([x.get_device()]),
            "y_device": torch.tensor([y.get_device()]),
            "w_device": torch.tensor([self.w.get_device()]),
            "created_device": torch.tensor([created.get_device()]),
            "sum": x + y.to(x.device) + self.w,
        }


DEVICE_OUTPUTS = [spec(f"{n}_device", "int64", (1,)) for n in ("x", "y", "w", "created")] + [spec("sum")]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torchscript")


@pytest.fixture(scope="module")
def subtract(root: Path) -> Path:
    # The spec lists y before x; forward takes x before y.
    return package(root / "subtract.zip", script(Subtract()), [spec("y"), spec("x")], [spec("out")])


# --- Calling conventions -------------------------------------------------------------------


def test_inputs_are_matched_by_argument_name(subtract: Path) -> None:
    x = np.array([10.0, 20.0], np.float32)
    y = np.array([1.0, 2.0], np.float32)
    with load_neuropod(subtract) as model:
        np.testing.assert_array_equal(model.infer({"y": y, "x": x})["out"], [9.0, 18.0])
        np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], [9.0, 18.0])


def test_input_without_a_forward_argument(root: Path) -> None:
    path = package(root / "unnamed", script(Subtract()), [spec("x"), spec("z")], [spec("out")])
    with (
        load_neuropod(path) as model,
        pytest.raises(InferenceError, match=r"forward\(x, y\) has no argument\(s\) 'z'"),
    ):
        model.infer({"x": np.ones(1, np.float32), "z": np.ones(1, np.float32)})


def test_missing_forward_argument_is_an_inference_error(subtract: Path) -> None:
    with load_neuropod(subtract) as model, pytest.raises(InferenceError, match="'y'") as info:
        model.infer({"x": np.ones(1, np.float32)})
    assert isinstance(info.value.__cause__, RuntimeError)


def test_forward_taking_a_dict(root: Path) -> None:
    path = package(root / "dict", script(SubtractDict()), [spec("x"), spec("y")], [spec("out")])
    with load_neuropod(path) as model:
        out = model.infer({"y": np.array([1.0], np.float32), "x": np.array([5.0], np.float32)})
    np.testing.assert_array_equal(out["out"], [4.0])


def test_strings_in_and_out_beside_tensors(root: Path) -> None:
    path = package(
        root / "words",
        script(Words()),
        [spec("words", "string", ("n",)), spec("counts", "int32", ("n",))],
        [spec("shouted", "string", ("n",)), spec("doubled", "int32", ("n",))],
    )
    with load_neuropod(path) as model:
        out = model.infer({"words": np.array(["ja", "ñu"]), "counts": np.array([1, 2], np.int32)})
    assert out["shouted"].tolist() == ["ja!", "ñu!"]
    assert out["shouted"].dtype.kind == "U"
    np.testing.assert_array_equal(out["doubled"], [2, 4])


def test_string_inputs_must_be_1d(root: Path) -> None:
    path = package(
        root / "words2d",
        script(Words()),
        [spec("words", "string", (None, None)), spec("counts", "int32", (None,))],
        [spec("shouted", "string", (None,)), spec("doubled", "int32", (None,))],
    )
    with load_neuropod(path) as model, pytest.raises(InferenceError, match="must be 1-D"):
        model.infer({"words": np.array([["a"]]), "counts": np.array([1], np.int32)})


@pytest.mark.parametrize(
    "dtype",
    [
        "float32",
        "float64",
        "float16",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    ],
)
def test_dtypes_round_trip(root: Path, dtype: str) -> None:
    path = package(
        root / f"identity-{dtype}",
        script(Identity()),
        [spec("x", dtype, (2, 2)), spec("s", dtype, ())],
        [spec("x", dtype, (2, 2)), spec("s", dtype, ())],
    )
    x = np.arange(4).reshape(2, 2).astype(dtype)
    scalar = np.array(1, dtype)
    with load_neuropod(path) as model:
        out = model.infer({"x": x, "s": scalar})
    assert out["x"].dtype == np.dtype(dtype) and out["s"].shape == ()
    np.testing.assert_array_equal(out["x"], x)


# --- Outputs -------------------------------------------------------------------------------

X = np.array([1.0, 2.0], np.float32)


@pytest.mark.parametrize(
    ("module", "outputs"),
    [
        pytest.param(Single, ["out"], id="tensor"),
        pytest.param(Pair, ["first", "second"], id="tuple"),
        pytest.param(Named, ["first", "second"], id="namedtuple"),
        pytest.param(DictPair, ["first", "second"], id="tuple-of-dicts"),
    ],
)
def test_output_forms(root: Path, module: type, outputs: list[str]) -> None:
    path = package(root / f"out-{module.__name__}", script(module()), [spec("x")], [spec(n) for n in outputs])
    with load_neuropod(path) as model:
        out = model.infer({"x": X})
    assert sorted(out) == sorted(outputs)
    np.testing.assert_array_equal(out[outputs[0]], X + 1)
    if len(outputs) == 2:
        np.testing.assert_array_equal(out["second"], X + 2)


@pytest.mark.parametrize(
    ("module", "outputs", "message"),
    [
        pytest.param(
            DictPairClash, ["first"], "returned output 'first' in more than one", id="duplicate-key"
        ),
        pytest.param(
            Pair,
            ["first", "second", "third"],
            "a tuple of 2 values, but the output spec has 3",
            id="short-tuple",
        ),
        pytest.param(Single, ["a", "b"], "a single Tensor, but the output spec has 2", id="single-for-two"),
    ],
)
def test_output_form_errors(root: Path, module: type, outputs: list[str], message: str) -> None:
    path = package(
        root / f"bad-{module.__name__}-{len(outputs)}",
        script(module()),
        [spec("x")],
        [spec(n) for n in outputs],
    )
    with load_neuropod(path) as model, pytest.raises(InferenceError, match=message):
        model.infer({"x": X})


def test_parameters_requiring_grad(root: Path) -> None:
    module = script(Linear())
    assert module.linear.weight.requires_grad
    path = package(
        root / "linear",
        module,
        [spec("x", shape=(None, 3))],
        [spec("out", shape=(None, 2)), spec("bias", shape=(2,))],
    )
    with load_neuropod(path) as model:
        out = model.infer({"x": np.ones((1, 3), np.float32)})
    np.testing.assert_array_equal(out["out"], [[3.5, 3.5]])
    np.testing.assert_array_equal(out["bias"], [0.5, 0.5])


def test_error_inside_the_model(root: Path) -> None:
    path = package(root / "failing", script(Failing()), [spec("x")], [spec("out")])
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": -X})["out"], -X)
        with pytest.raises(InferenceError, match="positive input") as info:
            model.infer({"x": X})
    assert info.value.__cause__ is not None


# --- Packaging -----------------------------------------------------------------------------


def test_module_path(root: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved.pt"
    script(Subtract()).save(str(saved))
    path = root / "from-path"
    create_torchscript_neuropod(
        neuropod_path=path,
        model_name="from_path",
        module_path=saved,
        input_spec=[spec("x"), spec("y")],
        output_spec=[spec("out")],
        test_input_data={"x": np.array([3.0], np.float32), "y": np.array([1.0], np.float32)},
        test_expected_out={"out": np.array([2.0], np.float32)},
    )
    assert path.is_file()


class Echo(torch.nn.Module):
    def forward(self, data: list[str]) -> dict[str, list[str]]:
        return {"out": data}


def test_bytes_tensors_are_refused_at_packaging_and_at_load(tmp_path: Path) -> None:
    with pytest.raises(PackageError) as info:
        package(tmp_path / "bytes", script(Echo()), [spec("data", "bytes")], [spec("out", "string")])
    assert str(info.value) == (
        "TorchScript has no bytes type (its str is UTF-8 text, which List[str] arguments decode), so "
        "its tensors cannot be of dtype bytes: declare text as string, or pass raw bytes as a uint8 "
        "tensor, but the spec declares 'data' (bytes)"
    )
    assert not (tmp_path / "bytes").exists()
    # a package that says bytes anyway (written without the packager's check) fails to load
    saved = tmp_path / "echo.pt"
    script(Echo()).save(str(saved))

    def write_model(builder: Any) -> None:
        shutil.copyfile(saved, builder.root / "0" / "data" / "model.pt")

    path = tmp_path / "written"
    specs = [spec("data", "string")], [spec("out", "bytes")]
    create_package("test", "torchscript", path, "echo", *specs, write_model, {})
    message = r"written: TorchScript has no bytes type .* declares 'out' \(bytes\)"
    with pytest.raises(PackageError, match=message):
        load_neuropod(path)


@pytest.mark.parametrize("given", ["neither", "both"])
def test_exactly_one_of_module_and_module_path(tmp_path: Path, given: str) -> None:
    saved = tmp_path / "saved.pt"
    module = script(Single())
    module.save(str(saved))
    kwargs: dict[str, Any] = {"module": module, "module_path": saved} if given == "both" else {}
    with pytest.raises(PackageError, match="exactly one of module="):
        create_torchscript_neuropod(
            neuropod_path=tmp_path / "pkg",
            model_name="m",
            input_spec=[spec("x")],
            output_spec=[spec("out")],
            **kwargs,
        )
    assert not (tmp_path / "pkg").exists()


def test_module_must_be_a_script_module(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"must be a torch.jit.ScriptModule .* got Single"):
        package(tmp_path / "pkg", Single(), [spec("x")], [spec("out")])
    assert list(tmp_path.iterdir()) == []


def test_missing_module_path(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="does not exist"):
        create_torchscript_neuropod(
            neuropod_path=tmp_path / "pkg",
            model_name="m",
            module_path=tmp_path / "missing.pt",
            input_spec=[spec("x")],
            output_spec=[spec("out")],
        )


def test_traced_module(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", DeprecationWarning)
        traced = torch.jit.trace(Single(), torch.ones(2), check_trace=False)
    path = package(tmp_path / "traced", traced, [spec("x")], [spec("out")])
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["out"], X + 1)


# --- Zero copy -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def views(root: Path) -> Any:
    path = package(
        root / "views",
        script(Views()),
        [spec("x", shape=(None, None))],
        [spec("same", shape=(None, None)), spec("doubled", shape=(None, None)), spec("count", "int64", (1,))],
    )
    with load_neuropod(path) as model:
        yield model


def test_zero_copy_in_and_out(views: Any) -> None:
    x = np.ones((4096, 4096), np.float32)  # 16M floats, 64 MiB
    out = views.infer({"x": x})
    # The module returned the tensor it was given: if either way had copied, this would differ.
    assert out["same"].ctypes.data == x.ctypes.data
    assert np.shares_memory(out["same"], x)
    assert out["doubled"][0, 0] == 2.0 and out["doubled"][-1, -1] == 2.0


def test_outputs_are_views_of_the_tensors(views: Any) -> None:
    x = np.ones((1, 1), np.float32)
    first = views.infer({"x": x})["count"]
    second = views.infer({"x": x})["count"]
    # Both arrays view the module's one buffer, which the second call incremented.
    assert np.shares_memory(first, second)
    assert first[0] == second[0]


def test_outputs_outlive_the_model(root: Path) -> None:
    with load_neuropod(root / "views") as model:
        out = model.infer({"x": np.full((2, 2), 3.0, np.float32)})
    del model
    np.testing.assert_array_equal(out["doubled"], np.full((2, 2), 6.0))
    np.testing.assert_array_equal(out["count"], [1])


def test_read_only_input_is_copied(views: Any) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    x.flags.writeable = False
    out = views.infer({"x": x})
    assert not np.shares_memory(out["same"], x)
    np.testing.assert_array_equal(out["same"], x)
    np.testing.assert_array_equal(out["doubled"], x * 2)


def test_strided_input_is_not_copied(views: Any) -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    x = base[1:, ::2]
    assert not x.flags.c_contiguous
    out = views.infer({"x": x})
    assert out["same"].ctypes.data == x.ctypes.data and out["same"].strides == x.strides
    np.testing.assert_array_equal(out["same"], x)
    np.testing.assert_array_equal(out["doubled"], x * 2)


@pytest.mark.parametrize("view", ["reversed", "reversed-columns", "transposed"])
def test_other_layouts(views: Any, view: str) -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = {"reversed": base[::-1], "reversed-columns": base[:, ::-2], "transposed": base.T}[view]
    out = views.infer({"x": x})
    np.testing.assert_array_equal(out["same"], x)
    np.testing.assert_array_equal(out["doubled"], x * 2)
    np.testing.assert_array_equal(base, np.arange(12, dtype=np.float32).reshape(3, 4))


# --- Devices -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def devices(root: Path) -> Path:
    return package(
        root / "devices",
        script(Devices()),
        [spec("x", shape=(1,)), spec("y", shape=(1,))],
        DEVICE_OUTPUTS,
        input_tensor_device={"y": "CPU"},
    )


def test_input_tensor_device_is_recorded(devices: Path) -> None:
    with zipfile.ZipFile(devices) as package:
        config = json.loads(package.read("config.json"))
    # inputs not named get default_input_tensor_device, "GPU"
    assert config["input_tensor_device"] == {"x": "GPU", "y": "CPU"}


def test_visible_gpu_without_cuda_falls_back_to_cpu(
    devices: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one = np.ones(1, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with (
            caplog.at_level(logging.WARNING, logger="neuropod.backends.devices"),
            load_neuropod(devices, visible_gpu=0) as model,
        ):
            out = model.infer({"x": one, "y": one})
    assert caught == []  # a log record, not a Python warning
    assert "visible_gpu=0 was requested but torch sees no GPU; running on the CPU" in caplog.text
    for name in ("x", "y", "w", "created"):
        assert out[f"{name}_device"][0] == -1
    np.testing.assert_array_equal(out["sum"], [3.0])


def test_visible_gpu_beyond_the_visible_gpus(devices: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(OptionError, match="visible_gpu=3 was requested, but torch sees only 1 GPU"):
        load_neuropod(devices, visible_gpu=3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_visible_gpu_runs_on_the_gpu(devices: Path) -> None:
    one = np.ones(1, np.float32)
    with load_neuropod(devices, visible_gpu=0) as model:
        out = model.infer({"x": one, "y": one})
    assert out["x_device"][0] == 0  # input_tensor_device GPU: moved to cuda:0
    assert out["y_device"][0] == -1  # input_tensor_device CPU: stays on the CPU
    assert out["w_device"][0] == 0  # the module itself was loaded onto cuda:0
    assert out["created_device"][0] == 0
    assert isinstance(out["sum"], np.ndarray)
    np.testing.assert_array_equal(out["sum"], [3.0])


# --- Custom ops ----------------------------------------------------------------------------

OP_SOURCE = """
#include <torch/library.h>
#include <ATen/core/Tensor.h>

at::Tensor add_one(const at::Tensor& x) { return x.add(1); }

TORCH_LIBRARY(neuropod_test_ops, m) { m.def("add_one(Tensor x) -> Tensor", &add_one); }
"""


class AddOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.neuropod_test_ops.add_one(x)


@pytest.fixture(scope="module")
def custom_op(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real custom op library, compiled once (about 10 s) and loaded into this process."""
    from torch.utils import cpp_extension

    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError:
        pytest.skip("ninja is needed to compile a custom op (pip install ninja)")
    build = tmp_path_factory.mktemp("custom_op")
    source = build / "ops.cpp"
    source.write_text(OP_SOURCE)
    # load(), not load_inline(): load_inline prepends <torch/extension.h>, which takes 4x longer.
    cpp_extension.load(
        name="neuropod_test_ops", sources=[str(source)], build_directory=str(build), is_python_module=False
    )
    return build / "neuropod_test_ops.so"


@pytest.fixture(scope="module")
def custom_op_packages(custom_op: Path, root: Path) -> tuple[Path, Path]:
    x = np.arange(3, dtype=np.float32)
    made = []
    for name, as_zip in (("add_one.zip", True), ("add_one_dir", False)):
        # The self-test loads the package's copy of the library into this process, where the
        # build's copy is loaded already: loading it twice would abort the process.
        made.append(
            package(
                root / name,
                script(AddOne()),
                [spec("x")],
                [spec("out")],
                custom_ops=[str(custom_op)],
                package_as_zip=as_zip,
                test_input_data={"x": x},
                test_expected_out={"out": x + 1},
            )
        )
    return made[0], made[1]


FRESH_PROCESS = textwrap.dedent(
    """
    import ctypes, json, sys
    import numpy as np
    import torch
    from neuropod import load_neuropod

    def registered():
        try:
            torch.ops.neuropod_test_ops.add_one
            return True
        except (AttributeError, RuntimeError):
            return False

    before = registered()
    if sys.argv[1] != "-":
        ctypes.CDLL(sys.argv[1])  # loaded behind torch's back, as a framework might
    results = []
    for path in sys.argv[2:]:
        with load_neuropod(path) as model:
            results.append(model.infer({"x": np.arange(3, dtype=np.float32)})["out"].tolist())
    print(json.dumps({"before": before, "results": results}))
    """
)


def run_fresh(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_custom_op_is_packaged(custom_op_packages: tuple[Path, Path]) -> None:
    _, directory = custom_op_packages
    assert (directory / "0" / "ops" / "neuropod_test_ops.so").is_file()
    config = json.loads((directory / "config.json").read_text())
    assert config["custom_ops"] == ["neuropod_test_ops.so"]


def test_custom_op_loads_before_the_model_in_a_fresh_process(custom_op_packages: tuple[Path, Path]) -> None:
    zipped, directory = custom_op_packages
    # Two packages with the same library: the second must not register the ops again.
    got = run_fresh("-", str(zipped), str(directory))
    assert got == {"before": False, "results": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]}


def test_custom_op_already_loaded_elsewhere(custom_op: Path, custom_op_packages: tuple[Path, Path]) -> None:
    got = run_fresh(str(custom_op), str(custom_op_packages[0]))
    assert got == {"before": False, "results": [[1.0, 2.0, 3.0]]}


# --- threads ----------------------------------------------------------------------------------


def test_thread_options_set_torchs_pools_and_reject_bad_values(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    # In a fresh process: the inter-op pool can only be sized before torch first uses it.
    code = textwrap.dedent(f"""
        import torch
        import numpy as np
        from neuropod import load_neuropod, OptionError
        from neuropod.packagers import create_torchscript_neuropod

        class Identity(torch.nn.Module):
            def forward(self, x):
                return {{"out": x}}

        spec = [{{"name": "x", "dtype": "float32", "shape": (None,)}}]
        path = {str(tmp_path / "m")!r}
        create_torchscript_neuropod(neuropod_path=path, model_name="m", module=torch.jit.script(Identity()),
                                    input_spec=spec, output_spec=[dict(spec[0], name="out")])
        with load_neuropod(path, intra_op_threads=1, inter_op_threads=3) as model:
            model.infer({{"x": np.ones(2, np.float32)}})
        assert torch.get_num_threads() == 1 and torch.get_num_interop_threads() == 3
        try:
            load_neuropod(path, inter_op_threads=2)
        except OptionError as error:
            print("OptionError:", error)
        try:
            load_neuropod(path, intra_op_threads=0)
        except OptionError as error:
            print("OptionError:", error)
    """)
    # A file, not -c: torch.jit.script reads the source of what it compiles.
    script = tmp_path / "threads.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "OptionError: inter_op_threads=2 cannot be applied: torch's inter-op pool already runs 3"
    )
    assert lines[1] == "OptionError: intra_op_threads must be None or an int >= 1, got 0"
