#!/usr/bin/env bash
# Creates .venv at the repository root (if needed) and installs neuropod with its extras into it.
# Usage: scripts/bootstrap.sh [EXTRAS]   (default: the extras the demo and the tests use)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-all,dev}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi

# A local CPU wheel of torch, where the machine has one: without it the resolver would fetch a
# CUDA build of several GB.
find_links=()
wheels="${PIP_FIND_LINKS:-/opt/wheels}"
if [ -d "$wheels" ]; then
    find_links=(--find-links "$wheels")
fi

.venv/bin/uv pip install --quiet --python .venv/bin/python "${find_links[@]}" \
    --constraint constraints.txt --editable ".[${extras}]"
