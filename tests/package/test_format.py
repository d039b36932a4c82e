"""The on-disk package format: exact bytes, integrity, hostile archives, the original's layout."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import tempfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from neuropod import (
    IntegrityError,
    OptionError,
    PackageError,
    SpecError,
    TestDataMismatch,
    UnsafeArchiveError,
    load_neuropod,
)
from neuropod.package import Package
from neuropod.packagers import create_placeholder_neuropod, create_python_neuropod
from neuropod.utils.eval_utils import load_and_test_neuropod, load_test_data

ADDITION_INPUTS = [
    {"name": "x", "dtype": "float32", "shape": [None]},
    {"name": "y", "dtype": "float32", "shape": [None]},
]
ADDITION_OUTPUTS = [{"name": "out", "dtype": "float32", "shape": [None]}]

ADDITION_CONFIG = """\
{
    "custom_ops": [],
    "input_spec": [
        {
            "dtype": "float32",
            "name": "x",
            "shape": [
                null
            ]
        },
        {
            "dtype": "float32",
            "name": "y",
            "shape": [
                null
            ]
        }
    ],
    "input_tensor_device": {
        "x": "GPU",
        "y": "GPU"
    },
    "name": "addition_model",
    "output_spec": [
        {
            "dtype": "float32",
            "name": "out",
            "shape": [
                null
            ]
        }
    ],
    "platform": "python",
    "platform_version_semver": "*"
}"""

ADDITION_CODE = """\
import os

import numpy as np

from addition_model.helpers import add


def get_model(data_dir):
    with open(os.path.join(data_dir, "offset.txt")) as f:
        offset = np.float32(f.read())

    def model(x, y):
        return {"out": add(x, y) + offset}

    return model
"""

X = np.array([1.0, 2.0], np.float32)
Y = np.array([10.0, 20.0], np.float32)


@pytest.fixture
def sources(tmp_path):
    """The code and data of an addition model (out = x + y + 0.5), outside any package."""
    src = tmp_path / "src"
    (src / "addition_model").mkdir(parents=True)
    (src / "addition_model" / "__init__.py").write_text("")
    (src / "addition_model" / "model.py").write_text(ADDITION_CODE)
    (src / "addition_model" / "helpers.py").write_text("def add(a, b):\n    return a + b\n")
    (src / "offset.txt").write_text("0.5")
    return src


def package_addition(sources: Path, path: Path, **kwargs) -> Path:
    create_python_neuropod(
        neuropod_path=path,
        model_name="addition_model",
        input_spec=ADDITION_INPUTS,
        output_spec=ADDITION_OUTPUTS,
        data_paths=[{"path": str(sources / "offset.txt"), "packaged_name": "offset.txt"}],
        code_path_spec=[{"python_root": str(sources), "dirs_to_package": ["addition_model"]}],
        entrypoint_package="addition_model.model",
        entrypoint="get_model",
        **kwargs,
    )
    return path


def package_placeholder(path: Path, **kwargs) -> Path:
    create_placeholder_neuropod(
        neuropod_path=path,
        model_name="placeholder",
        input_spec=[{"name": "x", "dtype": "float32", "shape": ["batch", 2]}],
        output_spec=[{"name": "out", "dtype": "int32", "shape": ["batch"]}],
        seed=1,
        **kwargs,
    )
    return path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``root``, by relative path."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[Path(dirpath, name).relative_to(root).as_posix() + "/"] = None
        for name in filenames:
            found[Path(dirpath, name).relative_to(root).as_posix()] = Path(dirpath, name).read_bytes()
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# config.json and manifest.json


def test_config_json_is_written_sorted_with_four_space_indents(sources, tmp_path):
    path = package_addition(sources, tmp_path / "model", package_as_zip=False)
    assert (path / "config.json").read_text() == ADDITION_CONFIG


def test_zipped_config_json_is_the_same_text(sources, tmp_path):
    path = package_addition(sources, tmp_path / "model.zip")
    with zipfile.ZipFile(path) as zf:
        assert zf.read("config.json").decode() == ADDITION_CONFIG


def test_original_layout_of_a_python_package(sources, tmp_path):
    path = package_addition(sources, tmp_path / "model", package_as_zip=False)
    files = tree(path)
    assert json.loads(files["0/config.json"]) == {  # type: ignore[arg-type]
        "entrypoint": "get_model",
        "entrypoint_package": "addition_model.model",
    }
    assert files["0/ops/"] is None
    assert files["0/data/offset.txt"] == b"0.5"
    assert files["0/code/addition_model/__init__.py"] == b""
    assert files["0/code/addition_model/model.py"] == ADDITION_CODE.encode()


def test_manifest_holds_the_sha256_of_every_other_file(sources, tmp_path):
    path = package_addition(
        sources, tmp_path / "model", package_as_zip=False, test_input_data={"x": X, "y": Y}
    )
    files = {name: data for name, data in tree(path).items() if data is not None}
    manifest_text = files.pop("manifest.json").decode()  # type: ignore[union-attr]
    manifest = json.loads(manifest_text)
    assert manifest == {
        "manifest_version": 1,
        "files": {name: sha256(data) for name, data in files.items()},  # type: ignore[arg-type]
    }
    assert set(manifest["files"]) == {
        "config.json",
        "test_data.npz",
        "0/config.json",
        "0/data/offset.txt",
        "0/code/__init__.py",
        "0/code/addition_model/__init__.py",
        "0/code/addition_model/model.py",
        "0/code/addition_model/helpers.py",
    }
    assert manifest_text == json.dumps(manifest, indent=4, sort_keys=True)


# Determinism


def test_zip_packages_are_byte_for_byte_deterministic(sources, tmp_path):
    first = package_addition(sources, tmp_path / "a.zip", test_input_data={"x": X, "y": Y})
    os.utime(sources / "offset.txt", (0, 0))  # mtimes must not leak into the archive
    second = package_addition(sources, tmp_path / "b.zip", test_input_data={"x": X, "y": Y})
    assert first.read_bytes() == second.read_bytes()


def test_placeholder_zips_are_byte_for_byte_deterministic(tmp_path):
    assert package_placeholder(tmp_path / "a.zip").read_bytes() == (
        package_placeholder(tmp_path / "b.zip").read_bytes()
    )


def test_directory_packages_are_deterministic(sources, tmp_path):
    first = package_addition(sources, tmp_path / "a", package_as_zip=False)
    second = package_addition(sources, tmp_path / "b", package_as_zip=False)
    assert tree(first) == tree(second)
    assert tree(package_placeholder(tmp_path / "c", package_as_zip=False)) == tree(
        package_placeholder(tmp_path / "d", package_as_zip=False)
    )


def test_zip_entries_are_sorted_with_fixed_metadata(sources, tmp_path):
    path = package_addition(sources, tmp_path / "model.zip")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert "0/ops/" in names  # empty directories are kept
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    for info in infos:
        mode = info.external_attr >> 16
        assert mode == (stat.S_IFDIR | 0o755 if info.is_dir() else stat.S_IFREG | 0o644)


def test_packages_get_the_permissions_of_any_new_file(tmp_path):
    # a package made by one user (CI) is often served by another
    (tmp_path / "probe").touch()
    (tmp_path / "probe_dir").mkdir()
    zipped = package_placeholder(tmp_path / "model.zip")
    directory = package_placeholder(tmp_path / "model", package_as_zip=False)
    assert stat.S_IMODE(zipped.stat().st_mode) == stat.S_IMODE((tmp_path / "probe").stat().st_mode)
    assert stat.S_IMODE(directory.stat().st_mode) == stat.S_IMODE((tmp_path / "probe_dir").stat().st_mode)


def test_zip_compression_is_honoured(sources, tmp_path):
    path = package_addition(sources, tmp_path / "model.zip", zip_compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(path) as zf:
        assert {info.compress_type for info in zf.infolist()} == {zipfile.ZIP_STORED}
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X, "y": Y})["out"], X + Y + 0.5)


def test_zip_round_trip(sources, tmp_path):
    zipped = package_addition(sources, tmp_path / "model.zip")
    directory = package_addition(sources, tmp_path / "model", package_as_zip=False)
    with zipfile.ZipFile(zipped) as zf:
        zf.extractall(tmp_path / "extracted")
    assert tree(tmp_path / "extracted") == tree(directory)
    for path in (zipped, directory, tmp_path / "extracted"):
        with load_neuropod(path) as model:
            np.testing.assert_array_equal(model.infer({"x": X, "y": Y})["out"], X + Y + 0.5)


# Integrity


@pytest.fixture
def directory_package(tmp_path):
    return package_placeholder(tmp_path / "model", package_as_zip=False)


def test_changed_file_is_an_integrity_error(directory_package):
    target = directory_package / "0/data/placeholder.json"
    before = sha256(target.read_bytes())
    target.write_text(target.read_text().replace('"seed": 1', '"seed": 2'))
    with pytest.raises(IntegrityError) as info:
        load_neuropod(directory_package)
    assert str(info.value) == (
        f"{directory_package}: file '0/data/placeholder.json' has changed since packaging "
        f"(sha256 expected {before}, got {sha256(target.read_bytes())})"
    )


def test_missing_file_is_an_integrity_error(directory_package):
    (directory_package / "0/config.json").unlink()
    with pytest.raises(IntegrityError) as info:
        load_neuropod(directory_package)
    assert str(info.value) == (
        f"{directory_package}: file '0/config.json' is listed in manifest.json but missing"
    )


def test_extra_file_is_an_integrity_error(directory_package):
    (directory_package / "0/data/extra.bin").write_bytes(b"?")
    (directory_package / "0/ops/evil.so").write_bytes(b"?")
    with pytest.raises(IntegrityError) as info:
        load_neuropod(directory_package)
    assert str(info.value) == (
        f"{directory_package}: file(s) '0/data/extra.bin', '0/ops/evil.so' are not listed in manifest.json"
    )


def test_manifest_entries_outside_the_package_are_missing(directory_package, tmp_path):
    (tmp_path / "outside.txt").write_text("x")
    manifest_path = directory_package / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["../outside.txt"] = sha256(b"x")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError) as info:
        load_neuropod(directory_package)
    assert str(info.value) == (
        f"{directory_package}: file '../outside.txt' is listed in manifest.json but missing"
    )


def test_bytecode_caches_are_ignored(directory_package):
    cache = directory_package / "0/code/neuropod_placeholder/__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-311.pyc").write_bytes(b"\0")
    with load_neuropod(directory_package) as model:
        assert model.infer({"x": np.zeros((3, 2), np.float32)})["out"].shape == (3,)


def test_tampered_zip_is_an_integrity_error(tmp_path):
    path = package_placeholder(tmp_path / "model.zip")
    with zipfile.ZipFile(path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data + b" " if info.filename == "0/config.json" else data)
    original = {info.filename: data for info, data in entries}["0/config.json"]
    with pytest.raises(IntegrityError) as info:
        load_neuropod(tampered)
    assert str(info.value) == (
        f"{tampered}: file '0/config.json' has changed since packaging "
        f"(sha256 expected {sha256(original)}, got {sha256(original + b' ')})"
    )


def test_manifest_must_list_files(directory_package):
    (directory_package / "manifest.json").write_text('{"manifest_version": 1}')
    with pytest.raises(PackageError) as info:
        load_neuropod(directory_package)
    assert str(info.value) == (
        f"The manifest of {directory_package} ({directory_package / 'manifest.json'}) has no "
        f"'files' object"
    )


# Paths that are not packages, and hostile or broken zips


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Make zips extract under ``tmp_path/tmp``, so that a test can see everything written."""
    extract_root = tmp_path / "tmp"
    extract_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(extract_root))
    return extract_root


def add_link(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def hostile_zip(tmp_path: Path, build) -> Path:
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", ADDITION_CONFIG)
        build(zf)
    return path


def assert_nothing_escaped(tmp_path: Path, extract_root: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.zip", "tmp"]
    assert list(extract_root.iterdir()) == []  # the extracted copy is gone too


@pytest.mark.parametrize("name", ["/abs.txt", "\\abs.txt", "C:/abs.txt"])
def test_absolute_entry_is_refused(tmp_path, private_tmp, name):
    path = hostile_zip(tmp_path, lambda zf: zf.writestr(name, b"x"))
    with pytest.raises(UnsafeArchiveError) as info:
        load_neuropod(path)
    assert str(info.value) == f"{path}: entry '{name}' has an absolute path"
    assert_nothing_escaped(tmp_path, private_tmp)


@pytest.mark.parametrize("name", ["../escaped.txt", "0/../../escaped.txt", "0/..\\..\\escaped.txt"])
def test_dotdot_entry_is_refused(tmp_path, private_tmp, name):
    path = hostile_zip(tmp_path, lambda zf: zf.writestr(name, b"x"))
    with pytest.raises(UnsafeArchiveError) as info:
        load_neuropod(path)
    assert str(info.value) == f"{path}: entry '{name}' contains '..'"
    assert_nothing_escaped(tmp_path, private_tmp)


@pytest.mark.parametrize("target", ["../..", "../../escaped", "/etc/passwd", "0/../../.."])
def test_link_pointing_outside_is_refused(tmp_path, private_tmp, target):
    def build(zf):
        add_link(zf, "0/link", target)
        zf.writestr("0/link/escaped.txt", b"x")

    path = hostile_zip(tmp_path, build)
    with pytest.raises(UnsafeArchiveError) as info:
        load_neuropod(path)
    assert str(info.value) == f"{path}: entry '0/link' is a link to '{target}', which is outside the package"
    assert_nothing_escaped(tmp_path, private_tmp)


def test_chain_of_links_leading_outside_is_refused(tmp_path, private_tmp):
    # 'a -> b/..' is harmless while b does not exist; 'b -> .' then makes a point at the parent
    def build(zf):
        add_link(zf, "a", "b/..")
        add_link(zf, "b", ".")
        zf.writestr("a/escaped/", b"")
        zf.writestr("a/escaped.txt", b"x")

    path = hostile_zip(tmp_path, build)
    with pytest.raises(UnsafeArchiveError) as info:
        load_neuropod(path)
    assert str(info.value) == (
        f"{path}: entry 'a/escaped/' would be written outside the package (through a link)"
    )
    assert_nothing_escaped(tmp_path, private_tmp)


def test_link_left_pointing_outside_is_refused(tmp_path, private_tmp):
    def build(zf):
        add_link(zf, "a", "b/..")
        add_link(zf, "b", ".")

    path = hostile_zip(tmp_path, build)
    with pytest.raises(UnsafeArchiveError) as info:
        load_neuropod(path)
    assert str(info.value) == (
        f"{path}: entry 'a' is a link to 'b/..', which leads outside the package through other links"
    )
    assert_nothing_escaped(tmp_path, private_tmp)


def test_link_inside_the_package_is_allowed(sources, tmp_path):
    path = package_addition(sources, tmp_path / "model.zip")
    with zipfile.ZipFile(path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist() if info.filename != "manifest.json"]
    linked = tmp_path / "linked.zip"
    with zipfile.ZipFile(linked, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
        add_link(zf, "0/data/offset_link.txt", "offset.txt")
    with Package(linked) as package:
        assert (package.data_dir / "offset_link.txt").read_text() == "0.5"


def test_corrupt_zip_entry(tmp_path, private_tmp):
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", ADDITION_CONFIG * 20)
    data = bytearray(path.read_bytes())
    start = 30 + len("config.json") + 20  # past the local header, into the deflate stream
    data[start : start + 16] = bytes(b ^ 0xFF for b in data[start : start + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError) as info:
        load_neuropod(path)
    assert str(info.value).startswith(f"{path}: cannot extract 'config.json': ")
    assert_nothing_escaped(tmp_path, private_tmp)


def test_crc_mismatch(tmp_path, private_tmp):
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", ADDITION_CONFIG)
    data = path.read_bytes().replace(b'"addition_model"', b'"addition_modex"')
    path.write_bytes(data)
    with pytest.raises(PackageError) as info:
        load_neuropod(path)
    assert str(info.value) == f"{path}: cannot extract 'config.json': Bad CRC-32 for file 'config.json'"
    assert_nothing_escaped(tmp_path, private_tmp)


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_file_that_is_not_a_zip(tmp_path, content):
    path = tmp_path / "model.zip"
    path.write_bytes(content)
    with pytest.raises(PackageError) as info:
        load_neuropod(path)
    assert str(info.value) == f"{path} is neither a package directory nor a zip file"


def test_truncated_zip(tmp_path):
    path = package_placeholder(tmp_path / "model.zip")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(PackageError) as info:
        load_neuropod(path)
    assert str(info.value) == f"{path} is neither a package directory nor a zip file"


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(PackageError) as info:
        load_neuropod(tmp_path / "nowhere.zip")
    assert str(info.value) == f"No neuropod package at {tmp_path / 'nowhere.zip'}: it does not exist"


def test_directory_without_config(tmp_path):
    with pytest.raises(PackageError) as info:
        load_neuropod(tmp_path)
    assert str(info.value) == (f"The model config is missing: {tmp_path / 'config.json'} does not exist")


def test_config_that_is_not_json(directory_package):
    (directory_package / "config.json").write_text("{")
    with pytest.raises(PackageError) as info:
        load_neuropod(directory_package)
    assert str(info.value).startswith(
        f"The model config at {directory_package / 'config.json'} is not valid JSON: "
    )


def test_zipped_package_is_extracted_privately_and_removed_on_close(tmp_path, private_tmp):
    path = package_placeholder(tmp_path / "model.zip")
    model = load_neuropod(path)
    (extracted,) = private_tmp.iterdir()
    assert (extracted / "package" / "config.json").is_file()
    model.close()
    model.close()
    assert list(private_tmp.iterdir()) == []


# Packages written by the original Neuropod


def write_original_package(root: Path, sources: Path) -> None:
    """Lay out an addition model as the original Neuropod did: no manifest, pickled test data."""
    (root / "0" / "ops").mkdir(parents=True)
    (root / "0" / "data").mkdir()
    (root / "0" / "data" / "offset.txt").write_text("0.5")
    code = root / "0" / "code" / "addition_model"
    code.mkdir(parents=True)
    for name in ("__init__.py", "model.py", "helpers.py"):
        (code / name).write_bytes((sources / "addition_model" / name).read_bytes())
    config = {
        "name": "addition_model",
        "platform": "python",
        "platform_version_semver": "*",
        "input_spec": ADDITION_INPUTS,
        "output_spec": ADDITION_OUTPUTS,
        "custom_ops": [],
        "input_tensor_device": {"x": "GPU", "y": "GPU"},
    }
    (root / "config.json").write_text(json.dumps(config))
    (root / "0" / "config.json").write_text(
        json.dumps({"entrypoint_package": "addition_model.model", "entrypoint": "get_model"})
    )
    with open(root / "test_data.pkl", "wb") as f:
        pickle.dump({"test_input": {"x": X, "y": Y}, "test_output": {"out": X + Y + 0.5}}, f)


def zip_like_the_original(root: Path, path: Path) -> None:
    """A plain zip of the tree: real timestamps, no directory entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            zf.write(file, file.relative_to(root).as_posix())


@pytest.fixture
def original_package(tmp_path, sources):
    root = tmp_path / "original"
    write_original_package(root, sources)
    return root


def test_original_directory_package_loads_and_runs(original_package):
    with load_neuropod(original_package) as model:
        assert model.name == "addition_model"
        assert model.platform == "python"
        assert model.inputs == ADDITION_INPUTS
        assert model.outputs == ADDITION_OUTPUTS
        np.testing.assert_array_equal(model.infer({"x": X, "y": Y})["out"], X + Y + 0.5)


def test_original_zip_package_loads_and_runs(original_package, tmp_path):
    path = tmp_path / "original.zip"
    zip_like_the_original(original_package, path)
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X, "y": Y})["out"], X + Y + 0.5)
    with Package(path) as package:
        assert not package.has_manifest
        data = package.test_data()
    assert data is not None
    assert load_and_test_neuropod(path, data.inputs, data.expected)["out"].tolist() == [11.5, 22.5]


def test_original_config_without_devices_puts_inputs_on_the_gpu(original_package):
    config = json.loads((original_package / "config.json").read_text())
    del config["input_tensor_device"], config["custom_ops"], config["platform_version_semver"]
    (original_package / "config.json").write_text(json.dumps(config))
    with Package(original_package) as package:
        assert dict(package.config.input_tensor_device) == {"x": "GPU", "y": "GPU"}
        assert package.config.platform_version_semver == "*"


def test_original_pickled_test_data_is_read(original_package):
    data = load_test_data(original_package)
    assert data is not None
    assert set(data) == {"test_input", "test_output"}
    np.testing.assert_array_equal(data["test_input"]["x"], X)
    np.testing.assert_array_equal(data["test_output"]["out"], X + Y + 0.5)
    out = load_and_test_neuropod(original_package, data["test_input"], data["test_output"])
    np.testing.assert_array_equal(out["out"], X + Y + 0.5)


# Test data


def test_packagers_store_test_data_as_npz(sources, tmp_path):
    strings = np.array(["a", "bcd"])
    path = package_addition(
        sources,
        tmp_path / "model",
        package_as_zip=False,
        test_input_data={"x": X, "y": Y},
        test_expected_out={"out": X + Y + 0.5},
    )
    assert not (path / "test_data.pkl").exists()
    with np.load(path / "test_data.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["test_input/x", "test_input/y", "test_output/out"]
    data = load_test_data(path)
    assert data is not None
    np.testing.assert_array_equal(data["test_input"]["y"], Y)
    np.testing.assert_array_equal(data["test_output"]["out"], X + Y + 0.5)
    assert data["test_output"]["out"].dtype == np.float32

    create_placeholder_neuropod(
        neuropod_path=tmp_path / "strings",
        model_name="strings",
        input_spec=[{"name": "s", "dtype": "string", "shape": [None]}],
        output_spec=[{"name": "out", "dtype": "float32", "shape": [None]}],
        package_as_zip=False,
        test_input_data={"s": strings},
    )
    data = load_test_data(tmp_path / "strings")
    assert data is not None
    assert data["test_output"] is None
    assert data["test_input"]["s"].dtype.kind == "U"
    assert data["test_input"]["s"].tolist() == ["a", "bcd"]


def test_zipped_test_data_round_trip(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = package_placeholder(tmp_path / "model.zip", test_input_data={"x": x})
    with Package(path) as package:
        data = package.test_data()
    assert data is not None and data.expected is None
    np.testing.assert_array_equal(data.inputs["x"], x)


def test_test_data_is_not_persisted_on_request(sources, tmp_path):
    path = package_addition(
        sources,
        tmp_path / "model",
        package_as_zip=False,
        test_input_data={"x": X, "y": Y},
        persist_test_data=False,
    )
    assert load_test_data(path) is None
    assert not (path / "test_data.npz").exists()


# Failures while packaging


def test_packaging_into_an_existing_file_is_an_error(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"precious")
    with pytest.raises(PackageError) as info:
        package_placeholder(path)
    assert str(info.value) == f"The neuropod path {path} already exists; choose a new path"
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


def test_packaging_into_an_existing_directory_is_an_error(tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    (path / "keep.txt").write_text("precious")
    with pytest.raises(PackageError) as info:
        package_placeholder(path, package_as_zip=False)
    assert str(info.value) == f"The neuropod path {path} already exists; choose a new path"
    assert tree(path) == {"keep.txt": b"precious"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bad_spec_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SpecError):
        create_placeholder_neuropod(
            neuropod_path=out / "model.zip",
            model_name="bad",
            input_spec=[{"name": "x", "dtype": "float32", "shape": [0]}],
            output_spec=[],
        )
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("package_as_zip", [True, False])
def test_failure_while_writing_the_model_leaves_nothing_behind(sources, tmp_path, package_as_zip):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PackageError) as info:
        create_python_neuropod(
            neuropod_path=out / "model",
            model_name="addition_model",
            input_spec=ADDITION_INPUTS,
            output_spec=ADDITION_OUTPUTS,
            data_paths=[{"path": str(sources / "missing.txt"), "packaged_name": "missing.txt"}],
            entrypoint_package="addition_model.model",
            entrypoint="get_model",
            package_as_zip=package_as_zip,
        )
    assert str(info.value) == (
        f"Data file {sources / 'missing.txt'} (packaged as 'missing.txt') does not exist"
    )
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("package_as_zip", [True, False])
def test_failed_self_test_removes_the_package(sources, tmp_path, package_as_zip):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TestDataMismatch) as info:
        package_addition(
            sources,
            out / "model",
            package_as_zip=package_as_zip,
            test_input_data={"x": X, "y": Y},
            test_expected_out={"out": X + Y},
        )
    assert str(info.value).startswith("out does not match expected value!")
    assert str(info.value) == ("out does not match expected value! Expected [11. 22.], got [11.5 22.5]")
    assert list(out.iterdir()) == []


def test_self_test_that_passes_keeps_the_package(sources, tmp_path):
    path = package_addition(
        sources,
        tmp_path / "model.zip",
        test_input_data={"x": X, "y": Y},
        test_expected_out={"out": X + Y + 0.5},
    )
    assert path.is_file()


def test_self_test_that_raises_removes_the_package(tmp_path):
    code = tmp_path / "src" / "broken"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(
        textwrap.dedent(
            """\
            def get_model(data_dir):
                def model(**inputs):
                    raise ZeroDivisionError("boom")
                return model
            """
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Exception, match="boom"):
        create_python_neuropod(
            neuropod_path=out / "model.zip",
            model_name="broken",
            input_spec=ADDITION_INPUTS,
            output_spec=ADDITION_OUTPUTS,
            code_path_spec=[{"python_root": str(tmp_path / "src"), "dirs_to_package": ["broken"]}],
            entrypoint_package="broken",
            entrypoint="get_model",
            test_input_data={"x": X, "y": Y},
        )
    assert list(out.iterdir()) == []


# Packager arguments shared by every platform


def test_custom_ops_are_copied_into_ops(tmp_path):
    op = tmp_path / "my_op.so"
    op.write_bytes(b"\x7fELF not really")
    path = package_placeholder(tmp_path / "model", package_as_zip=False, custom_ops=[op])
    assert (path / "0/ops/my_op.so").read_bytes() == op.read_bytes()
    assert json.loads((path / "config.json").read_text())["custom_ops"] == ["my_op.so"]
    with load_neuropod(path) as model:
        assert model.infer({"x": np.zeros((1, 2), np.float32)})["out"].shape == (1,)


@pytest.mark.parametrize(
    ("make_ops", "message"),
    [
        (lambda d: [d / "missing.so"], "Custom op {d}/missing.so does not exist or is not a file"),
        (lambda d: [d / "a" / "op.so", d / "b" / "op.so"], "Two custom ops are named 'op.so'"),
        (
            lambda d: str(d / "a" / "op.so"),
            "create_placeholder_neuropod(): custom_ops must be a list of paths, got '{d}/a/op.so'",
        ),
    ],
)
def test_bad_custom_ops_leave_nothing_behind(tmp_path, make_ops, message):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "op.so").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PackageError) as info:
        package_placeholder(out / "model.zip", custom_ops=make_ops(tmp_path))
    assert str(info.value) == message.format(d=tmp_path)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"bogus": 1, "also_bogus": 2},
            OptionError,
            "create_placeholder_neuropod() got unknown keyword argument(s) 'also_bogus', 'bogus'",
        ),
        (
            {"test_expected_out": {"out": np.zeros(1, np.int32)}},
            PackageError,
            "create_placeholder_neuropod(): test_expected_out needs test_input_data",
        ),
        (
            {"zip_compression": 99},
            PackageError,
            "zip_compression must be a zipfile compression method, got 99",
        ),
        (
            {"default_input_tensor_device": "TPU"},
            SpecError,
            "The device of input 'x' must be 'GPU' or 'CPU', got 'TPU'",
        ),
        (
            {"platform_version_semver": ""},
            SpecError,
            "platform_version_semver must be a version range such as '*' or '>= 2.0', got ''",
        ),
    ],
)
def test_bad_packager_arguments_leave_nothing_behind(tmp_path, kwargs, error, message):
    with pytest.raises(error) as info:
        package_placeholder(tmp_path / "model.zip", **kwargs)
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []


def test_model_name_must_be_a_non_empty_string(tmp_path):
    with pytest.raises(SpecError) as info:
        create_placeholder_neuropod(
            neuropod_path=tmp_path / "m.zip", model_name="", input_spec=[], output_spec=[]
        )
    assert str(info.value) == "model_name must be a non-empty string, got ''"
    assert list(tmp_path.iterdir()) == []


def test_input_tensor_device_is_recorded(tmp_path):
    path = package_placeholder(
        tmp_path / "model",
        package_as_zip=False,
        input_tensor_device={"x": "CPU"},
        platform_version_semver=">=1",
    )
    config = json.loads((path / "config.json").read_text())
    assert config["input_tensor_device"] == {"x": "CPU"}
    assert config["platform_version_semver"] == ">=1"
