"""How a worker gets its channel: an inherited socket, or a Unix socket path it connects to.

By default the worker inherits its end of a socket pair. With ``worker_socket=FOLDER`` the
application listens on a fresh socket in that folder instead, and the worker, started as
``python -m neuropod.worker --connect PATH TOKEN`` (by ``worker_prefix``: a container runtime,
for instance, with the folder mounted at the same path), connects to it and proves with the
token that it is the worker this application started. From then on the connection *is* the
channel: shared-memory blocks travel over it as descriptors (``SCM_RIGHTS``), which the kernel
passes between any two processes that share a socket, whatever namespaces (container) each is
in. So the worker needs no inherited descriptor and may run with system libraries of its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence

from neuropod.errors import OptionError, WorkerCrashed
from neuropod.worker.channel import Channel, ChannelClosed, channel_pair, make_roomy
from neuropod.worker.process import EXIT_GRACE_S, WorkerProcess
from neuropod.worker.protocol import HELLO

#: How long a worker started by path may take to connect (a container may have to start first).
CONNECT_TIMEOUT_S = 120.0
#: The longest socket path the kernel takes (``sun_path`` holds 108 bytes with the final zero).
MAX_SOCKET_PATH = 107
# A worker's socket's name in its folder, without the random part.
_NAME = "worker-{tag}.sock"
_NAME_LENGTH = len(_NAME.format(tag="0" * 12))


def check_socket_folder(folder: str) -> None:
    """Raise ``OptionError`` unless workers' sockets fit in ``folder`` (creating it if missing)."""
    if len(os.fsencode(folder)) + 1 + _NAME_LENGTH > MAX_SOCKET_PATH:
        raise OptionError(
            f"worker_socket {folder!r} is too long for a Unix socket path: at most "
            f"{MAX_SOCKET_PATH - 1 - _NAME_LENGTH} bytes"
        )
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"worker_socket {folder!r} cannot be used as a folder: {exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OptionError(f"worker_socket {folder!r} is not a folder this process can create sockets in")


def start_worker(
    env: Mapping[str, str],
    model: str,
    *,
    python: str | None = None,
    prefix: Sequence[str] = (),
    sandbox: str | None = None,
    socket_folder: str | None = None,
) -> tuple[Channel, WorkerProcess]:
    """Start a worker and return the channel to it, with its process.

    Args:
        env: variables to set in the worker's environment.
        model: the model's name, for messages.
        python: the worker's interpreter.
        prefix: a command the worker's command line is appended to.
        sandbox: the worker's sandbox (see ``sandbox``), or ``None``.
        socket_folder: where the worker connects to (``None``: it inherits its channel).

    Raises:
        WorkerCrashed: a worker started by path died, or did not connect in time.
    """
    if socket_folder is None:
        channel, theirs = channel_pair()
        try:
            fd = theirs.fileno()
            process = WorkerProcess(
                (str(fd), str(os.getpid())),
                env,
                python=python,
                prefix=prefix,
                pass_fds=(fd,),
                sandbox=sandbox,
            )
        except BaseException:
            channel.close()
            raise
        finally:
            theirs.close()
        return channel, process
    listener = _Listener(socket_folder)
    try:
        process = WorkerProcess(
            ("--connect", listener.path, listener.token), env, python=python, prefix=prefix, sandbox=sandbox
        )
        try:
            return listener.accept(process, model), process
        except BaseException:
            process.kill()
            raise
    finally:
        listener.close()


class _Listener:
    """A socket one worker connects to, in a folder of the application's choosing."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, _NAME.format(tag=secrets.token_hex(6)))
        self.token = secrets.token_hex(16)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._sock.bind(self.path)
            self._sock.listen(4)
            self._sock.setblocking(False)  # a connection may vanish between poll and accept
        except BaseException:
            self.close()
            raise

    def accept(self, process: WorkerProcess, model: str) -> Channel:
        """The channel of the first connection that says the token; ends when the worker does."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            ready = _wait_readable(self._sock, process, deadline)
            if not ready:
                raise self._failed(process, model, deadline)
            try:
                sock, _ = self._sock.accept()
            except BlockingIOError:
                continue
            sock.setblocking(True)
            make_roomy(sock)
            channel = Channel(sock)
            try:
                if _wait_readable(sock, process, min(deadline, time.monotonic() + EXIT_GRACE_S)):
                    message, fds = channel.recv()
                    for fd in fds:
                        os.close(fd)
                    if message[0] == HELLO and secrets.compare_digest(str(message[1]), self.token):
                        return channel
            except (ChannelClosed, OSError, ValueError, TypeError, IndexError, EOFError):
                pass
            channel.close()  # someone else, or a worker that said nothing: wait for the next

    def _failed(self, process: WorkerProcess, model: str, deadline: float) -> WorkerCrashed:
        if process.returncode is None and time.monotonic() >= deadline:
            return WorkerCrashed(
                f"The worker process (pid {process.pid}) of model '{model}' did not connect to "
                f"{self.path} within {CONNECT_TIMEOUT_S:g} s; it was killed"
            )
        process.reap()
        return WorkerCrashed(
            f"The worker process (pid {process.pid}) of model '{model}' {process.describe_exit()} "
            f"before connecting to {self.path}"
        )

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _wait_readable(sock: socket.socket, process: WorkerProcess, deadline: float) -> bool:
    """Whether ``sock`` became readable before ``deadline`` while the process lived."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if process.sentinel is not None:
        poller.register(process.sentinel, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        events = poller.poll(min(left, 0.5) * 1000)
        if any(fd == sock.fileno() for fd, _ in events):
            return True
        if events or process.poll() is not None:
            return False


# ---------------------------------------------------------------------------------------------
# The worker's side


def connect(path: str, token: str) -> Channel:
    """Connect to the application's socket and say the token (in the worker).

    A worker reached by path may run where the application cannot kill it (a container), so it
    also exits, after a grace period for a clean exit, once the application closes the channel
    even when a call is keeping it busy.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    make_roomy(sock)
    channel = Channel(sock)
    channel.send((HELLO, token))
    threading.Thread(
        target=_exit_on_hangup, args=(sock.fileno(),), name="neuropod-hangup", daemon=True
    ).start()
    return channel


def _exit_on_hangup(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: only a hang-up or an error wakes it
    while True:
        events = poller.poll()
        if any(event & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, event in events):
            time.sleep(EXIT_GRACE_S)
            os._exit(0)
