"""Packaging ONNX models (platform ``onnx``), stored as ``0/data/model.onnx``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import CommonArgs, create_package, one_source
from neuropod.spec.dtypes import BYTES, STRING
from neuropod.spec.tensor_spec import Dim, TensorSpec, parse_specs

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

MODEL_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"

#: ONNX element type name -> spec dtype, for every type a spec can express (a ``STRING`` may
#: also be spec'd ``bytes``: see ``neuropod.backends.onnx`` for what onnxruntime lets through).
ELEM_TYPES = {
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "FLOAT16": "float16",
    "STRING": "string",
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
}

# protobuf cannot serialize a message of 2 GiB or more; such models keep their tensors beside.
_PROTO_LIMIT = 2**31 - 1


def create_onnx_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    model_path: str | os.PathLike[str] | None = None,
    model: Any = None,
    input_spec: Iterable[Any] | None = None,
    output_spec: Iterable[Any] | None = None,
    **common: Unpack[CommonArgs],
) -> None:
    """Package an ONNX model, to run with onnxruntime.

    A spec that is omitted is read from the graph: a ``dim_param`` becomes a symbol of the same
    name (ONNX gives equal ``dim_param`` names equal sizes too), a ``dim_value`` a fixed size,
    and any other dim ``None``. Given specs are checked against the graph: every graph input
    without an initializer must be in the input spec, every output spec'd must be a graph
    output, and dtypes, ranks and fixed sizes must agree. Only the spec'd outputs are computed.
    A graph input that has an initializer of the same name is left out of an inferred spec; an
    input spec may name it, which makes it an optional input whose default is the initializer.

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        model_path: an ``.onnx`` file; tensors it keeps in external data files are packaged
            too. Give this or ``model``.
        model: an ``onnx.ModelProto`` (not modified).
        input_spec: the input specs, or ``None`` to read them from the graph.
        output_spec: the output specs, or ``None`` to read them from the graph.
        **common: the arguments every packager takes (``custom_ops``, ``test_input_data``,
            ``package_as_zip``, ...; see docs/packaging.md). Custom ops are onnxruntime custom op
            libraries, registered when the model is loaded.

    Raises:
        PackageError: neither or both of ``model_path`` and ``model``; the file is missing or
            not ONNX; a graph tensor has a type a spec cannot express; a spec disagrees with
            the graph.
        SpecError: a spec is malformed.
        OptionError: an unknown keyword argument.
        TestDataMismatch: the self-test's outputs differ from ``test_expected_out``.
    """
    import onnx

    one_source(
        "create_onnx_neuropod",
        {"model_path": (model_path, "an .onnx file"), "model": (model, "an onnx.ModelProto")},
    )
    if model_path is not None:
        if not Path(model_path).is_file():
            raise PackageError(f"model_path {model_path} does not exist or is not a file")
        try:
            proto = onnx.load(os.fspath(model_path), load_external_data=False)
        except Exception as exc:
            raise PackageError(f"{model_path} is not an ONNX model: {exc}") from exc
    elif isinstance(model, onnx.ModelProto):
        proto = model
        if any(_is_external(tensor) for tensor in _tensors(proto)):
            raise PackageError(
                "model keeps tensors in external data files whose directory is unknown; pass "
                "model_path= (the .onnx file beside its data files) instead"
            )
    else:
        raise PackageError(f"model must be an onnx.ModelProto, got {type(model).__name__}")

    graph = proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    graph_inputs = [vi for vi in graph.input if vi.name not in initializers]
    graph_outputs = list(graph.output)
    if input_spec is None:
        inputs = graph_specs(graph_inputs, "input")
    else:
        inputs = parse_specs(input_spec, "input")
        _check_against_graph(inputs, list(graph.input), "input", required=graph_inputs)
    if output_spec is None:
        outputs = graph_specs(graph_outputs, "output")
    else:
        outputs = parse_specs(output_spec, "output")
        _check_against_graph(outputs, graph_outputs, "output", required=[])

    def write_model(builder: PackageBuilder) -> None:
        data = builder.root / layout.DATA_DIR
        if model_path is not None:
            shutil.copyfile(model_path, data / MODEL_FILE)
            _copy_external_data(proto, Path(model_path).parent, data)
        elif proto.ByteSize() > _PROTO_LIMIT:
            # save_model moves the tensors of the proto it is given to external data: not the caller's.
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)
            onnx.save_model(
                copy,
                os.fspath(data / MODEL_FILE),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=EXTERNAL_DATA_FILE,
            )
        else:
            onnx.save_model(proto, os.fspath(data / MODEL_FILE))

    create_package(
        "create_onnx_neuropod", "onnx", neuropod_path, model_name, inputs, outputs, write_model, common
    )


def graph_specs(values: Iterable[Any], kind: str) -> tuple[TensorSpec, ...]:
    """Specs read from ONNX graph inputs or outputs (``ValueInfoProto``).

    Args:
        values: the graph's inputs (without initializers) or outputs.
        kind: ``"input"`` or ``"output"``, for messages.

    Returns:
        One spec per value: ``dim_param`` -> symbol, ``dim_value`` -> size, else ``None``.

    Raises:
        PackageError: a value is not a tensor, has no shape, or has an element type no spec
            dtype stands for.
    """
    specs = []
    for value in values:
        dtype = _spec_dtype(value, kind)
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            raise PackageError(
                f"Graph {kind} '{value.name}' has no shape, so its rank is unknown; pass {kind}_spec"
            )
        shape: list[Dim] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param:
                shape.append(dim.dim_param)
            elif dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
            else:
                shape.append(None)
        specs.append(TensorSpec(value.name, dtype, tuple(shape)))
    return tuple(specs)


def _spec_dtype(value: Any, kind: str) -> str:
    import onnx

    if value.type.WhichOneof("value") != "tensor_type":
        raise PackageError(
            f"Graph {kind} '{value.name}' is a {value.type.WhichOneof('value')}, not a tensor; "
            f"neuropod models take and return tensors"
        )
    elem_type = value.type.tensor_type.elem_type
    name = onnx.TensorProto.DataType.Name(elem_type)
    if name not in ELEM_TYPES:
        raise PackageError(
            f"Graph {kind} '{value.name}' has ONNX element type {name}, which no spec dtype stands "
            f"for; supported: {', '.join(ELEM_TYPES)}"
        )
    return ELEM_TYPES[name]


def _check_against_graph(
    specs: tuple[TensorSpec, ...], values: list[Any], kind: str, required: list[Any]
) -> None:
    by_name = {value.name: value for value in values}
    unknown = [spec.name for spec in specs if spec.name not in by_name]
    if unknown:
        raise PackageError(
            f"The {kind} spec names {', '.join(map(repr, unknown))}, but the graph's {kind}s are "
            f"{', '.join(map(repr, by_name)) or 'none'}"
        )
    missing = sorted({value.name for value in required} - {spec.name for spec in specs})
    if missing:
        raise PackageError(
            f"Graph {kind}(s) {', '.join(map(repr, missing))} are not in the {kind} spec; "
            f"onnxruntime needs every one"
        )
    for spec in specs:
        value = by_name[spec.name]
        dtype = _spec_dtype(value, kind)
        # An ONNX STRING is a byte string: a spec may call it text (string) or bytes.
        if dtype != spec.dtype and not (dtype == STRING and spec.dtype == BYTES):
            raise PackageError(
                f"Tensor '{spec.name}' is {spec.dtype} in the {kind} spec, but {dtype} in the graph"
            )
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if len(dims) != len(spec.shape):
            raise PackageError(
                f"Tensor '{spec.name}' has {len(spec.shape)} dimension(s) in the {kind} spec, but "
                f"{len(dims)} in the graph"
            )
        for i, (want, dim) in enumerate(zip(spec.shape, dims, strict=True)):
            if isinstance(want, int) and dim.HasField("dim_value") and dim.dim_value != want:
                raise PackageError(
                    f"Dim {i} of tensor '{spec.name}' is {want} in the {kind} spec, but "
                    f"{dim.dim_value} in the graph"
                )


def _tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of a model: initializers and attributes, in subgraphs and functions."""

    def graph_tensors(graph: Any) -> Iterator[Any]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        yield from node_tensors(graph.node)

    def node_tensors(nodes: Iterable[Any]) -> Iterator[Any]:
        for node in nodes:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    yield from graph_tensors(attribute.g)
                for graph in attribute.graphs:
                    yield from graph_tensors(graph)

    yield from graph_tensors(model.graph)
    for function in model.functions:
        yield from node_tensors(function.node)


def _is_external(tensor: Any) -> bool:
    import onnx

    return bool(tensor.data_location == onnx.TensorProto.EXTERNAL)


def _copy_external_data(model: Any, source_dir: Path, data_dir: Path) -> None:
    copied: set[str] = set()
    for tensor in _tensors(model):
        if not _is_external(tensor):
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        relative = PurePosixPath(location.replace("\\", "/"))
        if not location or relative.is_absolute() or ".." in relative.parts:
            raise PackageError(
                f"Tensor '{tensor.name}' keeps its data at {location!r}; external data must lie "
                f"beside the model or below its directory"
            )
        if location in copied:
            continue
        source = source_dir / relative
        if not source.is_file():
            raise PackageError(f"External data file {source} of tensor '{tensor.name}' is missing")
        target = data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.add(location)
