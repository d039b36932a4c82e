"""The reference models on the keras platform: subclassed models from ``keras_custom_models``.

Their classes live in ``keras_custom_models``, which every package ships (``CUSTOM_CODE``), so
that they load in any process: fresh interpreters and workers never import ``tests``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from neuropod.packagers import create_keras_neuropod
from tests.models.keras_custom_models import KerasAddition, KerasStrings

#: Ships the module of the custom classes, which registers them when the package loads.
CUSTOM_CODE: dict[str, Any] = {
    "code_path_spec": [
        {"python_root": str(Path(__file__).resolve().parent), "dirs_to_package": ["keras_custom_models"]}
    ],
    "custom_object_modules": ["keras_custom_models"],
}

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model (``y`` optional)."""
    model = KerasAddition()
    model({"x": np.zeros((1, 1), np.float32)})  # built, as Keras wants before saving
    create_keras_neuropod(neuropod_path=path, model_name=path.name, model=model, **CUSTOM_CODE, **kwargs)


def _build_strings(path: Path, workdir: Path, **kwargs: Any) -> None:
    import tensorflow as tf

    model = KerasStrings()
    model(tf.constant(["built"]))
    create_keras_neuropod(neuropod_path=path, model_name=path.name, model=model, **CUSTOM_CODE, **kwargs)


#: The strings model, where Keras runs on TensorFlow (its other backends lack strings).
build_strings = _build_strings if ON_TENSORFLOW else None
