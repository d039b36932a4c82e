"""Out-of-process execution: a model in worker processes of its own (``use_ope=True``).

::

    load_neuropod(path, use_ope=True, instances=2, timeout=5.0)
        NeuropodModel           validates every call, as for any backend
        └── WorkerBackend       backend.py    dispatches calls, allocate/seal
            └── Instance x N    instances.py  one call at a time, restarts after a crash
                └── WorkerSession  session.py one worker process: calls, crash, timeout
                    ├── Channel    channel.py  control messages + descriptors (socket pair)
                    │   ├── protocol.py        what the messages say
                    │   └── remote_errors.py   exceptions: same type, message, traceback
                    ├── tensors    tensors.py  arrays into shared blocks and back
                    │   └── BufferPool / SharedBuffer  pool.py, shm.py  memfd blocks
                    ├── start_worker   connection.py  inherited channel, or a socket path
                    └── WorkerProcess  process.py  start, kill, reap
                        └── sandbox.py  namespaces of its own (sandbox=True)
    worker process: main.py runs the package's platform backend

Nothing here imports a deep learning framework; the worker imports the one its model needs.
"""

from neuropod.worker.backend import WorkerBackend
from neuropod.worker.options import LaunchOptions, WorkerOptions
from neuropod.worker.remote_errors import RemoteTraceback

__all__ = ["LaunchOptions", "RemoteTraceback", "WorkerBackend", "WorkerOptions"]
