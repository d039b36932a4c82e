"""The exceptions neuropod raises, in one small tree.

::

    NeuropodError
    ├── SpecError (ValueError)               a tensor spec is malformed (found while packaging or loading)
    ├── ValidationError (ValueError, RuntimeError)
    │   │                                    tensors given to or returned by ``infer`` break the spec
    │   └── ProtocolError                    a request or response breaks the Open Inference Protocol
    ├── PackageError (ValueError)            a package cannot be written or read
    │   ├── IntegrityError                   a file differs from the manifest, is missing, or is extra
    │   ├── UnsafeArchiveError               a zip entry would land outside the package
    │   ├── RequirementsError                a package's requirements cannot be locked (resolver's reason)
    │   └── VersionRangeError (SpecError, RuntimeError)
    │                                        ``platform_version_semver`` is not a version range
    ├── TestDataMismatch (ValueError)        a packaged model's output differs from the expected test output
    ├── OptionError (TypeError)              an unknown or invalid option was passed
    ├── BackendUnavailable (ImportError)     no backend for a platform, or its framework is not installed
    │   └── FrameworkVersionError (RuntimeError)
    │                                        the installed framework's version is outside the package's range
    ├── InferenceError (RuntimeError)        the model itself failed while running
    ├── WorkerCrashed (RuntimeError)         the worker process running the model died (``use_ope=True``)
    │   └── WorkerGone                       it had died before the call reached it (the call is retried)
    ├── InferenceTimeout (TimeoutError)      a call outlived its timeout; the worker was killed
    ├── SandboxUnavailable (RuntimeError)    ``sandbox=True``, but the kernel refused the worker's namespaces
    ├── ModelClosedError (RuntimeError)      the model was used after ``close``
    ├── EnvironmentBuildError (RuntimeError) an isolated environment could not be built (uv's reason)
    ├── DatasetError (ValueError)            a batch run's dataset or output folder is unusable
    ├── CommandError                         a mistake found by a ``neuropod`` command (exit code 2)
    └── ServingError                         a failed request, with the HTTP status and gRPC code it answers
        ├── BadRequest                       400  INVALID_ARGUMENT    malformed request
        ├── Unauthenticated                  401  UNAUTHENTICATED     missing or wrong bearer token
        ├── NotFound                         404  NOT_FOUND           unknown model, version, tensor or region
        ├── MethodNotAllowed                 405  UNIMPLEMENTED       the path exists, not with this method
        ├── PayloadTooLarge                  413  RESOURCE_EXHAUSTED  body or region over the configured limit
        ├── Unsupported                      501  UNIMPLEMENTED       a decoupled model asked without a stream
        ├── Unavailable                      503  UNAVAILABLE         model not ready, or the server stopping
        └── InternalError                    500  INTERNAL            the model failed (crash, error, timeout)

    RemoteTraceback (Exception)              the ``__cause__`` of a worker's error: its traceback text
    ChannelClosed (Exception)                internal: the other end of a worker's channel is gone
    UvFailed (Exception)                     internal: uv exited with an error (becomes an error above)
    ClientGone (Exception)                   internal: an HTTP client left before its request was complete
    RpcAborted (Exception)                   internal: a gRPC handler ended its call with a status

Every class derives from the builtin that code written for the original Neuropod catches, so
``except ValueError`` keeps working. Framework exceptions are translated at the backend boundary
and kept as ``__cause__``. The last five stand outside ``NeuropodError`` on purpose: a
``RemoteTraceback`` is never raised, only chained, and the internal four are always caught and
translated where they are raised (under ``NeuropodError``, a model would let them through
untranslated); those four are left out of ``__all__``.

The classes are defined here, and only here; the modules that raised them before (e.g.
``neuropod.serving.errors``) import them from here, so both paths name the same class.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailable",
    "BadRequest",
    "CommandError",
    "DatasetError",
    "EnvironmentBuildError",
    "FrameworkVersionError",
    "InferenceError",
    "InferenceTimeout",
    "IntegrityError",
    "InternalError",
    "MethodNotAllowed",
    "ModelClosedError",
    "NeuropodError",
    "NotFound",
    "OptionError",
    "PackageError",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteTraceback",
    "RequirementsError",
    "SandboxUnavailable",
    "ServingError",
    "SpecError",
    "TestDataMismatch",
    "Unauthenticated",
    "Unavailable",
    "UnsafeArchiveError",
    "Unsupported",
    "ValidationError",
    "VersionRangeError",
    "WorkerCrashed",
    "WorkerGone",
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


class ProtocolError(ValidationError):
    """A request or response breaks the protocol: an unknown datatype, a shape that does not
    match the data, a binary tensor of the wrong size, a JSON output of bytes that are not
    UTF-8. (Bytes that are not UTF-8 for a string tensor break its spec: a ``ValidationError``.)

    It is a ``ValidationError`` (hence a ``ValueError``): a server answers it with 400 /
    ``INVALID_ARGUMENT``, and a client sees the same type as for a local spec mistake.
    """


class PackageError(NeuropodError, ValueError):
    """A neuropod package cannot be written or read."""


class IntegrityError(PackageError):
    """A package's files do not match its ``manifest.json``."""


class UnsafeArchiveError(PackageError):
    """A zipped package holds an entry that would be written outside the package."""


class RequirementsError(PackageError):
    """A package's requirements are malformed or unsatisfiable; the message quotes the resolver."""


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


class FrameworkVersionError(BackendUnavailable, RuntimeError):
    """The package needs a framework version (``platform_version_semver``) that is not installed,
    and names no locked requirement that would let neuropod build an environment with it."""


class InferenceError(NeuropodError, RuntimeError):
    """The model raised while running; the framework's exception is the ``__cause__``."""


class WorkerCrashed(NeuropodError, RuntimeError):
    """The worker process running an out-of-process model died (signal, exit, out of memory).

    The call that was running fails with it; the next call starts a fresh worker, unless the
    model's ``max_restarts`` are used up.
    """


class WorkerGone(WorkerCrashed):
    """The worker had died before a call reached it: the call can go to a new worker."""


class InferenceTimeout(NeuropodError, TimeoutError):
    """An out-of-process call took longer than the model's ``timeout``.

    The worker was killed (a hung model cannot be interrupted otherwise); the next call starts a
    fresh one.
    """


class SandboxUnavailable(NeuropodError, RuntimeError):
    """A worker could not enter its sandbox (``sandbox=True``): the message names the system call
    the kernel refused, and the setting that forbids it with how to change it."""


class ModelClosedError(NeuropodError, RuntimeError):
    """A model was used after it was closed."""


class EnvironmentBuildError(NeuropodError, RuntimeError):
    """Building an isolated environment for a package failed; the message quotes uv's reason.

    Nothing of the failed build is left in the cache: the next load tries again.
    """


class DatasetError(NeuropodError, ValueError):
    """A dataset or an output folder cannot be read or written as a batch run needs."""


class CommandError(NeuropodError):
    """A user error found by a command (not by argparse): printed as one line, exit code 2.

    Args:
        message: what is wrong, and where.
    """


class ServingError(NeuropodError):
    """A failed request, with the HTTP status and gRPC status code name it answers.

    ``neuropod.serving.errors.classify`` maps any exception (not only these) to its answer.
    """

    status = 500
    grpc_code = "INTERNAL"


class BadRequest(ServingError):
    """The request is malformed."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(ServingError):
    """The request lacks the server's bearer token."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class NotFound(ServingError):
    """The request names a model, version, tensor or shared-memory region that does not exist."""

    status = 404
    grpc_code = "NOT_FOUND"


class MethodNotAllowed(ServingError):
    """The path exists, but not with this method."""

    status = 405
    grpc_code = "UNIMPLEMENTED"


class Unsupported(ServingError):
    """The request cannot be served this way, e.g. a decoupled model called without a stream."""

    status = 501
    grpc_code = "UNIMPLEMENTED"


class PayloadTooLarge(ServingError):
    """The request is larger than the server accepts."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(ServingError):
    """The model is not ready, or the server is shutting down."""

    status = 503
    grpc_code = "UNAVAILABLE"


class InternalError(ServingError):
    """The model failed while running."""

    status = 500
    grpc_code = "INTERNAL"


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as text.

    Args:
        text: the formatted traceback.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\nTraceback in the worker process:\n" + self.text


class ChannelClosed(Exception):
    """The other process closed its end of a worker channel, or died."""


class UvFailed(Exception):
    """uv exited with an error; ``reason`` is what it said about it.

    Args:
        reason: uv's ``error:`` line, or the tail of its output.
        returncode: uv's exit status.
    """

    def __init__(self, reason: str, returncode: int):
        super().__init__(reason)
        self.reason = reason
        self.returncode = returncode


class ClientGone(Exception):
    """The HTTP connection closed (or was timed out) before the request's body was complete."""


class RpcAborted(Exception):
    """A gRPC handler ended its call with a status, as grpc's ``context.abort`` does.

    Args:
        code: the status code.
        details: the message.
    """

    def __init__(self, code: Any, details: str):
        super().__init__(details)
        self.code = code
        self.details = details
