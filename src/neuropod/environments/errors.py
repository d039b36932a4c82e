"""The errors of version selection and isolated environments: ``RequirementsError`` (a
``PackageError``), ``FrameworkVersionError`` (a ``BackendUnavailable``) and
``EnvironmentBuildError`` (a ``RuntimeError``), defined in ``neuropod.errors``'s tree."""

from __future__ import annotations

from neuropod.errors import EnvironmentBuildError, FrameworkVersionError, RequirementsError

__all__ = ["EnvironmentBuildError", "FrameworkVersionError", "RequirementsError"]
