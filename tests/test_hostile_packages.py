"""Hostile packages: pickles that run code, zip bombs, malformed JSON, copies left by killed processes."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from neuropod.cli.main import main
from neuropod.errors import PackageError
from neuropod.package.safe_pickle import load_pickle
from neuropod.utils.eval_utils import load_test_data

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


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
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


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
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
    with pytest.raises(Exception, match="not allowed"):
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
