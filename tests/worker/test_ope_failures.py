"""Out-of-process execution when things go wrong: crashes, hangs, memory hogs, a dying
application; and that none of it leaves processes, descriptors or shared memory behind.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neuropod import InferenceError, NeuropodModel
from neuropod.errors import InferenceTimeout, WorkerCrashed
from neuropod.loader import load_neuropod
from tests.worker.ope_models import (
    BEHAVIOUR,
    BEHAVIOUR_SPEC,
    build_python_model,
    children,
    mode,
    open_fds,
    process_gone,
    shared_mappings,
)

#: How soon a dead worker must fail the call that was running.
DETECTION_S = 1.0


@pytest.fixture(scope="module")
def behaviour_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("behaviour") / "behaviour.zip"
    return build_python_model(path, BEHAVIOUR, BEHAVIOUR_SPEC)


@pytest.fixture
def model(behaviour_path: Path) -> Iterator[NeuropodModel]:
    with load_neuropod(behaviour_path, use_ope=True) as model:
        yield model


def pid_of(model: NeuropodModel) -> int:
    return int(model.infer(mode("owner"))["pid"])


def timed_failure(model: NeuropodModel, name: str, error: type[Exception]) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(error) as caught:
        model.infer(mode(name))
    return str(caught.value), time.monotonic() - start


# --- Crashes -----------------------------------------------------------------------------------


def test_exit_in_the_model_fails_the_call_and_the_next_call_gets_a_new_worker(model):
    first = pid_of(model)
    message, elapsed = timed_failure(model, "exit", WorkerCrashed)
    assert elapsed < DETECTION_S
    assert message == (
        f"The worker process (pid {first}) of model 'behaviour' exited with status 3 during a call; "
        f"the next call starts a new worker"
    )
    assert process_gone(first, within=0)  # already reaped
    assert pid_of(model) != first


def test_segfault_in_the_model(model):
    first = pid_of(model)
    message, elapsed = timed_failure(model, "segfault", WorkerCrashed)
    assert elapsed < DETECTION_S
    assert "was killed by signal SIGSEGV (Segmentation fault) during a call" in message
    assert pid_of(model) != first


def test_worker_killed_during_a_call(model):
    first = pid_of(model)
    killer = threading.Timer(0.3, os.kill, (first, signal.SIGKILL))
    killer.start()
    try:
        message, elapsed = timed_failure(model, "sleep", WorkerCrashed)
    finally:
        killer.join()
    assert elapsed < 0.3 + DETECTION_S
    assert "was killed by signal SIGKILL" in message
    assert pid_of(model) != first


def test_worker_killed_while_idle_is_replaced_without_failing_a_call(model):
    first = pid_of(model)
    os.kill(first, signal.SIGKILL)
    assert process_gone(first, within=5)
    assert pid_of(model) != first  # nothing was running: the call simply goes to a new worker


def test_memory_hog_gets_a_memory_error_and_the_worker_lives_on(behaviour_path):
    with load_neuropod(behaviour_path, use_ope=True, memory_limit=1024**3) as model:
        first = pid_of(model)
        with pytest.raises(InferenceError, match=r"failed: \w*MemoryError: Unable to allocate 4.00 GiB"):
            model.infer(mode("hog"))
        assert pid_of(model) == first


def test_max_restarts_limits_replacements(behaviour_path):
    with load_neuropod(behaviour_path, use_ope=True, max_restarts=1) as model:
        message, _ = timed_failure(model, "exit", WorkerCrashed)
        assert message.endswith("the next call starts a new worker")
        message, _ = timed_failure(model, "exit", WorkerCrashed)
        assert message.endswith("max_restarts=1 are used up, so later calls fail too")
        message, _ = timed_failure(model, "owner", WorkerCrashed)
        assert message == (
            "The worker of model 'behaviour' died and max_restarts=1 are used up; load the model again"
        )


def test_crash_while_loading(behaviour_path, monkeypatch):
    before = set(children())
    monkeypatch.setenv("NEUROPOD_TEST_EXIT_AT_LOAD", "1")  # the worker inherits the environment
    with pytest.raises(WorkerCrashed, match=r"exited with status 7 while loading the model"):
        load_neuropod(behaviour_path, use_ope=True, instances=2)
    assert set(children()) <= before  # both workers reaped


def test_close_after_a_crash(behaviour_path):
    model = load_neuropod(behaviour_path, use_ope=True)
    timed_failure(model, "exit", WorkerCrashed)
    model.close()
    model.close()


# --- Timeouts ----------------------------------------------------------------------------------


def test_timeout_kills_the_worker_and_the_next_call_gets_a_new_one(behaviour_path):
    with load_neuropod(behaviour_path, use_ope=True, timeout=0.5) as model:
        first = pid_of(model)
        message, elapsed = timed_failure(model, "sleep", InferenceTimeout)
        assert 0.5 <= elapsed < 0.5 + DETECTION_S
        assert message == (
            f"Model 'behaviour' did not answer within 0.5 s; its worker process (pid {first}) was "
            f"killed; the next call starts a new worker"
        )
        assert process_gone(first, within=0)
        assert pid_of(model) != first
        with pytest.raises(TimeoutError):  # catchable as the builtin
            model.infer(mode("sleep"))


# --- Nothing left behind -----------------------------------------------------------------------


def test_crash_cycles_and_close_leave_nothing_behind(behaviour_path):
    def cycle() -> None:
        with load_neuropod(behaviour_path, use_ope=True, timeout=0.5, instances=2) as model:
            big = np.ones(1 << 20, np.float32)  # 4 MB: pooled blocks and leased outputs
            kept = model.infer(mode("owner", big))["out"]
            failures = (("exit", WorkerCrashed), ("segfault", WorkerCrashed), ("sleep", InferenceTimeout))
            for name, error in failures:
                with pytest.raises(error):
                    model.infer(mode(name, big))
                assert model.infer(mode("owner", big))["out"][0] == 2
            x = model.allocate("x", (1 << 20,))
            x[...] = 1
            model.infer(mode("owner", x))
        assert kept[0] == 2  # outputs outlive the model

    cycle()  # first use starts what lives as long as the application (the spawner thread)
    gc.collect()
    shm_before, fds_before, maps_before = set(os.listdir("/dev/shm")), open_fds(), shared_mappings()
    children_before = set(children())  # other tests' servers, if any
    # Mappings other tests' models still hold (their outputs outlive them) are theirs: what
    # counts is that these cycles add none.
    for _ in range(2):
        cycle()
    gc.collect()
    assert set(os.listdir("/dev/shm")) == shm_before
    assert open_fds() == fds_before
    assert set(shared_mappings()) <= set(maps_before)
    assert set(children()) <= children_before  # every worker reaped: no zombies, nothing running


# --- The application dies ----------------------------------------------------------------------

APPLICATION = """
import sys
import numpy as np
from neuropod import load_neuropod

model = load_neuropod(sys.argv[1], use_ope=True)
print(int(model.infer({"mode": np.array(["owner"])})["pid"]), flush=True)
model.infer({"mode": np.array([sys.argv[2]])})  # "sleep": busy when killed
print("idle", flush=True)
sys.stdin.read()  # idle when killed
"""


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_workers_exit_when_the_application_is_killed(behaviour_path, tmp_path, state):
    script = tmp_path / "application.py"
    script.write_text(textwrap.dedent(APPLICATION))
    application = subprocess.Popen(
        [sys.executable, str(script), str(behaviour_path), "owner" if state == "idle" else "sleep"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert application.stdout is not None
        worker = int(application.stdout.readline())
        if state == "idle":
            assert application.stdout.readline() == "idle\n"
        else:
            time.sleep(0.3)  # the call is running
        application.kill()
        application.wait()
        assert process_gone(worker, within=5)
    finally:
        application.kill()
        application.wait()
        if application.stdin is not None:
            application.stdin.close()
        if application.stdout is not None:
            application.stdout.close()
