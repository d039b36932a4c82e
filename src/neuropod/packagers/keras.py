"""Packaging Keras 3 models (platform ``keras``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import create_package
from neuropod.spec.tensor_spec import TensorSpec, parse_specs

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from neuropod.packagers.common import CommonArgs

MODEL_FILE = "model.keras"

#: The symbol the original gave the first (batch) dim of inferred specs.
BATCH_SYMBOL = "batch_size"


def create_keras_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    model: Any,
    input_spec: Iterable[Any] | None = None,
    output_spec: Iterable[Any] | None = None,
    sess: Any = None,
    node_name_mapping: Any = None,
    **common: Unpack[CommonArgs],
) -> None:
    """Package a Keras 3 model, saved as ``0/data/model.keras``.

    The package runs on whichever Keras backend loads it (TensorFlow and JAX are tested; see
    ``neuropod.backends.keras``), provided the model's layers exist there.

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        model: a ``keras.Model``: functional, Sequential (with its inputs defined), or
            subclassed (then both specs are required, and its class must be registered with
            ``keras.saving.register_keras_serializable`` to load again).
        input_spec: the input specs; by default, the model's inputs: named after their dict
            keys or ``keras.Input`` names, with a first dim of symbol ``batch_size`` (as the
            original did) and ``None`` for every other unknown dim.
        output_spec: the output specs; by default the model's outputs, named after their dict
            keys or their layers.
        sess: the original's TF1 session form (``sess=``, ``model=`` of Keras 2); it needs
            ``tf-keras`` and is refused with Keras 3.
        node_name_mapping: part of the original's TF1 session form; refused likewise.
        **common: the arguments every packager takes (``test_input_data``,
            ``package_as_zip``, ...; see the README).

    Raises:
        PackageError: the TF1 session form, a model that is not a Keras 3 model, a subclassed
            model without specs, or specs whose names do not match the model's inputs (the same
            names, or one input on each side) or outputs (a subset of the model's names, or one
            output on each side).
        OptionError: an unknown keyword argument.
        TestDataMismatch: the self-test's outputs differ from ``test_expected_out``.
    """
    import keras

    if sess is not None or node_name_mapping is not None:
        raise PackageError(
            "create_keras_neuropod(sess=..., model=...) is the original's TF1 session form, which "
            "needs Keras 2 (tf-keras) running in a TF1 session; the installed Keras is "
            f"{keras.__version__}. Pass the Keras 3 model alone: "
            "create_keras_neuropod(neuropod_path=..., model_name=..., model=model)"
        )
    if not isinstance(model, keras.Model):
        raise PackageError(
            f"model must be a keras.Model (Keras {keras.__version__}), got {type(model).__name__}"
        )
    from neuropod.backends.keras import match_names, model_io

    io = model_io(model)
    if io is None and (input_spec is None or output_spec is None):
        raise PackageError(
            f"The {type(model).__name__} model has no defined inputs (a subclassed model, or a "
            f"Sequential model never built): pass input_spec and output_spec, or build it with "
            f"keras.Input"
        )
    if io is None:
        inputs = parse_specs(input_spec or (), "input")
        outputs = parse_specs(output_spec or (), "output")
    else:
        inputs = parse_specs(input_spec, "input") if input_spec is not None else _infer(io.inputs, "input")
        outputs = (
            parse_specs(output_spec, "output") if output_spec is not None else _infer(io.outputs, "output")
        )
        for direction, specs, names in (
            ("input", inputs, io.input_names),
            ("output", outputs, io.output_names),
        ):
            spec_names = [spec.name for spec in specs]
            if match_names(spec_names, names, direction) is None:
                rule = "the same names" if direction == "input" else "names among them"
                raise PackageError(
                    f"The model's {direction}s are {names}, but the {direction} spec names "
                    f"{spec_names}: give {rule} (or one tensor on each side)"
                )

    def write_model(builder: PackageBuilder) -> None:
        model.save(str(builder.root / layout.DATA_DIR / MODEL_FILE))

    create_package(
        "create_keras_neuropod",
        platform="keras",
        neuropod_path=neuropod_path,
        model_name=model_name,
        input_spec=inputs,
        output_spec=outputs,
        write_model=write_model,
        common=common,
    )


def _infer(tensors: Iterable[tuple[str, Any]], direction: str) -> tuple[TensorSpec, ...]:
    specs = []
    for name, tensor in tensors:
        shape: list[int | str | None] = [None if dim is None else int(dim) for dim in tensor.shape]
        if shape and shape[0] is None:
            shape[0] = BATCH_SYMBOL
        specs.append({"name": name, "dtype": str(tensor.dtype), "shape": shape})
    return parse_specs(specs, direction)
