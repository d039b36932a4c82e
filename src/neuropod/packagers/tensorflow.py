"""Packaging TensorFlow models (platform ``tensorflow``): TF1-style graphs and SavedModels."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import CommonArgs, create_package, one_source
from neuropod.spec.dtypes import VARIABLE_LENGTH
from neuropod.spec.tensor_spec import TensorSpec, parse_specs

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

GRAPH_FILE = "model.pb"
SAVED_MODEL_DIR = "savedmodel"
SIGNATURE = "serving_default"


def create_tensorflow_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    frozen_graph_path: str | os.PathLike[str] | None = None,
    graph_def: Any = None,
    saved_model_dir: str | os.PathLike[str] | None = None,
    trackable_obj: Any = None,
    node_name_mapping: Mapping[str, str] | None = None,
    init_op_names: Sequence[str] = (),
    **common: Unpack[CommonArgs],
) -> None:
    """Package a TensorFlow graph or SavedModel.

    Give exactly one of the four sources. Graphs (``frozen_graph_path``, ``graph_def``) are
    stored as ``0/data/model.pb`` with ``node_name_mapping`` and ``init_op_names`` in
    ``0/config.json``; SavedModels (``saved_model_dir``, ``trackable_obj``) as
    ``0/data/savedmodel/`` and run through their ``serving_default`` signature.

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        input_spec: the input specs (``{"name", "dtype", "shape"}`` dicts or ``TensorSpec``).
        output_spec: the output specs.
        frozen_graph_path: a file holding a serialized ``GraphDef`` (variables frozen to
            constants, or initialised by ``init_op_names``).
        graph_def: a ``tf.compat.v1.GraphDef``.
        saved_model_dir: a SavedModel directory.
        trackable_obj: a ``tf.Module`` (or other trackable) to save with
            ``tf.saved_model.save``; its ``serving_default`` signature is the one found there
            (a single ``tf.function`` with an ``input_signature``), or the one it declares.
        node_name_mapping: graphs only: ``{tensor name: graph node}`` for every input and
            output of the spec; ``"x"`` stands for ``"x:0"``.
        init_op_names: graphs only: ops run once when the model is loaded (e.g. table or
            variable initialisers).
        **common: the arguments every packager takes (``custom_ops``, ``test_input_data``,
            ``package_as_zip``, ...; see docs/packaging.md).

    Raises:
        PackageError: not exactly one source; a graph without ``node_name_mapping``, or whose
            mapping lacks a tensor or names a node the graph lacks; graph settings given with a
            SavedModel; a SavedModel whose ``serving_default`` signature does not take exactly
            the spec's inputs or lacks one of its outputs, or has other dtypes. Nothing is
            written then.
        OptionError: an unknown keyword argument.
        TestDataMismatch: the self-test's outputs differ from ``test_expected_out``.
    """
    source = one_source(
        "create_tensorflow_neuropod",
        {
            "frozen_graph_path": (frozen_graph_path, "a serialized GraphDef file"),
            "graph_def": (graph_def, "a tf.compat.v1.GraphDef"),
            "saved_model_dir": (saved_model_dir, "a SavedModel directory"),
            "trackable_obj": (trackable_obj, "a tf.Module to save"),
        },
    )
    inputs = parse_specs(input_spec, "input")
    outputs = parse_specs(output_spec, "output")
    is_graph = frozen_graph_path is not None or graph_def is not None
    init_ops = [init_op_names] if isinstance(init_op_names, str) else list(init_op_names)
    mapping: dict[str, str] = {}
    if is_graph:
        mapping = _check_mapping(node_name_mapping, inputs + outputs)
    elif node_name_mapping is not None or init_ops:
        raise PackageError(
            "node_name_mapping and init_op_names apply to graphs (frozen_graph_path, graph_def); "
            f"a SavedModel ({source}) names its tensors in its '{SIGNATURE}' signature"
        )
    if frozen_graph_path is not None and not Path(frozen_graph_path).is_file():
        raise PackageError(f"frozen_graph_path {frozen_graph_path} does not exist or is not a file")
    if saved_model_dir is not None and not Path(saved_model_dir).is_dir():
        raise PackageError(f"saved_model_dir {saved_model_dir} does not exist or is not a directory")

    def write_model(builder: PackageBuilder) -> None:
        data = builder.root / layout.DATA_DIR
        if is_graph:
            target = data / GRAPH_FILE
            if frozen_graph_path is not None:
                shutil.copyfile(frozen_graph_path, target)
            else:
                if not hasattr(graph_def, "SerializeToString"):
                    raise PackageError(
                        f"graph_def must be a tf.compat.v1.GraphDef (e.g. graph.as_graph_def()), "
                        f"got {type(graph_def).__name__}"
                    )
                target.write_bytes(graph_def.SerializeToString(deterministic=True))
            _check_graph(target, mapping, init_ops)
            builder.write_backend_config(
                {"node_name_mapping": mapping, "init_op_names": init_ops}, sort_keys=False
            )
            return
        target = data / SAVED_MODEL_DIR
        if saved_model_dir is not None:
            shutil.copytree(saved_model_dir, target)
        else:
            import tensorflow as tf

            try:
                tf.saved_model.save(trackable_obj, str(target))
            except (TypeError, ValueError) as exc:
                raise PackageError(f"trackable_obj cannot be saved as a SavedModel: {exc}") from exc
        _check_signature(target, inputs, outputs)
        # Unused by a SavedModel, but the original wrote it, and manifests should hash alike.
        builder.write_backend_config({"node_name_mapping": None, "init_op_names": []}, sort_keys=False)

    create_package(
        "create_tensorflow_neuropod", "tensorflow", neuropod_path, model_name,
        inputs, outputs, write_model, common,
    )  # fmt: skip


def _check_mapping(mapping: Mapping[str, str] | None, specs: Sequence[TensorSpec]) -> dict[str, str]:
    if mapping is None:
        raise PackageError(
            "node_name_mapping is required for graphs: map every input and output of the spec to "
            "a graph node, e.g. {'x': 'some_namespace/in_x:0'}"
        )
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items()
    ):
        raise PackageError(
            f"node_name_mapping must map tensor names to node names (strings), got {mapping!r}"
        )
    missing = [spec.name for spec in specs if spec.name not in mapping]
    if missing:
        raise PackageError(f"node_name_mapping has no node for tensor(s) {', '.join(map(repr, missing))}")
    return dict(mapping)


def _check_graph(path: Path, mapping: Mapping[str, str], init_ops: Sequence[str]) -> None:
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise PackageError(f"The graph is not a serialized GraphDef: {exc}") from exc
    nodes = {node.name for node in graph_def.node}
    unknown = [f"{name!r} -> {node!r}" for name, node in mapping.items() if node.split(":")[0] not in nodes]
    unknown += [f"init op {op!r}" for op in init_ops if op.split(":")[0] not in nodes]
    if unknown:
        raise PackageError(f"The graph has no node for: {', '.join(unknown)}")


def _check_signature(saved_model: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    signature = _read_signature(saved_model)
    takes = sorted(signature.inputs)
    gives = sorted(signature.outputs)
    spec_inputs = sorted(spec.name for spec in inputs)
    if takes != spec_inputs:
        raise PackageError(
            f"The SavedModel's '{SIGNATURE}' signature takes inputs {takes}, but the input spec "
            f"names {spec_inputs}: they must be the same names"
        )
    missing = [spec.name for spec in outputs if spec.name not in signature.outputs]
    if missing:
        raise PackageError(
            f"The SavedModel's '{SIGNATURE}' signature returns {gives}, which lacks the output "
            f"spec's {', '.join(map(repr, missing))}"
        )
    import tensorflow as tf

    for direction, specs, infos in (
        ("input", inputs, signature.inputs),
        ("output", outputs, signature.outputs),
    ):
        for spec in specs:
            got = tf.dtypes.as_dtype(infos[spec.name].dtype)
            expected = tf.string if spec.dtype in VARIABLE_LENGTH else tf.dtypes.as_dtype(spec.dtype)
            if got != expected:
                raise PackageError(
                    f"The SavedModel's '{SIGNATURE}' signature has {direction} '{spec.name}' of "
                    f"type {got.name}, but the {direction} spec says {spec.dtype}"
                )


def _read_signature(saved_model: Path) -> Any:
    """The ``serving_default`` SignatureDef, read from the SavedModel's proto (no variables load)."""
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        if (saved_model / "saved_model.pb").is_file():
            proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
        elif (saved_model / "saved_model.pbtxt").is_file():
            text_format.Parse((saved_model / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
        else:
            raise PackageError(f"{saved_model} holds no saved_model.pb: it is not a SavedModel")
    except (DecodeError, text_format.ParseError) as exc:
        raise PackageError(f"{saved_model}/saved_model.pb cannot be read: {exc}") from exc
    graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags] or list(proto.meta_graphs)
    for graph in graphs:
        if SIGNATURE in graph.signature_def:
            return graph.signature_def[SIGNATURE]
    found = sorted({name for graph in proto.meta_graphs for name in graph.signature_def})
    raise PackageError(
        f"The SavedModel has no '{SIGNATURE}' signature (it has: {', '.join(found) or 'none'}); "
        f"save it with signatures={{'{SIGNATURE}': ...}}"
    )
