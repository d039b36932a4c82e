"""``load_neuropod``: open a package and put the right backend behind one model interface."""

from __future__ import annotations

import inspect
import os
from typing import Any

from neuropod.backends.base import Backend
from neuropod.errors import OptionError
from neuropod.model import NeuropodModel
from neuropod.package.package import Package
from neuropod.registry import get_backend

#: Options every model takes, whatever its backend.
MODEL_OPTIONS = ("require_all_inputs",)


def load_neuropod(
    neuropod_path: str | os.PathLike[str], visible_gpu: int | None = None, **options: Any
) -> NeuropodModel:
    """Load a package (directory or zip) and return a model ready for ``infer``.

    Args:
        neuropod_path: the package.
        visible_gpu: ``None`` to run on the CPU, else the index of the GPU to run on.
        **options: ``require_all_inputs=True`` makes every input of the spec mandatory (the
            original allowed missing inputs, and so does the default); backends add options
            of their own (see the README).

    Returns:
        A ``NeuropodModel``; close it, or use it as a context manager.

    Raises:
        PackageError: the package is missing, malformed, or fails its manifest.
        OptionError: an option is unknown to the package's backend, or ``visible_gpu`` is invalid.
        BackendUnavailable: the platform has no backend, or its framework is not installed.

    >>> with load_neuropod("addition_model.zip") as model:  # doctest: +SKIP
    ...     model.infer({"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    {'out': array([2., 2., 2.], dtype=float32)}
    """
    if visible_gpu is not None and (
        isinstance(visible_gpu, bool) or not isinstance(visible_gpu, int) or visible_gpu < 0
    ):
        raise OptionError(f"visible_gpu must be None (CPU) or a GPU index >= 0, got {visible_gpu!r}")
    package = Package(neuropod_path)
    try:
        backend_cls = get_backend(package.config.platform)
        model_options = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
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


def _check_options(backend_cls: type[Backend], platform: str, options: dict[str, Any]) -> None:
    known = backend_options(backend_cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(["visible_gpu", *MODEL_OPTIONS, *known])
        raise OptionError(
            f"load_neuropod() got unknown option(s) {', '.join(map(repr, unknown))} for platform "
            f"'{platform}'; accepted options: {accepted}"
        )
