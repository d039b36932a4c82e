"""``python -m neuropod.worker FD PARENT_PID``, or ``--connect PATH TOKEN``: run a worker.

Normally neuropod starts its workers itself; ``--connect`` is for a worker that a command in
``worker_prefix`` (a container runtime) starts elsewhere (see ``neuropod.worker.connection``).
"""

import sys

from neuropod.worker.main import main

main(sys.argv[1:])
