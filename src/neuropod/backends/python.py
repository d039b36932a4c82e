"""Backend of platform ``python``: the packaged code's entrypoint builds a callable model."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from neuropod.backends.base import Backend
from neuropod.backends.code_namespace import CodeNamespace, import_code_module, missing_dependency
from neuropod.errors import InferenceError, PackageError
from neuropod.options import NoOptions
from neuropod.package import layout
from neuropod.package.package import Package


class PythonBackend(Backend):
    """Runs ``entrypoint_package.entrypoint(data_dir)(**inputs)`` from the package's code.

    The code is imported in a namespace of its own (see ``code_namespace``), so packages whose
    code uses the same module names load side by side. Outputs must be numpy arrays; torch
    tensors are converted for PyTorch models, which the original left to the model. The model
    of a decoupled package returns an iterable of output dicts (a generator, typically), which
    ``infer_stream`` yields from as the model produces them.

    Raises (at load):
        PackageError: the backend config lacks the entrypoint, the entrypoint package is not in
            the code, the entrypoint is missing or not callable, it raised, or it returned
            something that is not callable. The model's own exception is the ``__cause__``.
        BackendUnavailable: the code imports a module that is not installed.
    """

    load_options = NoOptions

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
            self._model = self._build(str(entrypoint_package), str(entrypoint))
        except BaseException:
            self._namespace.close()
            raise

    def _build(self, entrypoint_package: str, entrypoint: str) -> Callable[..., Any]:
        where = f"{self.package.path}: entrypoint {entrypoint_package}.{entrypoint}"
        with self._namespace.aliased():
            module = import_code_module(self._namespace, entrypoint_package, where, self._requirements_hint())
            factory = getattr(module, entrypoint, None)
            if factory is None:
                raise PackageError(f"{where}: module {entrypoint_package} has no attribute {entrypoint!r}")
            if not callable(factory):
                raise PackageError(f"{where} is a {type(factory).__name__}, not a function")
            try:
                model = factory(str(self.package.data_dir))
            except ImportError as exc:
                raise missing_dependency(where, exc, self._requirements_hint()) from exc
            except Exception as exc:
                raise PackageError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        if not callable(model):
            raise PackageError(
                f"{where} returned {type(model).__name__}, but must return a callable model "
                f"(called with the inputs as keyword arguments)"
            )
        checked: Callable[..., Any] = model
        return checked

    def _requirements_hint(self) -> str:
        for name in (layout.REQUIREMENTS_LOCK, layout.REQUIREMENTS_IN):
            if (self.package.root / name).is_file():
                return f"; the package lists its requirements in {name}"
        return ""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._model(**inputs)
        if not isinstance(out, dict):
            hint = (
                "; a model that answers with a stream of responses is packaged with decoupled=True"
                if isinstance(out, Iterator)
                else ""
            )
            raise InferenceError(
                f"The model of {self.package.path} must return a dict of numpy arrays, "
                f"but returned {type(out).__name__}{hint}"
            )
        return {name: _to_numpy(value) for name, value in out.items()}

    def infer_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        if not self.package.config.decoupled:
            yield self.infer(inputs)
            return
        out = self._model(**inputs)
        if isinstance(out, (Mapping, str, bytes)) or not hasattr(out, "__iter__"):
            raise InferenceError(
                f"The model of {self.package.path} is decoupled, so it must return an iterable "
                f"(a generator, typically) of dicts of numpy arrays, but returned {type(out).__name__}"
            )
        responses = iter(out)
        try:
            for index, response in enumerate(responses):
                if not isinstance(response, dict):
                    raise InferenceError(
                        f"The model of {self.package.path} must yield dicts of numpy arrays, but "
                        f"its response {index} is a {type(response).__name__}"
                    )
                yield {name: _to_numpy(value) for name, value in response.items()}
        finally:
            close = getattr(responses, "close", None)
            if close is not None:  # a generator left early runs its finally blocks now
                close()

    def close(self) -> None:
        self._namespace.close()


def _to_numpy(value: Any) -> Any:
    # torch is looked up, not imported: a model that returns tensors has imported it already.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value
