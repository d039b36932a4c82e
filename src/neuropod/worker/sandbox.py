"""``sandbox=True``: each worker in new user, mount, network and PID namespaces of its own.

Inside, the worker sees the file system read-only; an empty private ``tmpfs`` covers ``/tmp``,
``/var/tmp``, ``/run``, ``/dev/shm``, ``/root`` and the application's home folder, and what the
worker needs from under them (the package, its interpreter, neuropod, the application's
``sys.path``) is bound back read-only. It has no network (a new network namespace holds only a
loopback device, which stays down), sees only its own processes (a new ``/proc``) and holds no
capabilities, and cannot regain any (``PR_SET_NO_NEW_PRIVS``, an empty bounding set). Shared
memory keeps working: its blocks are ``memfd``s passed over the channel, which crosses
namespaces as any descriptor does.

The namespaces are made with ``unshare(2)`` (through ``ctypes``: ``os.unshare`` is new in Python
3.12) in the worker's interpreter before it imports anything but the standard library, since a
process that runs threads (numpy's BLAS starts some) cannot enter a user namespace. This file is
therefore loaded by path, on its own, by the worker's bootstrap (see ``process``), and uses the
standard library only.

The process that called ``unshare`` stays outside the new PID namespace; it forks the
namespace's first process (PID 1), which sets up the mounts, forks the worker and reaps; the
first exits as the worker did. Each dies with its parent (``PR_SET_PDEATHSIG``), so killing the
process the application started ends the worker too, and the processes the model started.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

#: Folders hidden behind an empty private tmpfs, besides the application's home.
HIDDEN = ("/root", "/tmp", "/var/tmp", "/run", "/dev/shm")
# The hidden folders the worker may write to (its home is writable too).
_PRIVATE = ("/tmp", "/var/tmp", "/dev/shm")

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MS_STRICTATIME = 1 << 24
# Per-mount flags a user namespace may not clear on a mount it got from a more privileged one:
# a read-only remount must repeat them.
_LOCKED_FLAGS = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME,
}
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522
_O_PATH = getattr(os, "O_PATH", 0o10000000)

# ---------------------------------------------------------------------------------------------
# The application's half


def sandbox_spec(
    *,
    package_root: str,
    interpreter: str,
    import_root: str,
    sys_path: Sequence[str],
    extra: Sequence[str] = (),
    parent: int | None = None,
) -> str:
    """What a sandboxed worker hides and binds back, as the JSON its bootstrap passes to ``enter``.

    Args:
        package_root: the package's folder (a zip's extracted copy).
        interpreter: the worker's interpreter.
        import_root: the folder neuropod is imported from.
        sys_path: the entries the worker adds to its ``sys.path``.
        extra: other paths the worker needs (the folder of its Unix socket).
        parent: the process that starts the worker's interpreter, which the worker dies with
            (``None``: unknown, a command such as a container runtime starts it).
    """
    home = os.path.expanduser("~")
    hidden = [*HIDDEN, home] if home not in ("", "/") and os.path.isabs(home) else list(HIDDEN)
    every = sorted({os.path.realpath(path) for path in hidden if os.path.isdir(path)})
    python = Path(interpreter)
    needed = [
        package_root,
        import_root,
        *extra,
        str(python.parent.parent),  # a virtual environment, whose python links elsewhere
        str(Path(os.path.realpath(python)).parent.parent),
        *sys_path,
    ]
    keep = []
    for path in needed:
        if not path or not os.path.isabs(path) or not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        # Inside a hidden folder: bound back. Binding back a hidden folder itself, or one holding
        # it, would undo the hiding (a sys.path entry that is the home folder is left out).
        if any(_inside(real, folder) for folder in every):
            keep.append(real)
    keep = _outermost(keep)
    home = os.path.realpath(home)
    outermost = _outermost(every)
    return json.dumps(
        {
            "parent": parent,
            "home": home,
            "hidden": outermost,
            # A hidden folder inside one bound back (a home folder in a kept /tmp folder) is
            # hidden again on top of it; a home folder inside another hidden one gets its own
            # empty tmpfs, so that the worker has a home.
            "hidden_again": [
                path
                for path in every
                if path not in outermost and (path == home or any(_inside(path, kept) for kept in keep))
            ],
            "keep": keep,
        }
    )


def _inside(path: str, folder: str) -> bool:
    return path != folder and path.startswith(folder.rstrip("/") + "/")


def _outermost(paths: Iterable[str]) -> list[str]:
    """The paths that lie in none of the others, sorted."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == kept or _inside(path, kept) for kept in out):
            out.append(path)
    return out


# ---------------------------------------------------------------------------------------------
# The worker's half: standard library only, run before anything starts a thread.


def enter(spec_json: str) -> str | None:
    """Move this process into a sandbox, or say why not.

    Returns ``None`` in the sandboxed worker (this process's grandchild, PID 2 of its
    namespace); this process itself waits for it and exits as it does. Returns the reason when
    the kernel refused, to the process that is to report it (this one, or PID 1 of the new
    namespace when a mount failed) and exit.
    """
    spec = json.loads(spec_json)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = spec["parent"]
    if parent is not None and os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
    uid, gid = os.geteuid(), os.getegid()
    flags = _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID
    if libc.unshare(flags) != 0:
        return _refused(ctypes.get_errno())
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError as exc:
        return f"the worker's user namespace could not map its user ids: {exc}"
    # PID 1 of the new namespace reaps what the model's processes leave and reports the worker's
    # end through a pipe: the worker itself would be PID 1 otherwise, which ignores signals
    # without a handler that it sends itself (a model's abort(), say).
    status_read, status_write = os.pipe()
    init = os.fork()
    if init:
        _keep(status_read, lambda: _report_end(init, status_read))
    os.close(status_read)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        _mount_view(libc, spec)
        _drop_privileges(libc)
    except OSError as exc:
        os.close(status_write)
        return f"the worker's sandbox could not be set up: {exc}"
    worker = os.fork()
    if worker:
        _keep(status_write, lambda: _reap(worker, status_write))
    os.close(status_write)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.environ["TMPDIR"] = "/tmp"
    os.chdir("/tmp")  # the old working directory may be hidden; a process keeps its own
    return None


def _keep(fd: int, then: Callable[[], None]) -> None:
    """Close every descriptor but ``fd`` (the channel among them: the application must read
    end-of-file when the worker dies), then run ``then``, which never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    then()


def _reap(worker: int, status_write: int) -> None:
    """PID 1: reap every process until the worker ends, then pass on its wait status."""
    while True:
        pid, status = os.wait()
        if pid == worker:
            os.write(status_write, str(status).encode())
            os._exit(0)  # the kernel then kills what is left in the namespace


def _report_end(init: int, status_read: int) -> None:
    """Outside the namespace: wait for it to end, then exit as the worker did."""
    _, status = os.waitpid(init, 0)
    text = os.read(status_read, 32)
    if text:
        status = int(text)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)  # so that the application reports the worker's signal
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _refused(code: int) -> str:
    what = (
        f"the kernel refused to create the worker's namespaces (unshare(CLONE_NEWUSER | CLONE_NEWNS "
        f"| CLONE_NEWNET | CLONE_NEWPID): [Errno {code}] {os.strerror(code)})"
    )
    reasons = []
    if _sysctl("user/max_user_namespaces") == "0":
        reasons.append(
            "user.max_user_namespaces is 0 (in this process's user namespace): raise it with "
            "`sysctl -w user.max_user_namespaces=10000`"
        )
    if _sysctl("kernel/unprivileged_userns_clone") == "0" and os.geteuid() != 0:
        reasons.append(
            "kernel.unprivileged_userns_clone is 0: allow it with "
            "`sysctl -w kernel.unprivileged_userns_clone=1`"
        )
    if _sysctl("kernel/apparmor_restrict_unprivileged_userns") == "1":
        reasons.append(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns "
            "is 1): set it to 0, or give the worker's interpreter an AppArmor profile with `userns,`"
        )
    if not reasons and code == errno.EPERM:
        reasons.append(
            "a seccomp filter (a container runtime's default profile) or a security module denies "
            "unshare(2): run the container with a profile that allows it (e.g. docker run "
            "--security-opt seccomp=unconfined), or run the worker in a container of its own "
            "(worker_socket) instead of sandbox=True"
        )
    if not reasons and code == errno.ENOSPC:
        reasons.append("a limit on namespaces is reached (user.max_user_namespaces and related sysctls)")
    return what + ("; " + "; ".join(reasons) if reasons else "")


def _sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}") as file:
            return file.read().strip()
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _mount(
    libc: ctypes.CDLL,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    if libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {fstype or source or ''} on {target}: {os.strerror(code)}")


def _mount_points() -> list[tuple[str, int]]:
    """Each mount point and its locked flags, from ``/proc/self/mountinfo``."""
    points: dict[str, int] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            fields = line.split()
            point = _unescape(fields[4])
            locked = 0
            for name in fields[5].split(","):
                locked |= _LOCKED_FLAGS.get(name, 0)
            points[point] = locked  # a later entry on the same point lies on top
    return list(points.items())


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    for escape, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escape, char)
    return field


def _mount_view(libc: ctypes.CDLL, spec: dict[str, Any]) -> None:
    home: str = spec["home"]
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates in or out
    for point, locked in _mount_points():
        try:
            _mount(libc, None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | locked)
        except OSError as exc:
            # A point this process cannot reach is out of the worker's reach too.
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.ENOTDIR):
                raise
    # What is bound back is opened before the folder holding it is hidden.
    sources = {path: os.open(path, _O_PATH | os.O_CLOEXEC) for path in spec["keep"]}
    for folder in spec["hidden"]:
        _hide(libc, folder, home)
    for path, fd in sources.items():
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        # A bind copies the source's mounts with their flags: read-only, as remounted above.
        _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    for folder in spec["hidden_again"]:
        os.makedirs(folder, exist_ok=True)
        _hide(libc, folder, home)
    for folder in spec["hidden"]:
        if folder not in _PRIVATE and folder != home:  # no new entries once the keeps are in
            _mount(libc, None, folder, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    # The new PID namespace's own processes, not the host's.
    try:
        _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
        raise OSError(
            exc.errno,
            f"{exc.strerror}: the kernel lets a new /proc be mounted only where no part of /proc is "
            "hidden, and a container runtime hides some by default (docker run --security-opt "
            "systempaths=unconfined lifts that)",
        ) from None


def _hide(libc: ctypes.CDLL, folder: str, home: str) -> None:
    mode = "1777" if folder in _PRIVATE else "0700" if folder == home else "0755"
    _mount(libc, "tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode={mode}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_privileges(libc: ctypes.CDLL) -> None:
    """Give up every capability for good, before the model's code runs."""
    last = int(_sysctl("kernel/cap_last_cap") or "40")
    for cap in range(last + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            code = ctypes.get_errno()
            raise OSError(code, f"dropping capability {cap}: {os.strerror(code)}")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"PR_SET_NO_NEW_PRIVS: {os.strerror(code)}")
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"capset: {os.strerror(code)}")
