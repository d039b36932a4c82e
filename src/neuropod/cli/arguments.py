"""Command-line values shared by commands: ``NAME=VALUE`` pairs and model load options."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from typing import Any

from neuropod.cli.errors import CommandError
from neuropod.options import Check


def pair(metavar: str) -> Callable[[str], tuple[str, str]]:
    """An argparse ``type`` splitting ``NAME=VALUE`` at the first ``=``; both sides non-empty.

    Args:
        metavar: how the expected form is shown in the error, e.g. ``"NAME=FILE.npy"``.
    """

    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"expected {metavar}, got {text!r}")
        return name, value

    parse.__name__ = metavar  # argparse names the type in some messages
    return parse


def checked(convert: Callable[[str], Any], check: Check) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then hold the value to a ``neuropod.options`` check.

    Args:
        convert: makes the value of the text (``int``, ``float``); its ``ValueError`` is a
            usage error as well.
        check: what the value must be, e.g. ``int_at_least(1)``.
    """

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = text
        if not check.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {check.expected}, got {text!r}")
        return value

    parse.__name__ = check.expected  # argparse names the type in some messages
    return parse


def unique(pairs: Iterable[tuple[str, str]], option: str) -> dict[str, str]:
    """``pairs`` as a dict, refusing a name given twice.

    Raises:
        CommandError: a name repeats.
    """
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise CommandError(f"{option} {name!r} is given more than once")
        out[name] = value
    return out


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--load-option KEY=VALUE`` (repeatable) to a command that loads a model."""
    parser.add_argument(
        "--load-option",
        dest="load_options",
        metavar="KEY=VALUE",
        type=pair("KEY=VALUE"),
        action="append",
        default=[],
        help="an option of load_neuropod, e.g. require_all_inputs=true or visible_gpu=0; "
        "VALUE is read as JSON when it parses, else as a string (repeatable)",
    )


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--load-option`` values as keyword arguments for ``load_neuropod``.

    Raises:
        CommandError: a key is given twice.
    """
    options: dict[str, Any] = {}
    for key, text in unique(args.load_options, "load option").items():
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Callable[[argparse.Namespace], int],
    **settings: Any,
) -> argparse.ArgumentParser:
    """Register the command ``name``, which ``run`` carries out; return its parser.

    Args:
        subparsers: the parent's subcommands.
        name: the command's name.
        run: takes the parsed arguments, returns the exit code.
        **settings: ``add_parser``'s settings (``help``, ``description``, ``epilog``, ...).
    """
    parser = subparsers.add_parser(name, **settings)
    parser.set_defaults(run=run)
    return parser


def add_package_argument(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``PATH`` of the package a command works on."""
    parser.add_argument("path", metavar="PATH", help="a package directory or zip file")
