"""Live grant/revoke: the control socket, and what a revoke does to open files.

The translator side runs in-process here: a sandbox kernel whose one "guest process" is this
test process, so the fd tables a revoke scans are real ones."""
from __future__ import annotations

import os
import select
import stat
import threading
from pathlib import Path

import pytest

from caps import AuditLog, parse_policy
from linuxabi.abi import errno as E
from linuxabi.abi import flags as F
from linuxabi.api import build_vfs
from linuxabi.control import ControlServer, ctl_main
from syscalls import exec as ex
from syscalls import fs
from syscalls.base import InstallFd
from syscalls.kernel import Kernel, Process

POLICY = """\
[filesystem]
"/" = "rwxcd"
"/data" = "rx"
"""
AT = F.AT_FDCWD & 0xFFFFFFFFFFFFFFFF


class _Mem:
    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.top = 0x1000

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.buf[addr:addr + size])

    def write(self, addr: int, data: bytes) -> None:
        self.buf[addr:addr + len(data)] = data

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        return bytes(self.buf[addr:self.buf.index(0, addr)])

    def cstr(self, s: bytes) -> int:
        addr = self.top
        self.write(addr, s + b"\0")
        self.top += len(s) + 1
        return addr


class _Task:
    """The Task interface over this process: guest fd N is host fd N of ours."""

    def __init__(self, kernel: Kernel, proc: Process) -> None:
        self.tid = proc.pid
        self.process = proc
        self.kernel = kernel
        self.mem = _Mem()

    def host_fd(self, guest_fd: int) -> int:
        return os.dup(guest_fd)

    def open(self, path: bytes, flags: int, dirfd: int = AT) -> int:
        r = fs.sys_openat(self, (dirfd, self.mem.cstr(path), flags, 0o644, 0, 0))
        assert isinstance(r, InstallFd)
        return r.host_fd

    def call(self, handler, *args: int) -> int:  # noqa: ANN001
        try:
            return handler(self, tuple(args) + (0,) * (6 - len(args)))
        except OSError as e:
            return -(e.errno or 0)


@pytest.fixture
def sandbox(image_copy: Path, tmp_path: Path):  # noqa: ANN201
    (image_copy / "data" / "sub").mkdir(parents=True)
    (image_copy / "data" / "f").write_text("data\n")
    (image_copy / "data" / "bb").write_bytes((image_copy / "bin" / "busybox").read_bytes())
    (image_copy / "data" / "bb").chmod(0o755)
    (image_copy / "secret").mkdir()
    (image_copy / "secret" / "s").write_text("s\n")
    vfs = build_vfs(image_copy)
    kernel = Kernel(vfs)
    audit = AuditLog(tmp_path / "audit.log")
    kernel.install_cspace(parse_policy(POLICY + '"/secret" = ""\n').build_cspace("t", audit=audit))
    proc = Process(pid=1, host_pid=os.getpid(), ppid=0, fs=vfs.new_context())
    kernel.add_process(proc)
    kernel.current = proc
    calls: list[list[tuple[Process, int]]] = []
    kernel.on_revoke_fds = calls.append
    server = ControlServer(kernel, "t", path=tmp_path / "ctl.sock")
    yield kernel, _Task(kernel, proc), server, calls
    server.close()
    audit.close()
    vfs.close()


def test_revoke_fails_trapped_uses_at_once_and_reports_open_files(sandbox) -> None:  # noqa: ANN001
    kernel, task, server, calls = sandbox
    d = task.open(b"/data", F.O_RDONLY | F.O_DIRECTORY)
    f = task.open(b"/data/f", F.O_RDONLY)
    other = task.open(b"/tmp/x", F.O_RDWR | F.O_CREAT)
    buf = task.mem.cstr(b"\0" * 4096)
    assert task.call(fs.sys_fstat, f, buf) == 0
    assert task.call(fs.sys_getdents64, d, buf, 4096) > 0
    assert task.call(fs.sys_fchdir, d) == 0
    g = task.open(b"f", F.O_RDONLY, dirfd=d)
    os.close(g)
    assert server.handle({"op": "revoke", "path": "/data"}) == {"ok": True, "revoked": 1, "fds": [[1, f]],
                                                               "sockets": []}
    assert calls == [[(task.process, f)]]  # the platform's hook: replace these fds
    for r in (task.call(fs.sys_fstat, f, buf), task.call(fs.sys_getdents64, d, buf, 4096),
              task.call(fs.sys_fchdir, d), task.call(fs.sys_openat, d, task.mem.cstr(b"f"), F.O_RDONLY),
              task.call(fs.sys_openat, d, task.mem.cstr(b"../etc/passwd"), F.O_RDONLY),
              task.call(fs.sys_openat, AT, task.mem.cstr(b"/data/f"), F.O_RDONLY),
              task.call(fs.sys_stat, task.mem.cstr(b"/data/f"), buf),
              task.call(ex.sys_execve, task.mem.cstr(b"/data/bb"), 0, 0)):
        assert r == -E.EACCES
    assert task.call(fs.sys_fstat, other, buf) == 0  # what the revoke did not name still works
    for fd in (d, f, other):
        os.close(fd)


def test_grant_then_revoke_a_directory(sandbox) -> None:  # noqa: ANN001
    kernel, task, server, calls = sandbox
    path = task.mem.cstr(b"/secret/s")
    assert task.call(fs.sys_openat, AT, path, F.O_RDONLY) == -E.EACCES
    answer = server.handle({"op": "grant", "path": "/secret", "rights": "r"})
    assert answer["ok"]
    f = task.open(b"/secret/s", F.O_RDONLY)
    assert task.call(fs.sys_openat, AT, path, F.O_WRONLY) == -E.EACCES  # read-only grant
    assert server.handle({"op": "revoke", "slot": answer["slot"]})["fds"] == [[1, f]]
    assert task.call(fs.sys_openat, AT, path, F.O_RDONLY) == -E.EACCES
    os.close(f)
    for bad in (b'{"op": "revoke", "path": "/nothing"}', b'{"op": "grant", "path": "../x"}', b'{"op": "nope"}',
                b'{"op": "grant", "path": "/x", "rights": "b"}', b"[1]", b"not json"):
        answer = server.handle_line(bad)
        assert answer["ok"] is False and answer["error"]


def _serve(server: ControlServer, argv: list[str]) -> int:
    """Run `linuxabi ctl ARGV` in a thread while serving the socket from a poll loop here."""
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(ctl_main(argv)))
    t.start()
    while t.is_alive():
        if select.select([server], [], [], 0.02)[0]:
            server.on_readable()
    t.join()
    return result[0]


def test_ctl_over_the_socket(sandbox, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    kernel, task, server, calls = sandbox
    sock = str(server.path)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert _serve(server, ["list", sock]) == 0
    out = capsys.readouterr().out
    assert "FsSubtree   rx     /data" in out and "TtyRight" in out
    assert _serve(server, ["grant", sock, "/secret", "--rights", "r,x"]) == 0
    assert capsys.readouterr().out.startswith("granted: slot ")
    assert _serve(server, ["revoke", sock, "/secret"]) == 0
    assert capsys.readouterr().out == "revoked: 1 capabilities\n"
    assert _serve(server, ["revoke", sock, "/secret"]) == 1
    assert "no capability names /secret" in capsys.readouterr().err
    assert ctl_main(["grant", sock, "/x", "--rights", "q"]) == 2
    assert ctl_main(["list", str(server.path) + ".missing"]) == 1


def test_socket_layer_stub_checks_network_capabilities(sandbox) -> None:  # noqa: ANN001
    kernel, task, server, calls = sandbox
    with pytest.raises(PermissionError) as e:
        kernel.authorize_net("connect", "tcp", "10.0.2.2", 80)  # the policy has no network rules
    assert e.value.errno == E.EPERM
    with pytest.raises(PermissionError) as e:
        kernel.authorize_net("bind", "tcp", "0.0.0.0", 8080)
    assert e.value.errno == E.EACCES


def test_control_sockets_of_dead_translators_are_swept(image_copy: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from linuxabi.control import new_sandbox_id, run_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no process has now (as a SIGKILLed translator's)
    stale = run_dir() / f"{dead.pid}-abcdef.sock"
    alive = run_dir() / f"{os.getpid()}-123456.sock"  # a running sandbox's: kept
    other = run_dir() / "by-hand.sock"  # not a default id: not ours to judge
    for p in (stale, alive, other):
        p.touch()
    vfs = build_vfs(image_copy)
    server = ControlServer(Kernel(vfs), new_sandbox_id())
    try:
        assert not stale.exists() and alive.exists() and other.exists()
        assert server.path.exists()
    finally:
        server.close()
        vfs.close()
