"""Packaging TorchScript modules (platform ``torchscript``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import CommonArgs, create_package, one_source
from neuropod.spec.dtypes import BYTES
from neuropod.spec.tensor_spec import parse_specs, refuse_dtypes

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

MODEL_FILE = "model.pt"
#: Why TorchScript packages cannot have bytes tensors.
NO_BYTES = (
    "TorchScript has no bytes type (its str is UTF-8 text, which List[str] arguments decode), so "
    "its tensors cannot be of dtype bytes: declare text as string, or pass raw bytes as a uint8 "
    "tensor"
)


def create_torchscript_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    module: Any = None,
    module_path: str | os.PathLike[str] | None = None,
    **common: Unpack[CommonArgs],
) -> None:
    """Package a TorchScript module.

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        input_spec: the input specs (``{"name", "dtype", "shape"}`` dicts or ``TensorSpec``).
        output_spec: the output specs.
        module: a ``torch.jit.ScriptModule`` (give this or ``module_path``).
        module_path: a module saved with ``torch.jit.save``.
        **common: the arguments every packager takes (``custom_ops``, ``test_input_data``,
            ``package_as_zip``, ...; see docs/packaging.md).

    Raises:
        PackageError: neither or both of ``module`` and ``module_path`` are given, or the file
            is missing.
        OptionError: an unknown keyword argument.
        TestDataMismatch: the self-test's outputs differ from ``test_expected_out``.

    The module's ``forward`` takes the inputs by name (``forward(self, x, y)``) or as one
    ``Dict[str, Tensor]``; string tensors arrive as ``List[str]``. TorchScript has no bytes
    type, so a spec of dtype ``bytes`` is refused (``PackageError``).
    """
    input_spec = parse_specs(input_spec, "input")
    output_spec = parse_specs(output_spec, "output")
    refuse_dtypes((*input_spec, *output_spec), [BYTES], NO_BYTES)
    one_source(
        "create_torchscript_neuropod",
        {"module": (module, "a ScriptModule"), "module_path": (module_path, "a saved .pt file")},
    )
    if module_path is not None and not Path(module_path).is_file():
        raise PackageError(f"module_path {module_path} does not exist or is not a file")
    if module is not None:
        import torch

        if not isinstance(module, torch.jit.ScriptModule):
            raise PackageError(
                f"module must be a torch.jit.ScriptModule (from torch.jit.script or "
                f"torch.jit.trace), got {type(module).__name__}"
            )

    def write_model(builder: PackageBuilder) -> None:
        target = builder.root / layout.DATA_DIR / MODEL_FILE
        if module_path is not None:
            shutil.copyfile(module_path, target)
        else:
            module.save(str(target))

    create_package(
        "create_torchscript_neuropod", "torchscript", neuropod_path, model_name,
        input_spec, output_spec, write_model, common,
    )  # fmt: skip
