"""``neuropod env prepare|list|prune``: the isolated environments packages run in, managed ahead of time."""

from __future__ import annotations

import argparse
import json
import time

from neuropod.cli.arguments import add_command, checked
from neuropod.cli.output import format_size, table
from neuropod.environments import EnvironmentCache, default_cache_dir, prepare_environment
from neuropod.options import number_at_least

#: How many packages a row of ``env list`` names before it says how many more.
LISTED_PACKAGES = 4


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``env`` command and its subcommands."""
    parser = subparsers.add_parser(
        "env",
        help="prepare, list and prune the isolated environments of packages",
        description="A package whose framework version or locked requirements the running "
        "environment does not satisfy runs in an isolated environment, built with uv and cached "
        f"by the hash of what it holds (cache: $NEUROPOD_ENV_CACHE, now {default_cache_dir()}).",
    )
    commands = parser.add_subparsers(
        title="subcommands", dest="env_command", metavar="SUBCOMMAND", required=True,
        parser_class=type(parser),
    )  # fmt: skip

    prepare = add_command(
        commands,
        "prepare",
        run_prepare,
        help="build the environments of packages now, so that loading them later is fast and offline",
        description="Build (or find in the cache) the environment each package would run in. "
        "A package that the running environment satisfies needs none, unless --force is given.",
    )
    prepare.add_argument("paths", metavar="PATH", nargs="+", help="package directories or zip files")
    prepare.add_argument(
        "--force", action="store_true", help="build even when the running environment would do"
    )
    prepare.add_argument(
        "--offline", action="store_true", help="install from uv's cache only, never the network"
    )
    _cache_argument(prepare)

    listing = add_command(
        commands,
        "list",
        run_list,
        help="list the cached environments",
        description="List the cached environments, least recently used first: hash, size "
        "(files shared with uv's cache included), packages, and when a model last used them.",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    _cache_argument(listing)

    prune = add_command(
        commands,
        "prune",
        run_prune,
        help="remove cached environments",
        description="Remove what interrupted builds left behind and, with --older-than or --all, "
        "environments. An environment a running model uses is kept.",
    )
    prune.add_argument(
        "--older-than",
        type=checked(float, number_at_least(0, "days")),
        metavar="DAYS",
        help="remove environments unused for DAYS days",
    )
    prune.add_argument("--all", action="store_true", help="remove every environment")
    _cache_argument(prune)


def _cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", metavar="DIR", help="the environment cache (default: $NEUROPOD_ENV_CACHE)")


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare every package's environment, printing each step."""
    for path in args.paths:
        print(f"{path}:", flush=True)
        environment = prepare_environment(
            path,
            env_cache=args.cache,
            progress=lambda step: print(f"  {step}", flush=True),
            force=args.force,
            offline=args.offline,
        )
        if environment is None:
            print("  runs in the current environment: nothing to prepare", flush=True)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the cached environments."""
    cache = EnvironmentCache(args.cache)
    infos = cache.entries()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "hash": info.key,
                        "path": str(info.path),
                        "size": info.size,
                        "packages": list(info.packages),
                        "python": info.python,
                        "created": info.created,
                        "last_used": info.last_used,
                        "in_use": info.in_use,
                    }
                    for info in infos
                ],
                indent=2,
            )
        )
        return 0
    if not infos:
        print(f"No environments in {cache.root}")
        return 0
    rows = [
        [
            info.key,
            format_size(info.size),
            _ago(info.last_used) + (" (in use)" if info.in_use else ""),
            _packages(info.packages),
        ]
        for info in infos
    ]
    print(table(rows, ["hash", "size", "last used", "packages"], indent=0, right=[1]))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Remove leftovers, and old (or all) environments."""
    cache = EnvironmentCache(args.cache)
    removed, busy = cache.prune(older_than_days=args.older_than, remove_all=args.all)
    for key in removed:
        print(f"removed {key}")
    for key in busy:
        print(f"kept {key}: a running model uses it")
    if not removed and not busy:
        print(f"Nothing to remove in {cache.root}")
    return 0


def _packages(packages: tuple[str, ...]) -> str:
    shown = ", ".join(packages[:LISTED_PACKAGES])
    more = len(packages) - LISTED_PACKAGES
    return shown + (f", +{more} more" if more > 0 else "")


def _ago(timestamp: float) -> str:
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"
