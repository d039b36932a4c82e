"""Hostile packages: pickles that run code, zip bombs, malformed JSON, copies left by killed processes."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuropod.cli.inspect import describe
from neuropod.cli.main import main
from neuropod.errors import OptionError, PackageError
from neuropod.package.limits import MAX_BYTES_ENV, MAX_FILES_ENV, ExtractionLimits
from neuropod.package.package import Package
from neuropod.package.safe_pickle import load_pickle
from neuropod.package.zipped import read_zipped
from neuropod.serving.options import _KEYS, OPTIONS_FILE, read_model_folder
from neuropod.utils.eval_utils import load_test_data, save_test_data

X = np.array([1, 2, 3], dtype=np.float32)
WORDS = np.array(["a", "bc", "déf"])


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("neuropod: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


# --- test_data.pkl ------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling it creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def _write_pickle(folder: Path, data: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    folder.mkdir(exist_ok=True)
    with open(folder / "test_data.pkl", "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return folder


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_test_data_pickles_load_without_opt_in(tmp_path: Path, protocol: int) -> None:
    data = {
        "test_input": {
            "x": X,
            "words": WORDS,
            "objects": np.array(["a", "b"], dtype=object),
            "listed": [1.5, 2.5],
        },
        "test_output": {"out": X * 2, "scalar": np.float64(3.5), "matrix": np.eye(2, dtype=np.int64)},
    }
    got = load_test_data(_write_pickle(tmp_path / "pkg", data, protocol))
    assert got is not None
    np.testing.assert_array_equal(got["test_input"]["x"], X)
    assert got["test_input"]["words"].tolist() == ["a", "bc", "déf"]
    assert got["test_input"]["objects"].tolist() == ["a", "b"]
    assert got["test_input"]["listed"].tolist() == [1.5, 2.5]
    assert got["test_output"]["scalar"] == 3.5
    np.testing.assert_array_equal(got["test_output"]["matrix"], np.eye(2))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_python_values_unpickle(tmp_path: Path, protocol: int) -> None:
    value = {"k": [1, -(2**70), 2.5, (True, None), b"raw\xff", "text", 1 + 2j, {"n": [()]}]}
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    assert load_pickle(path) == value


def test_numpy_1_module_names_are_accepted(tmp_path: Path) -> None:
    # numpy 1.x wrote numpy.core.multiarray; numpy 2 writes numpy._core.multiarray.
    raw = pickle.dumps({"test_input": {"x": X}}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "test_data.pkl").write_bytes(raw)
    got = load_test_data(tmp_path)
    assert got is not None
    np.testing.assert_array_equal(got["test_input"]["x"], X)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_runs_code_is_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "ran"
    pkg = _write_pickle(tmp_path / "pkg", {"test_input": {"x": _RunsCode(marker)}}, protocol)
    with pytest.raises(PackageError) as info:
        load_test_data(pkg)
    message = str(info.value)
    assert str(pkg / "test_data.pkl") in message
    assert "'posix.system'" in message
    assert "--allow-pickle" in message and "allow_pickle=True" in message
    assert not marker.exists()


def test_allow_pickle_opts_in(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pkg = _write_pickle(tmp_path / "pkg", {"test_input": {"x": X}, "side": _RunsCode(marker)})
    load_test_data(pkg, allow_pickle=True)
    assert marker.exists()


def test_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    # Protocols 0-2 store bytes through _codecs.encode(text, "latin1"); other codecs are refused.
    path = tmp_path / "x.pkl"
    path.write_bytes(b"c_codecs\nencode\n(Vabc\nVzlib\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"_codecs.encode with codec 'zlib' is not allowed"):
        load_pickle(path)


def test_persistent_ids_are_refused(tmp_path: Path) -> None:
    class _External(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return "outside" if obj == "x" else None

    path = tmp_path / "x.pkl"
    with open(path, "wb") as f:
        _External(f).dump(["x"])
    with pytest.raises(PackageError, match=f"{path} holds a persistent id, which is not plain data"):
        load_pickle(path)


def test_cli_test_refuses_code_in_test_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from neuropod.packagers import create_placeholder_neuropod

    pkg = tmp_path / "pkg"
    create_placeholder_neuropod(
        neuropod_path=pkg,
        model_name="p",
        input_spec=[{"name": "x", "dtype": "float32", "shape": [3]}],
        output_spec=[{"name": "y", "dtype": "float32", "shape": [3]}],
        package_as_zip=False,
    )
    (pkg / "manifest.json").unlink()
    marker = tmp_path / "ran"
    _write_pickle(pkg, {"test_input": {"x": _RunsCode(marker)}})
    code, out, err = cli(capsys, "test", pkg)
    assert (code, out) == (2, "")
    assert_one_line_error(err, "test_data.pkl", "posix.system", "--allow-pickle")
    assert not marker.exists()


# --- malformed JSON files -----------------------------------------------------------------------

CONFIG = {
    "name": "p",
    "platform": "python",
    "platform_version_semver": "*",
    "input_spec": [{"name": "x", "dtype": "float32", "shape": [None, 3]}],
    "output_spec": [{"name": "y", "dtype": "string", "shape": ["batch"]}],
    "custom_ops": [],
    "input_tensor_device": {"x": "CPU"},
}
JSON_FILES = ("config.json", "0/config.json", "manifest.json")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package directory whose JSON files the tests overwrite (and restore)."""
    root = tmp_path_factory.mktemp("hostile") / "pkg"
    (root / "0").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(CONFIG))
    (root / "0/config.json").write_text("{}")
    save_test_data(root, {"x": np.zeros((1, 3), np.float32)}, {"y": np.array(["a"])})
    return root


def _open_with(root: Path, rel: str, content: bytes) -> None:
    """Open ``root`` with ``rel`` replaced by ``content``: it must load or raise PackageError."""
    original = (root / rel).read_bytes() if (root / rel).exists() else None
    (root / rel).write_bytes(content)
    try:
        with Package(root) as package:
            package.backend_config()
    except PackageError:
        pass
    finally:
        if original is None:
            (root / rel).unlink()
        else:
            (root / rel).write_bytes(original)


@pytest.mark.parametrize("rel", JSON_FILES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_give_only_package_errors(package_dir: Path, rel: str, content: bytes) -> None:
    _open_with(package_dir, rel, content)


@pytest.mark.parametrize("rel", JSON_FILES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_arbitrary_json_gives_only_package_errors(package_dir: Path, rel: str, value: object) -> None:
    _open_with(package_dir, rel, json.dumps(value).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_config_fields_give_only_package_errors(package_dir: Path, data: st.DataObject) -> None:
    config: dict[str, object] = json.loads(json.dumps(CONFIG))
    key = data.draw(st.sampled_from([*CONFIG, "input_spec.0", "input_spec.0.shape", "input_spec.0.name"]))
    value = data.draw(json_values)
    if key.startswith("input_spec."):
        spec = config["input_spec"][0]  # type: ignore[index]
        if key == "input_spec.0":
            config["input_spec"] = [value]
        else:
            spec[key.rsplit(".", 1)[1]] = value
    else:
        config[key] = value
    _open_with(package_dir, "config.json", json.dumps(config).encode())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
        (b'{"name": "\xff\xfe"}', "is not valid JSON"),
        (b"1" * 5000, "is not valid JSON"),
        (json.dumps({**CONFIG, "name": 5}).encode(), "must be a string"),
    ],
    ids=["deep", "utf8", "long-int", "type"],
)
@pytest.mark.parametrize("rel", JSON_FILES)
def test_malformed_json_is_one_line_in_the_cli(
    capsys: pytest.CaptureFixture[str], package_dir: Path, rel: str, content: bytes, expected: str
) -> None:
    if rel != "config.json" and expected == "must be a string":
        content = b"[5]"  # the other files fail on a wrong type in their own words
        expected = "must hold a JSON object" if rel == "0/config.json" else "has no 'files' object"
    original = (package_dir / rel).read_bytes() if (package_dir / rel).exists() else None
    (package_dir / rel).write_bytes(content)
    try:
        for command in ("inspect", "test"):
            code, out, err = cli(capsys, command, package_dir)
            if rel == "manifest.json" and command == "inspect":
                # inspect describes a package whose manifest fails, and reports why.
                assert code == 1 and expected in out
                continue
            if rel == "0/config.json" and command == "inspect":
                assert code == 0  # inspect does not read the backend settings
                continue
            assert code == 2
            assert_one_line_error(err, rel, expected)
    finally:
        if original is None:
            (package_dir / rel).unlink()
        else:
            (package_dir / rel).write_bytes(original)


# --- neuropod-serve.json ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(package_dir: Path) -> Path:
    """A served repository's model folder holding a package and a ``neuropod-serve.json``."""
    import shutil

    folder = package_dir.parent / "repo" / "m"
    folder.mkdir(parents=True)
    shutil.copytree(package_dir, folder / "pkg")
    return folder


def _read_options(folder: Path, content: bytes) -> None:
    (folder / OPTIONS_FILE).write_bytes(content)
    with contextlib.suppress(OptionError):
        read_model_folder(folder)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200))
def test_serve_options_arbitrary_bytes_give_only_option_errors(model_folder: Path, content: bytes) -> None:
    _read_options(model_folder, content)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values | st.dictionaries(st.sampled_from(sorted(_KEYS)), json_values, max_size=4))
def test_serve_options_arbitrary_json_gives_only_option_errors(model_folder: Path, value: object) -> None:
    _read_options(model_folder, json.dumps(value).encode())


def test_serve_options_nested_too_deeply(model_folder: Path) -> None:
    (model_folder / OPTIONS_FILE).write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(OptionError, match="nests too deeply"):
        read_model_folder(model_folder)


# --- zip bombs ----------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make zips extract under ``tmp_path/tmp``, so that a test can see everything left there."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _zip_with(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(CONFIG))
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_declared_size_past_the_limit_is_refused(
    tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _zip_with(tmp_path / "bomb.zip", {"0/data/zeros": bytes(2_000_000)})
    assert bomb.stat().st_size < 10_000
    monkeypatch.setenv(MAX_BYTES_ENV, "1000000")
    with pytest.raises(PackageError) as info:
        Package(bomb)
    assert str(info.value) == (
        f"{bomb} would extract to {2_000_000 + len(json.dumps(CONFIG))} bytes, more than the "
        f"limit of 1000000; if the package is genuine, raise NEUROPOD_MAX_PACKAGE_BYTES"
    )
    assert list(private_tmp.iterdir()) == []


def test_too_many_entries_are_refused(
    tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _zip_with(tmp_path / "many.zip", {f"0/data/{i}": b"" for i in range(10)})
    monkeypatch.setenv(MAX_FILES_ENV, "5")
    with pytest.raises(PackageError, match=f"{bomb} holds 11 entries, more than the limit of 5"):
        Package(bomb)
    assert list(private_tmp.iterdir()) == []


def test_a_header_that_lies_about_the_size_gets_nothing_past_the_limit(
    tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _zip_with(tmp_path / "liar.zip", {"0/data/zeros": bytes(2_000_000)})
    raw = bytearray(bomb.read_bytes())
    # Declare 10 bytes for the 2 MB entry, in its local header and in the central directory.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.rindex(signature)
        raw[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
    bomb.write_bytes(bytes(raw))
    monkeypatch.setenv(MAX_BYTES_ENV, "1000000")
    with pytest.raises(PackageError, match=str(bomb)):
        Package(bomb)
    assert list(private_tmp.iterdir()) == []


def test_bytes_written_past_the_limit_are_refused(tmp_path: Path) -> None:
    limits = ExtractionLimits(max_bytes=10)
    limits.check_written(tmp_path / "p.zip", 10)
    with pytest.raises(PackageError, match=r"p.zip expands past the limit of 10 bytes while being"):
        limits.check_written(tmp_path / "p.zip", 11)


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_limit_variable_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(MAX_FILES_ENV, value)
    expected = f"NEUROPOD_MAX_PACKAGE_FILES must be a positive integer, got '{value}'"
    with pytest.raises(PackageError, match=expected):
        ExtractionLimits.from_env()


def test_limits_are_generous_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)
    monkeypatch.delenv(MAX_FILES_ENV, raising=False)
    assert ExtractionLimits.from_env() == ExtractionLimits(64 << 30, 100_000)


# --- copies left by killed processes ------------------------------------------------------------

HOLD = """\
import sys, time
from neuropod.package.limits import MAX_BYTES_ENV, MAX_FILES_ENV, ExtractionLimits
from neuropod.package.package import Package
package = Package(sys.argv[1])
print(package.root, flush=True)
time.sleep(120)
"""

OPEN_AND_CLOSE = """\
import sys
from neuropod.package.limits import MAX_BYTES_ENV, MAX_FILES_ENV, ExtractionLimits
from neuropod.package.package import Package
with Package(sys.argv[1]):
    pass
"""


def _env(temp_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(temp_dir), **extra}


@pytest.fixture
def zipped(tmp_path: Path) -> Path:
    return _zip_with(tmp_path / "pkg.zip", {"0/config.json": b"{}"})


def test_copies_of_killed_processes_are_reclaimed_on_the_next_start(tmp_path: Path, zipped: Path) -> None:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD, str(zipped)], stdout=subprocess.PIPE, text=True, env=_env(temp_dir)
        )
        for _ in range(2)
    ]
    try:
        roots = [Path(holder.stdout.readline().strip()) for holder in holders]  # type: ignore[union-attr]
        assert all((root / "config.json").is_file() for root in roots)
        holders[0].kill()
        holders[0].wait(30)
        assert roots[0].exists()  # SIGKILL runs no cleanup

        opener = [sys.executable, "-c", OPEN_AND_CLOSE, str(zipped)]
        subprocess.run(opener, check=True, env=_env(temp_dir), timeout=60)
        assert not roots[0].parent.exists()  # the dead process's copy is reclaimed
        assert (roots[1] / "config.json").is_file()  # the live one's is not
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(30)
            holder.stdout.close()  # type: ignore[union-attr]


SLEEPER_CODE = """\
import os
import time


def get_model(data_dir):
    def run(x):
        marker = os.environ.get("NEUROPOD_TEST_MARKER")
        if marker:  # not while packaging, which runs the test data once
            open(marker, "w").close()
            time.sleep(120)
        return {"y": x}
    return run
"""


@pytest.mark.parametrize("command", ["test", "infer"])
def test_sigterm_leaves_no_copy_behind(tmp_path: Path, command: str) -> None:
    from neuropod.packagers import create_python_neuropod

    code = tmp_path / "code" / "sleeper"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(SLEEPER_CODE)
    package = tmp_path / "sleeper.zip"
    x = np.ones(3, np.float32)
    create_python_neuropod(
        neuropod_path=package,
        model_name="sleeper",
        input_spec=[{"name": "x", "dtype": "float32", "shape": [3]}],
        output_spec=[{"name": "y", "dtype": "float32", "shape": [3]}],
        code_path_spec=[{"python_root": str(tmp_path / "code"), "dirs_to_package": ["sleeper"]}],
        entrypoint_package="sleeper",
        entrypoint="get_model",
        test_input_data={"x": x},
        test_expected_out={"y": x},
    )
    np.save(tmp_path / "x.npy", x)
    argv = [str(package)] if command == "test" else [str(package), "--input", f"x={tmp_path / 'x.npy'}"]
    temp_dir, marker = tmp_path / "tmp", tmp_path / "started"
    temp_dir.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "neuropod.cli", command, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(temp_dir, NEUROPOD_TEST_MARKER=str(marker)),
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), process.communicate()
        assert any(temp_dir.iterdir())  # the model runs from its extracted copy
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait(30)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert list(temp_dir.iterdir()) == []


# --- inspect reads a zip in place ---------------------------------------------------------------


def _placeholder(path: Path, as_zip: bool) -> Path:
    from neuropod.packagers import create_placeholder_neuropod

    create_placeholder_neuropod(
        neuropod_path=path,
        model_name="p",
        input_spec=[{"name": "x", "dtype": "float32", "shape": [3]}],
        output_spec=[{"name": "y", "dtype": "string", "shape": [3]}],
        package_as_zip=as_zip,
    )
    return path


@pytest.fixture
def no_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything extracts a zip."""

    def refuse() -> None:
        raise AssertionError("the package was extracted")

    monkeypatch.setattr("neuropod.package.package.create_extraction_dir", refuse)


def test_inspect_reads_a_zip_without_extracting_it(tmp_path: Path, no_extraction: None) -> None:
    zipped = describe(_placeholder(tmp_path / "p.zip", True))
    directory = describe(_placeholder(tmp_path / "p", False))
    assert zipped["format"] == "zip" and zipped["manifest"] == {"status": "verified", "error": None}
    strip = ("path", "format")
    assert {k: v for k, v in zipped.items() if k not in strip} == {
        k: v for k, v in directory.items() if k not in strip
    }


def _rewrite(zip_path: Path, change: dict[str, bytes]) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, change.pop(info.filename, data))
        for name, data in change.items():
            zf.writestr(name, data)


def test_inspect_in_place_reports_a_tampered_zip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_extraction: None
) -> None:
    path = _placeholder(tmp_path / "p.zip", True)
    _rewrite(path, {"0/data/extra.bin": b"\0"})
    code, out, _ = cli(capsys, "inspect", path)
    assert code == 1
    assert out.splitlines()[-1] == (
        f"manifest: FAILED: {path}: file(s) '0/data/extra.bin' are not listed in manifest.json"
    )


def test_inspect_in_place_reports_a_damaged_entry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_extraction: None
) -> None:
    path = _zip_with(tmp_path / "p.zip", {"manifest.json": b'{"files": {"0/data/x": "00"}}'})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr("0/data/x", b"A" * 64)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"A" * 64, b"B" * 64))  # the CRC no longer matches
    code, out, _ = cli(capsys, "inspect", path)
    assert code == 1
    assert f"manifest: FAILED: {path}: cannot read '0/data/x': Bad CRC-32" in out


def test_inspect_in_place_a_damaged_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_extraction: None
) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", json.dumps(CONFIG))
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"name": "p"', b'"name": "q"'))
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2
    assert_one_line_error(err, f"{path}: cannot read 'config.json': Bad CRC-32")


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"[" * 200_000, "nests too deeply"), (json.dumps({**CONFIG, "name": 5}).encode(), "must be a string")],
)
def test_inspect_in_place_a_malformed_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_extraction: None, content: bytes, expected: str
) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", content)
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2
    assert_one_line_error(err, f"{path}:config.json", expected)


def test_inspect_in_place_a_zip_without_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_extraction: None
) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("0/config.json", "{}")
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2
    assert_one_line_error(err, f"The model config is missing: {path} holds no config.json")


def test_inspect_refuses_a_zip_bomb_without_extracting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_extraction: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _zip_with(tmp_path / "bomb.zip", {"0/data/zeros": bytes(2_000_000)})
    monkeypatch.setenv(MAX_BYTES_ENV, "1000000")
    code, _, err = cli(capsys, "inspect", bomb)
    assert code == 2
    assert_one_line_error(err, str(bomb), "more than the limit of 1000000")


@pytest.mark.parametrize("odd", ["./0/data/x", "0//data/x", "0\\data\\x", "link"])
def test_inspect_extracts_what_only_extraction_can_tell(tmp_path: Path, private_tmp: Path, odd: str) -> None:
    path = _zip_with(tmp_path / "p.zip", {} if odd == "link" else {odd: b"x"})
    if odd == "link":
        with zipfile.ZipFile(path, "a") as zf:
            info = zipfile.ZipInfo("0/data/x")
            info.external_attr = (0o120777) << 16
            zf.writestr(info, "../../config.json")
    assert read_zipped(path) is None
    report = describe(path)
    assert report["name"] == "p"
    assert list(private_tmp.iterdir()) == []


def test_a_malformed_package_in_a_repository_is_unavailable_and_the_rest_served(tmp_path: Path) -> None:
    from neuropod.serving.repository import ModelRepository

    repo = tmp_path / "repo"
    repo.mkdir()
    _placeholder(repo / "good", False)
    (repo / "deep").mkdir()
    (repo / "deep" / "config.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    (repo / "opts").mkdir()
    _placeholder(repo / "opts" / "pkg", False)
    (repo / "opts" / OPTIONS_FILE).write_bytes(b"[" * 200_000 + b"]" * 200_000)
    repository = ModelRepository(repository=repo)
    try:
        repository.load_all()
        states = {entry["name"]: entry for entry in repository.index()}
    finally:
        repository.close()
    assert states["good"]["state"] == "READY"
    assert states["deep"]["state"] == "UNAVAILABLE" and "nests too deeply" in states["deep"]["reason"]
    assert states["opts"]["state"] == "UNAVAILABLE" and "nests too deeply" in states["opts"]["reason"]


def test_reclaim_leaves_what_is_not_an_abandoned_copy(tmp_path: Path) -> None:
    from neuropod.package.extraction import PREFIX, reclaim_abandoned

    unlocked = tmp_path / f"{PREFIX}1-unlocked"  # no lock file yet: being created
    unlocked.mkdir()
    (tmp_path / f"{PREFIX}2-link").symlink_to(unlocked)
    (tmp_path / f"{PREFIX}3-file").write_text("")
    abandoned = tmp_path / f"{PREFIX}4-abandoned"
    (abandoned / "package").mkdir(parents=True)
    (abandoned / "lock").write_text("")
    assert reclaim_abandoned(tmp_path) == [abandoned]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{PREFIX}1-unlocked",
        f"{PREFIX}2-link",
        f"{PREFIX}3-file",
    ]


def test_an_overlong_link_is_refused(tmp_path: Path, private_tmp: Path) -> None:
    path = _zip_with(tmp_path / "p.zip", {})
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("0/data/x")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "a/" * 3000)
    with pytest.raises(PackageError, match="entry '0/data/x' is a link longer than 4096 bytes"):
        Package(path)
    assert list(private_tmp.iterdir()) == []
