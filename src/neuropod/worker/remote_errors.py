"""Exceptions across the process boundary: the same type, message and traceback text.

The worker sends an exception as its class's module and name, its ``args`` (when they are
plain values) and its formatted traceback; it never pickles the exception, which may hold
anything. The application raises the same class when it is already imported there, else an
error of neuropod's own with the same text, and chains the worker's traceback as the
``__cause__`` so that it prints with the error.
"""

from __future__ import annotations

import marshal
import sys
import traceback
from typing import Any

from neuropod.errors import InferenceError, PackageError
from neuropod.errors import RemoteTraceback as RemoteTraceback  # re-exported: its old home

CODE_PREFIX = "_neuropod_code_"  # see neuropod.backends.code_namespace

#: Tracebacks longer than this keep their end, where the error is.
MAX_TRACEBACK = 16 * 1024

ErrorDescription = tuple[str, str, Any, str, str]


def describe(exc: BaseException) -> ErrorDescription:
    """``(module, qualname, args or None, str(exc), traceback text)`` of an exception."""
    cls = type(exc)
    args: Any = exc.args
    try:
        marshal.dumps(args)
    except ValueError:
        args = None
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_TRACEBACK:
        text = "...\n" + text[-MAX_TRACEBACK:]
    return cls.__module__, cls.__qualname__, args, _text(exc), text


def rebuild(description: ErrorDescription, *, model: str, platform: str, loading: bool) -> BaseException:
    """The exception to raise in the application for a worker's ``describe``.

    Args:
        description: what ``describe`` returned in the worker.
        model: the model's name, for the stand-in error's message.
        platform: the model's platform, likewise.
        loading: whether the error happened while loading (the stand-in is then a
            ``PackageError``, else an ``InferenceError``).
    """
    module, qualname, args, message, text = description
    exc = _same_class(module, qualname, args, message)
    if exc is None:
        name = qualname.rpartition(".")[2]
        if loading:
            exc = PackageError(f"Loading model '{model}' ({platform}) failed: {name}: {message}")
        else:
            # The text NeuropodModel gives an exception it translates in process.
            exc = InferenceError(f"Model '{model}' ({platform}) failed: {name}: {message}")
    exc.__cause__ = RemoteTraceback(text)
    return exc


def _same_class(module: str, qualname: str, args: Any, message: str) -> BaseException | None:
    # Only classes already imported here: importing a framework to rebuild its error would
    # bring into the application what the worker exists to keep out of it. A package's own
    # code is imported under a per-process prefix, so the same name here is another model's.
    if module.startswith(CODE_PREFIX):
        return None
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if not (isinstance(target, type) and issubclass(target, Exception)):
        return None
    for candidate in (args if isinstance(args, tuple) else None, (message,)):
        if candidate is None:
            continue
        try:
            exc = target(*candidate)
        except Exception:
            continue
        if _text(exc) == message:
            return exc
    return None


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"
