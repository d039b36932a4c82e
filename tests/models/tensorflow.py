"""The reference models on the tensorflow platform: frozen GraphDefs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from neuropod.packagers import create_tensorflow_neuropod

#: The addition graph's nodes, named in a scope as the original's models often were.
ADDITION_NODES = {"x": "model/x", "y": "model/y", "out": "model/out"}


def addition_graph_def() -> Any:
    """``out = x + y`` as a GraphDef; ``y`` defaults to zeros, so that it may be left out."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, None], name="x")
        y = tf.compat.v1.placeholder_with_default(tf.zeros_like(x), [None, None], name="y")
        tf.add(x, y, name="out")
    return graph.as_graph_def()


def strings_graph_def(name: str = "s") -> Any:
    """``out = "<" + s + ">"`` on a string vector."""
    graph = tf.Graph()
    with graph.as_default():
        s = tf.compat.v1.placeholder(tf.string, [None], name=name)
        tf.strings.join(["<", s, ">"], name="out")
    return graph.as_graph_def()


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model, as a GraphDef (``y`` optional)."""
    create_tensorflow_neuropod(
        neuropod_path=path,
        model_name=path.name,
        graph_def=addition_graph_def(),
        node_name_mapping=ADDITION_NODES,
        **kwargs,
    )


def build_strings(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The strings model, as a GraphDef."""
    name = next(iter(kwargs["input_spec"]))["name"]
    create_tensorflow_neuropod(
        neuropod_path=path,
        model_name=path.name,
        graph_def=strings_graph_def(name),
        node_name_mapping={name: name, "out": "out"},
        **kwargs,
    )
