"""Custom Keras objects of the test models, shipped inside their packages.

``tests/models/keras.py`` packages this directory with ``code_path_spec`` and names it in
``custom_object_modules``, so that the models load in processes that never imported it (fresh
interpreters, out-of-process workers). Only Keras is imported here: the worker's ``sys.path``
holds neither ``tests/`` nor the test modules.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="neuropod_tests")
class KerasAddition(keras.Model):
    """``out = x + y``, where ``y`` may be left out (a functional model needs every input)."""

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        y = inputs.get("y")
        return {"out": inputs["x"] if y is None else inputs["x"] + y}


@keras.saving.register_keras_serializable(package="neuropod_tests")
class KerasStrings(keras.Model):
    """``out = "<" + s + ">"``: TensorFlow string ops, so the TensorFlow backend of Keras only."""

    def call(self, s: Any) -> dict[str, Any]:
        import tensorflow as tf

        return {"out": tf.strings.join(["<", s, ">"])}

    def build_from_config(self, config: dict[str, Any]) -> None:
        self.built = True  # stateless: nothing to create from the (string) input shape


@keras.saving.register_keras_serializable(package="neuropod_tests")
class Scale(keras.layers.Layer):
    """``inputs * factor``: a custom layer with a setting of its own, in a functional model."""

    def __init__(self, factor: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs: Any) -> Any:
        return inputs * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}
