"""``neuropod inspect``: what a package holds, and whether its files still match its manifest."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuropod.cli.arguments import add_command, add_package_argument
from neuropod.cli.output import format_shape, format_size, table
from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.archive import is_zip
from neuropod.package.manifest import package_files, verify_manifest
from neuropod.package.package import Package
from neuropod.package.zipped import read_zipped

VERIFIED = "verified"
NO_MANIFEST = "no manifest"
FAILED = "failed"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``inspect`` command."""
    parser = add_command(
        subparsers,
        "inspect",
        run,
        help="show a package's config, specs, files and manifest status",
        description="Show what a package holds: name, platform, input and output specs, custom "
        "ops, input devices, files with their sizes, and whether the files match manifest.json. "
        "A package that fails its manifest is still described, and the exit code is 1.",
    )
    add_package_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    """Print the description of ``args.path``; 1 when its manifest check fails."""
    report = describe(args.path)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 1 if report["manifest"]["status"] == FAILED else 0


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything ``inspect`` reports about a package, as a JSON-ready dict.

    The package is opened without verification so that a tampered package is still
    described; the manifest is checked afterwards and its outcome reported under
    ``"manifest"`` (``status``: ``verified``, ``no manifest`` or ``failed``, and ``error``).
    A zip is read in place, not extracted (unless it holds links, which only extraction
    resolves).

    Raises:
        PackageError: the path is not a package, or its config cannot be read.
    """
    zipped = read_zipped(Path(path)) if is_zip(Path(path)) else None
    if zipped is not None:
        sizes = zipped.files
        config = zipped.config
        manifest = _check_manifest(zipped.verify_manifest)
    else:
        with Package(path, verify=False) as package:
            root = package.root
            manifest = _check_manifest(lambda: verify_manifest(root, str(package.path)))
            files = package_files(root)
            if (root / layout.MANIFEST).is_file():
                files = [*files, layout.MANIFEST]
            sizes = {rel: (root / rel).stat().st_size for rel in files}
            config = package.config
    files = sorted(sizes)
    return {
        "path": str(path),
        "format": "directory" if Path(path).is_dir() else "zip",
        **config.to_json(),
        "test_data": _test_data_file(files),
        "files": [{"path": rel, "size": sizes[rel]} for rel in files],
        "manifest": manifest,
    }


def render(report: dict[str, Any]) -> str:
    """The text form of a ``describe`` report."""
    devices = report["input_tensor_device"]
    manifest = report["manifest"]
    status = {
        VERIFIED: "verified",
        NO_MANIFEST: "no manifest (original package)",
        FAILED: f"FAILED: {manifest['error']}",
    }[manifest["status"]]
    sections = [
        table(
            [
                ["path:", f"{report['path']} ({report['format']})"],
                ["name:", report["name"]],
                ["platform:", report["platform"]],
                ["platform_version_semver:", report["platform_version_semver"]],
                ["custom ops:", ", ".join(report["custom_ops"]) or "none"],
                ["test data:", report["test_data"] or "none"],
            ],
            indent=0,
        ),
        "inputs:\n" + _spec_table(report["input_spec"], devices),
        "outputs:\n" + _spec_table(report["output_spec"], None),
        "files:\n" + table([[f["path"], format_size(f["size"])] for f in report["files"]], right=[1]),
        f"manifest: {status}",
    ]
    return "\n\n".join(sections)


def _spec_table(specs: list[dict[str, Any]], devices: dict[str, str] | None) -> str:
    if not specs:
        return "  (none)"
    header = ["name", "dtype", "shape"] + (["device"] if devices is not None else [])
    rows = [
        [spec["name"], spec["dtype"], format_shape(spec["shape"])]
        + ([devices.get(spec["name"], "?")] if devices is not None else [])
        for spec in specs
    ]
    return table(rows, header)


def _check_manifest(verify: Callable[[], bool]) -> dict[str, Any]:
    try:
        verified = verify()
    except PackageError as exc:  # a zip's damaged entry too: the package fails its check
        return {"status": FAILED, "error": str(exc)}
    return {"status": VERIFIED if verified else NO_MANIFEST, "error": None}


def _test_data_file(files: list[str]) -> str | None:
    # The loader prefers the npz, so that is the one to name when both exist.
    for name in (layout.TEST_DATA_NPZ, layout.TEST_DATA_PICKLE):
        if name in files:
            return name
    return None
