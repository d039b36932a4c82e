"""Which backend runs which platform: one table, imported lazily.

Built-in platforms are listed in ``BUILTIN_BACKENDS`` as ``"module:Class"`` strings, so that no
framework is imported before a model of that platform is loaded. Third parties add platforms
through the ``neuropod.backends`` entry point group (an entry point named after the platform,
pointing at a ``Backend`` subclass), or at run time with ``register_backend``.
``declared_options`` gives a platform's load option declaration, for built-in platforms without
importing their backend (the declaration named in ``neuropod.platforms``).
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

from neuropod.backends.base import Backend
from neuropod.errors import BackendUnavailable
from neuropod.options import Options
from neuropod.platforms import BUILTIN_PLATFORMS

ENTRY_POINT_GROUP = "neuropod.backends"

#: The backend of each built-in platform (from ``neuropod.platforms``, the one table).
BUILTIN_BACKENDS: dict[str, str] = {name: p.backend for name, p in BUILTIN_PLATFORMS.items()}

#: The optional extra that installs each platform's framework.
EXTRAS: dict[str, str] = {name: p.extra for name, p in BUILTIN_PLATFORMS.items() if p.extra}

#: The module each built-in platform's framework is imported as (``None``: numpy alone).
FRAMEWORK_MODULES: dict[str, str | None] = {name: p.framework for name, p in BUILTIN_PLATFORMS.items()}

BackendRef = str | type[Backend]

_registered: dict[str, BackendRef] = {}
_resolved: dict[str, type[Backend]] = {}
# Built-in declarations found without importing the backend; an entry point scan costs ms.
_declared: dict[str, type[Options]] = {}
_lock = threading.Lock()


def register_backend(platform: str, backend: BackendRef) -> None:
    """Run packages of ``platform`` with ``backend`` (a ``Backend`` subclass or ``"module:Class"``).

    Replaces any backend registered for the platform before, built-in ones included.
    """
    if not isinstance(platform, str) or not platform:
        raise ValueError(f"platform must be a non-empty string, got {platform!r}")
    with _lock:
        _registered[platform] = backend
        _resolved.pop(platform, None)
        _declared.pop(platform, None)


def platforms() -> list[str]:
    """Every platform with a backend: built in, registered, or from an entry point."""
    names = set(BUILTIN_BACKENDS) | set(_registered)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_backend(platform: str) -> type[Backend]:
    """The backend class of ``platform``, importing it on first use.

    Raises:
        BackendUnavailable: no backend is known for the platform, or its framework is missing.
    """
    backend = _resolved.get(platform)
    if backend is not None:
        return backend
    with _lock:
        ref: BackendRef | None = _registered.get(platform)
        if ref is None:
            found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == platform]
            ref = found[0].value if found else BUILTIN_BACKENDS.get(platform)
        if ref is None:
            raise BackendUnavailable(
                f"No backend for platform '{platform}'; known platforms: {', '.join(platforms())}. "
                f"Register one with neuropod.registry.register_backend or the "
                f"'{ENTRY_POINT_GROUP}' entry point group"
            )
        backend = _import(platform, ref) if isinstance(ref, str) else ref
        if not (isinstance(backend, type) and issubclass(backend, Backend)):
            raise BackendUnavailable(
                f"The backend for platform '{platform}' ({ref!r}) is not a neuropod Backend subclass"
            )
        _resolved[platform] = backend
        return backend


def declared_options(platform: str) -> type[Options]:
    """The declaration of the load options of ``platform``'s backend.

    A built-in backend's declaration is read without importing the backend (nor its framework),
    so that an application whose model runs in workers can check the options first. Other
    backends are imported (see ``get_backend``).

    Raises:
        BackendUnavailable: no backend is known for the platform, or it cannot be imported.
    """
    backend = _resolved.get(platform)
    declared = _declared.get(platform)
    if backend is None and declared is not None:
        return declared
    if (
        backend is None
        and platform not in _registered
        and platform in BUILTIN_PLATFORMS
        and not any(ep.name == platform for ep in entry_points(group=ENTRY_POINT_GROUP))
    ):
        declared = _declared[platform] = BUILTIN_PLATFORMS[platform].declared_options()
        return declared
    return (backend or get_backend(platform)).declared_options()


def _import(platform: str, ref: str) -> type[Backend]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(platform)
        hint = f"; install it with: pip install 'neuropod[{extra}]'" if extra else ""
        raise BackendUnavailable(
            f"The backend for platform '{platform}' cannot be imported ({exc}){hint}"
        ) from exc
    try:
        backend: type[Backend] = getattr(module, attr)
        return backend
    except AttributeError:
        raise BackendUnavailable(f"Module {module_name} has no backend class {attr!r}") from None
