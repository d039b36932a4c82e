"""``load_neuropod``: open a package or a served model and put a backend behind one model interface.

Every option is routed by its declaration (see ``neuropod.options``) and checked, name and
value, before anything is loaded or started, whichever way the model runs:

- ``ModelOptions`` (``require_all_inputs``): every model;
- ``WorkerOptions`` (``instances``, ``timeout``...): with ``use_ope=True``;
- the platform backend's ``load_options`` (e.g. ``intra_op_threads``): in process or in workers;
- ``EnvironmentOptions`` and ``LaunchOptions`` (``environment``, ``worker_prefix``...): packages;
- the remote backend's options (``timeout``, ``headers``...): served models (URLs).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from neuropod.backends.base import Backend
from neuropod.environments.selection import EnvironmentOptions, select_environment
from neuropod.errors import BackendUnavailable
from neuropod.model import ModelOptions, NeuropodModel
from neuropod.options import VISIBLE_GPU, Options, declare, split_options
from neuropod.package.package import Package
from neuropod.registry import declared_options, get_backend
from neuropod.remote import is_remote_url

# Named in messages about unknown options, though they are parameters of load_neuropod.
_PARAMETERS = ("visible_gpu", "use_ope")


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
            which then also takes the options ``instances``, ``timeout``, ``max_restarts``,
            ``memory_limit`` and ``sandbox`` (see ``neuropod.worker.WorkerBackend``); the
            platform backend's options are checked here and passed on to the workers.
        **options: ``require_all_inputs=True`` makes every input of the spec mandatory (the
            original allowed missing inputs, and so does the default); backends add options
            of their own (see docs/loading.md). Version selection: a package that the running
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

    >>> with load_neuropod("addition_model.zip") as model:
    ...     model.infer({"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    {'out': array([2., 2., 2.], dtype=float32)}
    """
    VISIBLE_GPU("visible_gpu", visible_gpu)
    if is_remote_url(neuropod_path):
        return _load_remote(str(neuropod_path), visible_gpu, use_ope, options)
    # Imported here: the worker package is not needed by `import neuropod`.
    from neuropod.worker.options import LaunchOptions, WorkerOptions

    package = Package(neuropod_path)
    try:
        platform = package.config.platform
        declarations = [
            ModelOptions,
            *([WorkerOptions] if use_ope else []),
            _backend_options(platform, options),
            EnvironmentOptions,
            LaunchOptions,
        ]
        routed = dict(
            zip(
                declarations,
                split_options(
                    options,
                    declarations,
                    f"platform '{platform}'",
                    also_accepted=_PARAMETERS,
                    hints=None if use_ope else _needs_ope(WorkerOptions),
                ),
                strict=True,
            )
        )
        backend_options = routed[declarations[-3]]
        environment = select_environment(package, **routed[EnvironmentOptions])
        backend: Backend
        if use_ope or environment is not None:
            # Not the platform backend: the workers import it, and importing its framework
            # here would bring into the application what they keep out of it.
            from neuropod.worker import WorkerBackend

            try:
                backend = WorkerBackend(
                    package,
                    visible_gpu=visible_gpu,
                    backend_options=backend_options,
                    python=None if environment is None else environment.python,
                    **routed[LaunchOptions],
                    **routed.get(WorkerOptions, {}),
                )
            except BaseException:
                if environment is not None:
                    environment.close()
                raise
            if environment is not None:
                # Holds the environment (so that pruning spares it) as long as its workers may run.
                weakref.finalize(backend, environment.close)
        else:
            backend = get_backend(platform)(package, visible_gpu=visible_gpu, **backend_options)
    except BaseException:
        package.close()
        raise
    return NeuropodModel(backend, package=package, **routed[ModelOptions])


def _needs_ope(worker_options: type[Options]) -> dict[str, str]:
    return {name: f"{name} applies with use_ope=True" for name in worker_options.names()}


def _backend_options(platform: str, options: dict[str, Any]) -> type[Options]:
    from neuropod.worker.options import LaunchOptions, WorkerOptions

    try:
        return declared_options(platform)
    except BackendUnavailable:
        # A backend this environment cannot import may still run in an isolated one; what
        # no other declaration takes is left to its worker to check, by the same rules.
        others = (ModelOptions, WorkerOptions, EnvironmentOptions, LaunchOptions)
        known = {name for declaration in others for name in declaration.names()}
        return declare("UncheckedOptions", [name for name in options if name not in known], platform)


def _load_remote(url: str, visible_gpu: int | None, use_ope: bool, options: dict[str, Any]) -> NeuropodModel:
    from neuropod.remote.backend import open_remote, remote_options

    target, declaration = remote_options(url, visible_gpu, use_ope)
    model_options, remote = split_options(
        options, [ModelOptions, declaration], f"a remote {target.protocol} model"
    )
    backend = open_remote(target, remote)
    try:
        return NeuropodModel(backend, **model_options)
    except BaseException:
        backend.close()
        raise
