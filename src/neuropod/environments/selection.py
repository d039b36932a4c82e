"""Choosing where a package runs: in the application's environment, or in an isolated one.

A package runs in the application's own environment when that environment satisfies it: the
installed framework is inside ``platform_version_semver`` and every requirement of
``0/requirements.lock`` is installed at its locked version. Otherwise it runs in a worker whose
interpreter is an environment built from the lock. A framework outside the range is fixed that
way only when the lock names the framework (building a framework nobody pinned is a guess, and a
heavy one); else loading fails, saying which version is installed and which is needed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from neuropod.environments.build import (
    Environment,
    EnvironmentSpec,
    ProgressCallback,
    ensure_environment,
)
from neuropod.environments.cache import EnvironmentCache
from neuropod.environments.errors import FrameworkVersionError
from neuropod.environments.lock import RequirementLock
from neuropod.environments.versions import PLATFORM_DISTRIBUTIONS, VersionRange, installed_framework
from neuropod.errors import VersionRangeError
from neuropod.options import Check, Options, one_of, option
from neuropod.package.package import Package

logger = logging.getLogger("neuropod.environments")

#: Values of the ``environment`` load option.
MODES = ("auto", "current", "isolated")

_MODE = one_of(MODES)


@dataclass(frozen=True)
class EnvironmentOptions(Options):
    """The load options of version selection (see ``select_environment``).

    Attributes:
        environment: ``"auto"``, ``"isolated"`` or ``"current"``.
        env_cache: the environment cache directory, or ``None`` for the default.
        env_progress: called with each step of preparing an environment, or ``None``.
    """

    environment: str = option("auto", _MODE)
    env_cache: str | os.PathLike[str] | None = option(
        None, Check("None or a directory path", lambda v: v is None or isinstance(v, (str, os.PathLike)))
    )
    env_progress: ProgressCallback | None = option(
        None, Check("None or a function taking a str", lambda v: v is None or callable(v))
    )


@dataclass(frozen=True)
class Needs:
    """What a package needs from its environment, and what the running one lacks.

    Attributes:
        lock: the package's locked requirements, or ``None``.
        problems: why the running environment does not satisfy the package (empty: it does).
    """

    lock: RequirementLock | None
    problems: tuple[str, ...]


def check_package(package: Package) -> Needs:
    """Whether the running environment satisfies ``package``.

    Args:
        package: the opened package.

    Returns:
        Its lock and what the running environment lacks.

    Raises:
        PackageError: the version range or the lock is malformed.
        FrameworkVersionError: the installed framework is outside the range and the lock does
            not name the framework (or pins it outside the range too).
    """
    config = package.config
    try:
        version_range = VersionRange(config.platform_version_semver)
    except VersionRangeError as exc:
        raise VersionRangeError(f"{package.path}: {exc}") from None
    lock = RequirementLock.read(package.root)
    problems = lock.problems_here() if lock is not None else []
    installed = None if version_range.is_any else installed_framework(config.platform)
    if installed is not None and not version_range.contains(installed[1]):
        distribution, version = installed
        problems.insert(0, f"{distribution} {version} is installed, outside '{version_range}'")
        _check_lock_has_framework(package, version_range, distribution, version, lock)
    return Needs(lock, tuple(problems))


def select_environment(
    package: Package,
    *,
    environment: str = "auto",
    env_cache: str | os.PathLike[str] | None = None,
    env_progress: ProgressCallback | None = None,
    offline: bool = False,
) -> Environment | None:
    """The isolated environment ``package`` must run in, or ``None`` to run it in this one.

    Args:
        package: the opened package.
        environment: ``"auto"`` (an environment of its own only when this one does not
            satisfy the package), ``"isolated"`` (always one of its own, even without a lock) or
            ``"current"`` (never: run here, whatever the package asks for).
        env_cache: the environment cache directory (default: ``NEUROPOD_ENV_CACHE``, else
            ``~/.cache/neuropod/envs``).
        env_progress: called with each step of preparing the environment.
        offline: build from uv's cache only, never the network.

    Returns:
        The environment, held until its ``close``; ``None`` to run in this environment.

    Raises:
        OptionError: ``environment`` is not one of ``MODES``.
        PackageError: the version range or the lock is malformed.
        FrameworkVersionError: see ``check_package``.
        EnvironmentBuildError: building the environment failed (the message quotes uv).
    """
    _MODE("environment", environment)
    if environment == "current":
        return None
    needs = check_package(package)
    if environment == "auto" and not needs.problems:
        return None
    if needs.problems:
        logger.info("%s needs an environment of its own: %s", package.path, "; ".join(needs.problems))
    spec = EnvironmentSpec.for_lock(needs.lock)
    return ensure_environment(spec, EnvironmentCache(env_cache), progress=env_progress, offline=offline)


def _check_lock_has_framework(
    package: Package,
    version_range: VersionRange,
    distribution: str,
    version: str,
    lock: RequirementLock | None,
) -> None:
    platform = package.config.platform
    names = lock.names if lock is not None else frozenset()
    locked = [name for name in PLATFORM_DISTRIBUTIONS.get(platform, ()) if name in names]
    needed = f"{distribution} '{version_range}' (platform_version_semver of {package.path})"
    if not locked:
        raise FrameworkVersionError(
            f"Model '{package.config.name}' needs {needed}, but {distribution} {version} is "
            f"installed. Install a version in that range, or lock {distribution} in the package's "
            f"requirements so that it runs in an environment of its own"
        )
    pinned = lock.version_of(locked[0]) if lock is not None else None
    if pinned is not None and not version_range.contains(pinned):
        raise FrameworkVersionError(
            f"Model '{package.config.name}' needs {needed}, but its requirements lock "
            f"{locked[0]}=={pinned}, outside that range; repackage it with a matching version"
        )


def prepare_environment(
    path: str | os.PathLike[str],
    *,
    env_cache: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    offline: bool = False,
) -> Environment | None:
    """Build (or find) ahead of time the environment that loading ``path`` would use.

    Args:
        path: a package directory or zip.
        env_cache: the environment cache directory (see ``select_environment``).
        progress: called with each step.
        force: build an environment even when the running one satisfies the package.
        offline: build from uv's cache only, never the network.

    Returns:
        The environment (already let go: it stays in the cache), or ``None`` when the package
        runs in the running environment.

    Raises:
        PackageError: the package is missing or malformed.
        FrameworkVersionError: see ``check_package``.
        EnvironmentBuildError: building failed (the message quotes uv).
    """
    with Package(path) as package:
        environment = select_environment(
            package,
            environment="isolated" if force else "auto",
            env_cache=env_cache,
            env_progress=progress,
            offline=offline,
        )
    if environment is not None:
        environment.close()
    return environment
