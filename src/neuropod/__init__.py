"""neuropod: one interface to run deep learning models, whatever framework built them.

>>> import numpy as np
>>> from neuropod import load_neuropod
>>> x, y = np.arange(3, dtype=np.float32), np.ones(3, np.float32)
>>> with load_neuropod("addition_model.zip") as model:
...     model.infer({"x": x, "y": y})["out"]
array([1., 2., 3.], dtype=float32)

Importing this package imports no deep learning framework; each backend imports its framework
when a model of its platform is loaded.
"""

from neuropod.errors import (
    BackendUnavailable,
    InferenceError,
    InferenceTimeout,
    IntegrityError,
    ModelClosedError,
    NeuropodError,
    OptionError,
    PackageError,
    SpecError,
    TestDataMismatch,
    UnsafeArchiveError,
    ValidationError,
    WorkerCrashed,
)
from neuropod.loader import load_neuropod
from neuropod.model import NeuropodModel
from neuropod.spec import TensorSpec

__version__ = "0.4.0"

__all__ = [
    "BackendUnavailable",
    "InferenceError",
    "InferenceTimeout",
    "IntegrityError",
    "ModelClosedError",
    "NeuropodError",
    "NeuropodModel",
    "OptionError",
    "PackageError",
    "SpecError",
    "TensorSpec",
    "TestDataMismatch",
    "UnsafeArchiveError",
    "ValidationError",
    "WorkerCrashed",
    "__version__",
    "load_neuropod",
]
