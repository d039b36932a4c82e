"""``neuropod ludwig``: package a trained Ludwig model (the original's Ludwig export command line)."""

from __future__ import annotations

import argparse
import textwrap

from neuropod.cli.arguments import add_command
from neuropod.packagers.ludwig import create_ludwig_neuropod, print_progress

EPILOG = """\
The original's options are kept: -m/--ludwig_model_path, -n/--neuropod_path,
-nm/--neuropod_model_name and --package_as_dir.

examples:
  neuropod ludwig -m results/experiment_run/model -n churn.zip
  neuropod ludwig --ludwig_model_path model --neuropod_path churn --package_as_dir
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``ludwig`` command."""
    parser = add_command(
        subparsers,
        "ludwig",
        run,
        help="package a trained Ludwig model (runs with torch alone, no Ludwig)",
        description=textwrap.fill(
            "Export a model saved by Ludwig 0.11 with LudwigModel.to_torchscript and package it as "
            "a TorchScript neuropod, self-tested on a few rows. Where ludwig 0.11 is not installed, "
            "the export runs in an isolated environment with ludwig 0.11.0, built once with uv "
            "(about 6 GB) and cached (see 'neuropod env list').",
            88,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-m", "--ludwig_model_path", "--ludwig-model-path", dest="ludwig_model_path", metavar="DIR",
        required=True, help="the folder LudwigModel.save wrote (or a training run's 'model' folder)",
    )  # fmt: skip
    parser.add_argument(
        "-n", "--neuropod_path", "--neuropod-path", dest="neuropod_path", metavar="PATH",
        required=True, help="where to write the package (must not exist)",
    )  # fmt: skip
    parser.add_argument(
        "-nm", "--neuropod_model_name", "--neuropod-model-name", dest="model_name", metavar="NAME",
        default="ludwig_model", help="the model's name (default: ludwig_model)",
    )  # fmt: skip
    parser.add_argument(
        "--package_as_dir", "--package-as-dir", dest="package_as_dir", action="store_true",
        help="write a directory instead of a zip file",
    )  # fmt: skip
    parser.add_argument(
        "--ludwig-python", metavar="PYTHON", help="a Python with ludwig 0.11 installed, to export with "
        "instead of an isolated environment",
    )  # fmt: skip
    parser.add_argument(
        "--env-cache", metavar="DIR", help="the environment cache (default: $NEUROPOD_ENV_CACHE)"
    )
    parser.add_argument(
        "--offline", action="store_true", help="build the environment from uv's cache only, never the network"
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the steps")


def run(args: argparse.Namespace) -> int:
    """Package the Ludwig model ``args.ludwig_model_path`` at ``args.neuropod_path``."""
    create_ludwig_neuropod(
        neuropod_path=args.neuropod_path,
        model_name=args.model_name,
        ludwig_model_path=args.ludwig_model_path,
        ludwig_python=args.ludwig_python,
        env_cache=args.env_cache,
        offline=args.offline,
        progress=None if args.quiet else print_progress,
        package_as_zip=not args.package_as_dir,
    )
    print(f"wrote Ludwig model '{args.model_name}' to {args.neuropod_path}")
    return 0
