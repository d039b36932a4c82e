"""Issue 18's three points with KServe's own Python clients (``kserve==0.21.0``) as real clients.

``kserve`` cannot live in neuropod's environment: it pins older pandas and python-dateutil, so
installing it would downgrade them under every other test. It runs instead from the virtual
environment the serving benchmark keeps (``bench/kserve_env.py``: ``.bench/kserve-venv``, or
under ``NEUROPOD_BENCH_CACHE``), created with uv on first use; a failed creation fails these
tests rather than skipping them. ``kserve_client_program.py`` runs every client case in one
KServe interpreter against a server on loopback and prints what each client got; the tests here
read those results, and no request may log an error or a traceback on the server.
"""

from __future__ import annotations

import json
import logging
import stat
import subprocess
from pathlib import Path

import pytest
from bench import kserve_env

from neuropod.serving import Server
from tests.serving.helpers import build_model

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
PROGRAM = Path(__file__).with_name("kserve_client_program.py")
CASES = (
    "wide_ints_rest_json",
    "wide_ints_grpc_contents",
    "wide_ints_grpc_raw",
    "partial_rest_json",
    "partial_rest_binary",
    "partial_grpc",
    "missing_rest",
    "missing_grpc",
    "metadata_grpc",
)
MISSING = "Output 'o_bool' was requested, but model 'partial' did not produce it"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    return kserve_env.kserve_python()


@pytest.fixture(scope="module")
def server_logs():
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("neuropod", "uvicorn", "grpc")]
    for logger in loggers:
        logger.addHandler(records)
    yield records.records
    for logger in loggers:
        logger.removeHandler(records)


@pytest.fixture(scope="module")
def got(tmp_path_factory, kserve_python, server_logs):
    """What KServe's clients got for each case, from one run of the client program."""
    root = tmp_path_factory.mktemp("models")
    packages = [build_model(root, "partial"), build_model(root, "wide_ints")]
    with Server(packages, http_port=0, grpc_port=0) as server:
        done = subprocess.run(
            [str(kserve_python), str(PROGRAM), server.http_url, server.grpc_address, *CASES],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# 1. Integers over their whole range.


@pytest.mark.parametrize("case", ["wide_ints_rest_json", "wide_ints_grpc_contents", "wide_ints_grpc_raw"])
def test_uint64_max_and_int64_min_round_trip_exactly(got, case):
    assert got[case]["outputs"] == {
        "u64": {"datatype": "UINT64", "shape": [3], "data": [0, 1, U64_MAX]},
        "i64": {"datatype": "INT64", "shape": [3], "data": [I64_MIN, -1, I64_MAX]},
    }


# 2. Outputs the model did not produce.


@pytest.mark.parametrize("case", ["partial_rest_json", "partial_rest_binary", "partial_grpc"])
def test_without_outputs_a_client_gets_what_the_model_produced(got, case):
    assert got[case]["outputs"] == {"o_int": {"datatype": "INT64", "shape": [2], "data": [2, 4]}}


def test_binary_data_output_gives_the_rest_client_a_binary_body(got):
    assert got["partial_rest_binary"]["binary_body"] is True
    assert got["partial_rest_json"]["binary_body"] is False
    assert got["wide_ints_rest_json"]["binary_body"] is False


def test_rest_client_gets_a_400_naming_the_missing_output(got):
    assert got["missing_rest"]["status"] == 400
    assert MISSING in got["missing_rest"]["error"]


def test_grpc_client_gets_invalid_argument_naming_the_missing_output(got):
    assert got["missing_grpc"]["code"] == "INVALID_ARGUMENT"
    assert got["missing_grpc"]["details"].startswith(MISSING)


# 3. ModelMetadataResponse.properties.


def test_grpc_model_metadata_carries_properties(got):
    metadata = got["metadata_grpc"]
    assert metadata["name"] == "partial" and metadata["versions"] == ["1"]
    assert metadata["outputs"] == [["o_int", "INT64", [-1]], ["o_bool", "BOOL", [-1]]]
    properties = metadata["properties"]
    assert properties["neuropod_platform"] == "python"
    assert json.loads(properties["neuropod_inputs"]) == [{"name": "x", "dtype": "int64", "shape": [None]}]
    assert [spec["name"] for spec in json.loads(properties["neuropod_outputs"])] == ["o_int", "o_bool"]


def test_no_request_logged_an_error_or_traceback_on_the_server(got, server_logs):
    bad = [r.getMessage() for r in server_logs if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, f"the server logged: {bad}"


def test_a_failed_environment_creation_raises_with_the_command_output(tmp_path, monkeypatch):
    uv = tmp_path / "uv"
    uv.write_text("#!/bin/sh\necho 'no network here' >&2\nexit 2\n")
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(kserve_env.shutil, "which", lambda *args, **kwargs: str(uv))
    with pytest.raises(RuntimeError) as info:
        kserve_env.kserve_python(tmp_path / "cache")
    venv = tmp_path / "cache" / "kserve-venv"
    message = str(info.value)
    assert message.startswith(f"Creating KServe's environment at {venv} failed: `{uv} venv ")
    assert "exited with 2, expected 0" in message and "no network here" in message
    assert not (venv / f".kserve-{kserve_env.KSERVE_VERSION}").exists()
