"""``neuropod platforms``: the platforms with a backend, and whether their framework is installed."""

from __future__ import annotations

import argparse
import importlib.util

from neuropod.cli.arguments import add_command
from neuropod.cli.output import table
from neuropod.platforms import BUILTIN_PLATFORMS
from neuropod.registry import platforms


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``platforms`` command."""
    add_command(
        subparsers,
        "platforms",
        run,
        help="list the platforms neuropod can run and whether their frameworks are installed",
        description="List every platform with a backend (built in, registered, or from an "
        "entry point) and whether its framework can be imported. Nothing is imported to find out.",
    )


def run(args: argparse.Namespace) -> int:
    """Print one row per platform."""
    rows = [[name, _framework(name) or "-", framework_status(name)] for name in platforms()]
    print(table(rows, ["platform", "framework", "status"], indent=0))
    return 0


def framework_status(platform: str) -> str:
    """``available``, ``missing (pip install ...)``, or ``unknown`` for third-party platforms."""
    builtin = BUILTIN_PLATFORMS.get(platform)
    if builtin is None:
        return "unknown (third-party backend)"
    module = builtin.framework
    if module is None or importlib.util.find_spec(module) is not None:
        return "available"
    extra = builtin.extra
    return f"missing (pip install 'neuropod[{extra}]')" if extra else f"missing ({module} is not installed)"


def _framework(platform: str) -> str | None:
    builtin = BUILTIN_PLATFORMS.get(platform)
    return builtin.framework if builtin else None
