"""Version selection: ranges, locks, isolated environments, models needing other versions side by side.

The proof tests build two versions of a tiny library as wheels in a temporary folder (and repack
the installed numpy as a wheel beside them), so that locking and building need no network.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from neuropod import BackendUnavailable, PackageError, SpecError
from neuropod.environments import (
    EnvironmentBuildError,
    EnvironmentCache,
    FrameworkVersionError,
    RequirementLock,
    RequirementsError,
    VersionRange,
    check_package,
    installed_framework,
    lock_requirements,
    prepare_environment,
    resolver,
)
from neuropod.environments.versions import to_semver
from neuropod.loader import load_neuropod
from neuropod.package.package import Package
from neuropod.packagers import create_python_neuropod

X_SPEC = [{"name": "x", "dtype": "float32", "shape": (None,)}]
REPORT_SPEC = [
    {"name": "version", "dtype": "string", "shape": (1,)},
    {"name": "prefix", "dtype": "string", "shape": (1,)},
    {"name": "numpy", "dtype": "string", "shape": (1,)},
    {"name": "seen", "dtype": "string", "shape": (1,)},
]
X = np.array([1.0, 2.0], np.float32)

DEMO_CODE = """\
import os
import sys

import numpy as np
import npdemo_lib


def get_model(data_dir):
    def infer(x):
        return {
            "version": np.array([npdemo_lib.version()]),
            "prefix": np.array([sys.prefix]),
            "numpy": np.array([np.__version__]),
            "seen": np.array([os.environ.get("NEUROPOD_PREFIX_SEEN", "")]),
        }
    return infer
"""

NUMPY_CODE = """\
import os
import sys

import numpy as np


def get_model(data_dir):
    def infer(x):
        return {"version": np.array([np.__version__]), "prefix": np.array([sys.prefix]),
                "numpy": np.array([np.__version__]),
                "seen": np.array([os.environ.get("NEUROPOD_PREFIX_SEEN", "")])}
    return infer
"""


# --- wheels made at test time -------------------------------------------------------------


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(
    folder: Path, name: str, version: str, files: dict[str, bytes], tag: str = "py3-none-any"
) -> Path:
    """Write a wheel of ``files`` (path in the wheel -> bytes) with minimal metadata."""
    dist_info = f"{name}-{version}.dist-info"
    purelib = "true" if tag.endswith("none-any") else "false"
    contents = dict(files)
    contents.setdefault(
        f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    contents[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: neuropod-tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()
    )
    record = [_record_line(path, data) for path, data in contents.items()] + [f"{dist_info}/RECORD,,"]
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in contents.items():
            archive.writestr(member, data)
    return path


def repack_installed(folder: Path, name: str) -> Path:
    """The installed distribution ``name`` as a wheel again, so that environments install it offline."""
    dist = importlib.metadata.distribution(name)
    tag = next(
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    )
    skip = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "WHEEL"}
    files: dict[str, bytes] = {}
    for entry in dist.files or ():
        rel = str(entry)
        if rel.startswith("..") or "__pycache__" in rel or rel.rsplit("/", 1)[-1] in skip:
            continue
        files[rel] = Path(str(dist.locate_file(entry))).read_bytes()
    return write_wheel(folder, str(dist.metadata["Name"]), dist.version, files, tag)


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links folder: npdemo_lib 1.0 and 2.0, and the installed numpy."""
    folder = tmp_path_factory.mktemp("wheels")
    for version in ("1.0", "2.0"):
        source = f"def version():\n    return {version!r}\n".encode()
        write_wheel(folder, "npdemo_lib", version, {"npdemo_lib/__init__.py": source})
    repack_installed(folder, "numpy")
    return folder


def local_requirements(wheels: Path, *requirements: str) -> str:
    return "\n".join([f"--find-links {wheels}", "--no-index", *requirements]) + "\n"


def package_model(path: Path, code: str, requirements: str | None, **kwargs: object) -> Path:
    """A python model whose code is ``code`` (module ``model.main``)."""
    root = path.parent / f"{path.name}-code"
    (root / "model").mkdir(parents=True)
    (root / "model" / "main.py").write_text(code)
    create_python_neuropod(
        neuropod_path=path,
        model_name=path.name,
        input_spec=X_SPEC,
        output_spec=REPORT_SPEC,
        code_path_spec=[{"python_root": str(root), "dirs_to_package": ["model"]}],
        entrypoint_package="model.main",
        entrypoint="get_model",
        requirements=requirements,
        **kwargs,  # type: ignore[arg-type]
    )
    return path


@pytest.fixture(scope="module")
def demo_packages(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> dict[str, Path]:
    """Two models: one needs npdemo_lib 1.0, the other 2.0."""
    folder = tmp_path_factory.mktemp("demo")
    return {
        version: package_model(
            folder / f"demo-{version}", DEMO_CODE, local_requirements(wheels, f"npdemo_lib=={version}")
        )
        for version in ("1.0", "2.0")
    }


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh environment cache, which ``load_neuropod`` uses through ``NEUROPOD_ENV_CACHE``."""
    root = tmp_path / "envs"
    monkeypatch.setenv("NEUROPOD_ENV_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache the tests of this module share, so that each environment is built once."""
    return tmp_path_factory.mktemp("shared-envs")


def run_report(path: Path, **options: object) -> dict[str, str]:
    with load_neuropod(path, **options) as model:
        out = model.infer({"x": X})
    return {name: str(value[0]) for name, value in out.items()}


# --- version ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("1.13.1", "1.13.1", "1.13.2"),
        ("> 1.13.1", "1.14.0", "1.13.1"),
        ("1.4.0 - 1.6.0", "1.6.0", "1.6.1"),
        ("^2.1", "2.13.0+cpu", "3.0.0"),
        ("~1.2", "1.2.9", "1.3.0"),
        (">=1.0 <2.0 || ^3", "3.1", "2.5"),
        ("*", "0.0.1", None),
    ],
)
def test_npm_ranges(text: str, inside: str, outside: str | None) -> None:
    version_range = VersionRange(text)
    assert version_range.contains(inside)
    if outside is not None:
        assert not version_range.contains(outside)


@pytest.mark.parametrize(
    ("version", "semver"),
    [
        ("2.13.0+cpu", "2.13.0+cpu"),
        ("2.21.0rc1", "2.21.0-rc.1"),
        ("0.10", "0.10.0"),
        ("2.1.0.post1", "2.1.0"),
    ],
)
def test_installed_versions_compare_as_semver(version: str, semver: str) -> None:
    assert to_semver(version) == semver


def test_an_installed_prerelease_is_in_the_range_it_reaches() -> None:
    assert VersionRange(">= 2.0").contains("2.21.0rc1")
    assert not VersionRange("< 2.21").contains("2.21.0")


@pytest.mark.parametrize("text", ["garbage", "1.2.3 ||| 2", "^", ">= one"])
def test_invalid_range_names_the_value(text: str) -> None:
    with pytest.raises(
        SpecError, match=re.escape(f"platform_version_semver {text!r} is not a version range")
    ):
        VersionRange(text)


def test_installed_framework() -> None:
    assert installed_framework("python") is None
    assert installed_framework("no-such-platform") is None
    found = installed_framework("onnx")
    assert found is None or found == ("onnxruntime", importlib.metadata.version("onnxruntime"))


@pytest.mark.parametrize("text", ["garbage", "> x.y"])
def test_invalid_range_is_a_packaging_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"platform_version_semver {text!r}")):
        package_model(tmp_path / "bad", NUMPY_CODE, None, platform_version_semver=text)
    assert not (tmp_path / "bad").exists()


# --- locks -------------------------------------------------------------------------------


ORIGINAL_LOCK = """\
#
# This file is autogenerated by pip-compile
# To update, run:
#
#    pip-compile --output-file=requirements.lock requirements.in
#
--find-links /wheels

numpy==1.18.0 \\
    --hash=sha256:b091e5d4cbbe79f0e8b6b6b522346e54a282eadb06e3fd761e9b6fafc2ca91ad \\
    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000
    # via -r requirements.in
six==1.14.0 ; python_version < "4"  # via -r requirements.in
"""


def test_reads_the_originals_lock_format() -> None:
    lock = RequirementLock.parse(ORIGINAL_LOCK)
    assert [req.text for req in lock.requirements] == ["numpy==1.18.0", 'six==1.14.0 ; python_version < "4"']
    assert lock.options == ("--find-links /wheels",)
    assert lock.names == {"numpy", "six"}
    assert lock.version_of("NumPy") == "1.18.0"
    assert lock.problems_here()[0] == f"numpy==1.18.0 (installed: {np.__version__})"


def test_a_lock_must_be_self_contained() -> None:
    with pytest.raises(RequirementsError, match="line 2: a lock must be self-contained"):
        RequirementLock.parse("numpy==2.0\n-r other.txt\n")


def test_a_malformed_lock_line_is_named() -> None:
    with pytest.raises(RequirementsError, match="line 1: 'numpy===' is not a requirement"):
        RequirementLock.parse("numpy===\n")


def test_requirements_are_locked_at_packaging(demo_packages: dict[str, Path]) -> None:
    with zipfile.ZipFile(demo_packages["1.0"]) as archive:
        lock = archive.read("0/requirements.lock").decode()
        assert archive.read("0/requirements.in").decode().endswith("npdemo_lib==1.0\n")
    parsed = RequirementLock.parse(lock)
    assert [req.text for req in parsed.requirements] == ["npdemo-lib==1.0"]
    assert "--no-index" in parsed.options


def test_locking_prefers_the_installed_versions(wheels: Path) -> None:
    lock = RequirementLock.parse(lock_requirements(local_requirements(wheels, "numpy>=1.20")))
    assert lock.version_of("numpy") == np.__version__
    assert lock.problems_here() == []


def test_unsatisfiable_requirements_quote_the_resolver(tmp_path: Path, wheels: Path) -> None:
    requirements = local_requirements(wheels, "npdemo_lib==1.0", "npdemo_lib>=2")
    with pytest.raises(RequirementsError) as info:
        package_model(tmp_path / "impossible", DEMO_CODE, requirements)
    message = str(info.value)
    assert message.startswith(
        "The requirements cannot be locked; the resolver says:\nerror: No solution found"
    )
    assert "npdemo-lib==1.0 and npdemo-lib>=2" in message
    assert not (tmp_path / "impossible").exists()


def test_missing_uv_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uv", None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BackendUnavailable, match=r"need uv: pip install 'neuropod\[envs\]'"):
        lock_requirements("numpy\n")


# --- side by side ------------------------------------------------------------------------


def test_two_library_versions_in_one_application(
    demo_packages: dict[str, Path], shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEUROPOD_ENV_CACHE", str(shared_cache))
    with load_neuropod(demo_packages["1.0"]) as one, load_neuropod(demo_packages["2.0"]) as two:
        first = {k: str(v[0]) for k, v in one.infer({"x": X}).items()}
        second = {k: str(v[0]) for k, v in two.infer({"x": X}).items()}
    assert (first["version"], second["version"]) == ("1.0", "2.0")
    assert Path(first["prefix"]).parent == Path(second["prefix"]).parent == shared_cache
    assert first["prefix"] != second["prefix"]
    assert first["numpy"] == second["numpy"] == np.__version__
    with pytest.raises(ImportError):
        import npdemo_lib  # noqa: F401  (the application itself has neither version)
    listed = EnvironmentCache(shared_cache).entries()
    assert sorted(info.packages for info in listed) == [
        ("npdemo-lib==1.0", f"numpy=={np.__version__}"),
        ("npdemo-lib==2.0", f"numpy=={np.__version__}"),
    ]


def test_cached_environment_needs_neither_uv_nor_network(
    demo_packages: dict[str, Path], shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_environment(demo_packages["1.0"], env_cache=shared_cache)

    def no_uv() -> str:
        raise AssertionError("uv was run for a cached environment")

    monkeypatch.setattr(resolver, "find_uv", no_uv)
    steps: list[str] = []
    report = run_report(demo_packages["1.0"], env_cache=shared_cache, env_progress=steps.append)
    assert report["version"] == "1.0"
    assert len(steps) == 1 and "using cached environment" in steps[0]


def test_progress_is_reported(tmp_path: Path, demo_packages: dict[str, Path]) -> None:
    steps: list[str] = []
    prepare_environment(demo_packages["2.0"], env_cache=tmp_path, progress=steps.append)
    assert [step.split(": ", 1)[1].split(" ")[0] for step in steps] == ["creating", "installing", "built"]
    assert "installing 2 packages: npdemo-lib==2.0, numpy==" in steps[1]


def test_environment_modes(tmp_path: Path, demo_packages: dict[str, Path], cache: Path) -> None:
    plain = package_model(tmp_path / "plain", NUMPY_CODE, None)
    assert run_report(plain)["prefix"] == sys.prefix
    isolated = run_report(plain, environment="isolated")
    assert Path(isolated["prefix"]).parent == cache
    with pytest.raises(BackendUnavailable, match=r"npdemo_lib.*0/requirements.lock"):
        load_neuropod(demo_packages["1.0"], environment="current")
    with pytest.raises(TypeError, match="environment must be one of 'auto', 'current', 'isolated'"):
        load_neuropod(plain, environment="elsewhere")


def test_failed_build_quotes_uv_and_leaves_nothing(tmp_path: Path, wheels: Path, cache: Path) -> None:
    moved = tmp_path / "wheels"
    moved.mkdir()
    for wheel in wheels.glob("npdemo_lib-1.0-*"):
        (moved / wheel.name).write_bytes(wheel.read_bytes())
    path = package_model(tmp_path / "orphan", DEMO_CODE, local_requirements(moved, "npdemo_lib==1.0"))
    for wheel in moved.iterdir():
        wheel.unlink()  # the package's wheels are gone by the time it is loaded
    with pytest.raises(EnvironmentBuildError) as info:
        load_neuropod(path)
    message = str(info.value)
    assert "failed; uv says:\nerror:" in message
    assert "npdemo-lib" in message
    assert [entry.name for entry in cache.iterdir()] == [".locks"]


def as_platform(path: Path, platform: str, version_range: str) -> Path:
    """Turn the directory package ``path`` into one of ``platform`` needing ``version_range``.

    Only the config matters here: the range is checked before the platform's backend (and its
    framework) is imported.
    """
    config = json.loads((path / "config.json").read_text())
    config.update(platform=platform, platform_version_semver=version_range)
    (path / "config.json").write_text(json.dumps(config))
    (path / "manifest.json").unlink()
    return path


def test_framework_outside_the_range(tmp_path: Path) -> None:
    try:
        installed = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("torch is not installed")
    old = as_platform(
        package_model(tmp_path / "old", NUMPY_CODE, None, package_as_zip=False), "torchscript", "< 1.0"
    )
    with pytest.raises(FrameworkVersionError) as info:
        load_neuropod(old)
    assert str(info.value) == (
        f"Model 'old' needs torch '< 1.0' (platform_version_semver of {old}), but torch {installed} "
        f"is installed. Install a version in that range, or lock torch in the package's requirements "
        f"so that it runs in an environment of its own"
    )
    assert isinstance(info.value, ImportError)
    major = installed.split(".")[0]
    current = as_platform(
        package_model(tmp_path / "current", NUMPY_CODE, None, package_as_zip=False),
        "torchscript",
        f"^{major}",
    )
    with Package(current) as package:
        assert check_package(package).problems == ()


def test_a_locked_framework_outside_the_range(tmp_path: Path) -> None:
    if installed_framework("torchscript") is None:
        pytest.skip("torch is not installed")
    path = as_platform(
        package_model(tmp_path / "pinned", NUMPY_CODE, None, package_as_zip=False), "torchscript", "< 1.0"
    )
    (path / "0" / "requirements.lock").write_text("torch==1.5.0\n")
    with pytest.raises(
        FrameworkVersionError, match=r"its requirements lock torch==1.5.0, outside that range"
    ):
        load_neuropod(path)


def test_malformed_range_in_a_package_is_named_at_load(tmp_path: Path) -> None:
    path = package_model(tmp_path / "hand-edited", NUMPY_CODE, None, package_as_zip=False)
    config = json.loads((path / "config.json").read_text())
    config["platform_version_semver"] = "not a range"
    (path / "config.json").write_text(json.dumps(config))
    (path / "manifest.json").unlink()
    with pytest.raises(PackageError, match="platform_version_semver 'not a range' is not a version range"):
        load_neuropod(path)


# --- builds that are interrupted or concurrent --------------------------------------------

PREPARE_SCRIPT = """\
import os, sys, time
from neuropod.environments import prepare_environment, resolver

package, cache, mode = sys.argv[1:4]
if mode == "slow uv":
    # uv runs through a wrapper that says when it started and lingers after uv is done
    resolver.find_uv = lambda: os.environ["SLOW_UV"]

def progress(step):
    print(step, flush=True)
    if mode == "stall" and "installing" in step:
        time.sleep(600)

gate = sys.argv[4] if len(sys.argv) > 4 else None
while gate and not os.path.exists(gate):
    time.sleep(0.01)
prepare_environment(package, env_cache=cache, progress=progress)
print("done", flush=True)
"""

SLOW_UV = """\
#!/bin/sh
case "$*" in *"pip install"*) touch "$UV_STARTED" ;; esac
"$REAL_UV" "$@"
status=$?
case "$*" in *"pip install"*) sleep 3 ;; esac
exit $status
"""


def start_prepare(
    tmp_path: Path, package: Path, cache: Path, mode: str, gate: Path | None = None
) -> subprocess.Popen[str]:
    script = tmp_path / "prepare.py"
    script.write_text(PREPARE_SCRIPT)
    slow_uv = tmp_path / "slow-uv"
    slow_uv.write_text(SLOW_UV)
    slow_uv.chmod(0o755)
    env = {
        **os.environ,
        "SLOW_UV": str(slow_uv),
        "REAL_UV": resolver.find_uv(),
        "UV_STARTED": str(tmp_path / "uv-started"),
    }
    args = [sys.executable, str(script), str(package), str(cache), mode] + ([str(gate)] if gate else [])
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True, env=env
    )


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("when", ["between steps", "while uv installs"])
def test_a_killed_build_is_never_used(
    tmp_path: Path, demo_packages: dict[str, Path], cache: Path, when: str
) -> None:
    builder = start_prepare(
        tmp_path, demo_packages["1.0"], cache, "stall" if when == "between steps" else "slow uv"
    )
    assert builder.stdout is not None
    for line in builder.stdout:
        if "installing" in line:
            break
    if when == "while uv installs":
        wait_for((tmp_path / "uv-started").exists)
    os.kill(builder.pid, signal.SIGKILL)  # the application only: uv, if running, lives on
    builder.wait(30)
    builder.stdout.close()
    leftovers = [entry.name for entry in cache.iterdir() if entry.name.startswith(".build-")]
    assert len(leftovers) == 1  # a half environment, under a name nobody uses
    assert EnvironmentCache(cache).keys() == []

    steps: list[str] = []
    assert run_report(demo_packages["1.0"], env_progress=steps.append)["version"] == "1.0"
    waited = any("waiting for another process" in step for step in steps)
    assert waited == (when == "while uv installs")  # the orphaned uv kept the build locked
    assert any("creating a virtual environment" in step for step in steps)
    assert [entry.name for entry in cache.iterdir() if entry.name.startswith(".build-")] == []
    assert len(EnvironmentCache(cache).keys()) == 1


def test_two_processes_build_one_environment_once(
    tmp_path: Path, demo_packages: dict[str, Path], cache: Path
) -> None:
    gate = tmp_path / "go"
    builders = [start_prepare(tmp_path, demo_packages["2.0"], cache, "run", gate) for _ in range(2)]
    time.sleep(0.5)  # let both reach the gate
    gate.touch()
    outputs = [builder.communicate(timeout=120)[0] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], outputs
    stdout = "".join(outputs)
    assert stdout.count("creating a virtual environment") == 1
    assert stdout.count("using cached environment") == 1
    assert len(EnvironmentCache(cache).keys()) == 1


# --- worker launch hook ------------------------------------------------------------------

PREFIX_CODE = """\
import os

import numpy as np


def get_model(data_dir):
    def infer(x):
        cpus = sorted(os.sched_getaffinity(0))
        return {"version": np.array([""]), "prefix": np.array([",".join(map(str, cpus))]),
                "numpy": np.array([np.__version__]),
                "seen": np.array([os.environ.get("NEUROPOD_PREFIX_SEEN", "")])}
    return infer
"""


@pytest.fixture(scope="module")
def prefix_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_model(tmp_path_factory.mktemp("prefix") / "prefix", PREFIX_CODE, None)


def test_worker_prefix_option(prefix_package: Path) -> None:
    report = run_report(prefix_package, use_ope=True, worker_prefix=["env", "NEUROPOD_PREFIX_SEEN=yes"])
    assert report["seen"] == "yes"
    assert run_report(prefix_package, use_ope=True)["seen"] == ""


def test_worker_prefix_environment_variable(prefix_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a process allowed on two CPUs")
    monkeypatch.setenv("NEUROPOD_WORKER_PREFIX", "taskset -c 0")
    assert run_report(prefix_package, use_ope=True)["prefix"] == "0"
    assert run_report(prefix_package)["prefix"] != "0"  # in process: no worker, no prefix


def test_worker_prefix_applies_to_environment_workers(
    demo_packages: dict[str, Path], shared_cache: Path
) -> None:
    report = run_report(
        demo_packages["2.0"], env_cache=shared_cache, worker_prefix=["env", "NEUROPOD_PREFIX_SEEN=1"]
    )
    assert (report["version"], report["seen"]) == ("2.0", "1")
    assert Path(report["prefix"]).parent == shared_cache


def test_invalid_worker_prefix(prefix_package: Path) -> None:
    with pytest.raises(
        TypeError, match=r"worker_prefix must be a list of strings such as \['taskset', '-c', '0'\]"
    ):
        load_neuropod(prefix_package, use_ope=True, worker_prefix="taskset -c 0")


# --- two numpy major versions, from the registry -----------------------------------------


def _registry_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def numpy_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    if os.environ.get("NEUROPOD_SKIP_NETWORK_TESTS") or not _registry_reachable():
        pytest.skip("the package registry is not reachable (or NEUROPOD_SKIP_NETWORK_TESTS is set)")
    folder = tmp_path_factory.mktemp("numpy-majors")
    yield {
        version: package_model(folder / f"numpy-{version}", NUMPY_CODE, f"numpy=={version}\n")
        for version in ("1.26.4", "2.2.6")
    }


@pytest.mark.timeout(600)
def test_two_numpy_major_versions_in_one_application(
    numpy_packages: dict[str, Path], tmp_path: Path, cache: Path
) -> None:
    with load_neuropod(numpy_packages["1.26.4"]) as old, load_neuropod(numpy_packages["2.2.6"]) as new:
        versions = [str(model.infer({"x": X})["version"][0]) for model in (old, new)]
    assert versions == ["1.26.4", "2.2.6"]
    assert np.__version__ not in versions
