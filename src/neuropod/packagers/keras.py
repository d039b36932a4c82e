"""Packaging Keras 3 models (platform ``keras``)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.code import check_code_path_spec, copy_code, module_in_code, packaged_top_level
from neuropod.packagers.common import CommonArgs, create_package
from neuropod.spec.tensor_spec import TensorSpec, parse_specs

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

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
    code_path_spec: Sequence[Mapping[str, Any]] = (),
    custom_object_modules: Sequence[str] = (),
    sess: Any = None,
    node_name_mapping: Any = None,
    **common: Unpack[CommonArgs],
) -> None:
    """Package a Keras 3 model, saved as ``0/data/model.keras``.

    The package runs on whichever Keras backend loads it (TensorFlow and JAX are tested; see
    ``neuropod.backends.keras``), provided the model's layers exist there.

    A model with custom layers or a subclassed model needs the code of its classes wherever it
    loads (another process, an out-of-process worker, a server). Ship that code with
    ``code_path_spec`` and name the modules whose ``keras.saving.register_keras_serializable``
    decorators register the classes in ``custom_object_modules``: they are imported before the
    model loads, in a namespace of the package's own (as python packages' code), and what they
    register serves this model only. Two packages whose code uses the same module names, or
    registers different classes under one name, load side by side. Example::

        # my_layers/__init__.py holds @keras.saving.register_keras_serializable() class Scale(...)
        create_keras_neuropod(
            neuropod_path="scaled.zip",
            model_name="scaled",
            model=model,
            code_path_spec=[{"python_root": "src", "dirs_to_package": ["my_layers"]}],
            custom_object_modules=["my_layers"],
        )

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        model: a ``keras.Model``: functional, Sequential (with its inputs defined), or
            subclassed (then both specs are required). Custom classes in it must be registered
            with ``keras.saving.register_keras_serializable`` to load again: by code shipped
            with ``custom_object_modules``, or by code the loading process has imported.
        input_spec: the input specs; by default, the model's inputs: named after their dict
            keys or ``keras.Input`` names, with a first dim of symbol ``batch_size`` (as the
            original did) and ``None`` for every other unknown dim.
        output_spec: the output specs; by default the model's outputs, named after their dict
            keys or their layers.
        code_path_spec: ``[{"python_root": dir, "dirs_to_package": [relative dirs]}]``: code
            copied to ``0/code`` keeping the relative paths, as for ``create_python_neuropod``.
        custom_object_modules: the modules to import before the model loads, e.g.
            ``["my_layers", "my_blocks.attention"]``; each comes from the packaged code or,
            where its top-level package is not in the code, from the loading environment.
            Stored in ``0/config.json``.
        sess: the original's TF1 session form (``sess=``, ``model=`` of Keras 2); it needs
            ``tf-keras`` and is refused with Keras 3.
        node_name_mapping: part of the original's TF1 session form; refused likewise.
        **common: the arguments every packager takes (``test_input_data``,
            ``package_as_zip``, ...; see docs/packaging.md).

    Raises:
        PackageError: the TF1 session form, a model that is not a Keras 3 model, a subclassed
            model without specs, or specs whose names do not match the model's inputs (the same
            names, or one input on each side) or outputs (a subset of the model's names, or one
            output on each side); a code directory that does not exist, code without
            ``custom_object_modules``, or a custom object module that is neither in the code nor
            installed. Nothing is written then.
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
    from neuropod.backends.keras import CUSTOM_OBJECT_MODULES, match_names, model_io

    code = check_code_path_spec(code_path_spec, Path(neuropod_path))
    modules = _check_module_names(custom_object_modules, code)

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
        if code:
            code_dir = builder.root / layout.CODE_DIR
            copy_code(code_dir, code)
            for name in modules:
                if name.partition(".")[0] in packaged_top_level(code) and not module_in_code(code_dir, name):
                    raise PackageError(
                        f"custom_object_modules names {name!r}, which the code of code_path_spec "
                        f"does not hold"
                    )
        if modules:
            builder.write_backend_config({CUSTOM_OBJECT_MODULES: modules})
        model.save(str(builder.root / layout.DATA_DIR / MODEL_FILE))

    create_package(
        "create_keras_neuropod", "keras", neuropod_path, model_name, inputs, outputs, write_model, common
    )


def _infer(tensors: Iterable[tuple[str, Any]], direction: str) -> tuple[TensorSpec, ...]:
    specs = []
    for name, tensor in tensors:
        shape: list[int | str | None] = [None if dim is None else int(dim) for dim in tensor.shape]
        if shape and shape[0] is None:
            shape[0] = BATCH_SYMBOL
        specs.append({"name": name, "dtype": str(tensor.dtype), "shape": shape})
    return parse_specs(specs, direction)


def _check_module_names(names: Sequence[str], code: list[tuple[Path, str]]) -> list[str]:
    """The custom object modules, after checking that each is a module name and can be found."""
    if isinstance(names, (str, bytes)) or not all(
        isinstance(name, str) and all(part.isidentifier() for part in name.split(".")) for name in names
    ):
        raise PackageError(
            f"custom_object_modules must be a list of module names such as ['my_layers'], got {names!r}"
        )
    if code and not names:
        raise PackageError(
            "code_path_spec ships code, but custom_object_modules names no module to import at "
            "load: list the modules that register the model's custom objects, e.g. "
            "custom_object_modules=['my_layers']"
        )
    tops = packaged_top_level(code)
    for name in names:
        top = name.partition(".")[0]
        if top not in tops and importlib.util.find_spec(top) is None:
            raise PackageError(
                f"custom_object_modules names {name!r}, which is neither in the code of "
                f"code_path_spec (its top-level packages: {', '.join(sorted(tops)) or 'none'}) nor "
                f"installed"
            )
    return list(names)

