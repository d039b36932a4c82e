"""``load_neuropod``: open a package and put the right backend behind one model interface."""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Sequence
from typing import Any

from neuropod.backends.base import Backend
from neuropod.environments.selection import select_environment
from neuropod.errors import OptionError
from neuropod.model import NeuropodModel
from neuropod.package.package import Package
from neuropod.registry import get_backend
from neuropod.remote import is_remote_url, load_remote

#: Options every model takes, whatever its backend.
MODEL_OPTIONS = ("require_all_inputs",)

#: Options of version selection (``neuropod.environments``) and of starting workers.
ENVIRONMENT_OPTIONS = ("env_cache", "env_progress", "environment", "worker_prefix")


def load_neuropod(
    neuropod_path: str | os.PathLike[str],
    visible_gpu: int | None = None,
    *,
    use_ope: bool = False,
    **options: Any,
) -> NeuropodModel:
    """Load a package (directory or zip), or open a served model, and return a model ready for ``infer``.

    Args:
        neuropod_path: the package, or a served model's URL
            (``http://host:port/v2/models/NAME``, ``grpc://...``; see ``neuropod.remote.load_remote``
            for its options).
        visible_gpu: ``None`` to run on the CPU, else the index of the GPU to run on.
        use_ope: run the model in worker processes of its own (out-of-process execution),
            which then also takes the options ``instances``, ``timeout``, ``max_restarts`` and
            ``memory_limit`` (see ``neuropod.worker.WorkerBackend``); the platform backend's
            options are passed on to the workers, which check them.
        **options: ``require_all_inputs=True`` makes every input of the spec mandatory (the
            original allowed missing inputs, and so does the default); backends add options
            of their own (see the README). Version selection: a package that the running
            environment does not satisfy (its framework outside ``platform_version_semver``,
            or its ``0/requirements.lock`` not installed) runs in workers inside an isolated
            environment built from its lock and cached (see ``neuropod.environments``);
            ``environment="auto"|"isolated"|"current"`` overrides that choice, ``env_cache``
            names the cache directory (default ``$NEUROPOD_ENV_CACHE``, else
            ``~/.cache/neuropod/envs``) and ``env_progress`` is called with each build step.
            ``worker_prefix=["taskset", "-c", "0"]`` wraps the command that starts each worker
            (default: ``$NEUROPOD_WORKER_PREFIX``); it applies to models run in workers.

    Returns:
        A ``NeuropodModel``; close it, or use it as a context manager.

    Raises:
        PackageError: the package is missing, malformed, or fails its manifest.
        OptionError: an option is unknown to the package's backend, or ``visible_gpu`` is invalid.
        BackendUnavailable: the platform has no backend, or its framework is not installed
            (``FrameworkVersionError``: not in the package's version range, and not locked).
        EnvironmentBuildError: the package's environment could not be built (quotes uv).
        WorkerCrashed: with ``use_ope``, a worker died while loading the model.

    >>> with load_neuropod("addition_model.zip") as model:  # doctest: +SKIP
    ...     model.infer({"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    {'out': array([2., 2., 2.], dtype=float32)}
    """
    if visible_gpu is not None and (
        isinstance(visible_gpu, bool) or not isinstance(visible_gpu, int) or visible_gpu < 0
    ):
        raise OptionError(f"visible_gpu must be None (CPU) or a GPU index >= 0, got {visible_gpu!r}")
    if is_remote_url(neuropod_path):
        return load_remote(str(neuropod_path), visible_gpu, use_ope=use_ope, **options)
    package = Package(neuropod_path)
    try:
        model_options = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
        selection = {k: options.pop(k) for k in ENVIRONMENT_OPTIONS if k in options}
        worker_prefix = selection.pop("worker_prefix", None)
        environment = select_environment(package, **selection)
        backend: Backend
        if use_ope or environment is not None:
            # Not the platform backend: the workers import and check it, and importing its
            # framework here would bring into the application what they keep out of it.
            from neuropod.worker import WORKER_OPTIONS, WorkerBackend

            worker_options = {k: options.pop(k) for k in WORKER_OPTIONS if k in options and use_ope}
            try:
                backend = WorkerBackend(
                    package,
                    visible_gpu=visible_gpu,
                    backend_options=options,
                    python=None if environment is None else environment.python,
                    worker_prefix=worker_prefix,
                    **worker_options,
                )
            except BaseException:
                if environment is not None:
                    environment.close()
                raise
            if environment is not None:
                # Holds the environment (so that pruning spares it) as long as its workers may run.
                weakref.finalize(backend, environment.close)
        else:
            backend_cls = get_backend(package.config.platform)
            _check_options(backend_cls, package.config.platform, options)
            backend = backend_cls(package, visible_gpu=visible_gpu, **options)
    except BaseException:
        package.close()
        raise
    return NeuropodModel(package, backend, **model_options)


def backend_options(backend_cls: type[Backend]) -> list[str]:
    """The load options a backend accepts: its ``__init__``'s keyword-only parameters."""
    params = inspect.signature(backend_cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "visible_gpu"]


def _check_options(
    backend_cls: type[Backend], platform: str, options: dict[str, Any], also_accepted: Sequence[str] = ()
) -> None:
    known = backend_options(backend_cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(["visible_gpu", *MODEL_OPTIONS, *also_accepted, *known])
        raise OptionError(
            f"load_neuropod() got unknown option(s) {', '.join(map(repr, unknown))} for platform "
            f"'{platform}'; accepted options: {accepted}"
        )
