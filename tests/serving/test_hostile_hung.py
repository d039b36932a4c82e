"""A hung model (issue 12 item 7) delays only the requests to that model: health checks and
other models answer, and stopping honours the drain timeout."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from neuropod.serving import Server
from tests.serving.helpers import build_model, request

pytest.importorskip("uvicorn")

HANG_MS = 6000  # flaky sleeps x[0] milliseconds


def _flaky(milliseconds: int) -> dict:
    return {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [milliseconds]}]}


def _adder() -> dict:
    return {
        "inputs": [{"name": n, "shape": [1, 1], "datatype": "FP32", "data": [1]} for n in ("x", "y")],
    }


def _timed(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
    started = time.monotonic()
    status = request(port, method, path, body)[0]
    return status, time.monotonic() - started


def test_a_hung_model_freezes_neither_health_nor_other_models_and_stop_honours_the_drain_timeout(
    tmp_path,
):
    models = [build_model(tmp_path, "flaky"), build_model(tmp_path, "adder")]
    server = Server(models, http_port=0, grpc_port=None, drain_timeout=1.0).start()
    try:
        port = server.http_port
        for _ in range(5):  # a fast model: the kind once run on the event loop
            assert request(port, "POST", "/v2/models/flaky/infer", _flaky(0))[0] == 200
        hung = threading.Thread(
            target=request, args=(port, "POST", "/v2/models/flaky/infer", _flaky(HANG_MS))
        )
        hung.start()
        time.sleep(0.3)
        status, took = _timed(port, "GET", "/v2/health/ready")
        assert status == 200 and took < 1.0
        status, took = _timed(port, "POST", "/v2/models/adder/infer", _adder())
        assert status == 200 and took < 1.0
    finally:
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    assert took < 1.0 + 1.5, f"stop took {took:.1f} s with a drain timeout of 1 s"
    assert server.left_running == ["flaky"]
    hung.join()


def test_neuropod_serve_exits_within_the_drain_timeout_despite_a_hung_model(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "neuropod.cli", "serve", str(build_model(tmp_path, "flaky")),
         "--http-port", "0", "--no-grpc", "--drain-timeout", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = None
        for line in process.stdout:
            found = re.match(r"HTTP on \S*:(\d+)", line)
            if found:
                port = int(found[1])
                break
        assert port is not None, process.communicate()[1]
        hung = threading.Thread(
            target=lambda: request(port, "POST", "/v2/models/flaky/infer", _flaky(600_000)), daemon=True
        )
        hung.start()
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(1.0 + 5)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
    assert process.returncode == 0 and took < 1.0 + 5, stderr
    assert "calls of flaky still running after --drain-timeout 1 s" in stderr


def test_a_model_left_open_at_stop_runs_no_further_call(tmp_path):
    from neuropod.serving.errors import Unavailable

    server = Server([build_model(tmp_path, "flaky")], http_port=0, grpc_port=None).start()
    served = server.core.repository.get("flaky")
    x = {"x": np.array([1500], np.int32)}  # 1.5 s
    running = threading.Thread(target=served.call, args=(x,))
    running.start()
    time.sleep(0.2)
    waiting_error: list[BaseException] = []

    def wait_for_the_slot() -> None:
        try:
            served.call({"x": np.array([0], np.int32)})
        except Unavailable as exc:
            waiting_error.append(exc)

    waiting = threading.Thread(target=wait_for_the_slot)
    waiting.start()
    time.sleep(0.2)
    assert served.close(timeout=0.2) is False
    assert served.close() is False  # idempotent: still open
    waiting.join(1.0)
    assert not waiting.is_alive() and str(waiting_error[0]) == "Model 'flaky' was unloaded"
    running.join()
    server.stop()
