"""Backend of platform ``python``: the packaged code's entrypoint builds a callable model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from neuropod.backends.base import Backend
from neuropod.backends.code_namespace import CodeNamespace
from neuropod.errors import InferenceError, PackageError
from neuropod.package.package import Package


class PythonBackend(Backend):
    """Runs ``entrypoint_package.entrypoint(data_dir)(**inputs)`` from the package's code.

    The code is imported in a namespace of its own (see ``code_namespace``), so packages whose
    code uses the same module names load side by side. Outputs must be numpy arrays; torch
    tensors are converted for PyTorch models, which the original left to the model.
    """

    def __init__(self, package: Package, *, visible_gpu: int | None = None):
        super().__init__(package, visible_gpu=visible_gpu)
        settings = package.backend_config()
        try:
            entrypoint_package = settings["entrypoint_package"]
            entrypoint = settings["entrypoint"]
        except KeyError as exc:
            raise PackageError(
                f"{package.path}: 0/config.json lacks {exc.args[0]!r}, which python packages need"
            ) from None
        self._namespace = CodeNamespace([package.code_dir, package.ops_dir])
        try:
            with self._namespace.aliased():
                module = self._namespace.import_module(entrypoint_package)
                factory = getattr(module, entrypoint, None)
                if not callable(factory):
                    raise PackageError(
                        f"{package.path}: entrypoint {entrypoint_package}.{entrypoint} is not a function"
                    )
                self._model: Callable[..., Any] = factory(str(package.data_dir))
        except BaseException:
            self._namespace.close()
            raise
        if not callable(self._model):
            self._namespace.close()
            raise PackageError(
                f"{package.path}: entrypoint {entrypoint_package}.{entrypoint} returned "
                f"{type(self._model).__name__}, not a callable model"
            )

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._model(**inputs)
        if not isinstance(out, dict):
            raise InferenceError(
                f"The model of {self.package.path} must return a dict of numpy arrays, "
                f"but returned {type(out).__name__}"
            )
        return {name: _to_numpy(value) for name, value in out.items()}

    def close(self) -> None:
        self._namespace.close()


def _to_numpy(value: Any) -> Any:
    # Checked by name so that torch is not imported for models that do not use it.
    if type(value).__module__ == "torch" and type(value).__name__ == "Tensor":
        return value.detach().cpu().numpy()
    return value
