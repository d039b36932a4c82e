"""Placeholder packages: models that honour a problem definition with random outputs.

They let integration code be written and tested against a problem before any model exists.
A placeholder is an ordinary package of the ``python`` platform whose code needs numpy alone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.errors import SpecError
from neuropod.options import int_at_least, optional
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers import placeholder_model
from neuropod.packagers.common import CommonArgs, create_package
from neuropod.spec.tensor_spec import parse_specs

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

CODE_PACKAGE = "neuropod_placeholder"


def create_placeholder_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    seed: int | None = None,
    **common: Unpack[CommonArgs],
) -> None:
    """Package a model that returns random outputs matching ``output_spec``.

    Output dims whose symbol also occurs in the input spec take the size of that input's dim;
    other symbols and ``None`` dims get a random size from 1 to 4 (one size per symbol per
    call). Floats are uniform in [0, 1), integers in [0, 100).

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        input_spec: the input specs.
        output_spec: the output specs.
        seed: seed of the random generator (``None``: different outputs on every load).
        **common: the arguments every packager takes (see docs/packaging.md).
    """
    optional(int_at_least(0))("seed", seed, SpecError)
    inputs = [spec.to_dict() for spec in parse_specs(input_spec, "input")]
    outputs = [spec.to_dict() for spec in parse_specs(output_spec, "output")]

    def write_model(builder: PackageBuilder) -> None:
        code = builder.root / layout.CODE_DIR / CODE_PACKAGE
        code.mkdir(parents=True)
        shutil.copyfile(placeholder_model.__file__, code / "__init__.py")
        spec = {"input_spec": inputs, "output_spec": outputs, "seed": seed}
        with open(Path(builder.root, layout.DATA_DIR, placeholder_model.SPEC_FILE), "w") as f:
            json.dump(spec, f, indent=4, sort_keys=True)
        builder.write_backend_config({"entrypoint": "get_model", "entrypoint_package": CODE_PACKAGE})

    create_package(
        "create_placeholder_neuropod", "python", neuropod_path, model_name,
        inputs, outputs, write_model, common,
    )  # fmt: skip
