"""The contract every backend keeps: load a package, run ``infer(dict) -> dict``, close.

Backends do not validate tensors: the model object in front of them does, once, for all of
them. A backend's load options are the keyword-only parameters of its ``__init__`` after
``package`` and ``visible_gpu``; ``load_neuropod`` rejects any other option by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from neuropod.package.package import Package


class Backend(ABC):
    """A model loaded by one framework.

    Args:
        package: the opened package (its config, data and code directories).
        visible_gpu: ``None`` to run on the CPU, else the index of the GPU to use.
    """

    def __init__(self, package: Package, *, visible_gpu: int | None = None):
        self.package = package
        self.visible_gpu = visible_gpu

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on validated inputs and return its outputs as numpy arrays.

        ``inputs`` is the backend's own copy of the dict; its arrays belong to the caller and
        must not be written to.
        """

    def close(self) -> None:  # noqa: B027 - most backends have nothing to release
        """Release what the backend holds. Called once by the model."""
