"""``WorkerBackend``: a model run by its own worker processes, behind the usual backend contract.

The model object in front validates every call before anything is sent; the worker runs the
package's platform backend, so a crash, a hang, a leak or a clash of frameworks stays in the
worker. Tensors travel through shared memory (see ``tensors``).
"""

from __future__ import annotations

import math
import os
import pickle
import shlex
import shutil
import sys
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.backends.base import Backend
from neuropod.errors import BackendUnavailable, InferenceError, OptionError
from neuropod.model import ModelOptions
from neuropod.package.package import Package
from neuropod.worker.connection import check_socket_folder
from neuropod.worker.instances import Instance, InstancePool
from neuropod.worker.options import LaunchOptions, WorkerOptions
from neuropod.worker.pool import BufferPool
from neuropod.worker.process import IMPORT_ROOT
from neuropod.worker.protocol import LoadSettings
from neuropod.worker.sandbox import sandbox_spec
from neuropod.worker.session import WorkerSession
from neuropod.worker.shm import buffer_of
from neuropod.worker.tensors import wire_array

#: Environment variable holding the default ``worker_prefix``, split as a shell would.
PREFIX_ENV_VAR = "NEUROPOD_WORKER_PREFIX"

# Counts forks in this process's ancestry: a model's workers belong to the process that
# started them, and comparing this is cheaper than os.getpid() at every call.
_forks = [0]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class WorkerBackend(Backend):
    """Runs a package in worker processes: ``load_neuropod(path, use_ope=True, ...)``.

    Each worker is a fresh interpreter that loads the package with its platform's backend. A
    call's small tensors travel through a shared-memory arena; larger ones are copied once into
    a shared block, and arrays from ``allocate`` (or ``NeuropodModel.seal``) are not copied at
    all. Outputs larger than 64 KB come back as arrays that view shared memory, which stays
    valid as long as they (or views of them) live, after ``close`` too; smaller ones are copied.
    Strings travel as numpy's fixed-width unicode; values that are not arrays (a model's
    mistake) are pickled, so the model object reports them as it would in process (except from
    a sandboxed worker, or one connected by path, whose pickles the application does not load:
    it reports them as ``SandboxedPickle``).

    A worker that dies fails the call it was running with ``WorkerCrashed`` (a call sent to a
    worker that had died while idle goes to a new one instead); a call that outlives
    ``timeout`` kills its worker and raises ``InferenceTimeout``. The next call starts a new
    worker. Workers exit when the application closes the model or dies, however it dies.

    >>> from neuropod import load_neuropod
    >>> with load_neuropod("addition_model.zip", use_ope=True, instances=2, timeout=10.0) as model:
    ...     x = model.allocate("x", (3,))  # shared memory
    ...     x[...] = 1.0
    ...     model.infer({"x": x, "y": x})  # sends no tensor bytes
    {'out': array([2., 2., 2.], dtype=float32)}

    Args:
        package: the opened package; it must stay open while the workers run.
        visible_gpu: the GPU the workers may see (as their only GPU, through
            ``CUDA_VISIBLE_DEVICES``), or ``None`` to hide every GPU from them.
        **options: see ``WorkerOptions``: ``instances``, how many worker processes run the
            model (each call goes to the least busy); ``timeout``, seconds a call may take
            before its worker is killed, or ``None``; ``max_restarts``, how many times each
            instance replaces a dead worker (at its next call), or ``None`` for always;
            ``memory_limit``, each worker's address-space limit in bytes (``RLIMIT_AS``): a
            model that allocates beyond it gets a ``MemoryError``. Frameworks reserve far more
            address space than they use, so leave ample room.
        backend_options: the platform backend's own load options, passed on to the workers.
        python: the workers' interpreter, e.g. an isolated environment's (default: the
            application's). Such workers do not get the application's ``sys.path``: they import
            what their environment has, and neuropod from where the application imports it.
        worker_prefix: a command that starts each worker, the worker's command line appended
            to it, e.g. ``["taskset", "-c", "0"]``, ``["numactl", "--cpunodebind=0"]`` or
            ``["env", "OMP_NUM_THREADS=1"]``. It must run the command as its own process or a
            child that keeps inherited descriptors (the worker's channel is one) and the same
            shared memory. Default: ``NEUROPOD_WORKER_PREFIX`` split as a shell would, if set.
        worker_socket: a folder (created if missing) where the application listens for each
            worker on a Unix socket of its own: the worker connects by path and receives every
            descriptor over that socket, so ``worker_prefix`` may start it anywhere that mounts
            the folder at the same path, a container for instance (see ``docs/sandbox.md``).
        worker_python: the worker's interpreter as ``worker_prefix``'s command finds it
            (``"python3"`` in a container); it overrides ``python``.

    ``sandbox=True`` (a ``WorkerOptions`` option) runs each worker in new user, mount, network
    and PID namespaces: no network, the file system read-only, the caller's home and ``/root``
    hidden, a private ``/tmp`` (see ``neuropod.worker.sandbox``).

    Raises:
        BackendUnavailable: not on Linux.
        OptionError: an invalid option, or one the platform backend does not take.
        WorkerCrashed: a worker died while loading the model.
        SandboxUnavailable: ``sandbox=True``, and the kernel refused the namespaces (says why).
        Exception: what loading the model raised in the worker (same type and message).
    """

    load_options = WorkerOptions

    def __init__(
        self,
        package: Package,
        *,
        visible_gpu: int | None = None,
        backend_options: Mapping[str, Any] | None = None,
        python: str | os.PathLike[str] | None = None,
        worker_prefix: Sequence[str] | None = None,
        worker_socket: str | None = None,
        worker_python: str | None = None,
        **options: Any,
    ):
        super().__init__(package, visible_gpu=visible_gpu)
        settings: WorkerOptions = WorkerOptions.parse(options)
        launch = LaunchOptions(
            worker_prefix=worker_prefix, worker_socket=worker_socket, worker_python=worker_python
        )
        prefix = _prefix(worker_prefix)
        if not hasattr(os, "memfd_create"):
            raise BackendUnavailable(
                f"use_ope=True needs Linux (anonymous shared memory, os.memfd_create), not {sys.platform}"
            )
        instances, timeout, max_restarts = settings.instances, settings.timeout, settings.max_restarts
        config = package.config
        self._name = config.name
        accepted = ("visible_gpu", "use_ope", *ModelOptions.names(), *WorkerOptions.names())
        load = LoadSettings(
            root=str(package.root),
            path=str(package.path),
            platform=config.platform,
            options=dict(backend_options or {}),
            use_gpu=visible_gpu is not None,
            memory_limit=settings.memory_limit,
            also_accepted=(*accepted, *LaunchOptions.names()),
            sys_path=() if python is not None else tuple(e for e in sys.path if isinstance(e, str)),
        )
        interpreter = launch.worker_python or (None if python is None else os.fspath(python))
        if worker_socket is not None:
            check_socket_folder(worker_socket)
        sandbox = None
        if settings.sandbox:
            sandbox = sandbox_spec(
                package_root=str(package.root),
                interpreter=(shutil.which(interpreter) or interpreter) if interpreter else sys.executable,
                import_root=IMPORT_ROOT,
                sys_path=load.sys_path,
                extra=[] if worker_socket is None else [worker_socket],
                # A worker connecting by path may be started by a process of the prefix's.
                parent=os.getpid() if worker_socket is None else None,
            )
        try:
            pickle.dumps(load)
        except Exception as exc:
            raise OptionError(
                f"The load options of model '{self._name}' cannot be sent to its workers: {exc}"
            ) from exc
        env = {"CUDA_VISIBLE_DEVICES": "" if visible_gpu is None else str(visible_gpu)}
        self._pool = pool = BufferPool()
        name = self._name

        def start() -> WorkerSession:  # refers not to self, which the finalizer must not keep
            return WorkerSession(
                load, pool, env, name,
                python=interpreter, prefix=prefix, sandbox=sandbox, socket_folder=worker_socket,
            )  # fmt: skip

        self._instances = [
            Instance(start, timeout=timeout, max_restarts=max_restarts, model=self._name)
            for _ in range(instances)
        ]
        self._dispatch = InstancePool(self._instances)
        self._only = self._instances[0] if instances == 1 else None
        self._owner = os.getpid()
        self._forks = _forks[0]
        # Workers exit on their own when this process dies; this also ends them (and reaps
        # them) when the model is dropped without close.
        self._finalizer = weakref.finalize(self, _close, self._instances, self._pool)
        try:
            for instance in self._instances:
                instance.start()
            for instance in self._instances:
                instance.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int | None]:
        """Each instance's worker process id (``None`` while it has none)."""
        return [instance.pid for instance in self._instances]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_process()
        if self._only is not None:
            return self._only.infer(inputs)
        index = self._dispatch.acquire()
        try:
            return self._instances[index].infer(inputs)
        finally:
            self._dispatch.release(index)

    def infer_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Run a call in a worker and yield each response as the worker sends it.

        The worker asks the model for its next response when this iterator is advanced;
        closing the iterator tells the worker to close the model's iterator. The instance
        running the call takes no other call until then.
        """
        self._check_process()
        index = self._dispatch.acquire()
        try:
            yield from self._instances[index].stream(inputs)
        finally:
            self._dispatch.release(index)

    def _check_process(self) -> None:
        if self._forks != _forks[0]:
            raise InferenceError(
                f"Model '{self._name}' was loaded with use_ope=True by process {self._owner}; its "
                f"workers cannot serve a forked child ({os.getpid()}): load the model there"
            )

    @property
    def instances(self) -> int:
        return len(self._instances)

    def infer_on(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_process()
        self._dispatch.take(instance)
        try:
            return self._instances[instance].infer(inputs)
        finally:
            self._dispatch.release(instance)

    def allocate(self, dtype: np.dtype[Any], shape: Sequence[int]) -> np.ndarray:
        """An uninitialized array in shared memory: as an input it is sent without a copy.

        Args:
            dtype: the element type.
            shape: the shape.

        Returns:
            The array. Its memory is reused once no array views it any more.
        """
        shape = tuple(int(dim) for dim in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype)
        block = self._pool.acquire(nbytes)
        try:
            return block.view(dtype, shape, 0, leased=True)
        finally:
            self._pool.release(block)  # the array's lease keeps the block busy

    def seal(self, array: np.ndarray) -> np.ndarray:
        """``array`` in shared memory, so that a call sends it without a copy.

        Args:
            array: an input value.

        Returns:
            ``array`` itself if it is in this model's shared memory already (from
            ``allocate``), else a copy in shared memory made now (a value that is not a plain
            array is returned as it is).
        """
        block = buffer_of(array)
        if block is not None and self._pool.get(block.id) is block:
            return array
        wire = wire_array(array)  # strings as fixed-width unicode
        if wire is None:
            return array  # not plain data: it is pickled at the call
        shared = self.allocate(wire.dtype, wire.shape)
        np.copyto(shared, wire)
        return shared

    def close(self) -> None:
        """Stop the workers (waiting a little for calls in progress) and free the shared blocks
        that no array views. Idempotent."""
        self._finalizer()


def _close(instances: list[Instance], pool: BufferPool) -> None:
    for instance in instances:
        instance.shutdown()  # all exit at once, then each is waited for
    for instance in instances:
        instance.close()
    pool.close()


def _prefix(given: Sequence[str] | None) -> tuple[str, ...]:
    if given is None:
        return tuple(shlex.split(os.environ.get(PREFIX_ENV_VAR, "")))
    prefix = tuple(given)
    if prefix and shutil.which(prefix[0]) is None:
        raise OptionError(f"worker_prefix starts with {prefix[0]!r}, which is not an executable command")
    return prefix
