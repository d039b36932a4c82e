"""Package one addition model per installed framework and run them all through one API.

Every model implements the same problem definition (``x + y -> out`` over a ``batch`` of
vectors), so the loop at the bottom neither knows nor cares which framework built each one.

Run it with ``make demo`` (which installs what it needs into .venv), or ``python examples/demo.py``.
The packages stay in ``demo-packages/`` at the repository root (git-ignored, rebuilt on every
run), and the demo ends with the commands to explore them.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neuropod import load_neuropod
from neuropod.packagers import (
    create_jax_neuropod,
    create_keras_neuropod,
    create_onnx_neuropod,
    create_placeholder_neuropod,
    create_python_neuropod,
    create_pytorch_neuropod,
    create_tensorflow_neuropod,
    create_torchscript_neuropod,
)

INPUT_SPEC = [
    {"name": "x", "dtype": "float32", "shape": ("batch", 3)},
    {"name": "y", "dtype": "float32", "shape": ("batch", 3)},
]
OUTPUT_SPEC = [{"name": "out", "dtype": "float32", "shape": ("batch", 3)}]

X = np.arange(6, dtype=np.float32).reshape(2, 3)
Y = np.full((2, 3), 10, dtype=np.float32)
TEST = {"test_input_data": {"x": X, "y": Y}, "test_expected_out": {"out": X + Y}}

#: Where the packages are kept for the reader to explore (git-ignored).
PACKAGES = Path(__file__).resolve().parents[1] / "demo-packages"


def package_torchscript(path: Path, work: Path) -> None:
    import torch

    class Addition(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": x + y}

    create_torchscript_neuropod(
        neuropod_path=path,
        model_name="addition_torchscript",
        module=torch.jit.script(Addition()),
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        **TEST,
    )


def package_pytorch(path: Path, work: Path) -> None:
    code = work / "pytorch_code" / "addition_pytorch"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(
        textwrap.dedent("""
        import torch

        class Addition(torch.nn.Module):
            def forward(self, x, y):
                return x + y

        def get_model(data_dir):
            module = Addition().eval()

            def infer(x, y):
                with torch.no_grad():
                    return {"out": module(torch.from_numpy(x), torch.from_numpy(y)).numpy()}

            return infer
    """)
    )
    create_pytorch_neuropod(
        neuropod_path=path,
        model_name="addition_pytorch",
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["addition_pytorch"]}],
        entrypoint_package="addition_pytorch",
        entrypoint="get_model",
        **TEST,
    )


def package_python(path: Path, work: Path) -> None:
    code = work / "python_code" / "addition_numpy"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(
        textwrap.dedent("""
        def get_model(data_dir):
            return lambda x, y: {"out": x + y}
    """)
    )
    create_python_neuropod(
        neuropod_path=path,
        model_name="addition_numpy",
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["addition_numpy"]}],
        entrypoint_package="addition_numpy",
        entrypoint="get_model",
        **TEST,
    )


def package_tensorflow(path: Path, work: Path) -> None:
    import tensorflow as tf

    class Addition(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="x"),
                tf.TensorSpec([None, 3], tf.float32, name="y"),
            ]
        )
        def __call__(self, x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"out": x + y}

    module = Addition()
    create_tensorflow_neuropod(
        neuropod_path=path,
        model_name="addition_tensorflow",
        trackable_obj=module,
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        **TEST,
    )


def package_keras(path: Path, work: Path) -> None:
    import keras

    x = keras.Input(shape=(3,), name="x")
    y = keras.Input(shape=(3,), name="y")
    model = keras.Model(inputs={"x": x, "y": y}, outputs={"out": keras.layers.Add(name="out")([x, y])})
    create_keras_neuropod(
        neuropod_path=path,
        model_name="addition_keras",
        model=model,
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        **TEST,
    )


def package_jax(path: Path, work: Path) -> None:
    import jax

    create_jax_neuropod(
        neuropod_path=path,
        model_name="addition_jax",
        fn=jax.jit(lambda x, y: {"out": x + y}),
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        **TEST,
    )


def package_onnx(path: Path, work: Path) -> None:
    from onnx import TensorProto, helper

    def tensor(name: str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 3])

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["out"])],
        "addition",
        [tensor("x"), tensor("y")],
        [tensor("out")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # The specs are read from the graph: dim_param "batch" becomes the symbol "batch".
    create_onnx_neuropod(neuropod_path=path, model_name="addition_onnx", model=model, **TEST)


def package_placeholder(path: Path, work: Path) -> None:
    # No model yet: random outputs of the right shape, for writing the code around it.
    create_placeholder_neuropod(
        neuropod_path=path,
        model_name="addition_placeholder",
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        seed=0,
    )


# (label, framework module that must be installed, packager)
MODELS: list[tuple[str, str | None, Callable[[Path, Path], None]]] = [
    ("TorchScript", "torch", package_torchscript),
    ("PyTorch (eager, as Python)", "torch", package_pytorch),
    ("TensorFlow (SavedModel)", "tensorflow", package_tensorflow),
    ("Keras 3", "keras", package_keras),
    ("JAX (jax.export)", "jax", package_jax),
    ("ONNX (onnxruntime)", "onnxruntime", package_onnx),
    ("Python (numpy)", None, package_python),
    ("Placeholder", None, package_placeholder),
]


def median_latency_us(infer: Callable[[], object], calls: int = 2000) -> float:
    for _ in range(100):
        infer()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        infer()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> int:
    print(f"inputs:\n  x = {X.tolist()}\n  y = {Y.tolist()}\n")
    shutil.rmtree(PACKAGES, ignore_errors=True)
    PACKAGES.mkdir()
    packages = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)  # the models' source code, which the packages copy
        for label, framework, package in MODELS:
            if framework and importlib.util.find_spec(framework) is None:
                print(f"{label:28s} skipped: {framework} is not installed")
                continue
            # Named after the model, so that a repository of these files serves each under its name.
            path = PACKAGES / f"addition_{package.__name__.removeprefix('package_')}.zip"
            if package is package_python:
                path = PACKAGES / "addition_numpy.zip"
            start = time.perf_counter()
            package(path, work)
            print(f"{label:28s} packaged in {time.perf_counter() - start:5.2f} s -> {path.name}")
            packages.append((label, path))

    print(f"\n{'model':28s} {'platform':12s} {'out[0]':24s} {'median us/call':>14s}")
    for label, path in packages:
        with load_neuropod(path) as model:
            out = model.infer({"x": X, "y": Y})["out"]
            latency = median_latency_us(lambda: model.infer({"x": X, "y": Y}))
            first = np.array2string(out[0], precision=2, separator=", ")
            print(f"{label:28s} {model.platform:12s} {first:24s} {latency:14.1f}")
    print("\nEvery model above ran through the same load_neuropod(path).infer({'x': ..., 'y': ...}).")
    print(next_steps())
    return 0


def next_steps() -> str:
    """The commands a newcomer runs next on the packages, ready to copy and paste."""
    command = Path(sys.executable).with_name("neuropod")
    neuropod = _shown(command) if command.exists() else "neuropod"
    folder = _shown(PACKAGES)
    package = shlex.quote(f"{folder}/addition_numpy.zip")
    request = (
        '{"inputs": ['
        '{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, '
        '{"name": "y", "shape": [1, 3], "datatype": "FP32", "data": [10, 20, 30]}]}'
    )
    return textwrap.dedent(f"""
        The packages are in {folder}/. Next, try:

          {neuropod} inspect {package}       # name, platform, specs, files
          {neuropod} test {package}          # run the test data stored in the package

          # serve every package of the folder over HTTP (port 8000) and gRPC (port 8001);
          # it prints the addresses once every model is loaded:
          {neuropod} serve --repository {shlex.quote(folder)}

          # then, in another terminal:
          curl -s localhost:8000/v2/models/addition_numpy/infer -d '{request}'

        The documentation: docs/quickstart.md and docs/serving/index.md (or `make docs`).
    """)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it, else absolute."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
