"""A saved Ludwig model as the packager sees it, read without Ludwig: its config, its Ludwig
version, and the problem definition its features map to.

A model saved with ``LudwigModel.save`` (or the ``model`` folder of a training run) holds
``model_hyperparameters.json`` (the config, with the ``ludwig_version`` that saved it),
``training_set_metadata.json`` (vocabularies, normalization) and ``model_weights``.
It imports no framework: it runs in the application (to refuse a model before any environment
is built) and in the Ludwig environment alike.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuropod.errors import PackageError

CONFIG_FILE = "model_hyperparameters.json"
METADATA_FILE = "training_set_metadata.json"
WEIGHTS_FILE = "model_weights"

#: The Ludwig release the export runs with: the newest with ``to_torchscript`` and a wheel for
#: CPython 3.11 (ludwig 0.12 removed ``to_torchscript``).
LUDWIG_REQUIREMENT = "ludwig==0.11.0"
#: The versions of Ludwig whose saved models the export accepts: ``(major, minor)``.
SUPPORTED_SERIES = ((0, 11),)
SUPPORTED_TEXT = "0.11.x"

#: The batch dimension's symbol in every spec.
BATCH = "batch"

#: Input feature type -> the dtype of its tensor, shape ``[batch]``. Numbers go in as float32;
#: binary as bool; category and text as one string per row (Ludwig tokenizes text itself).
INPUT_DTYPES: Mapping[str, str] = {
    "number": "float32",
    "binary": "bool",
    "category": "string",
    "text": "string",
}
#: Output feature types whose outputs are tensors: ``<name>_predictions`` and, for category and
#: binary, ``<name>_probabilities`` (``[batch, classes]``).
OUTPUT_TYPES = ("binary", "category", "number")

_VERSION = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class SavedModel:
    """A saved Ludwig model's config, checked to be one the export supports.

    Attributes:
        path: the model's folder.
        config: the parsed ``model_hyperparameters.json``.
        ludwig_version: the Ludwig version that saved it.
    """

    path: Path
    config: dict[str, Any]
    ludwig_version: str

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SavedModel:
        """Read and check the saved model at ``path``.

        Raises:
            PackageError: ``path`` is not a saved Ludwig model, was saved by a Ludwig version
                outside ``SUPPORTED_TEXT``, or has a feature type the export cannot map.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise PackageError(
                f"ludwig_model_path {folder} is not a directory (expected a saved Ludwig model)"
            )
        missing = [
            name for name in (CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE) if not (folder / name).exists()
        ]
        if missing:
            raise PackageError(
                f"ludwig_model_path {folder} is not a saved Ludwig model: it has no "
                f"{' and no '.join(missing)} (give the folder LudwigModel.save wrote, or the 'model' "
                f"folder of a training run)"
            )
        try:
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PackageError(f"{folder / CONFIG_FILE} cannot be read as JSON: {exc}") from None
        if not isinstance(config, dict):
            raise PackageError(f"{folder / CONFIG_FILE} holds a {type(config).__name__}, not a Ludwig config")
        version = config.get("ludwig_version")
        found = (
            f"Ludwig version {version}"
            if isinstance(version, str)
            else f"an unknown Ludwig version (its {CONFIG_FILE} has no ludwig_version)"
        )
        match = _VERSION.match(version) if isinstance(version, str) else None
        if (
            not isinstance(version, str)
            or match is None
            or (int(match[1]), int(match[2])) not in SUPPORTED_SERIES
        ):
            raise PackageError(
                f"The Ludwig model at {folder} was saved by {found}; the exporter supports models "
                f"saved by Ludwig {SUPPORTED_TEXT} (it exports with {LUDWIG_REQUIREMENT}, the last release "
                f"with to_torchscript). Retrain or re-save the model with Ludwig {SUPPORTED_TEXT}"
            )
        model = cls(folder, config, version)
        model.input_spec()
        model.output_features()
        return model

    def _features(self, kind: str) -> list[dict[str, Any]]:
        features = self.config.get(kind)
        if (
            not isinstance(features, list)
            or not features
            or not all(
                isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("type"), str)
                for f in features
            )
        ):
            raise PackageError(f"{self.path / CONFIG_FILE}: {kind} must be a list of {{name, type}} features")
        return features

    def input_spec(self) -> list[dict[str, Any]]:
        """The input spec: one ``[batch]`` tensor per input feature.

        Raises:
            PackageError: an input feature's type has no mapping.
        """
        spec = []
        for feature in self._features("input_features"):
            dtype = INPUT_DTYPES.get(feature["type"])
            if dtype is None:
                raise PackageError(
                    f"Input feature '{feature['name']}' of the Ludwig model at {self.path} is of type "
                    f"{feature['type']!r}; the exporter supports input features of type "
                    f"{', '.join(sorted(INPUT_DTYPES))}"
                )
            spec.append({"name": feature["name"], "dtype": dtype, "shape": [BATCH]})
        return spec

    def output_features(self) -> list[tuple[str, str]]:
        """``(name, type)`` of each output feature.

        Raises:
            PackageError: an output feature's type is not one of ``OUTPUT_TYPES``.
        """
        features = []
        for feature in self._features("output_features"):
            if feature["type"] not in OUTPUT_TYPES:
                raise PackageError(
                    f"Output feature '{feature['name']}' of the Ludwig model at {self.path} is of type "
                    f"{feature['type']!r}; the exporter supports output features of type "
                    f"{', '.join(OUTPUT_TYPES)}"
                )
            features.append((feature["name"], feature["type"]))
        return features
