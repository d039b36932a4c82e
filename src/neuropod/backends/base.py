"""The one contract of every backend: ``infer(dict) -> dict``, ``close``, and ``allocate``/``seal``,
``infer_stream`` for decoupled models.

Framework backends (a package run in this process), the out-of-process ``WorkerBackend`` and the
remote backends (a model on a server) all keep it, so they stack: a worker runs a backend, a
server serves a loaded model, a remote backend speaks to a server. ``load_neuropod`` puts one of
them behind a ``NeuropodModel``, which validates tensors once for all of them: backends do not.

A backend declares its load options in ``load_options`` (see ``neuropod.options``); one that
does not declare them takes the keyword-only parameters of its ``__init__`` after ``package``
and ``visible_gpu``, as the original contract had it. ``load_neuropod`` rejects any other option
by name before the backend is made.
"""

from __future__ import annotations

import inspect
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neuropod.options import Options, declare
from neuropod.package.config import ModelConfig
from neuropod.package.package import Package

# Declarations made from the __init__ of backends that declare no load_options.
_derived: weakref.WeakKeyDictionary[type, type[Options]] = weakref.WeakKeyDictionary()


class Backend(ABC):
    """A loaded model, whatever runs it.

    Backends that run a package call this ``__init__``; ``config`` and ``path`` are then the
    package's. A backend without a package (a remote model) does not call it and defines
    ``config`` and ``path`` itself.

    Args:
        package: the opened package (its config, data and code directories).
        visible_gpu: ``None`` to run on the CPU, else the index of the GPU to use.
    """

    #: The declaration of the backend's load options (``None``: its ``__init__``'s keyword-only
    #: parameters).
    load_options: ClassVar[type[Options] | None] = None

    #: The GPU the backend runs on, or ``None`` for the CPU (or a device chosen elsewhere).
    visible_gpu: int | None = None

    package: Package

    def __init__(self, package: Package, *, visible_gpu: int | None = None):
        self.package = package
        self.visible_gpu = visible_gpu

    @property
    def config(self) -> ModelConfig:
        """The model's name, platform and specs."""
        return self.package.config

    @property
    def path(self) -> Path | str:
        """Where the model comes from: the package's path (a remote model: its URL)."""
        return self.package.path

    @classmethod
    def declared_options(cls) -> type[Options]:
        """The declaration of this backend's load options (see ``load_options``)."""
        if cls.load_options is not None:
            return cls.load_options
        derived = _derived.get(cls)
        if derived is None:
            params = inspect.signature(cls.__init__).parameters.values()
            names = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "visible_gpu"]
            derived = _derived[cls] = declare(f"{cls.__name__}Options", names, f"backend {cls.__name__}")
        return derived

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on validated inputs and return its outputs as numpy arrays.

        ``inputs`` is the backend's own copy of the dict; its arrays belong to the caller and
        must not be written to.
        """

    @property
    def instances(self) -> int:
        """How many instances run the model (out of process, its worker processes); here 1."""
        return 1

    def infer_on(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``infer`` on one given instance (``0 <= instance < instances``), not the least busy.

        For a caller whose calls depend on one another, e.g. the requests of one sequence to a
        model that keeps state in its own memory. Here there is one instance: plain ``infer``.
        """
        return self.infer(inputs)

    def infer_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Run the model on validated inputs and yield its responses as they come.

        A decoupled model (``config.decoupled``) answers with zero or more responses; any other
        yields the one that ``infer`` returns, which is what this default does. Closing the
        iterator before its end cancels the call: a backend frees what the call holds then.
        """
        yield self.infer(inputs)

    def allocate(self, dtype: np.dtype[Any], shape: Sequence[int]) -> np.ndarray:
        """An uninitialized array to fill and pass to ``infer``: where the backend sends it fastest.

        Args:
            dtype: the element type.
            shape: the shape, already checked against the spec.

        Returns:
            The array (here an ordinary one; out of process one in shared memory).
        """
        return np.empty(tuple(shape), dtype)

    def seal(self, array: np.ndarray) -> np.ndarray:
        """``array`` where a call sends it fastest, moved there now (here: ``array`` itself).

        Args:
            array: an input value, already checked against the spec.

        Returns:
            The array to pass to ``infer``.
        """
        return array

    def close(self) -> None:  # noqa: B027 - most backends have nothing to release
        """Release what the backend holds. Called once by the model."""
