"""The floor of a round trip between two Python processes, beside what ``use_ope=True`` adds.

A worker call is a round trip: the caller wakes the worker, the worker answers and wakes the
caller. This measures the bare mechanisms, with nothing else in the loop, each as a median of
``--rounds`` blocks of ``--calls`` ping-pongs between a parent and a child process:

- ``pipe``: one ``os.pipe`` each way, blocking reads of one byte;
- ``socketpair``: an ``AF_UNIX`` ``SOCK_SEQPACKET`` pair, blocking ``recv`` (the worker's channel);
- ``socketpair + spin``: the same, polled with ``MSG_DONTWAIT`` and ``sched_yield`` for up to
  50 us before a blocking wait (what the channel does when the peer runs on another CPU);
- ``eventfd``: one ``eventfd`` each way, blocking reads;
- ``shared flag, spin``: a byte in shared memory that each side polls with ``sched_yield``
  (no system call to wake anyone: the floor of any design that spins, at the cost of a CPU);
- ``multiprocessing Pipe``: ``Connection.send``/``recv`` of a small tuple (pickles);
- ``neuropod Channel``: the worker's channel (``neuropod.worker.channel``) carrying messages the
  size and shape of a 4-float call and its answer, each side spinning as the worker's do
  when the other side runs on another CPU: the mechanism of a call without its tensors,
  validation or model.

Then the same 4-float ``x + y`` model in process and with ``use_ope=True``: the difference is
what a worker call adds on top of the floor (the issue's target: within 1.5x of the best bare
round trip that does not burn a CPU).

    python bench/roundtrip_floor.py [--calls 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neuropod import load_neuropod
from neuropod.packagers import create_python_neuropod
from neuropod.text_table import table

SPIN_S = 50e-6


def _spin_recv(sock: socket.socket) -> bytes:
    deadline = time.perf_counter() + SPIN_S
    while time.perf_counter() < deadline:
        try:
            return sock.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            os.sched_yield()
    return sock.recv(64)


def _pair(kind: str) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """(parent's call, child's serve-one, close): parent sends and waits, child waits and answers."""
    if kind == "pipe":
        a_read, a_write = os.pipe()
        b_read, b_write = os.pipe()

        def call() -> None:
            os.write(a_write, b"x")
            os.read(b_read, 1)

        def serve() -> None:
            os.read(a_read, 1)
            os.write(b_write, b"y")

        def close_pipes() -> None:
            for fd in (a_read, a_write, b_read, b_write):
                os.close(fd)

        return call, serve, close_pipes
    if kind in ("socketpair", "socketpair + spin"):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        receive = _spin_recv if kind.endswith("spin") else (lambda sock: sock.recv(64))

        def call() -> None:
            mine.send(b"x")
            receive(mine)

        def serve() -> None:
            receive(theirs)
            theirs.send(b"y")

        def close_sockets() -> None:
            mine.close()
            theirs.close()

        return call, serve, close_sockets
    if kind == "eventfd":
        ping, pong = os.eventfd(0), os.eventfd(0)

        def call() -> None:
            os.eventfd_write(ping, 1)
            os.eventfd_read(pong)

        def serve() -> None:
            os.eventfd_read(ping)
            os.eventfd_write(pong, 1)

        def close_eventfds() -> None:
            os.close(ping)
            os.close(pong)

        return call, serve, close_eventfds
    if kind == "shared flag, spin":
        flag = mmap.mmap(-1, 1)

        def call() -> None:
            flag[0] = 1
            while flag[0] != 2:
                os.sched_yield()

        def serve() -> None:
            while flag[0] != 1:
                os.sched_yield()
            flag[0] = 2

        return call, serve, flag.close
    raise ValueError(kind)


def bare(kind: str, calls: int, rounds: int) -> float:
    """Median microseconds per round trip of one mechanism."""
    if kind == "multiprocessing Pipe":
        parent, child = multiprocessing.Pipe()

        def echo() -> None:
            while (message := child.recv()) is not None:
                child.send(message)

        process = multiprocessing.get_context("fork").Process(target=echo)
        process.start()

        def call() -> None:
            parent.send((1, 2.0, "x"))
            parent.recv()

        result = _time(call, calls, rounds)
        parent.send(None)
        process.join()
        return result
    if kind == "neuropod Channel":
        return _channel(calls, rounds)
    call, serve, close = _pair(kind)
    total = calls * rounds + calls  # one warm-up block
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(total):
                serve()
        finally:
            os._exit(0)
    result = _time(call, calls, rounds)
    os.waitpid(pid, 0)
    close()
    return result


def _channel(calls: int, rounds: int) -> float:
    from neuropod.worker.channel import SPIN_S, channel_pair

    mine, theirs = channel_pair()
    request = (1, [("x", "float32", (4,), 0, 0, 16), ("y", "float32", (4,), 0, 16, 16)], [], [], [], 1e-5, 0)
    answer = (2, [("out", "float32", (4,), 1, 0, 16)], [], [], 1e-5, 1)
    pid = os.fork()
    if pid == 0:
        from neuropod.worker.channel import Channel

        mine.close()
        channel = Channel(theirs)
        try:
            for _ in range(calls * rounds + calls):
                received = channel.spin(SPIN_S)
                if received is None:
                    received = channel.recv()
                channel.send(answer)
        finally:
            os._exit(0)
    theirs.close()

    def call() -> None:
        mine.send(request)
        if mine.spin(SPIN_S) is None:
            mine.recv()

    result = _time(call, calls, rounds)
    os.waitpid(pid, 0)
    mine.close()
    return result


def _time(call: Callable[[], None], calls: int, rounds: int) -> float:
    for _ in range(calls):
        call()
    blocks = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        blocks.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(blocks)


def model_cost(calls: int, rounds: int) -> tuple[float, float]:
    """Median microseconds per call of a 4-float addition: in process, and with use_ope=True."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src" / "adder"
        source.mkdir(parents=True)
        (source / "__init__.py").write_text("")
        (source / "main.py").write_text(
            textwrap.dedent(
                """
                def get_model(data_dir):
                    return lambda x, y: {"out": x + y}
                """
            )
        )
        path = Path(tmp) / "adder.zip"
        spec = [{"name": n, "dtype": "float32", "shape": (4,)} for n in ("x", "y")]
        create_python_neuropod(
            neuropod_path=path, model_name="adder", input_spec=spec,
            output_spec=[{"name": "out", "dtype": "float32", "shape": (4,)}],
            code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["adder"]}],
            entrypoint_package="adder.main", entrypoint="get_model",
        )  # fmt: skip
        inputs = {"x": np.ones(4, np.float32), "y": np.ones(4, np.float32)}
        costs = []
        for use_ope in (False, True):
            with load_neuropod(path, use_ope=use_ope) as model:
                costs.append(_time(lambda m=model: m.infer(inputs), calls, rounds))
        return costs[0], costs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    kinds = ["pipe", "socketpair", "socketpair + spin", "eventfd", "shared flag, spin"]
    kinds += ["multiprocessing Pipe", "neuropod Channel"]
    rows = [(kind, f"{bare(kind, args.calls, args.rounds):.1f}") for kind in kinds]
    in_process, ope = model_cost(args.calls, args.rounds)
    rows.append(("model in process (x + y, 4 floats)", f"{in_process:.1f}"))
    rows.append(("model with use_ope=True", f"{ope:.1f}"))
    rows.append(("added by use_ope", f"{ope - in_process:.1f}"))
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; median us per round trip\n")
    print(table(rows, ("mechanism", "us"), indent=0, right=[1]))


if __name__ == "__main__":
    main()
