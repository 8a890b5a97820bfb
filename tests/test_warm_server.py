"""`linuxabi serve` and the runs it takes: a warm run behaves as a cold one (output, status,
stdin, working directory, limits, signals), a killed client takes its sandbox with it, a
stopped server lets running guests finish, and clients then run cold."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from linuxabi import client_build
from oracle import REPO

# The two clients of a warm server: the `linuxabi` command itself and linuxabi-run (C).
PY_CLIENT = [sys.executable, "-m", "linuxabi", "run"]

SCRIPT = 'echo out; echo err >&2; read line; echo "got $line"; echo "term=$TERM"; pwd; exit 3'


class Server:
    def __init__(self, path: Path, preexec_fn=None, extra: tuple[str, ...] = (),  # noqa: ANN001
                 env: "dict[str, str] | None" = None) -> None:
        self.path = path
        self.log = path.with_suffix(".log")
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "linuxabi", "serve", "--socket", str(path), *extra],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         cwd=REPO, start_new_session=True, preexec_fn=preexec_fn, env=env)
        deadline = time.monotonic() + 60
        while b"serving at" not in self.log.read_bytes():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)

    def env(self) -> dict[str, str]:
        return dict(os.environ, LINUXABI_SERVER=str(self.path))


@pytest.fixture(params=["python", "c"])
def client(request: pytest.FixtureRequest) -> list[str]:
    """How `linuxabi run` is started: the console script's code, or the C client (built by
    `make setup`; built here when it is missing or older than its source)."""
    if request.param == "python":
        return PY_CLIENT
    if not client_build.built():
        client_build.build()
    return [str(client_build.target())]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "server.sock")
    try:
        yield srv
    finally:
        srv.stop()
        _wait_gone(lambda: _processes_with(str(srv.path)))


def _command(args: list[str], client: list[str]) -> list[str]:
    """``linuxabi ARGS``, a run started by ``client``."""
    return [*client, *args[1:]] if args[0] == "run" else [sys.executable, "-m", "linuxabi", *args]


def _cli(args: list[str], env: dict[str, str], client: list[str] = PY_CLIENT, **kw) -> subprocess.Popen[bytes]:  # noqa: ANN003
    return subprocess.Popen(_command(args, client), env=env, **kw)


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (found to be checked, never to be killed)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


def _wait_gone(probe, timeout: float = 10) -> list[int]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while (left := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(p) for p in f.read().split()]
    return kids


def _run(args: list[str], env: dict[str, str], cwd: Path, stdin: bytes = b"",
         client: list[str] = PY_CLIENT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(_command(args, client), input=stdin, capture_output=True, env=env, cwd=cwd, timeout=60)


def test_a_warm_run_behaves_as_a_cold_one(server: Server, tmp_path: Path, client: list[str]) -> None:
    env = dict(server.env(), TERM="warm-test-term")
    cold_env = {k: v for k, v in env.items() if k != "LINUXABI_SERVER"}
    args = ["run", "--profile", "profile.txt", "--cwd", "/tmp", "--", "sh", "-c", SCRIPT]
    warm = _run(args, env, tmp_path, b"line one\n", client)
    cold = _run(args, cold_env, tmp_path, b"line one\n", client)
    assert warm.returncode == cold.returncode == 3
    assert warm.stdout == cold.stdout == b"out\ngot line one\nterm=warm-test-term\n/tmp\n"
    assert warm.stderr == cold.stderr == b"err\n"
    assert "total" in (tmp_path / "profile.txt").read_text()  # relative to the client's directory
    # A user's mistake is one line and status 2 either way.
    warm_bad, cold_bad = (_run(["run", "--no-such-flag"], e, tmp_path, client=client) for e in (env, cold_env))
    assert warm_bad.returncode == cold_bad.returncode == 2
    assert warm_bad.stderr == cold_bad.stderr and warm_bad.stderr.count(b"\n") == 1


def _runs_warm(env: dict[str, str], script: str = "echo started; sleep 1",
               client: list[str] = PY_CLIENT) -> tuple[bool, bytes]:
    """Whether a run went to the server (cold, the CLI is the translator: the guest's init is
    its child; warm, it has none), and the rest of what it printed."""
    cli = _cli(["run", "--", "sh", "-c", script], env, client, stdout=subprocess.PIPE)
    assert cli.stdout is not None and cli.stdout.readline() == b"started\n"
    warm = _children(cli.pid) == []
    assert cli.wait(timeout=30) == 0
    return warm, cli.stdout.read()


def test_the_server_translates_and_the_client_only_waits(server: Server, tmp_path: Path, client: list[str]) -> None:
    assert _runs_warm(server.env(), client=client)[0]
    assert not _runs_warm({k: v for k, v in os.environ.items() if k != "LINUXABI_SERVER"}, client=client)[0]


def test_what_the_server_cannot_give_exactly_runs_cold(tmp_path: Path, client: list[str]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 256

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), 256))

    srv = Server(tmp_path / "low.sock", preexec_fn=lower)
    try:
        # Its children cannot raise their hard limit to ours: the run is cold, and its guest
        # has our limit, not the server's.
        warm, out = _runs_warm(srv.env(), "echo started; sleep 1; ulimit -Hn", client)  # (alive while looked at)
        assert not warm and out == str(hard).encode() + b"\n"
        # A client that asks for no more than the server has runs warm.
        def same() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), 256))

        cli = subprocess.run([*client, "--", "sh", "-c", "ulimit -Hn"],
                             capture_output=True, env=srv.env(), preexec_fn=same, timeout=60)
        assert cli.stdout == b"256\n"
    finally:
        srv.stop()


def test_limits_cpus_nice_umask_and_closed_fds_are_the_clients(server: Server, tmp_path: Path,
                                                               client: list[str]) -> None:
    cpu = max(os.sched_getaffinity(0))

    def confine() -> None:  # as `ulimit -n 200 -H 300; taskset -c CPU nice -n 3; umask 027` would
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300))
        os.sched_setaffinity(0, {cpu})
        os.nice(3)
        os.umask(0o027)

    script = ("ulimit -n; ulimit -Hn; grep Cpus_allowed_list /proc/self/status; cut -d' ' -f19 /proc/self/stat; "
              "umask")
    r = subprocess.run([*client, "--", "sh", "-c", script],
                       capture_output=True, env=server.env(), preexec_fn=confine, timeout=60)
    base_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert r.returncode == 0
    assert r.stdout.split() == [b"200", b"300", b"Cpus_allowed_list:", str(cpu).encode(), str(base_nice + 3).encode(),
                                b"0027"]
    # A closed stdin stays closed for the guest (the client's own socket is not passed instead).
    r = subprocess.run(f"{' '.join(client)} -- sh -c 'cat; echo status=$?' <&-", shell=True,
                       capture_output=True, env=server.env(), cwd=REPO, timeout=60)
    assert r.stdout == b"status=1\n" and b"Bad file descriptor" in r.stderr


def test_signals_reach_the_guest_and_a_killed_client_ends_its_sandbox(server: Server, client: list[str]) -> None:
    cli = _cli(["run", "--", "sh", "-c", 'trap "echo got TERM; exit 7" TERM; echo ready; sleep 20 & wait'],
               server.env(), client, stdout=subprocess.PIPE)
    assert cli.stdout is not None and cli.stdout.readline() == b"ready\n"
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(timeout=30) == 7
    assert cli.stdout.read() == b"got TERM\n"

    marker = "31.4159"
    cli = _cli(["run", "--", "sh", "-c", f"echo ready; sleep {marker}"], server.env(), client, stdout=subprocess.PIPE)
    assert cli.stdout is not None and cli.stdout.readline() == b"ready\n"
    assert _processes_with(marker)  # the guest's sleep (and its translator's argv)
    cli.kill()
    cli.wait()
    assert _wait_gone(lambda: _processes_with(marker)) == []


def test_a_stopped_server_lets_guests_finish_and_clients_run_cold(server: Server, tmp_path: Path,
                                                                   client: list[str]) -> None:
    cli = _cli(["run", "--", "sh", "-c", "echo ready; sleep 1; echo finished; exit 5"], server.env(), client,
               stdout=subprocess.PIPE)
    assert cli.stdout is not None and cli.stdout.readline() == b"ready\n"
    server.stop()
    assert not server.path.exists()
    assert cli.wait(timeout=30) == 5 and cli.stdout.read() == b"finished\n"
    # The spares are gone with the server; a client falls back to a cold run.
    assert _wait_gone(lambda: _processes_with(str(server.path))) == []
    r = _run(["run", "--", "sh", "-c", "echo cold"], server.env(), tmp_path, client=client)
    assert r.returncode == 0 and r.stdout == b"cold\n" and r.stderr == b""


def test_garbage_and_second_servers_are_refused_without_harm(server: Server, tmp_path: Path) -> None:
    for junk in (b"", b"\x05\x00\x00\x00abc", b"\xff" * 64):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(server.path))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            assert s.recv(16) == b""  # no READY: nothing was run for it
    r = _run(["run", "--", "sh", "-c", "echo still serving"], server.env(), tmp_path)
    assert r.returncode == 0 and r.stdout == b"still serving\n"
    second = _run(["serve", "--socket", str(server.path)], dict(os.environ), tmp_path)
    assert second.returncode == 2
    assert second.stderr == f"linuxabi: a server already listens at {server.path}\n".encode()
    assert server.proc.poll() is None


@pytest.mark.parametrize("in_c", [True, False], ids=["linuxabi-launcher", "python-launcher"])
def test_a_launcher_made_ahead_runs_with_what_the_caller_has_when_it_starts(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, in_c: bool) -> None:
    """Both launchers (linuxabi/host/launcher.c where it is built, else the Python one) take
    on the caller's limits, umask and fds 0-2 as they are when the run starts."""
    from linuxabi.api import Sandbox
    from linuxabi.host import launch, launcher_build

    if in_c and not launcher_build.built():
        launcher_build.build()
    monkeypatch.setattr(launch, "_c_launcher_state", [str(launcher_build.TARGET) if in_c else None])
    prepared = launch.prepare()
    assert (os.readlink(f"/proc/{prepared.pid}/exe") == str(launcher_build.TARGET)) == in_c
    launch.keep_prepared(prepared)
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (123, old[1]))  # after the launcher was made
    old_mask = os.umask(0o027)
    try:
        status = Sandbox().run(["sh", "-c", "ulimit -n; umask; echo to-stdout; echo to-stderr >&2; exit 4"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
        os.umask(old_mask)
    assert launch._prepared == []  # used, not left for a later launch
    out, err = capfd.readouterr()
    assert status == 4 and out == "123\n0027\nto-stdout\n" and err == "to-stderr\n"


def test_a_server_whose_code_changed_stops_and_its_clients_run_cold(server: Server) -> None:
    import linuxabi.terminal  # loaded by every server (a run's modules are)

    module = Path(linuxabi.terminal.__file__)
    before = module.stat()
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # "upgraded"
    try:
        assert not _runs_warm(server.env())[0]
        assert server.proc.wait(timeout=30) == 0
        assert b"code changed since this server started" in server.log.read_bytes()
        assert not server.path.exists()
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_spares_serve_clients_that_start_together(tmp_path: Path) -> None:
    srv = Server(tmp_path / "three.sock", extra=("--spares", "3"))
    try:
        assert not _wait_gone(lambda: len(_children(srv.proc.pid)) != 3)  # three forked, waiting
        clis = [_cli(["run", "--", "sh", "-c", f"echo started; sleep 1; exit {i}"], srv.env(), stdout=subprocess.PIPE)
                for i in range(3)]
        for cli in clis:
            assert cli.stdout is not None and cli.stdout.readline() == b"started\n"
        assert [_children(cli.pid) for cli in clis] == [[], [], []]  # all three warm
        assert [cli.wait(timeout=30) for cli in clis] == [0, 1, 2]
    finally:
        srv.stop()
    bad = _run(["serve", "--spares", "0"], dict(os.environ), tmp_path)
    assert bad.returncode == 2 and bad.stderr == b"linuxabi: --spares: between 1 and 64\n"


def _private_dirty_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def _settled_spare(server: Server, not_pids: "set[int]" = set()) -> tuple[int, int]:  # noqa: B006 - never changed
    """A spare of ``server`` (none of ``not_pids``) done with its warm-up: (pid, KiB of memory
    it has written), once that stops growing."""
    deadline = time.monotonic() + 30
    last = (0, -1)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        spares = [p for p in _children(server.proc.pid) if p not in not_pids]
        try:
            now = (spares[0], _private_dirty_kib(spares[0])) if spares else (0, -1)
        except OSError:  # it took a client meanwhile, or ended
            continue
        if now[0] and now == last:
            return now
        last = now
    raise AssertionError(f"no settled spare (last seen {last})")


def test_spares_copy_ahead_the_pages_that_runs_wrote(server: Server, tmp_path: Path) -> None:
    """A served child reports the server's pages its run wrote; a spare forked afterwards copies
    them before its client comes (linuxabi/hotpages.py), not one fault at a time during the run:
    it has written megabytes more of its memory than the first spare had."""
    seen: set[int] = set()
    first, first_kib = _settled_spare(server)
    for _ in range(2):
        seen.add(_settled_spare(server, seen)[0])
        done = _run(["run", "--", "true"], server.env(), tmp_path)
        assert done.returncode == 0, done.stderr
    third, third_kib = _settled_spare(server, seen)
    assert third_kib > first_kib + 2048, (first_kib, third_kib)  # (~3.5 MB here; the first spare has written ~4.8 MB, its sandbox built ahead)


def test_serve_replaces_only_a_dead_socket(tmp_path: Path) -> None:
    regular = tmp_path / "notes.txt"
    regular.write_text("mine\n")
    r = _run(["serve", "--socket", str(regular)], dict(os.environ), tmp_path)
    assert r.returncode == 2 and regular.read_text() == "mine\n"
    assert r.stderr == f"linuxabi: {regular} exists and is not a socket\n".encode()
    r = _run(["serve", "--socket", str(tmp_path / "no" / "such" / ("x" * 120) / "s.sock")], dict(os.environ), tmp_path)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"cannot listen at" in r.stderr
    dead = tmp_path / "dead.sock"  # a server's socket left behind (the server was killed)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(dead))
    srv = Server(dead)
    try:
        assert _runs_warm(srv.env())[0]
    finally:
        srv.stop()


def test_a_socket_that_is_not_a_server_of_ours(tmp_path: Path, client: list[str]) -> None:
    # One that answers something else: the run is cold. One that never answers: Ctrl-C ends
    # the client as it would end a cold one, and nothing ran.
    path = tmp_path / "other.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen(4)
        env = dict(os.environ, LINUXABI_SERVER=str(path))
        cli = _cli(["run", "--", "sh", "-c", "echo ran"], env, client, stdout=subprocess.PIPE)
        conn, _ = other.accept()
        conn.sendall(b"HTTP/1.0 400 nonsense\r\n")
        conn.close()
        assert cli.wait(timeout=60) == 0 and cli.stdout is not None and cli.stdout.read() == b"ran\n"
        cli = _cli(["run", "--", "sh", "-c", "echo ran"], env, client, stdout=subprocess.PIPE)
        conn, _ = other.accept()  # and never a word
        time.sleep(0.3)
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=30) == -signal.SIGINT
        conn.close()  # (the request's fds, never received, hold the client's stdout open)
        assert cli.stdout is not None and cli.stdout.read() == b""


def test_a_kept_root_is_read_once_by_the_server(tmp_path: Path, image_copy: Path) -> None:
    """--keep-root: runs with that --root start from the server's reading of it. The server
    says the directory must not change: a file added after it started (in a subdirectory, so the
    root's own mtime stays) is what shows that its runs use that reading; a cold run sees it."""
    srv = Server(tmp_path / "kept.sock", extra=("--keep-root", str(image_copy)))
    try:
        listing = ["--root", str(image_copy), "--", "ls", "/etc"]
        before = subprocess.run([*PY_CLIENT, *listing], capture_output=True, env=srv.env(), cwd=REPO, timeout=60)
        assert before.returncode == 0 and b"passwd" in before.stdout.split()
        (image_copy / "etc" / "added-later").write_text("x\n")
        warm = subprocess.run([*PY_CLIENT, *listing], capture_output=True, env=srv.env(), cwd=REPO, timeout=60)
        cold = subprocess.run([*PY_CLIENT, *listing], capture_output=True, cwd=REPO, timeout=60,
                              env={k: v for k, v in os.environ.items() if k != "LINUXABI_SERVER"})
        assert warm.stdout == before.stdout
        assert b"added-later" in cold.stdout.split() and b"added-later" not in warm.stdout.split()
    finally:
        srv.stop()


def test_keep_root_must_be_a_directory(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "linuxabi", "serve", "--socket", str(tmp_path / "s.sock"),
                        "--keep-root", str(tmp_path / "missing")], capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 2
    assert r.stderr.decode().strip().splitlines() == [f"linuxabi: --keep-root {tmp_path / 'missing'}: no such directory"]


def test_a_spare_sees_a_client_waiting_to_be_accepted(tmp_path: Path) -> None:
    """What stops a spare's copying ahead (linuxabi/server.py): a connection in the backlog."""
    from linuxabi.server import _client_waiting

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "s"))
        listener.listen(4)
        assert not _client_waiting(listener)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "s"))
            assert _client_waiting(listener)
            listener.accept()[0].close()
            assert not _client_waiting(listener)


def test_a_long_run_gets_a_spare_beside_it_once_its_grace_is_over(server: Server) -> None:
    """The spare that replaces a taken one waits for the run (linuxabi/server.py, _Pacing),
    but not longer than RUN_GRACE: a second client during a long run still runs warm."""
    from linuxabi.server import RUN_GRACE

    first = _cli(["run", "--", "sh", "-c", "echo started; sleep 4"], server.env(), stdout=subprocess.PIPE)
    try:
        assert first.stdout is not None and first.stdout.readline() == b"started\n"
        time.sleep(RUN_GRACE + 1.0)
        assert len(_children(server.proc.pid)) == 2  # its translator, and a spare made meanwhile
        assert _runs_warm(server.env(), "echo started")[0]
    finally:
        assert first.wait(timeout=30) == 0


def test_pacing_waits_for_a_new_run_unless_clients_come_back_to_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import select

    from linuxabi import server

    pacing = server._Pacing()
    assert pacing.make_now()  # nothing runs
    runs = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    try:
        pacing.taken(runs[0].pid)
        assert not pacing.make_now() and not pacing.back_to_back
        assert select.select(pacing.fds(), [], [], 0)[0] == []
        assert 0 < pacing.timeout(5.0) <= server.RUN_GRACE
        runs[0].kill()
        runs[0].wait()
        pacing.ended(select.select(pacing.fds(), [], [], 10)[0])  # its end wakes the server
        assert pacing.make_now() and pacing.fds() == []
        pacing.taken(runs[1].pid)  # a client taken just after the run before ended
        assert pacing.back_to_back and pacing.make_now()
        runs[1].kill()
        pacing.ended(select.select(pacing.fds(), [], [], 10)[0])
        monkeypatch.setattr(server, "BACK_TO_BACK", 0.0)
        monkeypatch.setattr(server, "RUN_GRACE", 0.0)
        pacing.taken(runs[2].pid)
        assert not pacing.back_to_back and pacing.make_now()  # its grace is over already
    finally:
        for run in runs:
            run.kill()
            run.wait()
        pacing.close()


def test_a_translator_lets_go_of_its_clients_stdio_once_the_status_is_sent() -> None:
    """Else a caller reading the guest's output through a pipe waits for the translator to
    take the sandbox down and end, not only for the status (linuxabi/server.py, _release_stdio)."""
    from linuxabi.server import _release_stdio

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(w, 1)
            os.dup2(w, 2)
            os.close(w)
            os.close(r)
            _release_stdio()
            time.sleep(30)  # (still holding whatever it did not let go of)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b""  # EOF: the child no longer holds the pipe...
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # ...and is still there
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
