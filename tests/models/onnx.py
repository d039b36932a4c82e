"""The reference models on the onnx platform: graphs built with ``onnx.helper``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from neuropod.packagers import create_onnx_neuropod

_ELEM_TYPES = {"float32": TensorProto.FLOAT, "string": TensorProto.STRING, "bytes": TensorProto.STRING}


def make_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], opset: int = 17, **kw: Any) -> Any:
    """A model of one graph, at an IR version that every supported onnxruntime reads."""
    graph = helper.make_graph(nodes, "graph", inputs, outputs, **kw)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9  # what onnxruntime 1.16+ reads; helper's default may be newer
    return model


def value(name: str, elem_type: int, shape: list[Any] | None) -> Any:
    """A graph input or output."""
    return helper.make_tensor_value_info(name, elem_type, shape)


def from_spec(spec: dict[str, Any]) -> Any:
    """The graph input or output that a tensor spec declares."""
    return value(spec["name"], _ELEM_TYPES[spec["dtype"]], list(spec["shape"]))


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model; ``y`` defaults to 0 (an initializer), which makes it optional."""
    x, y = (from_spec(spec) for spec in kwargs["input_spec"])
    (out,) = (from_spec(spec) for spec in kwargs["output_spec"])
    # onnxruntime wants the default's shape to fit y's declared one; 1 broadcasts in the others.
    y_shape = [dim if isinstance(dim, int) else 1 for dim in kwargs["input_spec"][1]["shape"]]
    zero = numpy_helper.from_array(np.zeros(y_shape, np.float32), "y")
    model = make_model([helper.make_node("Add", ["x", "y"], ["out"])], [x, y], [out], initializer=[zero])
    create_onnx_neuropod(neuropod_path=path, model_name=path.name, model=model, **kwargs)


def build_strings(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The strings model, with ``StringConcat`` (opset 20)."""
    (source,) = kwargs["input_spec"]
    (target,) = kwargs["output_spec"]

    def text(name: str, content: str) -> Any:
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.STRING, [], [content.encode()])
        )

    nodes = [
        text("open", "<"),
        text("close", ">"),
        helper.make_node("StringConcat", ["open", source["name"]], ["opened"]),
        helper.make_node("StringConcat", ["opened", "close"], [target["name"]]),
    ]
    model = make_model(nodes, [from_spec(source)], [from_spec(target)], opset=20)
    create_onnx_neuropod(neuropod_path=path, model_name=path.name, model=model, **kwargs)
