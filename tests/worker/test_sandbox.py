"""Sandboxed workers (``sandbox=True``) and workers that connect over a Unix socket path.

A probe model tries what a sandbox must stop (a TCP connection to a listener of the test on
127.0.0.1, a write outside its temp folder, a read of a file in the caller's home) and reports
each result as an errno name or ``"ok"``, while doubling a large tensor through shared memory.
The same probes run without the sandbox and succeed, so the sandbox is what stops them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import load_neuropod
from neuropod.errors import InferenceTimeout, OptionError, SandboxUnavailable, ValidationError, WorkerCrashed
from neuropod.packagers import create_python_neuropod
from tests.worker.ope_models import children, process_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux's")

PROBE = """
    import errno
    import os
    import socket
    import tempfile
    import time

    import numpy as np


    def _attempt(action):
        try:
            action()
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))
        return "ok"


    def _write(path):
        def write():
            with open(path, "w") as file:
                file.write("written by the model")

        return write


    def _read(path):
        def read():
            with open(path) as file:
                file.read()

        return read


    def _connect(port):
        def connect():
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass

        return connect


    class _Escape:
        # Unpickling it makes a folder: how a hostile model would run code in the application.

        def __init__(self, path):
            self.path = path

        def __reduce__(self):
            return (os.mkdir, (self.path,))


    def get_model(data_dir):
        def probe(x, mode, port, outside, secret, private):
            if mode[0] == "escape":
                return {"y": _Escape(str(outside[0]) + ".escaped")}
            if mode[0] == "sleep":
                time.sleep(60)
            if mode[0] == "abort":
                os.abort()
            report = [
                _attempt(_connect(int(port[0]))),
                _attempt(_write(str(outside[0]))),
                _attempt(_write(os.path.join(data_dir, "written.txt"))),
                _attempt(_read(str(secret[0]))),
                _attempt(_write(os.path.join(tempfile.gettempdir(), str(private[0])))),
                _attempt(_read(os.path.join(tempfile.gettempdir(), str(private[0])))),
            ]
            return {"y": x * 2, "report": np.array(report), "pid": np.array(os.getpid(), np.int64)}

        return probe
"""
PROBES = ("connect", "write outside", "write package", "read home", "write temp", "read temp")
SPEC: dict[str, Any] = {
    "input_spec": [
        {"name": "x", "dtype": "float32", "shape": (None,)},
        *(
            {"name": n, "dtype": "string", "shape": (1,)}
            for n in ("mode", "port", "outside", "secret", "private")
        ),
    ],
    "output_spec": [
        {"name": "y", "dtype": "float32", "shape": (None,)},
        {"name": "report", "dtype": "string", "shape": (len(PROBES),)},
        {"name": "pid", "dtype": "int64", "shape": ()},
    ],
}
LARGE = 8 * 1024 * 1024  # float32 elements: 32 MB through shared memory


@pytest.fixture(scope="module")
def probe_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    code = root / "code" / "probe_model"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(PROBE))
    path = root / "probe"
    create_python_neuropod(
        neuropod_path=path,
        model_name="probe",
        code_path_spec=[{"python_root": str(root / "code"), "dirs_to_package": ["probe_model"]}],
        entrypoint_package="probe_model",
        entrypoint="get_model",
        package_as_zip=False,
        **SPEC,
    )
    return path


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    """A TCP listener on the host's loopback that the probe tries to reach."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


@pytest.fixture(scope="module")
def sandbox_works(probe_package: Path) -> None:
    """Skips where the kernel refuses namespaces, after checking that it says so clearly."""
    try:
        load_neuropod(probe_package, use_ope=True, sandbox=True).close()
    except SandboxUnavailable as exc:
        assert "unshare(CLONE_NEWUSER" in str(exc)
        pytest.skip(f"this kernel refuses the sandbox: {exc}")


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake home holding a secret, and a folder of the test outside the worker's temp folder."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("the caller's secret")
    monkeypatch.setenv("HOME", str(home))
    outside = tmp_path / "outside"
    outside.mkdir()
    return {"home": home, "secret": home / "secret.txt", "outside": outside / "written.txt"}


def probe_inputs(
    model: Any, listener: socket.socket, places: dict[str, Path], private: str, mode: str = "probe"
) -> dict[str, np.ndarray]:
    x = model.allocate("x", (LARGE,))
    x[...] = np.arange(LARGE, dtype=np.float32)
    return {
        "x": x,
        "mode": np.array([mode]),
        "port": np.array([str(listener.getsockname()[1])]),
        "outside": np.array([str(places["outside"])]),
        "secret": np.array([str(places["secret"])]),
        "private": np.array([private]),
    }


def run_probe(model: Any, listener: socket.socket, places: dict[str, Path]) -> dict[str, str]:
    """The probes' results, after checking that the large tensor came back right."""
    private = f"neuropod-probe-{os.getpid()}-{time.monotonic_ns()}.txt"
    inputs = probe_inputs(model, listener, places, private)
    for _ in range(2):  # the second call reuses the shared blocks
        out = model.infer(inputs)
        np.testing.assert_array_equal(out["y"], np.arange(LARGE, dtype=np.float32) * 2)
    report = dict(zip(PROBES, (str(item) for item in out["report"]), strict=True))
    report["pid"] = str(int(out["pid"]))
    host_copy = Path("/tmp") / private
    report["temp seen by host"] = str(host_copy.exists())
    host_copy.unlink(missing_ok=True)
    return report


def accepted(server: socket.socket) -> int:
    """How many connections reached the listener (and closes them)."""
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_without_sandbox_the_probes_succeed(
    probe_package: Path, listener: socket.socket, places: dict[str, Path]
) -> None:
    with load_neuropod(probe_package, use_ope=True) as model:
        report = run_probe(model, listener, places)
    assert report == {
        "connect": "ok", "write outside": "ok", "write package": "ok", "read home": "ok",
        "write temp": "ok", "read temp": "ok", "pid": report["pid"], "temp seen by host": "True",
    }  # fmt: skip
    assert int(report["pid"]) > 2
    assert accepted(listener) == 2  # one per call
    assert places["outside"].read_text() == "written by the model"
    (probe_package / "0" / "data" / "written.txt").unlink()


def test_sandbox_blocks_network_writes_and_home(
    sandbox_works: None, probe_package: Path, listener: socket.socket, places: dict[str, Path]
) -> None:
    with load_neuropod(probe_package, use_ope=True, sandbox=True) as model:
        report = run_probe(model, listener, places)
        outer = model._backend.pids[0]  # type: ignore[union-attr]
        # The process the application started stays in its PID namespace, to wait for the worker.
        assert os.readlink(f"/proc/{outer}/ns/pid") == os.readlink("/proc/self/ns/pid")
        (init,) = children(outer)  # PID 1 of the worker's namespace
        (worker,) = children(init)
        for kind in ("user", "mnt", "net", "pid"):
            assert os.readlink(f"/proc/{worker}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
    assert report == {
        "connect": "ENETUNREACH",  # no network: the namespace's loopback is down
        "write outside": "ENOENT",  # /tmp is a private tmpfs: the test's folders are not there
        "write package": "EROFS",  # the package is bound back read-only
        "read home": "ENOENT",  # the home folder is an empty tmpfs
        "write temp": "ok",
        "read temp": "ok",
        "pid": "2",  # its own PID namespace, where PID 1 reaps
        "temp seen by host": "False",  # the private temp folder is the worker's alone
    }
    assert accepted(listener) == 0
    assert not places["outside"].exists()
    assert not (probe_package / "0" / "data" / "written.txt").exists()


def test_sandbox_file_system_is_read_only_where_visible(
    sandbox_works: None, tmp_path: Path, places: dict[str, Path]
) -> None:
    """Beyond the probe: a model writes nowhere but its private folders, nor undoes the mounts."""
    code = tmp_path / "code" / "fs_model"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(
        textwrap.dedent("""
        import errno, os, subprocess
        import numpy as np

        def get_model(data_dir):
            def fs(paths):
                out = []
                for path in paths:
                    try:
                        open(str(path), "a").close()
                        out.append("ok")
                    except OSError as exc:
                        out.append(errno.errorcode[exc.errno])
                remount = subprocess.run(["mount", "-o", "remount,rw", "/"], capture_output=True)
                out.append("remounted" if remount.returncode == 0 else "refused")
                status = open("/proc/self/status").read()
                out.append([line for line in status.splitlines() if line.startswith("CapEff")][0].split()[1])
                return {"out": np.array(out)}
            return fs
    """)
    )
    create_python_neuropod(
        neuropod_path=tmp_path / "fs",
        model_name="fs",
        code_path_spec=[{"python_root": str(tmp_path / "code"), "dirs_to_package": ["fs_model"]}],
        entrypoint_package="fs_model",
        entrypoint="get_model",
        package_as_zip=False,
        input_spec=[{"name": "paths", "dtype": "string", "shape": (None,)}],
        output_spec=[{"name": "out", "dtype": "string", "shape": (None,)}],
    )
    visible = Path(__file__).parent / f"neuropod-sandbox-probe-{os.getpid()}"  # the source tree
    in_home = places["home"] / "x"  # the home folder is an empty private tmpfs, writable
    paths = [visible, "/etc/neuropod-probe", "/root/x", "/run/x", in_home, "/dev/shm/x", "/var/tmp/x"]
    with load_neuropod(tmp_path / "fs", use_ope=True, sandbox=True) as model:
        out = [str(item) for item in model.infer({"paths": np.array([str(p) for p in paths])})["out"]]
    assert not visible.exists() and not in_home.exists()
    assert out == ["EROFS", "EROFS", "EROFS", "EROFS", "ok", "ok", "ok", "refused", "0000000000000000"]


def test_sandboxed_worker_timeout_and_crash_end_every_process(
    sandbox_works: None, probe_package: Path, listener: socket.socket, places: dict[str, Path]
) -> None:
    with load_neuropod(probe_package, use_ope=True, sandbox=True, timeout=1.0) as model:
        outer = model._backend.pids[0]  # type: ignore[union-attr]
        (init,) = children(outer)
        (worker,) = children(init)
        with pytest.raises(InferenceTimeout):
            model.infer(probe_inputs(model, listener, places, "unused", mode="sleep"))
        assert all(process_gone(pid, 5.0) for pid in (outer, init, worker))
        with pytest.raises(WorkerCrashed, match="SIGABRT"):  # the worker's signal, not its keeper's
            model.infer(probe_inputs(model, listener, places, "unused", mode="abort"))


def test_an_untrusted_worker_cannot_run_code_in_the_application_through_pickle(
    sandbox_works: None, probe_package: Path, listener: socket.socket, places: dict[str, Path]
) -> None:
    marker = Path(str(places["outside"]) + ".escaped")
    trusted = load_neuropod(probe_package, use_ope=True)  # its worker's values are unpickled
    with trusted, pytest.raises(ValidationError, match=r"Tensor 'y' .* but was of type NoneType"):
        trusted.infer(probe_inputs(trusted, listener, places, "unused", mode="escape"))
    assert marker.is_dir()  # the folder os.mkdir made in the application, when unpickled
    marker.rmdir()
    sandboxed = load_neuropod(probe_package, use_ope=True, sandbox=True)
    with sandboxed, pytest.raises(ValidationError, match=r"Tensor 'y' .* but was of type SandboxedPickle"):
        sandboxed.infer(probe_inputs(sandboxed, listener, places, "unused", mode="escape"))
    assert not marker.exists()


def test_kernel_refusal_says_what_and_how_to_enable(probe_package: Path) -> None:
    """A user namespace whose max_user_namespaces is 0: the kernel itself refuses the sandbox."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-Ur", "true"], capture_output=True).returncode:
        pytest.skip("needs util-linux unshare and user namespaces to make a namespace that forbids them")
    script = textwrap.dedent(f"""
        from neuropod import load_neuropod
        try:
            load_neuropod({str(probe_package)!r}, use_ope=True, sandbox=True)
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    command = f'echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -c "$0"'
    result = subprocess.run(
        [unshare, "-Ur", "sh", "-c", command, script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("SandboxUnavailable sandbox=True: the kernel refused"), result
    assert "[Errno 28] No space left on device" in result.stdout
    assert "user.max_user_namespaces is 0" in result.stdout
    assert "sysctl -w user.max_user_namespaces=" in result.stdout


def test_sandbox_is_a_checked_worker_option(probe_package: Path) -> None:
    with pytest.raises(OptionError, match="sandbox must be True or False, got 'yes'"):
        load_neuropod(probe_package, use_ope=True, sandbox="yes")
    with pytest.raises(OptionError, match="sandbox applies with use_ope=True"):
        load_neuropod(probe_package, sandbox=True)


def test_served_model_can_be_sandboxed(sandbox_works: None, probe_package: Path, tmp_path: Path) -> None:
    from neuropod.serving.repository import ModelRepository

    folder = tmp_path / "repository" / "probe"
    folder.mkdir(parents=True)
    shutil.copytree(probe_package, folder / "probe")
    (folder / "neuropod-serve.json").write_text(json.dumps({"options": {"use_ope": True, "sandbox": True}}))
    repository = ModelRepository(repository=tmp_path / "repository")
    repository.load_all()
    try:
        outer = repository.get("probe").model._backend.pids[0]  # type: ignore[union-attr]
        assert os.readlink(f"/proc/{outer}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        repository.close()


# ---------------------------------------------------------------------------------------------
# Workers that connect over a Unix socket path


@pytest.fixture
def container(tmp_path: Path, probe_package: Path) -> Callable[[Path], list[str]]:
    """A stand-in for a container runtime: the worker in a mount namespace of its own whose
    /tmp holds only the socket folder and the package (as ``docker run -v`` would mount them)."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-Urm", "true"], capture_output=True).returncode:
        pytest.skip("needs util-linux unshare and user namespaces")
    base = Path("/mnt")  # outside /tmp, to hold the old /tmp for a moment (in that namespace only)
    if not base.is_dir():
        pytest.skip("needs /mnt to mount on")

    # What the worker runs from, where it lies under /tmp (a checkout there): a container
    # image would hold it.
    import neuropod

    runtime = [Path(sys.prefix), Path(sys.base_prefix), Path(neuropod.__file__).parents[1]]
    runtime = [p.resolve() for p in runtime if p.resolve().is_relative_to("/tmp")]
    runtime = [p for p in dict.fromkeys(runtime) if not any(p != q and p.is_relative_to(q) for q in runtime)]

    def prefix(socket_folder: Path) -> list[str]:
        shared = [socket_folder, probe_package, *runtime]
        binds = " && ".join(
            f'mkdir -p "{p}" && mount --bind "{base}/{p.relative_to("/tmp")}" "{p}"' for p in shared
        )
        hide = f"mount --rbind /tmp {base} && mount -t tmpfs none /tmp"
        script = f'{hide} && {binds} && umount -l {base} && exec "$@"'
        return [unshare, "-Urm", "--propagation", "private", "sh", "-c", script, "container"]

    return prefix


def test_worker_connects_by_path_from_its_own_mount_namespace(
    container: Callable[[Path], list[str]],
    probe_package: Path,
    listener: socket.socket,
    places: dict[str, Path],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "sockets"
    with load_neuropod(
        probe_package, use_ope=True, worker_socket=str(folder), worker_prefix=container(folder)
    ) as model:
        report = run_probe(model, listener, places)
        pid = model._backend.pids[0]  # type: ignore[union-attr]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"--connect" in command  # no inherited channel
        assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    # The test's folders are not in the worker's /tmp: only the socket folder and the package.
    assert report["write outside"] == "ENOENT"
    assert report["read home"] == "ENOENT"
    assert report["connect"] == "ok"  # the stand-in keeps the network (the sandbox is not on)
    accepted(listener)
    (probe_package / "0" / "data" / "written.txt").unlink()
    assert list(folder.iterdir()) == []  # the socket is removed once the worker connected


def test_sandboxed_worker_connects_by_path(
    sandbox_works: None, probe_package: Path, listener: socket.socket, places: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "sockets"
    with load_neuropod(probe_package, use_ope=True, sandbox=True, worker_socket=str(folder)) as model:
        report = run_probe(model, listener, places)
    assert report["connect"] == "ENETUNREACH"
    assert report["write package"] == "EROFS"
    assert report["read home"] == "ENOENT"
    assert report["pid"] == "2"
    assert accepted(listener) == 0


def test_worker_socket_errors(probe_package: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="worker_socket must be None or an absolute folder path"):
        load_neuropod(probe_package, use_ope=True, worker_socket="relative/folder")
    with pytest.raises(OptionError, match="too long for a Unix socket path"):
        load_neuropod(probe_package, use_ope=True, worker_socket="/" + "x" * 100)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OptionError, match="cannot be used as a folder"):
        load_neuropod(probe_package, use_ope=True, worker_socket=str(blocker / "sub"))
    # A worker that exits before it connects (here: the prefix's command never runs it).
    with pytest.raises(WorkerCrashed, match=r"exited with status 1 before connecting to .*sockets"):
        load_neuropod(
            probe_package, use_ope=True, worker_socket=str(tmp_path / "sockets"), worker_prefix=["false"]
        )


def test_a_connection_without_the_token_is_turned_away(
    probe_package: Path, listener: socket.socket, places: dict[str, Path], tmp_path: Path
) -> None:
    """Whoever can reach the socket folder cannot pose as the worker: a wrong token is hung up on.
    Then ``python -m neuropod.worker --connect PATH TOKEN`` connects, as a container would run it."""
    record = tmp_path / "rogue.txt"
    rogue = tmp_path / "rogue.py"
    rogue.write_text(
        textwrap.dedent(f"""
        import marshal, os, socket, sys
        connect = sys.argv.index("--connect")
        path = sys.argv[connect + 1]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(path)
        sock.send(marshal.dumps(("hello", "not the token")))
        with open({str(record)!r}, "w") as file:
            file.write("hung up" if sock.recv(100) == b"" else "answered")
        sock.close()
        os.execv(sys.executable, [sys.executable, "-m", "neuropod.worker", *sys.argv[connect:]])
    """)
    )
    folder = tmp_path / "sockets"
    prefix = [sys.executable, str(rogue)]
    with load_neuropod(probe_package, use_ope=True, worker_socket=str(folder), worker_prefix=prefix) as model:
        run_probe(model, listener, places)  # the real worker answers
    assert record.read_text() == "hung up"
    accepted(listener)
    (probe_package / "0" / "data" / "written.txt").unlink()
