"""The errors of version selection, in neuropod's tree of errors (defined in ``neuropod.errors``).

::

    NeuropodError
    ├── PackageError (ValueError)
    │   └── RequirementsError              a package's requirements cannot be locked (resolver's reason)
    ├── BackendUnavailable (ImportError)
    │   └── FrameworkVersionError          the installed framework's version is outside the package's range
    └── EnvironmentBuildError (RuntimeError)
                                           an isolated environment could not be built (uv's reason)
"""

from __future__ import annotations

from neuropod.errors import EnvironmentBuildError, FrameworkVersionError, RequirementsError

__all__ = ["EnvironmentBuildError", "FrameworkVersionError", "RequirementsError"]
