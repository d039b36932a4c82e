"""Worker processes: a fresh interpreter each, started from one thread, always reaped.

Workers never fork from the application (a forked copy would inherit its threads' locks and
its frameworks' state); each is a new ``sys.executable``. They are all started from one
long-lived thread because Linux delivers the parent-death signal a worker asks for
(``PR_SET_PDEATHSIG``) when the *thread* that started it ends, not the process: a worker
started from a short-lived thread would be killed with it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import neuropod

#: How long a closed worker may take to exit before it is killed.
EXIT_GRACE_S = 5.0

#: The directory neuropod is imported from, appended (never prepended) to the worker's path
#: so that a worker finds neuropod even when the application put it on sys.path itself.
IMPORT_ROOT = str(Path(neuropod.__file__).resolve().parent.parent)
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from neuropod.worker.main import main; main(sys.argv[1:])"
)
# A sandboxed worker enters its namespaces before it imports neuropod (whose numpy starts
# threads): the sandbox's file is loaded by path, on its own (see ``sandbox``).
_SANDBOXED_BOOTSTRAP = (
    "import sys, importlib.util as u; sys.path.append(sys.argv.pop(1)); "
    "s = u.spec_from_file_location('neuropod_worker_sandbox', sys.argv.pop(1)); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); e = m.enter(sys.argv.pop(1)); "
    "from neuropod.worker.main import main; main(sys.argv[1:], sandboxed=True, sandbox_error=e)"
)
_SANDBOX_FILE = str(Path(__file__).resolve().with_name("sandbox.py"))


class WorkerProcess:
    """A running worker interpreter and what it takes to wait for it and clean it up.

    Args:
        args: the worker's arguments (see ``main``): its end of the channel and this process's
            id, or ``--connect`` and the socket it connects to.
        env: variables to set in the worker's environment.
        python: the worker's interpreter (default: the application's, ``sys.executable``).
        prefix: a command the worker's command line is appended to, e.g. ``["taskset", "-c", "0"]``.
        pass_fds: descriptors the worker inherits (its end of the channel).
        sandbox: the worker's sandbox (``sandbox.sandbox_spec``), or ``None`` to run it unconfined.
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        python: str | None = None,
        prefix: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
        sandbox: str | None = None,
    ):
        interpreter = python or sys.executable
        if sandbox is None:
            command = [*prefix, interpreter, "-c", _BOOTSTRAP, IMPORT_ROOT, *args]
        else:
            bootstrap = [_SANDBOXED_BOOTSTRAP, IMPORT_ROOT, _SANDBOX_FILE, sandbox]
            command = [*prefix, interpreter, "-c", *bootstrap, *args]
        environment = {**os.environ, **env}
        self._popen: subprocess.Popen[bytes] = _spawner.run(
            lambda: subprocess.Popen(
                command, pass_fds=tuple(pass_fds), env=environment, stdin=subprocess.DEVNULL
            )
        )
        self.pid = self._popen.pid
        try:
            # Readable once the process has exited: lets a waiting call notice a death even
            # when something else (a process the model forked) still holds the channel open.
            self.sentinel: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.sentinel = None

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (negative: killed by that signal), else ``None``."""
        return self._popen.returncode

    def poll(self) -> int | None:
        """Reap the worker if it has exited; its ``returncode``."""
        return self._popen.poll()

    def kill(self) -> None:
        """Kill the worker at once and reap it."""
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.kill()
        self._popen.wait()
        self._close_sentinel()

    def reap(self, timeout: float = EXIT_GRACE_S) -> None:
        """Wait for a worker that is exiting, killing it if it takes longer than ``timeout``."""
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
        self._close_sentinel()

    def describe_exit(self) -> str:
        """How the worker ended, e.g. ``"was killed by signal SIGSEGV (Segmentation fault)"``."""
        code = self._popen.returncode
        if code is None:
            return "is still running"
        if code >= 0:
            return f"exited with status {code}"
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"was killed by signal {-code}"
        description = signal.strsignal(sig) or sig.name
        return f"was killed by signal {sig.name} ({description})"

    def _close_sentinel(self) -> None:
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


class _Spawner:
    """Runs process starts on one daemon thread that lives as long as the application."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def run(self, job: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._serve, name="neuropod-spawner", daemon=True)
                self._thread.start()
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)


_spawner = _Spawner()
