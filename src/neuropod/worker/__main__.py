"""``python -m neuropod.worker FD PARENT_PID``: run a worker (normally started by neuropod itself)."""

import sys

from neuropod.worker.main import main

main(sys.argv[1:])
