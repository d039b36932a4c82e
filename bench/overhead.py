"""What neuropod adds to a model call, for every backend: raw framework call vs ``infer``.

For each installed framework an addition model (``out = x + y``, float32 vectors) is packaged;
the raw side loads the very same model file from the package with the framework's own API and
calls it the way a user would (numpy in, numpy out), the neuropod side calls ``model.infer``.
Calls alternate between the two sides so that drift in the machine's speed hits both alike.
Prints median microseconds per call, the difference and the ratio neuropod / raw.

    python bench/overhead.py [--quick] [--only torchscript,onnx,...] [--plot overhead.svg]

Targets: at most 5 us added at 4 elements for TorchScript (10 us for the other backends);
ratio at most 1.05 at 16M elements.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from svg_chart import Panel, write_svg

from neuropod import load_neuropod

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SPEC = {
    "input_spec": [{"name": n, "dtype": "float32", "shape": ("n",)} for n in ("x", "y")],
    "output_spec": [{"name": "out", "dtype": "float32", "shape": ("n",)}],
}
SMALL, LARGE = 4, 16 * 1024 * 1024

Raw = Callable[[np.ndarray, np.ndarray], np.ndarray]


def torchscript(path: Path) -> Raw:
    import torch

    from neuropod.packagers import create_torchscript_neuropod

    class Addition(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": x + y}

    create_torchscript_neuropod(
        neuropod_path=path, model_name="add", module=torch.jit.script(Addition()), **COMMON
    )
    module = torch.jit.load(str(path / "0/data/model.pt"))
    return lambda x, y: module(torch.from_numpy(x), torch.from_numpy(y))["out"].numpy()


def tensorflow(path: Path) -> Raw:
    import tensorflow as tf

    from neuropod.packagers import create_tensorflow_neuropod

    class Addition(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=n) for n in ("x", "y")])
        def __call__(self, x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"out": x + y}

    create_tensorflow_neuropod(neuropod_path=path, model_name="add", trackable_obj=Addition(), **COMMON)
    signature = tf.saved_model.load(str(path / "0/data/savedmodel")).signatures["serving_default"]
    return lambda x, y: signature(x=tf.constant(x), y=tf.constant(y))["out"].numpy()


def keras(path: Path) -> Raw:
    import keras

    from neuropod.packagers import create_keras_neuropod

    x = keras.Input(shape=(), name="x")
    y = keras.Input(shape=(), name="y")
    model = keras.Model(inputs={"x": x, "y": y}, outputs={"out": keras.layers.Add(name="out")([x, y])})
    create_keras_neuropod(neuropod_path=path, model_name="add", model=model, **COMMON)
    loaded = keras.saving.load_model(path / "0/data/model.keras")
    return lambda x, y: keras.ops.convert_to_numpy(loaded({"x": x, "y": y}, training=False)["out"])


def jax(path: Path) -> Raw:
    import jax

    from neuropod.packagers import create_jax_neuropod

    fn = jax.jit(lambda x, y: {"out": x + y})
    create_jax_neuropod(neuropod_path=path, model_name="add", fn=fn, **COMMON)
    return lambda x, y: np.asarray(fn(x, y)["out"])


def onnx(path: Path) -> Raw:
    import onnxruntime
    from onnx import TensorProto, helper

    from neuropod.packagers import create_onnx_neuropod

    def tensor(name: str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"])

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["out"])], "add", [tensor("x"), tensor("y")], [tensor("out")]
    )
    create_onnx_neuropod(
        neuropod_path=path,
        model_name="add",
        model=helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        **COMMON,
    )
    session = onnxruntime.InferenceSession(
        str(path / "0/data/model.onnx"), providers=["CPUExecutionProvider"]
    )
    return lambda x, y: session.run(None, {"x": x, "y": y})[0]


def python(path: Path) -> Raw:
    from neuropod.packagers import create_python_neuropod

    code = path.parent / "python_code" / "addition"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(
        textwrap.dedent("""
        def get_model(data_dir):
            return lambda x, y: {"out": x + y}
    """)
    )
    create_python_neuropod(
        neuropod_path=path,
        model_name="add",
        entrypoint_package="addition",
        entrypoint="get_model",
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["addition"]}],
        **COMMON,
    )
    return lambda x, y: x + y


COMMON = {**SPEC, "package_as_zip": False}

# (platform, framework module, packager + raw call)
BACKENDS: list[tuple[str, str | None, Callable[[Path], Raw]]] = [
    ("torchscript", "torch", torchscript),
    ("tensorflow", "tensorflow", tensorflow),
    ("keras", "keras", keras),
    ("jax", "jax", jax),
    ("onnx", "onnxruntime", onnx),
    ("python", None, python),
]


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], calls: int
) -> tuple[float, float]:
    """Median seconds per call of two functions, called alternately after a warm-up."""
    for _ in range(max(3, calls // 20)):
        first()
        second()
    a, b = [], []
    clock = time.perf_counter
    for _ in range(calls):
        start = clock()
        first()
        middle = clock()
        second()
        end = clock()
        a.append(middle - start)
        b.append(end - middle)
    return statistics.median(a), statistics.median(b)


def calls_for(size: int, raw_seconds: float, quick: bool) -> int:
    """Enough calls for a stable median within a few seconds per case."""
    budget = 0.5 if quick else 4.0
    return int(min(50000 if size == SMALL else 60, max(5, budget / max(raw_seconds, 1e-6) / 2)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--only", help="comma-separated platforms to run")
    parser.add_argument("--plot", metavar="OUT.svg", help="also draw the table as an SVG bar chart")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None

    rng = np.random.default_rng(0)
    arrays = {
        size: (rng.random(size, dtype=np.float32), rng.random(size, dtype=np.float32))
        for size in (SMALL, LARGE)
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for platform, framework, build in BACKENDS:
            if only and platform not in only:
                continue
            if framework and importlib.util.find_spec(framework) is None:
                print(f"{platform}: skipped ({framework} is not installed)")
                continue
            path = Path(tmp, platform, "addition")
            path.parent.mkdir()
            raw = build(path)
            with load_neuropod(path) as model:
                for size, (x, y) in arrays.items():

                    def wrapped(x: np.ndarray = x, y: np.ndarray = y) -> np.ndarray:
                        return model.infer({"x": x, "y": y})["out"]

                    def direct(x: np.ndarray = x, y: np.ndarray = y, raw: Raw = raw) -> np.ndarray:
                        return raw(x, y)

                    np.testing.assert_allclose(direct(), wrapped())
                    start = time.perf_counter()
                    direct()
                    calls = calls_for(size, time.perf_counter() - start, args.quick)
                    raw_s, wrapped_s = interleaved_medians(direct, wrapped, calls)
                    rows.append((platform, size, calls, raw_s * 1e6, wrapped_s * 1e6))

    print(
        f"\n{'backend':12s} {'elements':>9s} {'calls':>6s} {'raw us':>10s} {'neuropod us':>12s} "
        f"{'added us':>9s} {'ratio':>6s}"
    )
    for platform, size, calls, raw_us, wrapped_us in rows:
        label = "4" if size == SMALL else "16M"
        print(
            f"{platform:12s} {label:>9s} {calls:6d} {raw_us:10.1f} {wrapped_us:12.1f} "
            f"{wrapped_us - raw_us:9.1f} {wrapped_us / raw_us:6.3f}"
        )
    if args.plot:
        print(f"\n(chart in {plot(rows, args.plot)})")


def plot(rows: list[tuple[str, int, int, float, float]], path: str) -> Path:
    """The table as a chart: raw and neuropod per backend, one panel per size."""
    panels = []
    sizes = [
        (SMALL, "median us per call, 4 float32 elements", 1.0),
        (LARGE, "median ms per call, 16M float32 elements", 1e-3),
    ]
    for size, title, scale in sizes:
        chosen = [row for row in rows if row[1] == size]
        series = {
            "framework's own call": [row[3] * scale for row in chosen],
            "model.infer": [row[4] * scale for row in chosen],
        }
        panels.append(Panel(title, [row[0] for row in chosen], series))
    return write_svg(path, "What neuropod adds to a model call (bench/overhead.py)", panels)


if __name__ == "__main__":
    main()
