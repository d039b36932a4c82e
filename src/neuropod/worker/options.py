"""The load options of models run by worker processes, checked before any worker starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from neuropod.options import BOOLEAN, Check, Options, int_at_least, number_above, option, optional


def _is_command(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and all(isinstance(item, str) and item for item in value)
    )


@dataclass(frozen=True)
class WorkerOptions(Options):
    """What ``use_ope=True`` adds (see ``WorkerBackend``).

    Attributes:
        instances: how many worker processes run the model.
        max_restarts: how many times each instance replaces a dead worker (``None``: always).
        memory_limit: each worker's address-space limit in bytes, or ``None``.
        timeout: seconds a call may take before its worker is killed, or ``None``.
        sandbox: run each worker in namespaces of its own: no network, a read-only file
            system without the caller's home, its own processes (see ``neuropod.worker.sandbox``).
    """

    where = "a model run out of process (use_ope=True)"

    instances: int = option(1, int_at_least(1))
    max_restarts: int | None = option(None, optional(int_at_least(0)))
    memory_limit: int | None = option(None, optional(int_at_least(1)))
    timeout: float | None = option(None, optional(number_above(0, "seconds")))
    sandbox: bool = option(False, BOOLEAN)


#: The check of ``worker_prefix`` (``None``: the default), shared with ``WorkerBackend``.
COMMAND = Check("a list of strings such as ['taskset', '-c', '0']", lambda v: v is None or _is_command(v))
#: The check of ``worker_socket``.
FOLDER = Check(
    "None or an absolute folder path (str)",
    lambda v: v is None or (isinstance(v, str) and v.startswith("/") and "\0" not in v),
)
#: The check of ``worker_python``.
PROGRAM = Check(
    "None or a program name or path (str)", lambda v: v is None or (isinstance(v, str) and v.strip() != "")
)


@dataclass(frozen=True)
class LaunchOptions(Options):
    """How workers are started, whenever a model runs in workers (``use_ope``, an isolated environment).

    Attributes:
        worker_prefix: a command that starts each worker, e.g. ``["taskset", "-c", "0"]``
            (default: ``$NEUROPOD_WORKER_PREFIX``).
        worker_socket: a folder where each worker connects to a Unix socket of the application
            instead of inheriting its channel (``python -m neuropod.worker --connect``), so that
            ``worker_prefix`` may start it in a container that mounts the folder at the same path
            (see ``neuropod.worker.connection``).
        worker_python: the worker's interpreter as ``worker_prefix``'s command finds it, e.g.
            ``"python3"`` in a container (default: the application's, or its isolated
            environment's).
    """

    worker_prefix: Sequence[str] | None = option(None, COMMAND)
    worker_socket: str | None = option(None, FOLDER)
    worker_python: str | None = option(None, PROGRAM)
