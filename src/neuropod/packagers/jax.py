"""Packaging JAX functions (platform ``jax``), serialized with ``jax.export``.

The package holds the function as StableHLO (``0/data/model.jax``, plus ``model.<n>.jax`` for
each combination of absent optional inputs), so it runs without the Python code that defined
it. Its parameters are stored beside it, one ``.npy`` file per pytree leaf
(``0/data/params/000000.npy``, ... in ``jax.tree_util`` flattening order), and passed to the
function as its first argument at every call, so that large weights are not baked into the
program as constants. ``0/config.json`` says whether there are params, how many leaves, the
variants, and whether the model needs 64-bit types: then export and every call run inside
``jax.enable_x64(True)`` (a context, not the process-wide flag).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import CommonArgs, create_package, one_source
from neuropod.packagers.jax_shapes import symbolic_shapes
from neuropod.spec.dtypes import VARIABLE_LENGTH
from neuropod.spec.tensor_spec import TensorSpec, parse_specs, refuse_dtypes

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

MODEL_FILE = "model.jax"
PARAMS_DIR = "params"

#: Spec dtypes JAX computes in 64 bits only with ``jax_enable_x64``.
_X64_DTYPES = frozenset({"float64", "int64", "uint64"})

_MAX_OPTIONAL = 4


def create_jax_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    fn: Any = None,
    params: Any = None,
    exported: Any = None,
    polymorphic_shapes: Mapping[str, str] | None = None,
    optional_inputs: Iterable[str] = (),
    platforms: Sequence[str] = ("cpu", "cuda"),
    **common: Unpack[CommonArgs],
) -> None:
    """Package a JAX function, exported with ``jax.export`` so that it runs without its code.

    The function takes the inputs positionally, in input spec order, after the parameters when
    there are any: ``fn(params, x, y)``, or ``fn(x, y)`` when ``params`` is ``None`` (so
    ``fn=model.apply`` of a Flax module with one input fits as is). It returns a dict of
    outputs by name, a tuple or list in output spec order, or a single array for a model with
    one output. Every input must be given to ``infer``, except those in ``optional_inputs``.

    Every spec symbol becomes one ``jax.export`` symbolic dimension, shared by all the inputs
    that use it, and every ``None`` dim a fresh one named after its tensor and position
    (``x_1``, which ``polymorphic_shapes`` may name), so one package serves every batch size.
    A function that needs two dims to be equal (``x + y`` with shapes ``("batch", None)``)
    cannot be exported with independent dims: give them one symbol in the spec, or narrow only
    the exported shapes with ``polymorphic_shapes``.

    The exported program keeps the source locations of its operations (file, line and the
    calls that led there) for error messages: the same function packaged by the same code
    gives the same bytes.

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        input_spec: the input specs (``{"name", "dtype", "shape"}`` dicts or ``TensorSpec``);
            JAX has no string tensors.
        output_spec: the output specs.
        fn: the function, ``jax.jit``-wrapped or plain (it is jitted here). Give this or
            ``exported``.
        params: a pytree of arrays (dicts, lists, tuples, ``None``; other node types must be
            registered with ``jax.export.register_pytree_node_serialization``), or ``None``.
            Stored as ``.npy`` files, not in the exported program.
        exported: a ``jax.export.Exported`` whose arguments are ``(params, *inputs)`` (or
            ``(*inputs)`` without params); its shapes are used as they are.
        polymorphic_shapes: for some inputs, the shape to export in ``jax.export`` syntax
            (``{"x": "batch, n", "y": "batch, n"}``) instead of the one derived from the spec;
            ``jax.export`` then checks it at every call. Same rank and fixed sizes as the spec.
        optional_inputs: inputs that ``infer`` may leave out; the function receives ``None``
            in their place. One program is exported per combination of absent optional
            inputs (at most 4 optional inputs, 16 programs).
        platforms: the ``jax.export`` platforms to compile for (``"cpu"``, ``"cuda"``,
            ``"rocm"``, ``"tpu"``); the package runs only on these.
        **common: the arguments every packager takes (``custom_ops``, ``test_input_data``,
            ``package_as_zip``, ...; see docs/packaging.md).

    Raises:
        PackageError: neither or both of ``fn`` and ``exported``; a string tensor; the
            function does not export for the spec's shapes, or its arguments or outputs do not
            match the specs.
        SpecError: a spec is malformed.
        OptionError: an unknown keyword argument.
        TestDataMismatch: the self-test's outputs differ from ``test_expected_out``.
    """
    import jax

    one_source(
        "create_jax_neuropod", {"fn": (fn, "a function"), "exported": (exported, "a jax.export.Exported")}
    )
    inputs = parse_specs(input_spec, "input")
    outputs = parse_specs(output_spec, "output")
    refuse_dtypes((*inputs, *outputs), VARIABLE_LENGTH, "JAX has no string or bytes tensors")
    optional = _optional_inputs(inputs, optional_inputs)
    if exported is not None and (polymorphic_shapes is not None or optional):
        raise PackageError(
            "polymorphic_shapes and optional_inputs apply to fn=; an Exported has its arguments already"
        )
    leaves, treedef = jax.tree_util.tree_flatten(params)
    x64 = any(spec.dtype in _X64_DTYPES for spec in (*inputs, *outputs)) or any(map(_is_64_bit, leaves))

    def write_model(builder: PackageBuilder) -> None:
        with jax.enable_x64(x64):
            param_arrays = [_param_array(leaf, i) for i, leaf in enumerate(leaves)]
            packed = None if params is None else _Params(treedef, param_arrays)
            # (names of the absent inputs, Exported) for every combination of optional inputs
            programs: list[tuple[list[str], Any]] = [([], exported)]
            if exported is None:
                shapes = symbolic_shapes(inputs, polymorphic_shapes)
                programs = [
                    (list(absent), _export(jax, fn, packed, inputs, shapes, absent, platforms))
                    for count in range(len(optional) + 1)
                    for absent in itertools.combinations(optional, count)
                ]
        _check_arguments(jax, programs[0][1], packed, inputs)
        data = builder.root / layout.DATA_DIR
        variants = []
        for i, (missing, program) in enumerate(programs):
            _check_outputs(jax, program, outputs)
            name = f"model.{i}.jax" if i else MODEL_FILE
            (data / name).write_bytes(_serialize(program))
            if i:
                variants.append({"missing": missing, "file": name})
        if params is not None:
            (data / PARAMS_DIR).mkdir()
            for i, array in enumerate(param_arrays):
                np.save(data / PARAMS_DIR / f"{i:06d}.npy", array, allow_pickle=False)
        builder.write_backend_config(
            {
                "has_params": params is not None,
                "num_params": len(param_arrays),
                "enable_x64": x64,
                "variants": variants,
            }
        )

    create_package(
        "create_jax_neuropod", "jax", neuropod_path, model_name, inputs, outputs, write_model, common
    )


def _serialize(exported: Any) -> bytes:
    try:
        return bytes(exported.serialize())
    except Exception as exc:
        raise PackageError(f"jax.export cannot serialize the function: {exc}") from exc


def _optional_inputs(inputs: tuple[TensorSpec, ...], names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        raise PackageError(f"optional_inputs must be a list of input names, got {names!r}")
    optional = list(dict.fromkeys(names))
    unknown = [name for name in optional if name not in {spec.name for spec in inputs}]
    if unknown:
        raise PackageError(
            f"optional_inputs names {', '.join(map(repr, unknown))}, which the input spec does not have"
        )
    if len(optional) > _MAX_OPTIONAL:
        raise PackageError(
            f"{len(optional)} optional inputs would need {2 ** len(optional)} exported programs; "
            f"at most {_MAX_OPTIONAL} inputs can be optional"
        )
    return [spec.name for spec in inputs if spec.name in optional]


def _is_64_bit(leaf: Any) -> bool:
    try:
        return np.dtype(getattr(leaf, "dtype", None) or "float32").name in _X64_DTYPES
    except TypeError:  # a dtype numpy does not know (another framework's); np.asarray decides later
        return False


def _param_array(leaf: Any, index: int) -> np.ndarray:
    if isinstance(leaf, (bool, int, float, complex)):
        import jax.numpy as jnp

        # A Python scalar takes JAX's default dtype (float32 unless x64), as it would in jnp.
        return np.asarray(jnp.asarray(leaf))
    try:
        array = np.asarray(leaf)
    except Exception as exc:
        raise PackageError(f"Leaf {index} of params ({type(leaf).__name__}) is not an array") from exc
    if array.dtype.kind in "OUS":
        raise PackageError(f"Leaf {index} of params has dtype {array.dtype}; params must be numeric arrays")
    return array


class _Params(NamedTuple):
    """The params pytree: its structure, and its leaves as the arrays the package stores."""

    treedef: Any
    arrays: list[np.ndarray]


def _export(
    jax: Any,
    fn: Any,
    params: _Params | None,
    inputs: tuple[TensorSpec, ...],
    shapes: list[tuple[Any, ...]],
    missing: Sequence[str],
    platforms: Sequence[str],
) -> Any:
    from jax import export

    if not callable(fn):
        raise PackageError(f"fn must be a function, got {type(fn).__name__}")
    jitted = fn if hasattr(fn, "trace") else jax.jit(fn)
    args: list[Any] = [
        None if spec.name in missing else jax.ShapeDtypeStruct(shape, spec.dtype)
        for spec, shape in zip(inputs, shapes, strict=True)
    ]
    if params is not None:
        param_specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in params.arrays]
        args.insert(0, jax.tree_util.tree_unflatten(params.treedef, param_specs))
    try:
        return export.export(jitted, platforms=tuple(platforms))(*args)
    except Exception as exc:
        described = ", ".join(
            f"{spec.name}: " + ("None" if spec.name in missing else f"({', '.join(map(str, shape))})")
            for spec, shape in zip(inputs, shapes, strict=True)
        )
        hint = ""
        if "shape" in str(exc):
            hint = (
                ". If it needs two dims to be equal, give them the same symbol in the input spec, "
                "or in polymorphic_shapes"
            )
        raise PackageError(
            f"jax.export cannot export the function for the inputs {described}: "
            f"{type(exc).__name__}: {str(exc).rstrip('.')}{hint}"
        ) from exc


def _check_arguments(jax: Any, exported: Any, params: _Params | None, inputs: tuple[TensorSpec, ...]) -> None:
    from jax import export

    if not isinstance(exported, export.Exported):
        raise PackageError(f"exported must be a jax.export.Exported, got {type(exported).__name__}")
    in_tree: Any = exported.in_tree  # PyTreeDef's stubs lack children()
    args_tree, kwargs_tree = in_tree.children()
    if kwargs_tree.num_leaves:
        raise PackageError("The exported function takes keyword arguments; it must take them positionally")
    arg_trees = args_tree.children()
    offset = 0 if params is None else 1
    if len(arg_trees) != len(inputs) + offset:
        expected = ("params, " if offset else "") + ", ".join(spec.name for spec in inputs)
        raise PackageError(
            f"The exported function takes {len(arg_trees)} argument(s), but the spec needs ({expected})"
        )
    avals = list(exported.in_avals)
    if params is not None:
        if arg_trees[0] != params.treedef:
            raise PackageError(
                f"params has the structure {params.treedef}, but the "
                f"exported function takes {arg_trees[0]}"
            )
        for i, (array, aval) in enumerate(zip(params.arrays, avals, strict=False)):
            if array.shape != aval.shape or array.dtype != aval.dtype:
                raise PackageError(
                    f"Leaf {i} of params is {array.dtype}{list(array.shape)}, but the exported "
                    f"function takes {aval.str_short()}"  # type: ignore[no-untyped-call]
                )
        avals = avals[len(params.arrays) :]
    for spec, tree, aval in zip(inputs, arg_trees[offset:], avals, strict=False):
        if tree.num_leaves != 1 or tree.num_nodes != 1:
            raise PackageError(f"Argument '{spec.name}' of the exported function must be one array")
        _check_aval(spec, aval, "input")


def _check_outputs(jax: Any, exported: Any, outputs: tuple[TensorSpec, ...]) -> None:
    names = [spec.name for spec in outputs]
    structure = jax.tree_util.tree_unflatten(exported.out_tree, range(exported.out_tree.num_leaves))
    if isinstance(structure, dict):
        if any(not isinstance(value, int) for value in structure.values()):
            raise PackageError("The function must return a flat dict of arrays, not nested containers")
        if set(structure) != set(names):
            raise PackageError(
                f"The function returns the outputs {sorted(map(str, structure))}, but the output "
                f"spec has {sorted(names)}"
            )
        by_name = {name: exported.out_avals[i] for name, i in structure.items()}
    elif isinstance(structure, (tuple, list)):
        if any(not isinstance(value, int) for value in structure) or len(structure) != len(names):
            raise PackageError(
                f"The function returns a {type(structure).__name__} of {exported.out_tree.num_leaves} "
                f"array(s) in nested containers or of the wrong length; the output spec has "
                f"{len(names)} tensor(s) ({', '.join(names)})"
            )
        by_name = dict(zip(names, exported.out_avals, strict=True))
    elif isinstance(structure, int):
        if len(names) != 1:
            raise PackageError(
                f"The function returns one array, but the output spec has {len(names)} tensors; "
                f"return a dict or a tuple"
            )
        by_name = {names[0]: exported.out_avals[0]}
    else:
        raise PackageError(
            f"The function must return a dict, a tuple or a single array, not {exported.out_tree}"
        )
    for spec in outputs:
        _check_aval(spec, by_name[spec.name], "output")


def _check_aval(spec: TensorSpec, aval: Any, direction: str) -> None:
    if np.dtype(aval.dtype).name != spec.dtype or len(aval.shape) != len(spec.shape):
        raise PackageError(
            f"The {direction} '{spec.name}' of the exported function is {aval.str_short()}, "
            f"but the {direction} spec says {spec.dtype} with {len(spec.shape)} dimension(s)"
        )
    for i, (want, got) in enumerate(zip(spec.shape, aval.shape, strict=True)):
        if isinstance(want, int) and isinstance(got, int) and want != got:
            raise PackageError(
                f"Dim {i} of the {direction} '{spec.name}' of the exported function is {got}, "
                f"but the {direction} spec says {want}"
            )
