"""The ``neuropod`` parser, and the one place where errors become messages and exit codes.

Exit codes: 0 success; 1 the package was checked and found wrong (a test-data mismatch, a
failed manifest); 2 the command could not do its work (bad usage, missing file, a
``NeuropodError`` such as an invalid package or input); 130 interrupted; 143 terminated
(SIGTERM). Every command but ``serve`` (which drains its requests first) unwinds on SIGTERM as
on Ctrl-C, so that extracted packages and worker processes are cleaned up before it exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from neuropod import __version__
from neuropod.cli import env, infer, inspect, ludwig, placeholder, platforms, run, serve, test
from neuropod.cli.errors import CommandError
from neuropod.cli.output import one_line
from neuropod.errors import NeuropodError

PROG = "neuropod"

#: The command modules, in the order ``--help`` lists them.
COMMANDS = (inspect, infer, run, test, placeholder, ludwig, platforms, serve, env)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Raised in the main thread, a BaseException unwinds every with block on the way out (as
    # KeyboardInterrupt does for SIGINT) and passes the model's handlers of Exception.
    raise SystemExit(EXIT_TERMINATED)


@contextmanager
def _terminate_unwinds(command: str) -> Iterator[None]:
    # serve installs its own handlers, which drain the requests in flight.
    if command == "serve" or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Parser(argparse.ArgumentParser):
    """Reports usage errors on one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``neuropod`` command and its subcommands."""
    parser = _Parser(
        prog=PROG,
        description="Inspect, run, test and create neuropod packages.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``neuropod`` command line and return its exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a package fails a check, 2 on any error, 130 when interrupted,
        143 when terminated by SIGTERM.

    >>> main(["--version"])
    neuropod ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with _terminate_unwinds(args.command):
            code: int = args.run(args)
    except SystemExit as exc:
        if exc.code != EXIT_TERMINATED:
            raise
        return EXIT_TERMINATED
    except (CommandError, NeuropodError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader went away (``neuropod inspect x --json | head``): stop quietly, and point
        # stdout at devnull so that the flush at interpreter exit does not fail again.
        _silence_stdout()
        return EXIT_FAILED
    except OSError as exc:
        return _fail(_describe_os_error(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def _fail(message: str) -> int:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (captured in tests)
        pass


def _describe_os_error(exc: OSError) -> str:
    # "[Errno 2] No such file or directory: 'x'" reads worse than "x: No such file or directory".
    if exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)
