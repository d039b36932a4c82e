"""Version selection: each model runs with the framework and library versions it was packaged for.

::

    load_neuropod(path)
    └── selection.py   does the running environment satisfy the package?
        ├── versions.py   platform_version_semver (npm ranges) vs the installed framework
        ├── lock.py       0/requirements.lock (made with uv at packaging) vs what is installed
        └── build.py      if not: an environment of its own, from the lock (uv venv + uv pip install)
            └── cache.py  environments by hash, file locks, list and prune
    resolver.py  finding and running uv; errors.py  what goes wrong

An environment runs the model in a worker (``neuropod.worker``) whose interpreter is the
environment's python. ``neuropod env prepare|list|prune`` manages the cache from the shell.
"""

from neuropod.environments.build import Environment, EnvironmentSpec, ProgressCallback, ensure_environment
from neuropod.environments.cache import CACHE_ENV_VAR, EnvironmentCache, EnvironmentInfo, default_cache_dir
from neuropod.environments.errors import EnvironmentBuildError, FrameworkVersionError, RequirementsError
from neuropod.environments.lock import LockedRequirement, RequirementLock, lock_requirements
from neuropod.environments.resolver import find_uv
from neuropod.environments.selection import (
    MODES,
    Needs,
    check_package,
    prepare_environment,
    select_environment,
)
from neuropod.environments.versions import PLATFORM_DISTRIBUTIONS, VersionRange, installed_framework

__all__ = [
    "CACHE_ENV_VAR",
    "Environment",
    "EnvironmentBuildError",
    "EnvironmentCache",
    "EnvironmentInfo",
    "EnvironmentSpec",
    "FrameworkVersionError",
    "LockedRequirement",
    "MODES",
    "Needs",
    "PLATFORM_DISTRIBUTIONS",
    "ProgressCallback",
    "RequirementLock",
    "RequirementsError",
    "VersionRange",
    "check_package",
    "default_cache_dir",
    "ensure_environment",
    "find_uv",
    "installed_framework",
    "lock_requirements",
    "prepare_environment",
    "select_environment",
]
