"""``neuropod test``: run a package on the test data stored in it and compare the outputs."""

from __future__ import annotations

import argparse

from neuropod.cli.arguments import add_command, add_load_options, add_package_argument, load_options
from neuropod.cli.errors import CommandError
from neuropod.cli.output import one_line, tensor_table
from neuropod.errors import TestDataMismatch
from neuropod.loader import load_neuropod
from neuropod.package.package import Package
from neuropod.utils.eval_utils import check_output_matches_expected


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``test`` command."""
    parser = add_command(
        subparsers,
        "test",
        run,
        help="run a package on its stored test data and compare the outputs",
        description="Run a package on the test inputs stored in it (test_data.npz, or the "
        "original Neuropod's test_data.pkl) and compare every expected output: np.allclose "
        "for numbers, equality for strings. Exit code 0 when all match, 1 on a mismatch, 2 "
        "when the package stores no test data.",
    )
    add_package_argument(parser)
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="unpickle an original package's test_data.pkl even where it names code (by "
        "default only numpy arrays, dicts, lists, tuples, strings, bytes and numbers are built); "
        "only for packages you trust",
    )
    add_load_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print PASS or FAIL for every expected output; 1 if any fails.

    Raises:
        CommandError: the package stores no test data.
    """
    with Package(args.path) as package:
        data = package.test_data(allow_pickle=args.allow_pickle)
    if data is None:
        raise CommandError(
            f"{args.path} stores no test data (test_data.npz or test_data.pkl); package it "
            f"with test_input_data and test_expected_out to add some"
        )
    with load_neuropod(args.path, **load_options(args)) as model:
        outputs = model.infer(data.inputs)
    if data.expected is None:
        print(tensor_table(outputs))
        print("\nran the test inputs; the package stores no expected outputs to compare with")
        return 0
    failures = 0
    for name in sorted(data.expected):
        try:
            check_output_matches_expected(outputs, {name: data.expected[name]})
        except TestDataMismatch as exc:
            failures += 1
            print(f"FAIL  {name}: {one_line(str(exc))}")
        else:
            print(f"PASS  {name}")
    passed = len(data.expected) - failures
    print(f"\n{passed} passed, {failures} failed")
    return 1 if failures else 0
