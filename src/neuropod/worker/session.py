"""One worker process seen from the application: start it, call it, notice its death, end it.

A session lasts as long as one worker process. When the worker dies or is killed, the session
is over; starting a new worker (or not) is the instance's decision (see ``instances``).
Arrays the application received from a dead worker stay valid: they hold their mappings.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.errors import InferenceTimeout, WorkerCrashed
from neuropod.errors import WorkerGone as WorkerGone  # re-exported: its old home
from neuropod.worker.channel import SPIN_S, ChannelClosed, current_cpu
from neuropod.worker.connection import start_worker
from neuropod.worker.pool import BufferPool
from neuropod.worker.protocol import (
    CANCEL,
    END,
    ERROR,
    INFER,
    LOAD,
    NEXT,
    READY,
    RECEIVER,
    SENDER,
    STREAM,
    LoadSettings,
)
from neuropod.worker.remote_errors import rebuild
from neuropod.worker.shm import SharedBuffer, buffer_of, data_offset
from neuropod.worker.tensors import ARENA_SIZE, decode, encode


class WorkerSession:
    """Starts a worker and sends it the model to load; ``wait_ready`` waits for the load.

    Args:
        settings: what the worker loads.
        pool: the application's blocks, shared by every session of the model.
        env: environment variables for the worker.
        model: the model's name, for messages.
        python: the worker's interpreter (default: the application's).
        prefix: a command the worker's command line is appended to.
        sandbox: the worker's sandbox (see ``sandbox``), or ``None``.
        socket_folder: the folder of the socket the worker connects to (see ``connection``),
            or ``None``: it inherits its channel.
    """

    def __init__(
        self,
        settings: LoadSettings,
        pool: BufferPool,
        env: Mapping[str, str],
        model: str,
        *,
        python: str | None = None,
        prefix: Sequence[str] = (),
        sandbox: str | None = None,
        socket_folder: str | None = None,
    ):
        self.model = model
        self.platform = settings.platform
        self._pool = pool
        self._known: dict[int, SharedBuffer] = {}  # own pooled blocks the worker has mapped
        self._mapped: dict[int, SharedBuffer] = {}  # the worker's blocks mapped here
        self._located: list[SharedBuffer] = []  # own pooled blocks the current call refers to
        self._unleased: deque[SharedBuffer] = deque()
        self._evictions_seen = pool.evictions
        self._spin = True  # whether the worker's last turn was short enough to wait for awake
        self._last_reply = 0.0
        # What a sandboxed worker, or one in a container, sends may be hostile: no unpickling.
        self._trusted = sandbox is None and socket_folder is None
        self._arena = SharedBuffer.create(ARENA_SIZE)
        try:
            self._channel, self.process = start_worker(
                env, model, python=python, prefix=prefix, sandbox=sandbox, socket_folder=socket_folder
            )
        except BaseException:
            self._arena.close()
            raise
        self.alive = True
        self._poller = select.poll()
        self._poller.register(self._channel.fileno(), select.POLLIN)
        if self.process.sentinel is not None:
            self._poller.register(self.process.sentinel, select.POLLIN)
        arena = (self._arena.id, self._arena.size)
        load = (LOAD, pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL), arena)
        # If the worker died already, wait_ready reports how.
        with contextlib.suppress(ChannelClosed):
            self._channel.send(load, [self._arena.fd])
        self._arena.close_fd()

    def wait_ready(self) -> None:
        """Wait until the worker has loaded the model.

        Raises:
            WorkerCrashed: the worker died while loading.
            Exception: what loading raised in the worker (same type and message).
        """
        try:
            reply, fds = self._receive(None)
        except ChannelClosed:
            raise self._crashed("while loading the model") from None
        except BaseException:
            self.kill()
            raise
        if reply[0] == READY and len(fds) == 1:
            block_id, size = reply[2]
            self._mapped[block_id] = SharedBuffer.attach(block_id, size, fds[0])
            return
        self._close_fds(fds)
        self.kill()
        if reply[0] == ERROR:
            raise rebuild(reply[1], model=self.model, platform=self.platform, loading=True)
        raise WorkerCrashed(f"The worker of model '{self.model}' answered {reply[0]!r} to its load")

    def infer(self, inputs: Mapping[str, np.ndarray], timeout: float | None) -> dict[str, Any]:
        """Run one call in the worker.

        Raises:
            WorkerCrashed: the worker died during the call (the session is over).
            InferenceTimeout: no answer within ``timeout`` seconds; the worker was killed.
            Exception: what the model raised in the worker (same type and message).
        """
        scratch = self._send_call(INFER, inputs)
        try:
            reply, fds = self._reply(timeout)
            return self._outputs(reply, fds)
        finally:
            if scratch is not None:
                self._pool.release(scratch)

    def stream(self, inputs: Mapping[str, np.ndarray], timeout: float | None) -> Iterator[dict[str, Any]]:
        """Start a call of ``infer_stream`` in the worker; iterate to get its responses.

        The call is sent now; the iterator must then be run to its end or closed before the
        session takes another call (closing it tells the worker to stop the model's iterator).
        ``timeout`` bounds the wait for each response.

        Raises:
            WorkerGone: the worker had died before the call (nothing ran).
            WorkerCrashed, InferenceTimeout, Exception: while iterating, as ``infer``.
        """
        scratch = self._send_call(STREAM, inputs)
        return self._responses(scratch, timeout)

    def _responses(self, scratch: SharedBuffer | None, timeout: float | None) -> Iterator[dict[str, Any]]:
        try:
            while True:
                reply, fds = self._reply(timeout)
                if reply[0] == END:
                    return
                outputs = self._outputs(reply, fds)
                try:
                    yield outputs
                except GeneratorExit:
                    self._cancel(timeout)
                    raise
                del outputs
                try:
                    self._channel.send((NEXT, self._released()))
                except ChannelClosed:
                    raise self._crashed("during a call") from None
        finally:
            # The worker's model may view the inputs until its stream ends.
            if scratch is not None:
                self._pool.release(scratch)

    def _cancel(self, timeout: float | None) -> None:
        try:
            self._channel.send((CANCEL,))
            reply, fds = self._receive(timeout)
        except BaseException:
            self.kill()  # a worker that does not stop in time is out of step: end it
            return
        self._close_fds(fds)
        if reply[0] not in (END, ERROR):
            self.kill()

    def _send_call(self, kind: str, inputs: Mapping[str, np.ndarray]) -> SharedBuffer | None:
        """Send a call's inputs; returns the block holding its larger ones, which the caller
        releases once the worker is done with them."""
        located = self._located
        located.clear()
        descriptors, scratch = encode(inputs, self._arena, self._pool, self._locate)
        try:
            if scratch is not None:
                located.append(scratch)
            new = [] if not located else [b for b in dict.fromkeys(located) if b.id not in self._known]
            gap = time.perf_counter() - self._last_reply
            blocks = [(b.id, b.size) for b in new]
            request = (kind, descriptors, blocks, self._forgotten(), self._released(), gap, current_cpu())
            try:
                self._channel.send(request, [block.fd for block in new])
            except ChannelClosed:
                raise WorkerGone(str(self._crashed("before the call"))) from None
            for block in new:
                self._known[block.id] = block
        except BaseException:
            if scratch is not None:
                self._pool.release(scratch)
            raise
        return scratch

    def _reply(self, timeout: float | None) -> tuple[Any, list[int]]:
        """The worker's answer to a call, or the failure that took its place."""
        try:
            return self._receive(timeout)
        except ChannelClosed:
            raise self._crashed("during a call") from None
        except TimeoutError:
            pid = self.process.pid
            self.kill()
            raise InferenceTimeout(
                f"Model '{self.model}' did not answer within {timeout:g} s; its worker process "
                f"(pid {pid}) was killed"
            ) from None
        except BaseException:
            self.kill()  # a call cut short leaves the channel out of step: end the worker
            raise

    def _outputs(self, reply: tuple[Any, ...], fds: list[int]) -> dict[str, Any]:
        if reply[0] == ERROR:
            self._close_fds(fds)
            raise rebuild(reply[1], model=self.model, platform=self.platform, loading=False)
        _, descriptors, new_blocks, forget, busy, cpu = reply
        self._spin = busy < SPIN_S and cpu != current_cpu()
        self._last_reply = time.perf_counter()
        for index, (block_id, size) in enumerate(new_blocks):
            try:
                block = SharedBuffer.attach(block_id, size, fds[index])
            except BaseException:
                self._close_fds(fds[index + 1 :])
                raise
            block.on_unleased = self._unleased.append
            self._mapped[block_id] = block
        for block_id in forget:
            gone = self._mapped.pop(block_id, None)
            if gone is not None:
                gone.close()
        outputs, used = decode(descriptors, self._find, keep=True, unpickle=self._trusted)
        for block in used:
            if not block.leased:
                self._unleased.append(block)
        return outputs

    def _locate(self, array: np.ndarray) -> tuple[int, SharedBuffer, int] | None:
        block = buffer_of(array)
        if block is None:
            return None
        if self._pool.get(block.id) is block:
            owner = SENDER
            self._located.append(block)
        elif self._mapped.get(block.id) is block:
            owner = RECEIVER  # an earlier output of this worker, sent back as an input
        else:
            return None
        offset = data_offset(array, block)
        return None if offset is None else (owner, block, offset)

    def _find(self, owner: int, block_id: int) -> SharedBuffer:
        block = self._pool.get(block_id) if owner == RECEIVER else self._mapped.get(block_id)
        if block is None:
            raise WorkerCrashed(f"The worker of model '{self.model}' named a shared block it never sent")
        return block

    def _released(self) -> list[int]:
        if not self._unleased:
            return []
        released: set[int] = set()
        while self._unleased:
            block = self._unleased.popleft()
            # Checked again here: a block queued when its views went may be viewed anew.
            if not block.leased and self._mapped.get(block.id) is block:
                released.add(block.id)
        return sorted(released)

    def _forgotten(self) -> list[int]:
        if self._pool.evictions == self._evictions_seen:
            return []
        self._evictions_seen = self._pool.evictions
        closed = [block_id for block_id, block in self._known.items() if block.closed]
        for block_id in closed:
            del self._known[block_id]
        return closed

    def _receive(self, timeout: float | None) -> tuple[Any, list[int]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._spin:
            message = self._channel.spin(SPIN_S)
            if message is not None:
                return message
        channel_fd = self._channel.fileno()
        while True:
            wait_ms = None if deadline is None else max(0.0, (deadline - time.monotonic()) * 1000)
            events = self._poller.poll(wait_ms)
            if any(fd == channel_fd for fd, _ in events):
                return self._channel.recv()
            if events:  # only the process sentinel: it exited without closing the channel
                raise ChannelClosed("the worker process exited")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError

    def _crashed(self, when: str) -> WorkerCrashed:
        pid = self.process.pid
        self.end()
        how = self.process.describe_exit()
        return WorkerCrashed(f"The worker process (pid {pid}) of model '{self.model}' {how} {when}")

    def _close_fds(self, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)

    def shutdown(self) -> None:
        """Ask the worker to exit (it closes its backend first); ``end`` then waits for it."""
        self._channel.close()

    def end(self) -> None:
        """Close the channel and reap the worker (killed if it does not exit in time). Idempotent."""
        if not self.alive:
            return
        self.alive = False
        self._channel.close()
        self.process.reap()
        self._drop_mappings()

    def kill(self) -> None:
        """Kill the worker at once and reap it. Idempotent."""
        if not self.alive:
            return
        self.alive = False
        self._channel.close()
        self.process.kill()
        self._drop_mappings()

    def _drop_mappings(self) -> None:
        mapped, self._mapped = self._mapped, {}
        for block in mapped.values():
            block.close()  # unmaps now unless the application still views it
        self._known.clear()
        self._arena.close()
