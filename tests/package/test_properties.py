"""Property-based tests of the package reader: config and manifest parsing, and zip archives.

Whatever bytes a package holds, opening it gives a package or raises ``PackageError`` (of which
``IntegrityError`` and ``UnsafeArchiveError`` are kinds): never another exception, never a file
written outside the package's folder, and never an extracted copy left behind.
``tests/package/test_hostile_packages.py`` fuzzes the JSON files of a package folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from neuropod.errors import PackageError
from neuropod.package.archive import extract_zip, write_zip
from neuropod.package.config import ModelConfig
from neuropod.package.jsonfile import parse_json
from neuropod.package.manifest import check_manifest, write_manifest
from neuropod.package.package import Package
from neuropod.package.test_data import save_test_data
from neuropod.package.zipped import read_zipped
from tests.properties import examples, json_values

CONFIG = {
    "name": "p",
    "platform": "python",
    "platform_version_semver": "*",
    "input_spec": [{"name": "x", "dtype": "float32", "shape": [None, 3]}],
    "output_spec": [{"name": "y", "dtype": "string", "shape": ["batch"]}],
    "custom_ops": [],
    "input_tensor_device": {"x": "CPU"},
}


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Zips extract under this folder for the module, so that a test can see what is left there."""
    root = tmp_path_factory.mktemp("extractions")
    saved = tempfile.tempdir
    tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = saved


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests write the zips they open."""
    return tmp_path_factory.mktemp("zips")


@pytest.fixture(scope="module")
def valid_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small valid zipped package: config, backend config, data, test data, manifest."""
    root = tmp_path_factory.mktemp("valid") / "pkg"
    (root / "0" / "data").mkdir(parents=True)
    (root / "0" / "ops").mkdir()
    (root / "config.json").write_text(json.dumps(CONFIG))
    (root / "0" / "config.json").write_text('{"entrypoint": "model"}')
    (root / "0" / "data" / "weights.bin").write_bytes(bytes(range(64)))
    save_test_data(root, {"x": np.zeros((1, 3), np.float32)}, {"y": np.array(["a"])})
    write_manifest(root)
    path = root.parent / "pkg.zip"
    write_zip(root, path)
    return path.read_bytes()


def open_every_way(path: Path, private_tmp: Path) -> None:
    """Read ``path`` as ``inspect`` does (in place) and as ``load_neuropod`` does (extracted).

    Each must succeed or raise ``PackageError``, and leave no extracted copy behind.
    """
    with contextlib.suppress(PackageError):
        zipped = read_zipped(path)
        if zipped is not None:
            assert zipped.config.name and zipped.files
            zipped.verify_manifest()
    with contextlib.suppress(PackageError):
        with Package(path) as package:
            package.backend_config()
            package.test_data()
        assert isinstance(package.config, ModelConfig)
    assert list(private_tmp.iterdir()) == []


# --- mutations of a valid zip --------------------------------------------------------------------

_SIGNATURES = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to three bytes edits, mostly in the zip's headers, where they reach deepest."""
    headers = [i for signature in _SIGNATURES for i in _find_all(data, signature)]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if headers and draw(st.booleans()):
            position = draw(st.sampled_from(headers)) + draw(st.integers(4, 45))
        else:
            position = draw(st.integers(0, len(out)))
        position = min(position, len(out))
        how = draw(st.sampled_from(["set", "flip", "overwrite", "cut", "insert", "truncate"]))
        if how == "set" and position < len(out):
            out[position] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif how == "flip" and position < len(out):
            out[position] ^= 1 << draw(st.integers(0, 7))
        elif how == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=8))
            out[position : position + len(patch)] = patch
        elif how == "cut":
            del out[position : position + draw(st.integers(1, 16))]
        elif how == "insert":
            out[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[position:]
    return bytes(out)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found, start = [], 0
    while (index := data.find(needle, start)) >= 0:
        found.append(index)
        start = index + 1
    return found


@given(data=st.data())
@settings(max_examples=examples(0.5))
def test_a_mutated_zip_package_opens_or_is_refused(
    valid_zip: bytes, private_tmp: Path, zips: Path, data: st.DataObject
) -> None:
    path = zips / "mutated.zip"
    path.write_bytes(data.draw(mutated(valid_zip)))
    open_every_way(path, private_tmp)


def test_the_unmutated_package_opens(valid_zip: bytes, private_tmp: Path, zips: Path) -> None:
    # The anchor of the mutations: the package they start from is valid, manifest included.
    path = zips / "valid.zip"
    path.write_bytes(valid_zip)
    zipped = read_zipped(path)
    assert zipped is not None and zipped.verify_manifest()
    with Package(path) as package:
        assert package.has_manifest and package.config.name == "p"
        assert package.test_data() is not None


def test_a_zip_of_a_newer_version_is_refused(valid_zip: bytes, private_tmp: Path, zips: Path) -> None:
    # Found by the mutations: zipfile raised NotImplementedError ("zip file version 6.4") on open.
    central = valid_zip.index(b"PK\x01\x02")
    path = zips / "newer.zip"
    path.write_bytes(valid_zip[: central + 6] + bytes([64]) + valid_zip[central + 7 :])
    with pytest.raises(PackageError, match=r"is not a valid zip file: zip file version 6\.4"):
        read_zipped(path)
    with pytest.raises(PackageError, match=r"is not a valid zip file: zip file version 6\.4"):
        Package(path)
    assert list(private_tmp.iterdir()) == []


@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_after_a_zip_signature_are_refused(
    private_tmp: Path, zips: Path, content: bytes
) -> None:
    path = zips / "arbitrary.zip"
    path.write_bytes(b"PK\x03\x04" + content + b"PK\x05\x06" + bytes(18))
    open_every_way(path, private_tmp)


# --- archives of arbitrary entries ---------------------------------------------------------------

_SEGMENTS = st.sampled_from(
    ["0", "data", "config.json", "manifest.json", "..", ".", "", "a\\..\\b", "C:", "é"]
)
names = st.lists(_SEGMENTS | st.text(max_size=4), min_size=1, max_size=4).map("/".join) | st.sampled_from(
    ["/etc/x", "\\x", "../x", "a/../../x", "config.json", "0/", "0/ops/"]
)
link_targets = st.sampled_from(["..", "../..", "/etc", ".", "a", "a/../..", "config.json", "0"]) | st.text(
    max_size=8
)
REGULAR, DIRECTORY, LINK = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777


@st.composite
def archives(draw: st.DrawFn) -> list[tuple[str, int, bytes]]:
    """Entries ``(name, mode, content)``: files, folders and links, with hostile names among them."""
    entries = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from([REGULAR, REGULAR, DIRECTORY, LINK]))
        name = draw(names)
        if kind == LINK:
            content = draw(link_targets).encode("utf-8", "surrogatepass")
        elif kind == DIRECTORY:
            name, content = name.rstrip("/") + "/", b""
        else:
            content = draw(st.binary(max_size=16) | json_values.map(lambda v: json.dumps(v).encode()))
        entries.append((name, kind, content))
    if draw(st.booleans()):
        entries.append(("config.json", REGULAR, json.dumps(CONFIG).encode()))
    return entries


def write_archive(path: Path, entries: list[tuple[str, int, bytes]]) -> None:
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of a name written twice
        for name, mode, content in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.create_system = 3
            zf.writestr(info, content)


@given(entries=archives())
@settings(max_examples=examples(0.5))
@example(entries=[("a", LINK, b"."), ("a/b", LINK, b".."), ("a/b/c", REGULAR, b"x")])
@example(entries=[("", REGULAR, b"")])  # an empty name: zipfile's is_dir() raised IndexError
@example(entries=[("0", LINK, b"\x00")])  # a NUL in a link's target: pathlib raised ValueError
def test_an_archive_extracts_inside_its_folder_or_is_refused(
    private_tmp: Path, zips: Path, entries: list[tuple[str, int, bytes]]
) -> None:
    work = zips / "archive"
    path = work / "p.zip"
    dest = work / "out" / "package"
    with contextlib.suppress(FileNotFoundError):
        _remove(work)
    dest.mkdir(parents=True)
    write_archive(path, entries)
    with contextlib.suppress(PackageError):
        extract_zip(path, dest)
    # Nothing beside the package, and no link in it that leads out of it.
    assert sorted(p.name for p in work.iterdir()) == ["out", "p.zip"]
    assert [p.name for p in (work / "out").iterdir()] == ["package"]
    root = dest.resolve()
    for found in dest.rglob("*"):
        with contextlib.suppress(OSError, RuntimeError):  # a loop of links that stays inside
            assert found.resolve().is_relative_to(root), found
    open_every_way(path, private_tmp)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder)


# --- config.json, manifest.json ------------------------------------------------------------------


@given(content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
@example(content=b"[" * 100_000)
@example(content=b"1" * 5000)
@example(content=b'{"name": "\\ud800"}')  # a lone surrogate: `neuropod inspect` crashed printing it
def test_json_bytes_parse_or_are_refused(content: bytes) -> None:
    try:
        value = parse_json(content, "The model config", "config.json")
    except PackageError as exc:
        str(exc).encode("utf-8")  # a message the CLI can print
        return
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # text, that messages naming it can hold


spec_entries = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y", ""]) | json_values,
        "dtype": st.sampled_from(["float32", "string", "double", "bool", "complex64", "object", "M8"])
        | json_values,
        "shape": st.lists(
            st.none() | st.integers(-2, 4) | st.sampled_from(["batch", ""]) | json_values, max_size=3
        )
        | json_values,
    },
)


@st.composite
def configs(draw: st.DrawFn) -> Any:
    """A valid config with one to three fields replaced, removed, or given spec entries of any kind."""
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*CONFIG, "input_spec", "output_spec", "extra"]))
        how = draw(st.sampled_from(["value", "remove", "specs"]))
        if how == "remove":
            config.pop(key, None)
        elif how == "specs" or (key.endswith("_spec") and draw(st.booleans())):
            config[key] = draw(st.lists(spec_entries | json_values, max_size=3))
        else:
            config[key] = draw(json_values)
    return config


@given(config=configs() | json_values)
@example(config={**CONFIG, "input_spec": [{"name": "x", "dtype": "M8", "shape": []}]})
@example(config={**CONFIG, "input_spec": [{"name": "x", "dtype": "float32", "shape": [True]}]})
@example(config={**CONFIG, "input_spec": [{"name": "x", "dtype": {"a": 1}, "shape": []}]})
@example(config={**CONFIG, "input_tensor_device": {"x": ["GPU"]}})
def test_a_config_is_read_or_refused(config: Any) -> None:
    try:
        parsed = ModelConfig.from_json(config)
    except PackageError:
        return
    # What was read is what is written back.
    assert ModelConfig.from_json(json.loads(json.dumps(parsed.to_json()))) == parsed


_FILES = ["config.json", "0/config.json", "0/data/w.bin"]


@given(
    manifest=st.fixed_dictionaries(
        {},
        optional={
            "manifest_version": json_values,
            "files": st.dictionaries(
                st.sampled_from([*_FILES, "../x", "/etc/passwd", "missing"]) | st.text(max_size=5),
                st.sampled_from([hashlib.sha256(name.encode()).hexdigest() for name in _FILES]) | json_values,
            )
            | json_values,
        },
    )
    | json_values,
    actual=st.lists(st.sampled_from(_FILES), unique=True),
)
def test_a_manifest_is_checked_or_refused(manifest: Any, actual: list[str]) -> None:
    def digest(rel: str) -> str | None:
        assert rel in actual, f"hashed '{rel}', which is not one of the package's files"
        return hashlib.sha256(rel.encode()).hexdigest()

    try:
        check_manifest(manifest, actual, digest, "p", "manifest.json")
    except PackageError:
        return
    # Accepted: it lists exactly the files, each with its hash.
    assert manifest["files"] == {rel: hashlib.sha256(rel.encode()).hexdigest() for rel in actual}
