"""The loaded model: one interface in front of every backend, where tensors are validated."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from neuropod.backends.base import Backend
from neuropod.errors import InferenceError, ModelClosedError, NeuropodError
from neuropod.package.package import Package
from neuropod.spec.tensor_spec import TensorSpec
from neuropod.spec.validation import TensorValidator


class NeuropodModel:
    """A model ready to run, whatever framework built it. Made by ``load_neuropod``.

    ``infer`` checks the inputs against the input spec before the backend sees them and the
    outputs against the output spec before the caller does, so every backend reports the same
    mistake with the same error. Use it as a context manager, or call ``close``.
    """

    def __init__(self, package: Package, backend: Backend, *, require_all_inputs: bool = False):
        self._package = package
        self._backend: Backend | None = backend
        config = package.config
        self._check_inputs = TensorValidator(config.inputs, "input", require_all=require_all_inputs)
        self._check_outputs = TensorValidator(config.outputs, "output")

    @property
    def name(self) -> str:
        """The model's name."""
        return self._package.config.name

    @property
    def platform(self) -> str:
        """The platform (backend) that runs the model, e.g. ``"torchscript"``."""
        return self._package.config.platform

    @property
    def path(self) -> Path:
        """Where the package was loaded from."""
        return self._package.path

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The input specs as ``TensorSpec`` values."""
        return self._package.config.inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """The output specs as ``TensorSpec`` values."""
        return self._package.config.outputs

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The input specs as the original's ``{"name", "dtype", "shape"}`` dicts."""
        return [spec.to_dict() for spec in self.input_specs]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The output specs as the original's ``{"name", "dtype", "shape"}`` dicts."""
        return [spec.to_dict() for spec in self.output_specs]

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            inputs: input name -> numpy array; never modified.

        Returns:
            output name -> numpy array.

        Raises:
            ValidationError: an input or output breaks the spec (message names the tensor).
            InferenceError: the model itself failed; the framework's error is the ``__cause__``.
            ModelClosedError: the model was closed.
        """
        backend = self._backend
        if backend is None:
            raise ModelClosedError(f"Model '{self.name}' is closed")
        self._check_inputs(inputs)
        try:
            outputs = backend.infer(dict(inputs))
        except NeuropodError:
            raise
        except Exception as exc:
            raise InferenceError(
                f"Model '{self.name}' ({self.platform}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._check_outputs(outputs)
        return outputs

    def close(self) -> None:
        """Release the backend and the package's extracted files. Idempotent."""
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            finally:
                self._package.close()

    def __enter__(self) -> NeuropodModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._backend is None else "open"
        return f"<NeuropodModel {self.name!r} platform={self.platform!r} {state}>"
