"""``neuropod env prepare|list|prune``, through ``main(argv)`` and once through the console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuropod.cli.main import main
from neuropod.environments import EnvironmentCache
from neuropod.environments.cache import LAST_USED
from neuropod.loader import load_neuropod
from tests.environments.test_environments import (  # noqa: F401
    DEMO_CODE,
    NUMPY_CODE,
    local_requirements,
    package_model,
    wheels,
)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> dict[str, Path]:  # noqa: F811
    folder = tmp_path_factory.mktemp("cli-packages")
    return {
        "1.0": package_model(folder / "one", DEMO_CODE, local_requirements(wheels, "npdemo_lib==1.0")),
        "2.0": package_model(folder / "two", DEMO_CODE, local_requirements(wheels, "npdemo_lib==2.0")),
        "plain": package_model(folder / "plain", NUMPY_CODE, None),
    }


def test_prepare_list_prune(
    tmp_path: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = str(tmp_path / "envs")
    assert main(["env", "prepare", str(packages["1.0"]), str(packages["plain"]), "--cache", cache]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{packages['1.0']}:"
    assert "creating a virtual environment" in out[1]
    assert "installing 2 packages: npdemo-lib==1.0, numpy==" in out[2]
    assert "built in" in out[3]
    assert out[4:] == [f"{packages['plain']}:", "  runs in the current environment: nothing to prepare"]

    assert main(["env", "prepare", str(packages["1.0"]), "--cache", cache]) == 0
    assert "using cached environment" in capsys.readouterr().out

    assert main(["env", "list", "--cache", cache]) == 0
    lines = capsys.readouterr().out.splitlines()
    (key,) = EnvironmentCache(cache).keys()
    assert lines[0].split() == ["hash", "size", "last", "used", "packages"]
    assert lines[1].startswith(key)
    assert re.search(rf"  just now +npdemo-lib==1\.0, numpy=={re.escape(np.__version__)}$", lines[1])

    assert main(["env", "list", "--json", "--cache", cache]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["hash"] == key
    assert listed["packages"] == ["npdemo-lib==1.0", f"numpy=={np.__version__}"]
    assert listed["in_use"] is False
    assert listed["size"] > 0

    assert main(["env", "prune", "--older-than", "1", "--cache", cache]) == 0
    assert capsys.readouterr().out.startswith("Nothing to remove")
    week_ago = time.time() - 7 * 86400
    os.utime(Path(cache) / key / LAST_USED, (week_ago, week_ago))
    assert main(["env", "prune", "--older-than", "1", "--cache", cache]) == 0
    assert capsys.readouterr().out == f"removed {key}\n"
    assert EnvironmentCache(cache).keys() == []


def test_prune_keeps_an_environment_in_use(
    tmp_path: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "envs"
    assert main(["env", "prepare", str(packages["1.0"]), str(packages["2.0"]), "--cache", str(cache)]) == 0
    capsys.readouterr()
    with load_neuropod(packages["2.0"], env_cache=cache) as model:
        used = model.infer({"x": np.zeros(1, np.float32)})["prefix"][0]
        assert main(["env", "list", "--cache", str(cache)]) == 0
        assert "(in use)" in capsys.readouterr().out
        assert main(["env", "prune", "--all", "--cache", str(cache)]) == 0
        out = capsys.readouterr().out.splitlines()
        kept = Path(used).name
        assert f"kept {kept}: a running model uses it" in out
        assert len(out) == 2 and out[0].startswith("removed ")
        assert model.infer({"x": np.zeros(1, np.float32)})["version"][0] == "2.0"
    assert main(["env", "prune", "--all", "--cache", str(cache)]) == 0
    assert capsys.readouterr().out == f"removed {kept}\n"


def test_prune_removes_what_killed_builds_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "envs"
    leftover = cache / ".build-0123456789abcdef-deadbeef"
    (leftover / "lib").mkdir(parents=True)
    assert main(["env", "prune", "--cache", str(cache)]) == 0
    assert not leftover.exists()


def test_force_builds_for_a_satisfied_package(
    tmp_path: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "envs"
    assert main(["env", "prepare", "--force", str(packages["plain"]), "--cache", str(cache)]) == 0
    assert "installing 1 packages: numpy==" in capsys.readouterr().out
    assert len(EnvironmentCache(cache).keys()) == 1


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "prune", "--older-than", "-1", "--cache", str(tmp_path)]) == 2
    assert "argument --older-than: expected a number of days >= 0, got '-1'" in capsys.readouterr().err
    assert main(["env", "prepare", str(tmp_path / "missing.zip"), "--cache", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["env", "list", "--cache", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out == f"No environments in {tmp_path / 'empty'}\n"


def test_console_script_uses_the_cache_variable(tmp_path: Path, packages: dict[str, Path]) -> None:
    env = {**os.environ, "NEUROPOD_ENV_CACHE": str(tmp_path / "envs")}
    command = [sys.executable, "-m", "neuropod.cli", "env", "prepare", str(packages["2.0"])]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "envs") in result.stdout
    assert len(EnvironmentCache(tmp_path / "envs").keys()) == 1
