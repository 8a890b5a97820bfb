"""The ways to run a guest command on an image: natively (chroot), under linuxabi, under peers.

Every runner gets its own scratch copy of the image, so writes of one (the native /tmp, say)
never change what another measures.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .build import GUEST_BINARY
from .ops import Op, parse_microbench

REPO = Path(__file__).resolve().parent.parent
GUEST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "HOSTNAME": "linuxabi"}
MICRO_TIMEOUT_S = 15.0  # generous: the guest bounds its own loop to about a second
WORKLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Sample:
    """One measurement: `seconds` per operation (micro) or per whole process (workload)."""
    op: str
    runner: str
    round: int
    seconds: float | None
    iters: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Runner:
    name: str
    command: Callable[[Path, list[str]], list[str]]  # (image copy, guest argv) -> host argv
    binary: str | None = None  # a peer's executable: the runner is "not installed" without it
    dev_nodes: bool = True  # the image copy needs /dev/null (everything but linuxabi's own devfs)
    env: dict[str, str] | None = None  # None: the host's environment
    cwd: Path | None = None
    kinds: tuple[str, ...] | None = None  # the op kinds it measures (None: all)
    needs_server: bool = False  # runs through a `linuxabi serve` that the harness starts
    # Called after each of its samples: waits for what the runner still does in the background
    # (a warm server making its next spare), which would otherwise slow the next sample down.
    settle: Callable[[], None] | None = None

    def applies_to(self, op: Op) -> bool:
        return (op.runners is None or self.name in op.runners) and (self.kinds is None or op.kind in self.kinds)

    def unavailable(self) -> str | None:
        """Why this runner cannot run here, or None."""
        if self.binary is not None and shutil.which(self.binary) is None:
            return "not installed"
        if self.name == "native" and os.geteuid() != 0:
            return "chroot needs root"
        if self.name == "runsc" and not re.search(r"(?m)^\s*--?root\b", _help(["runsc", "do", "--help"])):
            return "runsc do has no -root flag"
        return None


def _help(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout + r.stderr


def _native(root: Path, argv: list[str]) -> list[str]:
    """chroot; a micro op (the guest's own timing) also in a network namespace of its own, as
    each sandbox has (bench/own_netns.py says why)."""
    cmd = ["chroot", str(root), *argv]
    if argv[:1] == [GUEST_BINARY]:
        return [sys.executable, str(REPO / "bench" / "own_netns.py"), *cmd]
    return cmd


def _linuxabi_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _warm_client() -> list[str]:
    """linuxabi-run where it is built for this interpreter (else `linuxabi run`: the same, slower)."""
    from linuxabi import client_build

    return [str(client_build.target())] if client_build.built() else [sys.executable, "-m", "linuxabi", "run"]


RUNNERS: dict[str, Runner] = {
    r.name: r
    for r in (
        Runner("native", _native, env=GUEST_ENV),
        Runner("linuxabi", lambda root, argv: [sys.executable, "-m", "linuxabi", "run", "--root", str(root),
                                              "--", *argv],
               dev_nodes=False, env=_linuxabi_env(), cwd=REPO),
        # The same command through a warm server, started by the C client (linuxabi-run, as
        # `make setup` builds it): only whole-process times differ from `linuxabi` (a micro
        # op's guest time is the same translator's), so only workloads.
        Runner("warm", lambda root, argv: [*_warm_client(), "--root", str(root), "--", *argv],
               dev_nodes=False, env=_linuxabi_env(), cwd=REPO, kinds=("workload",), needs_server=True),
        # runsc's global --root is its state directory; `do --root` (after `do`) is the rootfs.
        Runner("runsc", lambda root, argv: ["runsc", "--rootless=false", "--network=none", "--platform=ptrace",
                                           "do", "--root", str(root), *argv],
               binary="runsc", env=GUEST_ENV),
        Runner("proot", lambda root, argv: ["proot", "-r", str(root), "-w", "/", *argv],
               binary="proot", env=GUEST_ENV),
    )
}

# Peers the harness may install itself when asked for (Debian package name).
INSTALLABLE = {"proot": "proot", "runsc": "runsc"}


def ensure_installed(runner: Runner, log: Callable[[str], None]) -> None:
    """apt-get install a missing installable peer (root only); leaves it missing on failure."""
    pkg = INSTALLABLE.get(runner.name)
    if pkg is None or runner.unavailable() != "not installed" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {pkg} (apt-get)")
    install = ["apt-get", "install", "-y", "-qq", pkg]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)


class WarmServer:
    """`linuxabi serve` for the runs of a bench, on a socket of its own; stopped by its PID."""

    def __init__(self, socket_path: Path, image: Path | None = None) -> None:
        self.socket_path = socket_path
        self.image = image  # the warm runs' image, read once by the server (--keep-root)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "WarmServer":
        log = self.socket_path.with_suffix(".log")
        with open(log, "wb") as err:
            keep = ["--keep-root", str(self.image)] if self.image is not None else []
            self.proc = subprocess.Popen([sys.executable, "-m", "linuxabi", "serve", "--socket",
                                          str(self.socket_path), *keep],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         env=_linuxabi_env(), cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and self.proc.poll() is None:
            if b"serving at" in log.read_bytes():  # written once it is warm
                return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"linuxabi serve did not start: {log.read_text(errors='replace').strip()[-300:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def runner(self, r: Runner) -> Runner:
        from dataclasses import replace

        return replace(r, env={**(r.env or os.environ), "LINUXABI_SERVER": str(self.socket_path)},
                       settle=self.wait_quiet)

    def wait_quiet(self, interval: float = 0.005, longest: float = 2.0) -> None:
        """Until the server and its children have used no CPU for ``interval`` (at most
        ``longest`` seconds): a spare for the next run is made once a run is over (~13 ms of
        CPU), and the next sample, of whichever runner, must not share the CPUs with it."""
        if self.proc is None:
            return
        deadline = time.monotonic() + longest
        last = -1
        while time.monotonic() < deadline:
            used = _cpu_ns(self.proc.pid)
            if used == last:
                return
            last = used
            time.sleep(interval)


def _cpu_ns(pid: int) -> int:
    """CPU time of ``pid`` and its descendants, their threads' included (ns; what has ended
    meanwhile drops out, which reads as a change)."""
    total = 0
    pending = [pid]
    while pending:
        p = pending.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    pending += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            total += 1  # gone meanwhile: not quiet yet
    return total


def run_sample(runner: Runner, op: Op, root: Path, round_no: int, *, quick: bool, max_seconds: float,
               pin: str | None = None) -> Sample:
    """Run `op` once under `runner` on the image copy `root` (a server op brings its own image)."""
    if op.kind == "server":
        from . import nginx

        return nginx.sample(op.name, runner.name, round_no, close=op.close, quick=quick)
    if op.link:
        from . import link

        return link.sample(op, runner, root, round_no, quick=quick, max_seconds=max_seconds)
    cmd = runner.command(root, op.guest_argv(quick=quick, max_seconds=max_seconds))
    if pin is not None:
        cmd = ["taskset", "-c", pin, *cmd]
    timeout = MICRO_TIMEOUT_S if op.kind == "micro" else WORKLOAD_TIMEOUT_S
    t0 = time.perf_counter()
    # Its own session, so that a run past its time is killed with everything it started.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=runner.env, cwd=runner.cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stuck = _session_states(proc.pid)
        _kill(proc)
        return Sample(op.name, runner.name, round_no, None, error=f"timed out after {timeout:g} s [{stuck}]")
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave nothing running behind us
        _kill(proc)
        raise
    wall = time.perf_counter() - t0
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        return Sample(op.name, runner.name, round_no, None, error=_failure(proc.returncode, stderr))
    if op.kind == "workload":
        if op.expect is not None and op.expect not in stdout.split():
            return Sample(op.name, runner.name, round_no, None, error=f"output lacks {op.expect!r}: {stdout[-200:]!r}")
        return Sample(op.name, runner.name, round_no, wall)
    res = parse_microbench(stdout)
    if res is None or res.op != op.name:
        return Sample(op.name, runner.name, round_no, None, error=f"no result line: {(stdout + stderr)[-200:]!r}")
    return Sample(op.name, runner.name, round_no, res.ns_per_op * 1e-9, iters=res.iters)


def _session_states(sid: int) -> str:
    """`comm:state` of every process in the session: where a hung run is stuck (a guest in
    t = tracing stop, say), for the report."""
    states = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid:
            states.append(f"{comm}:{fields[0]}")
    return " ".join(states)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _failure(rc: int, stderr: str) -> str:
    last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or [""]
    what = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
    return f"{what}: {last[0][-200:]}".rstrip(": ")
