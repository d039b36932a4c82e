"""The worker process: load one model, then answer calls until the application goes away.

Started by ``process.WorkerProcess`` as ``python -c ... FD PARENT_PID`` (or ``--connect PATH
TOKEN``, see ``connection``). It exits when its channel reaches end-of-file (the application
closed the model, or died) and, should the application die while the model is busy, by the
parent-death signal it asks the kernel for.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import pickle
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.backends.base import Backend
from neuropod.options import split_options
from neuropod.package.package import Package
from neuropod.spec.validation import TensorValidator
from neuropod.worker.channel import SPIN_S, Channel, ChannelClosed, current_cpu
from neuropod.worker.connection import connect
from neuropod.worker.pool import BufferPool
from neuropod.worker.protocol import (
    CANCEL,
    END,
    ERROR,
    INFER,
    ITEM,
    LOAD,
    NEXT,
    OK,
    READY,
    RECEIVER,
    STREAM,
    LoadSettings,
)
from neuropod.worker.remote_errors import describe
from neuropod.worker.shm import SharedBuffer, data_offset
from neuropod.worker.tensors import ARENA_SIZE, SMALL, decode, encode

_PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str], *, sandboxed: bool = False, sandbox_error: str | None = None) -> None:
    """Serve one model; never returns.

    Args:
        argv: ``FD PARENT_PID``, the inherited channel and the application's process id, or
            ``--connect PATH TOKEN``, the socket to connect to and what to say there (see
            ``connection``).
        sandboxed: whether the worker runs in a sandbox (``sandbox.enter``), whose PID
            namespace hides its parent.
        sandbox_error: why the worker could not enter its sandbox: it reports that and exits.
    """
    if argv and argv[0] == "--connect":
        _die_with_parent(None)
        channel = connect(argv[1], argv[2])
    else:
        fd, parent = int(argv[0]), int(argv[1])
        _die_with_parent(None if sandboxed else parent)
        os.set_inheritable(fd, False)  # processes the model starts must not keep the channel open
        channel = Channel(socket.socket(fileno=fd))
    # Ctrl-C in a terminal reaches the whole process group; it is the application's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a crash prints the model's Python stack on the inherited stderr
    status = 0
    try:
        if sandbox_error is not None:
            from neuropod.errors import SandboxUnavailable

            # Read first: a socket closed with a message unread resets the application's end.
            _close_all(channel.recv()[1])
            channel.send((ERROR, describe(SandboxUnavailable(f"sandbox=True: {sandbox_error}"))))
            os._exit(1)
        worker = Worker.load(channel)
        if worker is None:
            status = 1
        else:
            try:
                worker.serve()
            finally:
                worker.backend.close()
    except ChannelClosed:
        pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    # Skips interpreter teardown, where threads a framework left running could hang the exit.
    os._exit(status)


def _die_with_parent(parent: int | None) -> None:
    """Ask for SIGKILL when the parent ends; exit now if it is not ``parent`` (``None``: unknown)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # end-of-file on the channel still ends the worker once it is idle
    if parent is not None and os.getppid() != parent:  # the application died before the signal was armed
        os._exit(1)


class Worker:
    """One loaded model and the shared-memory state of its conversation with the application.

    Args:
        channel: the channel to the application.
        backend: the platform backend running the model.
        outputs_check: checks a backend's return value when it is not even a dict.
    """

    def __init__(self, channel: Channel, backend: Backend, outputs_check: TensorValidator):
        self.channel = channel
        self.backend = backend
        self.pool = BufferPool()
        self.arena = SharedBuffer.create(ARENA_SIZE)
        self._outputs_check = outputs_check
        self._peer: dict[int, SharedBuffer] = {}  # the application's blocks, mapped here
        self._sent: dict[int, SharedBuffer] = {}  # own blocks the application has mapped
        self._evictions_seen = 0
        self._input_blocks: list[SharedBuffer] = []  # the application's pooled blocks in this call

    @classmethod
    def load(cls, channel: Channel) -> Worker | None:
        """Receive the load settings and load the model; ``None`` if that failed (reported)."""
        message, fds = channel.recv()
        if message[0] != LOAD or len(fds) != 1:
            _close_all(fds)
            raise ChannelClosed(f"expected a load message, got {message[0]!r}")
        settings: LoadSettings = pickle.loads(message[1])
        block_id, size = message[2]
        application_arena = SharedBuffer.attach(block_id, size, fds[0])
        sys.path.extend(entry for entry in settings.sys_path if entry and entry not in sys.path)
        try:
            if settings.memory_limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (settings.memory_limit, settings.memory_limit))
            backend = _load_backend(settings)
        except Exception as exc:
            channel.send((ERROR, describe(exc)))
            return None
        worker = cls(channel, backend, TensorValidator(backend.config.outputs, "output"))
        worker._peer[block_id] = application_arena
        channel.send((READY, os.getpid(), (worker.arena.id, worker.arena.size)), [worker.arena.fd])
        worker.arena.close_fd()
        return worker

    def serve(self) -> None:
        """Answer calls until the application closes the channel."""
        channel = self.channel
        spin = False  # whether the application's last gap between calls was short (see channel)
        while True:
            received = channel.spin(SPIN_S) if spin else None
            message, fds = received if received is not None else channel.recv()
            start = time.perf_counter()
            if message[0] == STREAM:
                self._stream(message, fds)
                spin = False
                continue
            try:
                if message[0] != INFER:
                    _close_all(fds)
                    raise ValueError(f"unknown request {message[0]!r}")
                reply, new = self._infer(message, fds)
                cpu = current_cpu()
                spin = message[5] < SPIN_S and message[6] != cpu
                reply = (*reply, time.perf_counter() - start, cpu)
            except Exception as exc:
                reply, new = (ERROR, describe(exc)), []
            channel.send(reply, [block.fd for block in new] if new else ())
            for block in new:
                block.close_fd()  # the application has it now, for good

    def _infer(self, message: tuple[Any, ...], fds: list[int]) -> tuple[tuple[Any, ...], list[SharedBuffer]]:
        _, descriptors, new_blocks, forget, release, _, _ = message
        if new_blocks or forget or release:
            self._update_blocks(new_blocks, fds, forget, release)
        inputs, self._input_blocks = decode(descriptors, self._find, keep=False)
        outputs = self.backend.infer(inputs)
        del inputs
        reply = self._encode(OK, outputs)
        self._input_blocks = []
        return reply

    def _encode(self, kind: str, outputs: Any) -> tuple[tuple[Any, ...], list[SharedBuffer]]:
        if not isinstance(outputs, Mapping):
            self._outputs_check(outputs)  # raises the error the model object would raise
        encoded, block = encode(outputs, self.arena, self.pool, self._locate)
        new: list[SharedBuffer] = []
        if block is not None and block.id not in self._sent:
            self._sent[block.id] = block
            new.append(block)
        forget = self._forgotten() if self.pool.evictions != self._evictions_seen else []
        return (kind, encoded, [(b.id, b.size) for b in new], forget), new

    def _stream(self, message: tuple[Any, ...], fds: list[int]) -> None:
        """Answer a STREAM call: one ITEM per response, each after the application's NEXT,
        then END; ERROR if the model (or a message) fails, END at once after CANCEL."""
        responses: Iterator[Any] | None = None
        try:
            _, descriptors, new_blocks, forget, release, _, _ = message
            if new_blocks or forget or release:
                self._update_blocks(new_blocks, fds, forget, release)
            inputs, self._input_blocks = decode(descriptors, self._find, keep=False)
            responses = iter(self.backend.infer_stream(inputs))
            del inputs
            while True:
                start = time.perf_counter()
                try:
                    outputs = next(responses)
                except StopIteration:
                    break
                reply, new = self._encode(ITEM, outputs)
                del outputs
                self.channel.send((*reply, time.perf_counter() - start, current_cpu()), [b.fd for b in new])
                for block in new:
                    block.close_fd()
                asked, _ = self.channel.recv()  # NEXT and CANCEL carry no descriptors
                if asked[0] == NEXT:
                    self._update_blocks([], [], [], asked[1])
                elif asked[0] == CANCEL:
                    break
                else:
                    raise ValueError(f"unknown request {asked[0]!r} during a stream")
            close, responses = getattr(responses, "close", None), None
            if close is not None:
                close()
            reply = (END,)
        except ChannelClosed:
            raise
        except Exception as exc:
            reply = (ERROR, describe(exc))
        finally:
            self._input_blocks = []
            if responses is not None:
                with contextlib.suppress(Exception):
                    getattr(responses, "close", lambda: None)()
        self.channel.send(reply)

    def _update_blocks(
        self, new_blocks: list[tuple[int, int]], fds: list[int], forget: list[int], release: list[int]
    ) -> None:
        for index, (block_id, size) in enumerate(new_blocks):
            try:
                self._peer[block_id] = SharedBuffer.attach(block_id, size, fds[index])
            except BaseException:
                _close_all(fds[index + 1 :])
                raise
        for block_id in forget:
            block = self._peer.pop(block_id, None)
            if block is not None:
                block.close()
        for block_id in release:
            own = self.pool.get(block_id)
            if own is not None:
                self.pool.release(own)

    def _locate(self, array: np.ndarray) -> tuple[int, SharedBuffer, int] | None:
        # A large output that views an input stays where it is: the application has the
        # block. (The application's arena is never among the input blocks: it is reused.)
        if array.nbytes <= SMALL:
            return None
        for block in self._input_blocks:
            offset = data_offset(array, block)
            if offset is not None:
                return RECEIVER, block, offset
        return None

    def _find(self, owner: int, block_id: int) -> SharedBuffer:
        block = self.pool.get(block_id) if owner == RECEIVER else self._peer.get(block_id)
        if block is None:
            raise ValueError(f"the application named shared block {block_id}, which this worker lacks")
        return block

    def _forgotten(self) -> list[int]:
        self._evictions_seen = self.pool.evictions
        closed = [block_id for block_id, block in self._sent.items() if block.closed]
        for block_id in closed:
            del self._sent[block_id]
        return closed


def _load_backend(settings: LoadSettings) -> Backend:
    from neuropod.registry import get_backend

    package = Package(settings.root, verify=False)  # the application verified it
    package.path = Path(settings.path)  # messages name the package the application loaded
    backend_cls = get_backend(settings.platform)
    # The application checked the options unless it could not import a third-party backend
    # that this worker's environment has; the same rules apply here.
    split_options(
        settings.options,
        [backend_cls.declared_options()],
        f"platform '{settings.platform}'",
        also_accepted=settings.also_accepted,
    )
    return backend_cls(package, visible_gpu=0 if settings.use_gpu else None, **settings.options)


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)
