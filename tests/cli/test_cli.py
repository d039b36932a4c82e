"""The ``neuropod`` command line: a few runs of the real console script, the rest via ``main(argv)``."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuropod
from neuropod.cli.main import main
from neuropod.packagers import create_placeholder_neuropod, create_python_neuropod
from tests.models import BYTES_SPEC, byte_array
from tests.models.python import BYTES, write_code

SPEC = {
    "name": "tagger",
    "input_spec": [
        {"name": "x", "dtype": "float32", "shape": ["batch", None, 3]},
        {"name": "words", "dtype": "string", "shape": ["batch"]},
    ],
    "output_spec": [
        {"name": "scores", "dtype": "float32", "shape": ["batch", 10]},
        {"name": "labels", "dtype": "string", "shape": ["batch"]},
    ],
}

# Reads the offset at every call, so that a test can make the model disagree with its test data.
ADDER_CODE = """\
import os


def get_model(data_dir):
    def add(x, y):
        return {"out": x + y + float(os.environ.get("NEUROPOD_CLI_TEST_OFFSET", "0"))}
    return add
"""

ADDER_SPEC = {
    "input_spec": [
        {"name": "x", "dtype": "float32", "shape": ["batch"]},
        {"name": "y", "dtype": "float32", "shape": ["batch"]},
    ],
    "output_spec": [{"name": "out", "dtype": "float32", "shape": ["batch"]}],
}

X = np.array([1, 2, 3], dtype=np.float32)
Y = np.array([10, 20, 30], dtype=np.float32)


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``main`` in-process; return the exit code, stdout and stderr."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("neuropod: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def make_adder(tmp_path: Path, name: str = "adder.zip", **kwargs: object) -> Path:
    code = tmp_path / "code" / "adder_model"
    if not code.exists():
        code.mkdir(parents=True)
        (code / "__init__.py").write_text(ADDER_CODE)
    path = tmp_path / name
    create_python_neuropod(
        neuropod_path=path,
        model_name="adder",
        **ADDER_SPEC,
        code_path_spec=[{"python_root": str(tmp_path / "code"), "dirs_to_package": ["adder_model"]}],
        entrypoint_package="adder_model",
        entrypoint="get_model",
        **kwargs,  # type: ignore[arg-type]
    )
    return path


@pytest.fixture
def adder(tmp_path: Path) -> Path:
    """A zipped python package storing test data with expected outputs."""
    return make_adder(tmp_path, test_input_data={"x": X, "y": Y}, test_expected_out={"out": X + Y})


@pytest.fixture
def tagger(tmp_path: Path) -> Path:
    """A zipped placeholder package with float and string tensors."""
    path = tmp_path / "tagger.zip"
    create_placeholder_neuropod(
        neuropod_path=path,
        model_name=SPEC["name"],
        input_spec=SPEC["input_spec"],
        output_spec=SPEC["output_spec"],
        seed=0,
    )
    return path


@pytest.fixture
def npy(tmp_path: Path):
    """Save an array as ``tmp_path/NAME.npy`` and return the path."""

    def save(name: str, array: np.ndarray) -> Path:
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        return path

    return save


# --- the real console script and ``python -m neuropod.cli`` -------------------------------------


def console_script() -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    script = shutil.which("neuropod", path=path)
    if script is None:
        pytest.skip("the neuropod console script is not installed beside this Python")
    return script


def run_script(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(), *map(str, argv)], capture_output=True, text=True, timeout=60)


def test_console_script_version() -> None:
    result = run_script("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"neuropod {neuropod.__version__}"


def test_console_script_infer_writes_outputs(adder: Path, npy, tmp_path: Path) -> None:
    result = run_script(
        "infer",
        adder,
        "--input",
        f"x={npy('x', X)}",
        "-i",
        f"y={npy('y', Y)}",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["output", "dtype", "shape", "summary"]
    assert lines[1].split() == ["out", "float32", "(3,)", "min=11", "max=33", "mean=22"]
    assert "infer:" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "out.npy"), X + Y)


def test_python_m_reports_errors_on_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "neuropod.cli", "inspect", str(tmp_path / "missing.zip")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "missing.zip", "does not exist")


def test_platforms_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from neuropod.cli.main import main\n"
        "assert main(['platforms']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "torchscript" in result.stdout


# --- the parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "infer", "test", "placeholder", "platforms"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: neuropod {command}")


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("inspect", "infer", "test", "placeholder", "platforms"):
        assert command in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys)
    assert code == 2
    assert_one_line_error(err, "COMMAND", "neuropod --help")


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str], adder: Path) -> None:
    code, _, err = cli(capsys, "inspect", adder, "--bogus")
    assert code == 2
    assert_one_line_error(err, "unrecognized arguments: --bogus")


# --- inspect --------------------------------------------------------------------------------------


def test_inspect_text(capsys: pytest.CaptureFixture[str], tagger: Path) -> None:
    code, out, err = cli(capsys, "inspect", tagger)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["path:", str(tagger), "(zip)"]
    assert lines[1].split() == ["name:", "tagger"]
    assert lines[2].split() == ["platform:", "python"]
    assert lines[3].split() == ["platform_version_semver:", "*"]
    assert lines[4].split() == ["custom", "ops:", "none"]
    assert lines[5].split() == ["test", "data:", "none"]
    # The columns are aligned: every row of a table starts its cells at the header's offsets.
    inputs = lines[lines.index("inputs:") + 1 : lines.index("inputs:") + 4]
    assert inputs == [
        "  name   dtype    shape             device",
        "  x      float32  (batch, None, 3)  GPU",
        "  words  string   (batch,)          GPU",
    ]
    outputs = lines[lines.index("outputs:") + 1 : lines.index("outputs:") + 4]
    assert outputs == [
        "  name    dtype    shape",
        "  scores  float32  (batch, 10)",
        "  labels  string   (batch,)",
    ]
    files = {line.split()[0] for line in lines[lines.index("files:") + 1 : -2]}
    assert {"config.json", "manifest.json", "0/config.json", "0/data/placeholder.json"} <= files
    assert lines[-1] == "manifest: verified"


def test_inspect_json(capsys: pytest.CaptureFixture[str], adder: Path) -> None:
    code, out, _ = cli(capsys, "inspect", adder, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["name"] == "adder"
    assert report["platform"] == "python"
    assert report["format"] == "zip"
    assert report["input_spec"] == ADDER_SPEC["input_spec"]
    assert report["output_spec"] == ADDER_SPEC["output_spec"]
    assert report["custom_ops"] == []
    assert report["input_tensor_device"] == {"x": "GPU", "y": "GPU"}
    assert report["test_data"] == "test_data.npz"
    assert report["manifest"] == {"status": "verified", "error": None}
    sizes = {f["path"]: f["size"] for f in report["files"]}
    assert sizes["0/code/adder_model/__init__.py"] == len(ADDER_CODE)


def test_inspect_tampered_package_still_shows_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = make_adder(tmp_path, "adder_dir", package_as_zip=False)
    with open(path / "0/code/adder_model/__init__.py", "a") as f:
        f.write("# tampered\n")
    code, out, err = cli(capsys, "inspect", path)
    assert (code, err) == (1, "")
    assert "name:                     adder" in out
    assert "  x     float32  (batch,)  GPU" in out
    last = out.splitlines()[-1]
    assert last.startswith("manifest: FAILED: ")
    assert "'0/code/adder_model/__init__.py' has changed since packaging" in last

    code, out, _ = cli(capsys, "inspect", path, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["name"] == "adder"
    assert report["manifest"]["status"] == "failed"
    assert "has changed since packaging" in report["manifest"]["error"]


def original_package(tmp_path: Path) -> Path:
    """A directory package as the original Neuropod wrote it: no manifest, pickled test data."""
    path = make_adder(tmp_path, "original", package_as_zip=False)
    (path / "manifest.json").unlink()
    with open(path / "test_data.pkl", "wb") as f:
        pickle.dump({"test_input": {"x": X, "y": Y}, "test_output": {"out": X + Y}}, f)
    return path


def test_inspect_original_package(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = original_package(tmp_path)
    code, out, _ = cli(capsys, "inspect", path)
    assert code == 0
    assert "(directory)" in out.splitlines()[0]
    assert "test data:                test_data.pkl" in out
    assert out.splitlines()[-1] == "manifest: no manifest (original package)"


@pytest.mark.parametrize("command", ["inspect", "infer", "test"])
def test_missing_package(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    code, out, err = cli(capsys, command, tmp_path / "nothing.zip")
    assert (code, out) == (2, "")
    assert_one_line_error(err, "nothing.zip", "does not exist")


def test_inspect_not_a_package(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = cli(capsys, "inspect", tmp_path / "notes.txt")
    assert code == 2
    assert_one_line_error(err, "neither a package directory nor a zip file")


# --- infer ----------------------------------------------------------------------------------------


def test_infer_summarizes_numbers_and_strings(
    capsys: pytest.CaptureFixture[str], tagger: Path, npy, tmp_path: Path
) -> None:
    x = npy("x", np.zeros((2, 5, 3), np.float32))
    words = npy("words", np.array(["a", "b"]))
    code, out, err = cli(
        capsys, "infer", tagger, "-i", f"x={x}", "-i", f"words={words}", "-o", tmp_path / "o"
    )
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line for line in out.splitlines()[1:3]}
    assert rows["scores"].split()[1:3] == ["float32", "(2,"] and "min=" in rows["scores"]
    assert rows["labels"].split()[1:3] == ["string", "(2,)"]
    assert "['placeholder_" in rows["labels"]
    assert "load:" in out and "infer:" in out
    labels = np.load(tmp_path / "o" / "labels.npy")
    assert labels.dtype.kind == "U" and labels.shape == (2,)
    assert np.load(tmp_path / "o" / "scores.npy").shape == (2, 10)


@pytest.mark.parametrize("value", ["x", "=x.npy", "x=", "x.npy"])
def test_infer_bad_input_syntax(capsys: pytest.CaptureFixture[str], adder: Path, value: str) -> None:
    code, _, err = cli(capsys, "infer", adder, "--input", value)
    assert code == 2
    assert_one_line_error(err, "argument -i/--input: expected NAME=FILE.npy", repr(value))


def test_infer_missing_input_file(capsys: pytest.CaptureFixture[str], adder: Path, tmp_path: Path) -> None:
    code, _, err = cli(capsys, "infer", adder, "-i", f"x={tmp_path / 'nope.npy'}")
    assert code == 2
    assert_one_line_error(err, "input 'x': cannot read", "nope.npy", "No such file or directory")


def test_infer_unknown_input_name(capsys: pytest.CaptureFixture[str], adder: Path, npy) -> None:
    code, _, err = cli(capsys, "infer", adder, "-i", f"x={npy('x', X)}", "-i", f"z={npy('z', X)}")
    assert code == 2
    assert_one_line_error(err, "Tensor name(s) 'z' are not found in the input spec")


def test_infer_wrong_dtype(capsys: pytest.CaptureFixture[str], adder: Path, npy) -> None:
    code, _, err = cli(capsys, "infer", adder, "-i", f"x={npy('x', X.astype(np.int64))}")
    assert code == 2
    assert_one_line_error(
        err, "Tensor 'x' in the input spec is expected to be of type float32, but was of type int64"
    )


def test_infer_input_given_twice(capsys: pytest.CaptureFixture[str], adder: Path, npy) -> None:
    x = npy("x", X)
    code, _, err = cli(capsys, "infer", adder, "-i", f"x={x}", "-i", f"x={x}")
    assert code == 2
    assert_one_line_error(err, "input 'x' is given more than once")


def test_infer_refuses_npz_and_pickles(
    capsys: pytest.CaptureFixture[str], adder: Path, tmp_path: Path
) -> None:
    np.savez(tmp_path / "both.npz", x=X, y=Y)
    code, _, err = cli(capsys, "infer", adder, "-i", f"x={tmp_path / 'both.npz'}")
    assert code == 2
    assert_one_line_error(err, "is an .npz archive")

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = cli(capsys, "infer", adder, "-i", f"x={tmp_path / 'objects.npy'}")
    assert code == 2
    assert_one_line_error(err, "input 'x'", "without pickle")


def test_infer_load_options(capsys: pytest.CaptureFixture[str], adder: Path, npy) -> None:
    x = f"x={npy('x', X)}"
    code, _, err = cli(capsys, "infer", adder, "-i", x, "--load-option", "require_all_inputs=true")
    assert code == 2
    assert_one_line_error(err, "Tensor 'y' in the input spec is required, but was not provided")

    # Missing inputs are allowed by default: the model itself then fails, and says so.
    code, _, err = cli(capsys, "infer", adder, "-i", x, "--load-option", "require_all_inputs=false")
    assert code == 2
    assert_one_line_error(err, "Model 'adder' (python) failed: TypeError")

    code, _, err = cli(capsys, "infer", adder, "-i", x, "--load-option", "bogus=1")
    assert code == 2
    assert_one_line_error(err, "unknown option(s) 'bogus'")

    code, _, err = cli(capsys, "infer", adder, "--load-option", "novalue")
    assert code == 2
    assert_one_line_error(err, "argument --load-option: expected KEY=VALUE, got 'novalue'")

    code, _, err = cli(capsys, "infer", adder, "--load-option", "visible_gpu=-1")
    assert code == 2
    assert_one_line_error(err, "visible_gpu must be None (CPU) or a GPU index >= 0, got -1")


def make_bytes_model(tmp_path: Path, **kwargs: object) -> Path:
    """tests.models' bytes model (``out = b"<" + s + b">"``), zipped."""
    path = tmp_path / "bytes.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="bytes",
        **BYTES_SPEC,
        code_path_spec=write_code(tmp_path, "bytes_model", BYTES),
        entrypoint_package="bytes_model",
        entrypoint="get_model",
        **kwargs,  # type: ignore[arg-type]
    )
    return path


def test_infer_and_test_with_bytes(capsys: pytest.CaptureFixture[str], tmp_path: Path, npy) -> None:
    sent = byte_array([b"\x00\xff\xd8", b"a\x00b"])  # no trailing NUL: an .npy S array holds them
    wrapped = byte_array([b"<\x00\xff\xd8>", b"<a\x00b>"])
    path = make_bytes_model(tmp_path, test_input_data={"s": sent}, test_expected_out={"out": wrapped})
    code, out, err = cli(capsys, "test", path)
    assert (code, err, out.splitlines()) == (0, "", ["PASS  out", "", "1 passed, 0 failed"])
    given = npy("s", sent.astype(np.bytes_))
    code, out, err = cli(capsys, "infer", path, "-i", f"s={given}", "-o", tmp_path / "o")
    assert (code, err) == (0, "")
    row = out.splitlines()[1]
    assert row.split()[:3] == ["out", "bytes", "(2,)"] and "[b'<\\x00\\xff\\xd8>', b'<a\\x00b>']" in row
    written = np.load(tmp_path / "o" / "out.npy")
    assert written.dtype.kind == "S" and written.tolist() == [b"<\x00\xff\xd8>", b"<a\x00b>"]


NUL_ENDER = """
import numpy as np


def get_model(data_dir):
    def run(s):
        out = np.empty(s.shape, dtype=object)
        out[...] = [item + b"\\x00" for item in s]
        return {"out": out}
    return run
"""


def test_infer_refuses_to_write_bytes_an_npy_file_would_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, npy
) -> None:
    path = tmp_path / "nul.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name="nul",
        **BYTES_SPEC,
        code_path_spec=write_code(tmp_path, "nul_model", NUL_ENDER),
        entrypoint_package="nul_model",
        entrypoint="get_model",
    )
    given = npy("s", np.array([b"ok"]))
    code, out, err = cli(capsys, "infer", path, "-i", f"s={given}", "-o", tmp_path / "o")
    assert code == 2 and "[b'ok\\x00']" in out
    assert_one_line_error(
        err,
        "output 'out' holds bytes ending with a NUL byte (element 0), which a numpy S array, the only "
        "form .npy files store bytes in without pickle, would drop; it cannot be written as "
        f"{tmp_path / 'o' / 'out.npy'}",
    )


# --- test -----------------------------------------------------------------------------------------


def test_test_passes(capsys: pytest.CaptureFixture[str], adder: Path) -> None:
    code, out, err = cli(capsys, "test", adder)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["PASS  out", "", "1 passed, 0 failed"]


def test_test_mismatch_exits_1(
    capsys: pytest.CaptureFixture[str], adder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEUROPOD_CLI_TEST_OFFSET", "1")
    code, out, err = cli(capsys, "test", adder)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == (
        "FAIL  out: out does not match expected value! Expected [11. 22. 33.], got [12. 23. 34.]"
    )
    assert lines[-1] == "0 passed, 1 failed"


def test_test_reads_the_originals_pickle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "test", original_package(tmp_path))
    assert code == 0
    assert out.splitlines()[0] == "PASS  out"


def test_test_without_test_data_exits_2(capsys: pytest.CaptureFixture[str], tagger: Path) -> None:
    code, out, err = cli(capsys, "test", tagger)
    assert (code, out) == (2, "")
    assert_one_line_error(err, "stores no test data")


def test_test_without_expected_outputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = make_adder(tmp_path, test_input_data={"x": X, "y": Y})
    code, out, _ = cli(capsys, "test", path)
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["out", "float32", "(3,)"]
    assert "no expected outputs" in out


def test_test_refuses_a_tampered_package(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = make_adder(
        tmp_path,
        "adder_dir",
        package_as_zip=False,
        test_input_data={"x": X, "y": Y},
        test_expected_out={"out": X + Y},
    )
    (path / "0/data/extra.bin").write_bytes(b"\0")
    code, _, err = cli(capsys, "test", path)
    assert code == 2
    assert_one_line_error(err, "'0/data/extra.bin'", "not listed in manifest.json")


# --- placeholder ----------------------------------------------------------------------------------


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    return path


def test_placeholder_zip_and_dir(capsys: pytest.CaptureFixture[str], spec_file: Path, tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "placeholder", spec_file, tmp_path / "p.zip", "--seed", "3")
    assert code == 0
    assert out == f"wrote placeholder package 'tagger' to {tmp_path / 'p.zip'}\n"
    assert (tmp_path / "p.zip").is_file()
    code, out, _ = cli(capsys, "inspect", tmp_path / "p.zip", "--json")
    assert json.loads(out)["output_spec"] == SPEC["output_spec"]

    code, _, _ = cli(capsys, "placeholder", spec_file, tmp_path / "p_dir", "--dir")
    assert code == 0
    assert (tmp_path / "p_dir" / "config.json").is_file()


def test_placeholder_output_exists(capsys: pytest.CaptureFixture[str], spec_file: Path, tagger: Path) -> None:
    code, _, err = cli(capsys, "placeholder", spec_file, tagger)
    assert code == 2
    assert_one_line_error(err, "already exists")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object with the keys name, input_spec, output_spec"),
        (json.dumps({"name": "m", "input_spec": []}), "(missing output_spec)"),
        (json.dumps({**SPEC, "seed": 1}), "(unknown seed)"),
        (
            json.dumps({**SPEC, "output_spec": [{"name": "o", "dtype": "complex64", "shape": [1]}]}),
            "Tensor 'o': 'complex64' is not an allowed data type",
        ),
        (json.dumps({**SPEC, "input_spec": [{"name": "x", "dtype": "float32", "shape": [0]}]}), "shape item"),
    ],
)
def test_placeholder_bad_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(text)
    code, out, err = cli(capsys, "placeholder", spec, tmp_path / "p.zip")
    assert (code, out) == (2, "")
    assert_one_line_error(err, message)
    assert not (tmp_path / "p.zip").exists()


def test_placeholder_missing_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "placeholder", tmp_path / "nope.json", tmp_path / "p.zip")
    assert code == 2
    assert_one_line_error(err, "nope.json: No such file or directory")


def test_placeholder_negative_seed(
    capsys: pytest.CaptureFixture[str], spec_file: Path, tmp_path: Path
) -> None:
    code, _, err = cli(capsys, "placeholder", spec_file, tmp_path / "p.zip", "--seed", "-1")
    assert code == 2
    assert_one_line_error(err, "seed must be None or an int >= 0, got -1")


# --- platforms ------------------------------------------------------------------------------------


def test_platforms(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(capsys, "platforms")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["platform", "framework", "status"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["python"] == ["-", "available"]
    assert rows["torchscript"][:2] == ["torch", "available"]

    # A framework that cannot be found is reported with the way to install it.
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    )
    code, out, _ = cli(capsys, "platforms")
    row = next(line for line in out.splitlines() if line.startswith("torchscript "))
    assert row.split()[1] == "torch"
    assert row.endswith("missing (pip install 'neuropod[torch]')")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["p.zip", "--grpc-threads", "0"], "argument --grpc-threads: expected an int >= 1, got '0'"),
        ([], "nothing to serve: give package paths, --repository DIR, or both"),
        (["p.zip", "--no-http", "--no-grpc"], "--no-http and --no-grpc leave nothing to serve"),
    ],
)
def test_serve_refuses_a_bad_command_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "serve", *argv)
    assert code == 2
    assert_one_line_error(err, message)
