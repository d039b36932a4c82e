"""Which engine a name means: one table, imported lazily, open to plug-ins.

``run(..., engine="ray")`` looks the name up here. Built-in engines are listed in
``BUILTIN_ENGINES`` as ``"module:Class"`` strings, so that naming one imports nothing until it
is used (Ray takes seconds to import, and may not be installed). Other packages add engines
through the ``neuropod.engines`` entry point group: an entry point named after the engine,
pointing at an ``Engine`` subclass whose constructor needs no arguments (the built-in names
cannot be taken over).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from neuropod.batch.engine import Engine
from neuropod.errors import BackendUnavailable, OptionError

ENTRY_POINT_GROUP = "neuropod.engines"

BUILTIN_ENGINES: dict[str, str] = {
    "local": "neuropod.batch.engine:LocalEngine",
    "ray": "neuropod.integrations.ray.engine:RayEngine",
}


def engine_names() -> list[str]:
    """Every engine name: the built-in ones, then those of entry points."""
    names = list(BUILTIN_ENGINES)
    names += sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(names))
    return names


def resolve_engine(engine: str | Engine) -> Engine:
    """The engine of that name with its default options, or ``engine`` itself.

    Args:
        engine: an ``Engine``, or a name of ``engine_names()``.

    Returns:
        The engine.

    Raises:
        OptionError: an unknown name, or neither a name nor an ``Engine``.
        BackendUnavailable: the engine cannot be imported (``"ray"`` without Ray installed),
            or its entry point is not an ``Engine`` subclass.

    >>> resolve_engine("local")
    LocalEngine()
    """
    if isinstance(engine, Engine):
        return engine
    ref = BUILTIN_ENGINES.get(engine) if isinstance(engine, str) else None
    if ref is None and isinstance(engine, str):
        # Only for other names: reading every installed package's entry points takes milliseconds.
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == engine]
        ref = found[0].value if found else None
    if ref is None:
        names = [repr(name) for name in engine_names()]
        raise OptionError(f"engine must be {', '.join(names)} or an Engine, got {engine!r}")
    module_name, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except BackendUnavailable:
        raise  # says already what is missing and how to install it
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"The engine '{engine}' ({ref}) cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise BackendUnavailable(f"The engine '{engine}' ({ref}) is not a neuropod.batch.Engine subclass")
    return cls()
