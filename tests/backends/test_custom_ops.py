"""Custom op libraries: only files inside a package's ``0/ops/`` are ever loaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neuropod.backends.custom_ops import op_path
from neuropod.errors import PackageError
from neuropod.package.package import Package


@pytest.fixture
def package(addition_package, tmp_path: Path):
    path = addition_package(name="addition", package_as_zip=False)
    with Package(path) as opened:
        opened.ops_dir.mkdir(parents=True, exist_ok=True)
        (opened.ops_dir / "good.so").write_bytes(b"\x7fELF")
        outside = tmp_path / "outside.so"
        outside.write_bytes(b"\x7fELF")
        os.symlink(outside, opened.ops_dir / "link.so")
        yield opened
        for name in ("good.so", "link.so"):
            (opened.ops_dir / name).unlink()


def test_a_file_in_ops_is_found(package: Package) -> None:
    assert op_path(package, "good.so") == package.ops_dir / "good.so"


@pytest.mark.parametrize("name", ["/usr/lib/libc.so.6", "../outside.so", "sub/good.so", "..", "", "a\\b.so"])
def test_a_name_with_a_path_is_refused_before_anything_is_opened(package: Package, name: str) -> None:
    with pytest.raises(PackageError, match=r"is not a file name in 0/ops/; only libraries inside"):
        op_path(package, name)


def test_a_link_out_of_the_folder_is_refused(package: Package) -> None:
    with pytest.raises(PackageError, match=r"custom op 0/ops/link\.so leads outside the package"):
        op_path(package, "link.so")


def test_a_missing_file_says_so(package: Package) -> None:
    with pytest.raises(PackageError, match=r"custom op 0/ops/absent\.so listed in config\.json is missing"):
        op_path(package, "absent.so")
