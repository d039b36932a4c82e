"""The export of a saved Ludwig model, run by a Python with Ludwig installed (the packager starts it).

::

    python -c '...main(sys.argv[1:])' MODEL_DIR OUT_DIR

``LudwigModel.to_torchscript`` gives one TorchScript module with Ludwig's preprocessing,
network and postprocessing, returning ``{feature: {"predictions": ..., "probabilities": ...}}``.
It is wrapped in a module returning one flat dict (``<feature>_predictions``, ...), which the
torchscript backend runs with torch alone. OUT_DIR receives:

- ``model.pt``: the wrapped module;
- ``definition.json``: ``{"input_spec", "output_spec", "ludwig_version", "torch_version"}``;
- ``test_data.npz``: ``input/<name>`` and ``output/<name>``: a few rows made from the model's
  vocabularies and normalization, and what the module returns for them.

Progress goes to stdout, one ``progress: ...`` line per step; anything else Ludwig prints is
left to stderr.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from neuropod.errors import PackageError
from neuropod.integrations.ludwig.saved_model import BATCH, METADATA_FILE, SavedModel

MODEL_FILE = "model.pt"
DEFINITION_FILE = "definition.json"
TEST_DATA_FILE = "test_data.npz"
INPUT_PREFIX = "input/"
OUTPUT_PREFIX = "output/"
#: Rows of test data the export makes.
TEST_ROWS = 3

_SPECIAL_TOKEN = re.compile(r"^<[A-Z]+>$")  # <UNK>, <PAD>, <SOS>, <EOS>


def progress(step: str) -> None:
    """Tell the packager what the export is doing."""
    print(f"progress: {step}", flush=True)


def main(argv: list[str]) -> None:
    """Export the model at ``argv[0]`` into the folder ``argv[1]`` (see the module's docstring)."""
    model_dir, out_dir = Path(argv[0]), Path(argv[1])
    saved = SavedModel.read(model_dir)
    progress("importing ludwig")
    import numpy as np
    import torch
    from ludwig.api import LudwigModel
    from ludwig.globals import LUDWIG_VERSION

    progress(f"loading the model with ludwig {LUDWIG_VERSION}")
    model = LudwigModel.load(str(model_dir), logging_level=logging.ERROR, backend="local")
    progress("exporting it with LudwigModel.to_torchscript")
    inner = model.to_torchscript(device="cpu")
    wrapped = torch.jit.script(_flat_outputs_module(torch)(inner))
    metadata = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
    input_spec = saved.input_spec()
    inputs = {spec["name"]: _test_column(spec, metadata.get(spec["name"], {})) for spec in input_spec}
    progress(f"running it on {TEST_ROWS} rows of test data")
    with torch.no_grad():
        outputs = wrapped({name: _to_torch(torch, column) for name, column in inputs.items()})
    arrays = {name: _to_numpy(np, torch, name, value) for name, value in outputs.items()}
    output_spec = _output_spec(saved, arrays)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save(str(out_dir / MODEL_FILE))
    definition = {
        "input_spec": input_spec,
        "output_spec": output_spec,
        "ludwig_version": LUDWIG_VERSION,
        "torch_version": torch.__version__,
    }
    (out_dir / DEFINITION_FILE).write_text(json.dumps(definition, indent=2), encoding="utf-8")
    np.savez(
        out_dir / TEST_DATA_FILE,
        **{INPUT_PREFIX + spec["name"]: _column_array(np, spec, inputs[spec["name"]]) for spec in input_spec},
        **{OUTPUT_PREFIX + spec["name"]: arrays[spec["name"]] for spec in output_spec},
    )
    progress("exported")


def _flat_outputs_module(torch: Any) -> Any:
    """The wrapper class (made here: torch is imported only in Ludwig's Python)."""

    class FlatOutputs(torch.nn.Module):  # type: ignore[misc]
        """Ludwig's inference module with its nested outputs flattened to ``<feature>_<key>``."""

        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(
            self,
            inputs: dict[str, torch.Tensor | list[tuple[torch.Tensor, int]] | list[torch.Tensor] | list[str]],
        ) -> dict[str, Any]:
            flat: dict[str, Any] = {}
            for feature, values in self.inner(inputs).items():
                for key, value in values.items():
                    flat[feature + "_" + key] = value
            return flat

    return FlatOutputs


def _test_column(spec: dict[str, Any], metadata: dict[str, Any]) -> list[Any]:
    """``TEST_ROWS`` values of one input, made from what training recorded about it."""
    dtype = spec["dtype"]
    if dtype == "float32":
        mean = float(metadata.get("mean", 0.0))
        std = float(metadata.get("std", 1.0) or 1.0)
        return [mean + std * offset for offset in (-1.0, 0.0, 1.0, 0.5, -0.5)][:TEST_ROWS]
    if dtype == "bool":
        return [index % 2 == 0 for index in range(TEST_ROWS)]
    words = [w for w in metadata.get("idx2str", []) if isinstance(w, str) and not _SPECIAL_TOKEN.match(w)]
    if not words:
        words = ["a", "b", "c"]
    return [" ".join(words[(row + k) % len(words)] for k in range(1 + row % 3)) if _is_text(metadata)
            else words[row % len(words)] for row in range(TEST_ROWS)]  # fmt: skip


def _is_text(metadata: dict[str, Any]) -> bool:
    return "max_sequence_length" in metadata


def _column_array(np: Any, spec: dict[str, Any], column: list[Any]) -> Any:
    return np.asarray(column, dtype=str if spec["dtype"] == "string" else spec["dtype"])


def _to_torch(torch: Any, column: list[Any]) -> Any:
    if isinstance(column[0], str):
        return column
    if isinstance(column[0], bool):
        return torch.tensor(column, dtype=torch.bool)
    return torch.tensor(column, dtype=torch.float32)


def _to_numpy(np: Any, torch: Any, name: str, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return np.asarray(value, dtype=str)
    raise PackageError(
        f"Ludwig's output '{name}' is a {type(value).__name__}, not a tensor or a list of strings"
    )


def _output_spec(saved: SavedModel, arrays: dict[str, Any]) -> list[dict[str, Any]]:
    """One spec per flat output, in the config's feature order; dims after the batch are fixed."""
    spec = []
    for feature, _type in saved.output_features():
        names = sorted(name for name in arrays if name.startswith(feature + "_"))
        if not any(name == f"{feature}_predictions" for name in names):
            raise PackageError(f"Ludwig's export returned no predictions for output feature '{feature}'")
        for name in names:
            array = arrays[name]
            dtype = "string" if array.dtype.kind == "U" else array.dtype.name
            spec.append({"name": name, "dtype": dtype, "shape": [BATCH, *array.shape[1:]]})
    if len({item["name"] for item in spec}) != len(spec) or len(spec) != len(arrays):
        raise PackageError(
            f"Ludwig's outputs {sorted(arrays)} cannot be told apart by output feature "
            f"({', '.join(name for name, _ in saved.output_features())})"
        )
    return spec
