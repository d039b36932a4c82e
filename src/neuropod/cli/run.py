"""``neuropod run``: run a package over a dataset in batches, locally or on Ray, resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuropod.batch import STATE_FILE, RunResult
from neuropod.batch import run as run_batches
from neuropod.batch.engine import Engine, LocalEngine
from neuropod.batch.runner import DEFAULT_BATCH_SIZE
from neuropod.cli.arguments import add_command, add_load_options, add_package_argument, checked, load_options
from neuropod.cli.errors import CommandError
from neuropod.cli.output import one_line
from neuropod.options import int_at_least

#: Failed batches listed in the summary; the state file lists them all.
LISTED_FAILURES = 10

_COUNT = checked(int, int_at_least(1))


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``run`` command."""
    parser = add_command(
        subparsers,
        "run",
        run,
        help="run a package over a dataset in batches, writing the outputs shard by shard",
        description="Feed a dataset (a folder of .npz files, of NAME.npy files or folders of "
        "them, of .parquet or Arrow files whose columns are named after the inputs) through a "
        "package in batches along its batch dim, and write the outputs under OUT in the same "
        "format, one file per input shard. Running the same command again after a crash or a "
        "kill only runs the shards not finished. A batch that fails is reported with its rows "
        "and the run goes on (exit code 1), unless --stop-on-error.",
        epilog="example: neuropod run model.zip --input data/ --output out/ --batch-size 4096 "
        "--engine ray --concurrency 4",
    )
    add_package_argument(parser)
    parser.add_argument(
        "-i", "--input", required=True, metavar="DATA", help="the dataset: a folder or a file"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT", type=Path, help="the output folder")
    parser.add_argument(
        "-b",
        "--batch-size",
        type=_COUNT,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"rows per call of the model (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--stop-on-error", action="store_true", help="stop at the first batch that fails")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="run the batches in this process (default) or on a pool of Ray actors",
    )
    group.add_argument(
        "--address",
        metavar="ADDRESS",
        help="the Ray cluster (e.g. auto, ray://head:10001); default: start Ray on this machine",
    )
    group.add_argument("--concurrency", type=_COUNT, default=2, metavar="N", help="Ray actors (default 2)")
    group.add_argument(
        "--num-cpus", type=float, default=1.0, metavar="X", help="CPUs per Ray actor (default 1)"
    )
    group.add_argument(
        "--num-gpus", type=float, default=0.0, metavar="X", help="GPUs per Ray actor (default 0)"
    )
    group.add_argument(
        "--ship-package",
        action="store_true",
        help="send the package to the Ray workers through the object store, for workers that "
        "cannot read PATH",
    )
    add_load_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run the batches and print a summary; 1 when some batches failed.

    Raises:
        CommandError: Ray options without ``--engine ray``.
    """
    result = run_batches(
        args.path,
        args.input,
        output=args.output,
        batch_size=args.batch_size,
        engine=_engine(args),
        stop_on_error=args.stop_on_error,
        progress=not args.quiet,
        load_options=load_options(args),
    )
    print(summary(result))
    return 1 if result.failures else 0


def summary(result: RunResult) -> str:
    """What a run did, in a few lines: rows, rate, shards, failures, where the outputs are."""
    lines = [
        f"ran {result.rows + result.failed_rows:,} rows of {result.shards_run} shard(s) in "
        f"{result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)"
        + (f"; {result.shards_skipped} shard(s) were done already" if result.shards_skipped else "")
    ]
    if result.failures:
        lines.append(f"{len(result.failures)} batch(es) failed ({result.failed_rows:,} rows):")
        lines += [f"  {one_line(str(failure))}" for failure in result.failures[:LISTED_FAILURES]]
        if len(result.failures) > LISTED_FAILURES:
            lines.append(f"  ... and {len(result.failures) - LISTED_FAILURES} more")
    if result.output is not None:
        lines.append(f"outputs: {result.output} (run state: {result.output / STATE_FILE})")
    return "\n".join(lines)


def _engine(args: argparse.Namespace) -> Engine:
    if args.engine == "local":
        given = [
            flag
            for flag, value, default in (
                ("--address", args.address, None),
                ("--concurrency", args.concurrency, 2),
                ("--num-cpus", args.num_cpus, 1.0),
                ("--num-gpus", args.num_gpus, 0.0),
                ("--ship-package", args.ship_package, False),
            )
            if value != default
        ]
        if given:
            raise CommandError(f"{', '.join(given)} apply to --engine ray only")
        return LocalEngine()
    from neuropod.integrations.ray import RayEngine

    engine: Engine = RayEngine(
        address=args.address,
        concurrency=args.concurrency,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        ship_package=args.ship_package,
    )
    return engine

