"""``neuropod placeholder``: a package with random outputs for a problem definition in JSON."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from neuropod.cli.arguments import add_command
from neuropod.cli.errors import CommandError
from neuropod.packagers.placeholder import create_placeholder_neuropod
from neuropod.spec.dtypes import DTYPES

SPEC_KEYS = ("name", "input_spec", "output_spec")

EPILOG = """\
SPEC.json holds the model's name and its problem definition, in the form of config.json:

  {
    "name": "my_model",
    "input_spec": [
      {"name": "x", "dtype": "float32", "shape": ["batch", null, 3]}
    ],
    "output_spec": [
      {"name": "scores", "dtype": "float32", "shape": ["batch", 10]},
      {"name": "labels", "dtype": "string", "shape": ["batch"]}
    ]
  }

DTYPES
Each shape item is null (any size), a positive size, or a symbol whose size agrees
wherever it appears. Output dims whose symbol appears in the inputs take the input's
size; other free dims get a random size from 1 to 4.

example: neuropod placeholder spec.json my_model.zip --seed 0
""".replace("DTYPES", textwrap.fill("dtype is one of: " + " ".join(DTYPES) + ".", 88))


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``placeholder`` command."""
    parser = add_command(
        subparsers,
        "placeholder",
        run,
        help="create a package with random outputs from a JSON problem definition",
        description=textwrap.fill(
            "Create a placeholder package: a python-platform model that returns random outputs "
            "matching the output spec, so that code using a model can be written and tested "
            "before the model exists.",
            88,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC.json", type=Path, help="the problem definition (see below)")
    parser.add_argument("out", metavar="OUT", type=Path, help="where to write the package (must not exist)")
    parser.add_argument(
        "--seed", metavar="N", type=int, help="seed of the random outputs (default: different on every load)"
    )
    parser.add_argument("--dir", action="store_true", help="write a directory instead of a zip file")


def run(args: argparse.Namespace) -> int:
    """Create the package described by ``args.spec`` at ``args.out``."""
    spec = read_spec(args.spec)
    create_placeholder_neuropod(
        neuropod_path=args.out,
        model_name=spec["name"],
        input_spec=spec["input_spec"],
        output_spec=spec["output_spec"],
        seed=args.seed,
        package_as_zip=not args.dir,
    )
    print(f"wrote placeholder package '{spec['name']}' to {args.out}")
    return 0


def read_spec(path: Path) -> dict[str, Any]:
    """Read and shape-check a SPEC.json; the specs themselves are checked by the packager.

    Raises:
        CommandError: the file is not JSON, not an object, or lacks or adds keys.
        OSError: the file cannot be read.
    """
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise CommandError(f"{path} must hold a JSON object with the keys {', '.join(SPEC_KEYS)}")
    missing = [key for key in SPEC_KEYS if key not in spec]
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise CommandError(
            f"{path} must have exactly the keys {', '.join(SPEC_KEYS)} ({'; '.join(problems)})"
        )
    return spec
