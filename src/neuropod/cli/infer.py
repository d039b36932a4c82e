"""``neuropod infer``: run a package once on inputs read from ``.npy`` files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from neuropod.cli.arguments import (
    add_command,
    add_load_options,
    add_package_argument,
    load_options,
    pair,
    unique,
)
from neuropod.cli.errors import CommandError
from neuropod.cli.output import tensor_table
from neuropod.loader import load_neuropod
from neuropod.package.test_data import storable_array


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``infer`` command."""
    parser = add_command(
        subparsers,
        "infer",
        run,
        help="run a package once on inputs from .npy files",
        description="Load a package, run it once on the given inputs and print, for each "
        "output, its dtype, shape and a summary (min/max/mean, or the first strings), then "
        "the load and inference times.",
        epilog="example: neuropod infer model.zip --input x=x.npy --input y=y.npy "
        "--output-dir out/ --load-option require_all_inputs=true",
    )
    add_package_argument(parser)
    parser.add_argument(
        "-i",
        "--input",
        dest="inputs",
        metavar="NAME=FILE.npy",
        type=pair("NAME=FILE.npy"),
        action="append",
        default=[],
        help="an input tensor read with numpy.load (no pickles); repeat for every input",
    )
    parser.add_argument(
        "-o", "--output-dir", metavar="DIR", type=Path, help="write every output to DIR/NAME.npy"
    )
    add_load_options(parser)


def run(args: argparse.Namespace) -> int:
    """Load, run once, print the outputs and timings, and write them if asked."""
    inputs = {name: read_array(name, file) for name, file in unique(args.inputs, "input").items()}
    options = load_options(args)
    start = time.perf_counter()
    with load_neuropod(args.path, **options) as model:
        loaded = time.perf_counter()
        outputs = model.infer(inputs)
        done = time.perf_counter()
    print(tensor_table(outputs))
    print(f"\nload: {_ms(loaded - start)}  infer: {_ms(done - loaded)}")
    if args.output_dir is not None:
        for path in write_outputs(outputs, args.output_dir):
            print(f"wrote {path}")
    return 0


def read_array(name: str, file: str) -> np.ndarray:
    """Read the ``.npy`` file of input ``name``.

    Raises:
        CommandError: the file cannot be read, is an ``.npz`` archive, or needs pickle.
    """
    try:
        array = np.load(file, allow_pickle=False)
    except OSError as exc:
        raise CommandError(f"input '{name}': cannot read {file}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CommandError(
            f"input '{name}': {file} is not a .npy file that numpy can read without pickle: {exc}"
        ) from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise CommandError(f"input '{name}': {file} is an .npz archive; give one .npy file per input")
    return array


def write_outputs(outputs: dict[str, np.ndarray], directory: Path) -> list[Path]:
    """Save every output as ``directory/NAME.npy``; return the paths written.

    Raises:
        CommandError: an output's name cannot be a file name.
    """
    for name in outputs:
        if Path(name).name != name or name in (".", ".."):
            raise CommandError(f"output {name!r} cannot be written: its name is not a file name")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, array in outputs.items():
        path = directory / f"{name}.npy"
        try:
            # Object arrays of str become unicode and those of bytes S arrays: no pickle.
            value = storable_array(array, name)
        except ValueError as exc:
            raise CommandError(f"output {exc}; it cannot be written as {path}") from None
        np.save(path, value, allow_pickle=False)
        paths.append(path)
    return paths


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
