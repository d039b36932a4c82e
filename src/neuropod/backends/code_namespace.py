"""Importing a python package's code in a namespace of its own.

Two models may both ship a package called ``model``. Each package's code is imported under a
private prefix (``_neuropod_code_3.model``), and its modules get an ``__import__`` of their own
that sends absolute imports of the package's top-level names to that prefix, so ``import model``
inside the code finds its own ``model`` at load time and at call time alike.

Code that imports by name from outside the package's modules (``pickle`` and ``torch.load``
finding a class by its module name, ``importlib.import_module``) is served too while the
entrypoint runs: for that moment the top-level names are aliased in ``sys.modules``.

``import_code_module`` imports a module of the code and turns its failures into neuropod's
errors, for every backend that runs packaged code (python entrypoints, Keras custom objects).
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neuropod.errors import BackendUnavailable, PackageError

_counter = itertools.count()
_real_import = builtins.__import__
_alias_lock = threading.RLock()


def top_level_names(directories: Sequence[Path]) -> frozenset[str]:
    """The importable names at the top of ``directories`` (packages, modules, extensions)."""
    names = set()
    suffixes = tuple(importlib.machinery.all_suffixes())
    for directory in directories:
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.is_dir() and entry.name.isidentifier():
                names.add(entry.name)
            elif entry.is_file() and entry.name.endswith(suffixes):
                stem = entry.name.split(".", 1)[0]
                if stem.isidentifier() and stem != "__init__":
                    names.add(stem)
    return frozenset(names)


class CodeNamespace:
    """The private import namespace of one package's code.

    Args:
        directories: the directories whose contents become importable (code, then custom ops).
    """

    def __init__(self, directories: Sequence[Path]):
        self.prefix = f"_neuropod_code_{next(_counter)}"
        self.names = top_level_names(directories)
        root = types.ModuleType(self.prefix, "Private namespace of a neuropod's code")
        self.directories = [str(d) for d in directories]
        root.__path__ = list(self.directories)
        root.__package__ = self.prefix
        root.__spec__ = importlib.machinery.ModuleSpec(self.prefix, None, is_package=True)
        root.__spec__.submodule_search_locations = root.__path__
        sys.modules[self.prefix] = root
        self.builtins = dict(vars(builtins))
        self.builtins["__import__"] = self._import
        self._aliasing = False
        self._finder = _NamespaceFinder(self)
        sys.meta_path.insert(0, self._finder)

    def qualify(self, name: str) -> str:
        """The private module name of ``name`` if it belongs to the code, else ``name``."""
        return f"{self.prefix}.{name}" if name.partition(".")[0] in self.names else name

    def import_module(self, name: str) -> types.ModuleType:
        """Import ``name`` (e.g. the entrypoint package) from the code."""
        return importlib.import_module(self.qualify(name))

    def defines(self, obj: object) -> bool:
        """Whether ``obj`` (a class or function) was defined by the code's modules."""
        return str(getattr(obj, "__module__", None) or "").startswith(self.prefix + ".")

    def own_names(self, dotted: str) -> set[str]:
        """The module names that importing ``dotted`` looks up (``a``, ``a.b``), qualified."""
        parts = dotted.split(".")
        return {self.qualify(".".join(parts[: i + 1])) for i in range(len(parts))}

    @contextmanager
    def aliased(self) -> Iterator[None]:
        """Make the code's top-level names importable under their own names, for a moment."""
        with _alias_lock:
            saved = {k: v for k, v in sys.modules.items() if k.partition(".")[0] in self.names}
            for key in saved:
                del sys.modules[key]
            alias = _AliasFinder(self)
            sys.meta_path.insert(0, alias)
            self._aliasing = True
            try:
                yield
            finally:
                self._aliasing = False
                sys.meta_path.remove(alias)
                for key in [k for k in sys.modules if k.partition(".")[0] in self.names]:
                    del sys.modules[key]
                sys.modules.update(saved)

    def close(self) -> None:
        """Forget the code's modules. Idempotent."""
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        for key in [k for k in sys.modules if k == self.prefix or k.startswith(self.prefix + ".")]:
            del sys.modules[key]
        # The import system caches a finder per directory searched; the directories may be
        # about to disappear (an extracted zip), so their finders go too.
        roots = tuple(self.directories)
        inside = tuple(os.path.join(d, "") for d in roots)
        for key in [k for k in list(sys.path_importer_cache) if k in roots or k.startswith(inside)]:
            sys.path_importer_cache.pop(key, None)

    def _import(
        self,
        name: str,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level == 0 and name.partition(".")[0] in self.names:
            if self._aliasing:
                # Served by the alias finder under the plain name: the C unpickler looks the
                # module up in sys.modules by the name it imported.
                return _real_import(name, globals, locals, fromlist, 0)
            module = _real_import(f"{self.prefix}.{name}", globals, locals, fromlist, 0)
            if fromlist:
                return module
            # `import pkg.sub` binds `pkg`, not the namespace root.
            return sys.modules[f"{self.prefix}.{name.partition('.')[0]}"]
        return _real_import(name, globals, locals, fromlist, level)


def import_code_module(namespace: CodeNamespace, name: str, where: str, hint: str = "") -> types.ModuleType:
    """Import ``name`` from a package's code (or, outside it, from the environment).

    Args:
        namespace: the package's code namespace.
        name: the dotted module name.
        where: the package and what imports the module, to begin messages with.
        hint: added to the message of a missing dependency (where the requirements are listed).

    Raises:
        PackageError: ``name`` is neither in the code nor installed, or importing it raised (the
            code's exception is the ``__cause__``).
        BackendUnavailable: the code imports a module that is not installed.
    """
    try:
        return namespace.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in namespace.own_names(name):
            raise PackageError(
                f"{where}: module {name!r} is not in the package's code "
                f"(0/code holds: {', '.join(sorted(namespace.names)) or 'nothing'})"
            ) from exc
        raise missing_dependency(where, exc, hint) from exc
    except ImportError as exc:
        raise missing_dependency(where, exc, hint) from exc
    except Exception as exc:
        raise PackageError(f"{where}: importing {name} failed: {type(exc).__name__}: {exc}") from exc


def missing_dependency(where: str, exc: ImportError, hint: str = "") -> BackendUnavailable:
    """The error for packaged code that imports something not installed."""
    return BackendUnavailable(f"{where}: the model's code cannot import what it needs ({exc}){hint}")


class _NamespaceFinder(importlib.abc.MetaPathFinder):
    """Finds the code's modules under the prefix and gives them the namespace's builtins."""

    def __init__(self, namespace: CodeNamespace):
        self.namespace = namespace

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self.namespace.prefix + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _IsolatedSourceLoader(fullname, spec.loader.path, self.namespace.builtins)
        return spec


class _IsolatedSourceLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, namespace_builtins: dict[str, Any]):
        super().__init__(fullname, path)
        self.namespace_builtins = namespace_builtins

    def exec_module(self, module: types.ModuleType) -> None:
        # Functions capture their module's __builtins__, so this routes every import
        # statement in the module, now or at call time, through the namespace.
        module.__dict__["__builtins__"] = self.namespace_builtins
        super().exec_module(module)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``pkg.mod`` as the very module object ``<prefix>.pkg.mod``."""

    def __init__(self, namespace: CodeNamespace):
        self.namespace = namespace

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.namespace.names:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(self.namespace.qualify(spec.name))

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # already executed under its private name
