"""``make demo``: its packages stay in a folder, and the commands it prints next work on them."""

import json
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import demo


@pytest.fixture
def printed(tmp_path, monkeypatch, capsys):
    # The framework-free models only: the frameworks' packagers have tests of their own.
    monkeypatch.setattr(demo, "PACKAGES", tmp_path / "demo-packages")
    monkeypatch.setattr(demo, "MODELS", [m for m in demo.MODELS if m[1] is None])
    monkeypatch.setattr(demo, "median_latency_us", _one_call)
    assert demo.main() == 0
    return capsys.readouterr().out


def _one_call(infer, calls=0):
    infer()  # the demo times thousands of calls; one shows it runs
    return 1.0


def test_the_demo_keeps_its_packages(printed, tmp_path):
    kept = sorted(path.name for path in (tmp_path / "demo-packages").iterdir())
    assert kept == ["addition_numpy.zip", "addition_placeholder.zip"]
    assert "The packages are in" in printed


def test_the_printed_inspect_and_test_commands_work(printed):
    commands = [line.split("#")[0].strip() for line in printed.splitlines()]
    for verb, expected in (("inspect", "name:                     addition_numpy"), ("test", "PASS  out")):
        command = next(c for c in commands if re.search(rf"neuropod {verb} ", c))
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout


def test_the_printed_curl_request_gets_an_answer_from_the_served_folder(printed, tmp_path):
    pytest.importorskip("uvicorn")
    from neuropod.serving import Server

    serve = next(line for line in printed.splitlines() if "neuropod serve --repository" in line)
    folder = shlex.split(serve)[-1]
    curl = shlex.split(next(line for line in printed.splitlines() if line.strip().startswith("curl ")))
    path = curl[2].removeprefix("localhost:8000")
    body = curl[curl.index("-d") + 1].encode()
    with (
        Server(repository=tmp_path / Path(folder).name, http_port=0, grpc_port=None) as server,
        urllib.request.urlopen(server.http_url + path, data=body) as response,
    ):
        answer = json.load(response)
    assert answer["outputs"][0]["data"] == [11.0, 22.0, 33.0]
