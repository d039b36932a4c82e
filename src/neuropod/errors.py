"""The exceptions neuropod raises, in one small tree.

::

    NeuropodError
    ├── SpecError (ValueError)               a tensor spec is malformed (found while packaging or loading)
    ├── ValidationError (ValueError, RuntimeError)
    │                                        tensors given to or returned by ``infer`` break the spec
    ├── PackageError (ValueError)            a package cannot be written or read
    │   ├── IntegrityError                   a file differs from the manifest, is missing, or is extra
    │   ├── UnsafeArchiveError               a zip entry would land outside the package
    │   └── VersionRangeError (SpecError, RuntimeError)
    │                                        ``platform_version_semver`` is not a version range
    ├── TestDataMismatch (ValueError)        a packaged model's output differs from the expected test output
    ├── OptionError (TypeError)              an unknown or invalid option was passed
    ├── BackendUnavailable (ImportError)     no backend for a platform, or its framework is not installed
    ├── InferenceError (RuntimeError)        the model itself failed while running
    ├── WorkerCrashed (RuntimeError)         the worker process running the model died (``use_ope=True``)
    ├── InferenceTimeout (TimeoutError)      a call outlived its timeout; the worker was killed
    └── ModelClosedError (RuntimeError)      the model was used after ``close``

Every class derives from the builtin that code written for the original Neuropod catches, so
``except ValueError`` keeps working. Framework exceptions are translated at the backend boundary
and kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "InferenceError",
    "InferenceTimeout",
    "IntegrityError",
    "ModelClosedError",
    "NeuropodError",
    "OptionError",
    "PackageError",
    "SpecError",
    "TestDataMismatch",
    "UnsafeArchiveError",
    "ValidationError",
    "VersionRangeError",
    "WorkerCrashed",
]


class NeuropodError(Exception):
    """Base class of every error neuropod raises on purpose."""


class SpecError(NeuropodError, ValueError):
    """A tensor spec (problem definition) is malformed."""


class ValidationError(NeuropodError, ValueError, RuntimeError):
    """Tensors passed to or returned from ``infer`` do not match the model's spec.

    It is both a ``ValueError`` and a ``RuntimeError`` because the original Neuropod raised one
    from Python and the other from its native bindings, and code written for it catches either.
    """


class PackageError(NeuropodError, ValueError):
    """A neuropod package cannot be written or read."""


class IntegrityError(PackageError):
    """A package's files do not match its ``manifest.json``."""


class UnsafeArchiveError(PackageError):
    """A zipped package holds an entry that would be written outside the package."""


class VersionRangeError(PackageError, SpecError, RuntimeError):
    """``platform_version_semver`` is not an npm-style version range.

    Raised when packaging (a malformed spec) and when loading (a malformed package). The original
    Neuropod stored any range and raised ``RuntimeError`` at load, so it is one of those too.
    """


class TestDataMismatch(NeuropodError, ValueError):
    """A model's output differs from the expected output it was packaged with."""

    __test__ = False  # not a pytest test class, despite the name


class OptionError(NeuropodError, TypeError):
    """An unknown or invalid option was passed to a loader or packager."""


class BackendUnavailable(NeuropodError, ImportError):
    """No backend is registered for a platform, or its framework is not installed."""


class InferenceError(NeuropodError, RuntimeError):
    """The model raised while running; the framework's exception is the ``__cause__``."""


class WorkerCrashed(NeuropodError, RuntimeError):
    """The worker process running an out-of-process model died (signal, exit, out of memory).

    The call that was running fails with it; the next call starts a fresh worker, unless the
    model's ``max_restarts`` are used up.
    """


class InferenceTimeout(NeuropodError, TimeoutError):
    """An out-of-process call took longer than the model's ``timeout``.

    The worker was killed (a hung model cannot be interrupted otherwise); the next call starts a
    fresh one.
    """


class ModelClosedError(NeuropodError, RuntimeError):
    """A model was used after it was closed."""
