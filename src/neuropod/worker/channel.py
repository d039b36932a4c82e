"""The control channel: small messages and file descriptors over a Unix socket pair.

A ``SOCK_SEQPACKET`` pair keeps message boundaries (no framing), passes shared-memory blocks as
descriptors (``SCM_RIGHTS``), and reports the other side's death at once: when a process dies,
however, the kernel closes its end and the survivor reads end-of-file.

Waiting for a message by sleeping is cheap when the two processes share a CPU (a round trip of
two bare Python loops costs 14 us on the 2-vCPU machines this was measured on), but the kernel
prefers to wake a process on an idle CPU, and there a cross-CPU wake-up costs the virtual
machine tens of microseconds each way (100-120 us for a small call). So a side that expects an
answer soon checks the socket without sleeping for up to ``SPIN_S``, yielding the CPU between
checks (27 us for a small call). It does so only when the other side runs on another CPU and
its last turn was shorter than that: each message says on which CPU its sender runs and how long
its turn took (the worker's call, the application's time between calls). Processes that share
a CPU hand it over by sleeping, long calls and slow callers cost no spinning, and an idle model
sleeps within ``SPIN_S``.

Messages are tuples of plain values encoded with ``marshal``, the fastest codec in the standard
library for them; tensor data never travels here.
"""

from __future__ import annotations

import contextlib
import ctypes
import marshal
import os
import socket
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from neuropod.errors import ChannelClosed as ChannelClosed  # re-exported: its old home

#: The largest message: tracebacks are cut to fit well within it.
MAX_MESSAGE = 1024 * 1024
#: The kernel's limit on descriptors in one message (SCM_MAX_FD).
MAX_FDS = 253
#: How long a side that expects a quick message checks for it before sleeping.
SPIN_S = 50e-6


def _cpu_getter() -> Callable[[], int]:
    try:
        getter: Callable[[], int] = ctypes.CDLL(None).sched_getcpu
        return getter
    except (OSError, AttributeError):
        return lambda: -1


#: The CPU this thread runs on (-1 where unknown, which never matches a peer's).
current_cpu = _cpu_getter()
_FD_SPACE = socket.CMSG_SPACE(MAX_FDS * array("i").itemsize)
# Plain ints: the socket module's flags are enums, whose operators cost microseconds a call.
_SEND_FLAGS = int(getattr(socket, "MSG_NOSIGNAL", 0))
_DONTWAIT = int(socket.MSG_DONTWAIT)
_TRUNCATED = int(socket.MSG_TRUNC) | int(socket.MSG_CTRUNC)
_SOL_SOCKET = int(socket.SOL_SOCKET)
_SCM_RIGHTS = int(socket.SCM_RIGHTS)
_INT_SIZE = array("i").itemsize


def channel_pair() -> tuple[Channel, socket.socket]:
    """A channel for this process and the socket to hand to the other one."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (mine, theirs):
        make_roomy(sock)
    return Channel(mine), theirs


def make_roomy(sock: socket.socket) -> None:
    """Let ``sock`` hold the largest message (a socket connected by path, too)."""
    # Where refused, the system default (about 200 KB) still carries every normal message.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_MESSAGE)


class Channel:
    """One end of the socket pair. Not thread-safe: one call at a time uses it.

    Args:
        sock: a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket, in blocking mode.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray(MAX_MESSAGE)
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        """The socket's descriptor, to wait on."""
        return self.sock.fileno()

    def send(self, message: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
        """Send a message with descriptors (the receiver gets duplicates of them).

        Raises:
            ChannelClosed: the other process is gone.
        """
        data = marshal.dumps(message)
        try:
            if fds:
                rights = [(_SOL_SOCKET, _SCM_RIGHTS, array("i", fds))]
                self.sock.sendmsg([data], rights, _SEND_FLAGS)
            else:
                self.sock.send(data, _SEND_FLAGS)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def recv(self, wait: bool = True) -> tuple[Any, list[int]]:
        """The next message and the descriptors that came with it (the caller owns them).

        Args:
            wait: whether to wait for a message; without, ``BlockingIOError`` says there is none.

        Raises:
            ChannelClosed: the other process closed its end or died.
        """
        try:
            nbytes, ancdata, flags, _ = self.sock.recvmsg_into(
                [self._buffer], _FD_SPACE, 0 if wait else _DONTWAIT
            )
        except ConnectionResetError as exc:
            raise ChannelClosed(str(exc)) from exc
        fds: list[int] = []
        for level, kind, data in ancdata:
            if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
                fds.extend(array("i", data[: len(data) - len(data) % _INT_SIZE]))
        if nbytes == 0 or flags & _TRUNCATED:
            for fd in fds:
                os.close(fd)
            if nbytes == 0:
                raise ChannelClosed("end of file")
            raise ChannelClosed(f"a message was cut short (flags {flags:#x}); the channel is unusable")
        return marshal.loads(self._view[:nbytes]), fds

    def spin(self, seconds: float) -> tuple[Any, list[int]] | None:
        """The next message if it arrives within ``seconds``, waiting without sleeping.

        Each check yields the CPU, so a peer that shares it runs meanwhile.
        """
        deadline = time.perf_counter() + seconds
        while True:
            try:
                return self.recv(wait=False)
            except BlockingIOError:
                if time.perf_counter() > deadline:
                    return None
                os.sched_yield()

    def close(self) -> None:
        """Close this end; the other process reads end-of-file. Idempotent."""
        self.sock.close()
