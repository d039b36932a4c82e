"""Building (or reusing) an isolated environment: a uv virtual environment with a lock installed.

An environment holds the lock's requirements, plus numpy (the worker's one runtime dependency;
neuropod itself is put on the worker's path, not installed). It is built under a scratch name
in the cache and renamed to its key once complete, while holding the key's exclusive lock, so
two processes never build one environment twice and a killed build is never mistaken for a
finished one. A model that uses it holds the shared lock, so that ``prune`` leaves it alone.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neuropod.environments.cache import METADATA, EnvironmentCache, KeyLock
from neuropod.environments.errors import EnvironmentBuildError
from neuropod.environments.lock import RequirementLock
from neuropod.environments.resolver import UvFailed, run_uv

logger = logging.getLogger("neuropod.environments")

#: Called with each step of preparing an environment, e.g. ``"installing 2 packages ..."``.
ProgressCallback = Callable[[str], None]

#: Bumped when environments are laid out differently, so that old ones are not reused.
FORMAT = 1
_REQUIREMENTS = "neuropod-requirements.txt"


@dataclass(frozen=True)
class EnvironmentSpec:
    """What an environment holds; its ``key`` is the hash of all of it.

    Attributes:
        requirements: the requirements file it is installed from.
        packages: the requirements, one per item, for listings.
        python: the interpreter it is made from (implementation, version, ABI, location).
        platform: the machine's platform tag.
    """

    requirements: str
    packages: tuple[str, ...]
    python: str
    platform: str

    @classmethod
    def for_lock(cls, lock: RequirementLock | None) -> EnvironmentSpec:
        """The environment that runs a package with ``lock`` (``None``: no requirements).

        numpy is added at the running version when the lock does not pin it.
        """
        lock = lock or RequirementLock(())
        extra = [] if "numpy" in lock.names else [f"numpy=={importlib.metadata.version('numpy')}"]
        packages = tuple(req.text for req in lock.requirements) + tuple(extra)
        return cls(
            requirements=lock.render(extra),
            packages=packages,
            python=python_identity(),
            platform=sysconfig.get_platform(),
        )

    @property
    def key(self) -> str:
        """The environment's name in the cache: a hash of everything it holds."""
        content = json.dumps(
            {
                "format": FORMAT,
                "requirements": self.requirements,
                "python": self.python,
                "platform": self.platform,
            },
            sort_keys=True,
        )
        return hashlib.sha256(content.encode()).hexdigest()[:16]


class Environment:
    """A finished environment, held (shared lock) until ``close``, so that it is not pruned meanwhile.

    Args:
        key: its hash.
        path: its directory.
        lease: its lock, held shared.
    """

    def __init__(self, key: str, path: Path, lease: KeyLock | None = None):
        self.key = key
        self.path = path
        self._lease = lease

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / "bin" / "python"

    def close(self) -> None:
        """Let the environment go (it stays in the cache). Idempotent."""
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.close()

    def __repr__(self) -> str:
        return f"Environment({self.key!r}, path={str(self.path)!r})"


def python_identity() -> str:
    """The running interpreter, as environments made from it are told apart."""
    soabi = sysconfig.get_config_var("SOABI") or sys.implementation.name
    return f"{sys.implementation.name}-{platform.python_version()} ({soabi}) at {sys.base_prefix}"


def ensure_environment(
    spec: EnvironmentSpec,
    cache: EnvironmentCache,
    *,
    progress: ProgressCallback | None = None,
    offline: bool = False,
) -> Environment:
    """The environment of ``spec``: from the cache, built first if it is not there.

    A cached environment is used without running uv (so with no network). Otherwise it is built
    with ``uv venv`` and ``uv pip install``; a process that finds another building the same
    environment waits for it and uses its result.

    Args:
        spec: what the environment holds.
        cache: where environments live.
        progress: called with each step (they are logged at INFO level too).
        offline: build from uv's cache only, never the network.

    Returns:
        The environment, held until its ``close``.

    Raises:
        EnvironmentBuildError: uv failed (the message quotes it), or the cache is not writable.
        BackendUnavailable: uv is not installed (and the environment is not cached).
    """
    key = spec.key

    def report(step: str) -> None:
        logger.info("environment %s: %s", key, step)
        if progress is not None:
            progress(f"environment {key}: {step}")

    try:
        lock = cache.lock(key)
    except OSError as exc:
        if cache.is_complete(key):  # a read-only cache, prepared ahead: nothing to build or lock
            report(f"using cached environment at {cache.path(key)} (read-only cache)")
            return Environment(key, cache.path(key))
        raise EnvironmentBuildError(f"The environment cache {cache.root} cannot be used: {exc}") from exc
    built = False
    try:
        while True:
            if not lock.acquire(shared=True, blocking=False):
                report("waiting for another process to finish building it")
                lock.acquire(shared=True)
            if cache.is_complete(key):
                cache.touch(key)
                if not built:
                    report(f"using cached environment at {cache.path(key)}")
                return Environment(key, cache.path(key), lock)
            lock.acquire(shared=False)  # converted from shared: others may build in between
            if not cache.is_complete(key):
                _build(spec, cache, lock, report, offline)
                built = True
            # Back to shared, then checked again: it may have been pruned in between.
    except BaseException:
        lock.close()
        raise


def _build(
    spec: EnvironmentSpec, cache: EnvironmentCache, lock: KeyLock, report: ProgressCallback, offline: bool
) -> None:
    key = spec.key
    started = time.perf_counter()
    cache.remove_scratch(key)  # what killed builds left: nobody else builds while we hold the lock
    scratch = cache.scratch(key)
    # uv gets the lock's descriptor: should this process be killed, the lock stays taken until
    # uv has exited too, so that the next build does not clear a directory uv still writes to.
    fds = (lock.fd,) if lock.fd is not None else ()
    try:
        report(
            f"creating a virtual environment ({platform.python_implementation()} {platform.python_version()})"
        )
        run_uv(
            ["venv", "--quiet", "--relocatable", "--no-project", "--python", sys.executable, str(scratch)],
            pass_fds=fds,
        )
        requirements = scratch / _REQUIREMENTS
        requirements.write_text(spec.requirements, encoding="utf-8")
        report(f"installing {len(spec.packages)} packages: {', '.join(spec.packages)}")
        run_uv(
            [
                "pip",
                "install",
                "--quiet",
                "--python",
                str(scratch / "bin" / "python"),
                "-r",
                str(requirements),
            ],
            pass_fds=fds,
            offline=offline,
        )
        metadata = {
            "key": key,
            "packages": list(spec.packages),
            "python": spec.python,
            "platform": spec.platform,
            "created": time.time(),
            "format": FORMAT,
        }
        (scratch / METADATA).write_text(json.dumps(metadata, indent=4, sort_keys=True), encoding="utf-8")
        os.rename(scratch, cache.path(key))
    except UvFailed as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise EnvironmentBuildError(
            f"Building environment {key} ({', '.join(spec.packages)}) failed; uv says:\n{exc.reason}"
        ) from None
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise EnvironmentBuildError(f"Building environment {key} in {cache.root} failed: {exc}") from exc
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    report(f"built in {time.perf_counter() - started:.1f} s at {cache.path(key)}")
