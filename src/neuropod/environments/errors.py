"""The errors of version selection, in neuropod's tree of errors.

::

    NeuropodError
    ├── PackageError (ValueError)
    │   └── RequirementsError              a package's requirements cannot be locked (resolver's reason)
    ├── BackendUnavailable (ImportError)
    │   └── FrameworkVersionError (RuntimeError)
    │                                      the installed framework's version is outside the package's range
    └── EnvironmentBuildError (RuntimeError)
                                           an isolated environment could not be built (uv's reason)
"""

from __future__ import annotations

from neuropod.errors import BackendUnavailable, NeuropodError, PackageError


class RequirementsError(PackageError):
    """A package's requirements are malformed or unsatisfiable; the message quotes the resolver."""


class FrameworkVersionError(BackendUnavailable, RuntimeError):
    """The package needs a framework version (``platform_version_semver``) that is not installed,
    and names no locked requirement that would let neuropod build an environment with it."""


class EnvironmentBuildError(NeuropodError, RuntimeError):
    """Building an isolated environment for a package failed; the message quotes uv's reason.

    Nothing of the failed build is left in the cache: the next load tries again.
    """
