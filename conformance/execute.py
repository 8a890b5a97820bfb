"""Preparing the scratch image and running one case natively or translated.

Native runs use ``chroot IMAGE /conformance/CASE`` inside a private mount
namespace that has /proc mounted and a fresh tmpfs on /tmp, so the oracle is
"Linux with a tmpfs /tmp" whatever the host's filesystem is, and nothing is
left mounted on the host.  Translated runs use
``python3 -m linuxabi run --root IMAGE --cwd / --env K=V ... -- /conformance/CASE``
with the caller's environment (so test hooks such as LINUXABI_SWAP_ERRNO reach
the translator).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

GUEST_ENV: dict[str, str] = {"PATH": "/bin:/usr/bin", "HOME": "/root"}
GUEST_DIR = "/conformance"
DEFAULT_TIMEOUT = 30.0
REPO_ROOT = Path(__file__).resolve().parent.parent
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RunResult:
    """What one run of a case produced."""

    stdout: str
    stderr: str
    returncode: int | None  # None when it timed out
    timed_out: bool = False
    seconds: float = 0.0  # wall time of the run
    limit: float = 0.0  # the timeout it ran under (0: none known)

    @property
    def slow(self) -> bool:
        """Over a third of its time limit: a loaded machine could make it time out."""
        return self.limit > 0 and not self.timed_out and self.seconds > self.limit / 3

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0

    def describe(self) -> str:
        if self.timed_out:
            return "timed out"
        assert self.returncode is not None
        if self.returncode < 0:
            return f"killed by {signal.Signals(-self.returncode).name}"
        return f"exit {self.returncode}"


class Launcher(Protocol):
    """Builds the command line and environment for one case run."""

    name: str

    def command(self, image: Path, program: str) -> list[str]: ...

    def environment(self) -> dict[str, str]: ...


def host_tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":" + _SBIN_PATH)
    if path is None:
        raise FileNotFoundError(f"{name} not found on the host")
    return path


def namespaces_available() -> bool:
    """Whether this process may create a mount namespace and mount in it."""
    try:
        unshare, mount = host_tool("unshare"), host_tool("mount")
    except FileNotFoundError:
        return False
    with tempfile.TemporaryDirectory(prefix="linuxabi-ns-probe-") as probe:
        cmd = [unshare, "--mount", "--propagation", "private", mount, "-t", "tmpfs", "tmpfs", probe]
        proc = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    return proc.returncode == 0


class NativeLauncher:
    """``chroot IMAGE PROGRAM`` with /proc and a tmpfs /tmp (see module doc)."""

    name = "native"

    def __init__(self, use_namespaces: bool = True) -> None:
        self.use_namespaces = use_namespaces

    def command(self, image: Path, program: str) -> list[str]:
        chroot = host_tool("chroot")
        if not self.use_namespaces:
            return [chroot, str(image), program]
        # /dev as linuxabi's devfs has it (the host's own device nodes, bind-mounted)
        script = ('mkdir -p "$1/proc" "$1/tmp" "$1/dev" && '
                  '"$2" -t proc proc "$1/proc" && '
                  '"$2" -t tmpfs -o mode=1777 tmpfs "$1/tmp" && '
                  '"$2" -t tmpfs -o mode=755 tmpfs "$1/dev" && '
                  'for d in null zero full random urandom tty; do '
                  ': > "$1/dev/$d" && "$2" --bind "/dev/$d" "$1/dev/$d" || exit 1; done && '
                  'ln -s /proc/self/fd "$1/dev/fd" && ln -s /proc/self/fd/0 "$1/dev/stdin" && '
                  'ln -s /proc/self/fd/1 "$1/dev/stdout" && ln -s /proc/self/fd/2 "$1/dev/stderr" && '
                  'exec "$3" "$1" "$4"')
        return [host_tool("unshare"), "--mount", "--propagation", "private",
                "/bin/sh", "-c", script, "sh",
                str(image), host_tool("mount"), chroot, program]

    def environment(self) -> dict[str, str]:
        return dict(GUEST_ENV)


class TranslatedLauncher:
    """``python3 -m linuxabi run`` on the same image."""

    name = "translated"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def command(self, image: Path, program: str) -> list[str]:
        env_args = [arg for key, value in GUEST_ENV.items() for arg in ("--env", f"{key}={value}")]
        return [self.python, "-m", "linuxabi", "run", "--root", str(image), "--cwd", "/",
                *env_args, "--", program]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONFAULTHANDLER"] = "1"  # a translator that hangs shows its threads' stacks (SIGABRT)
        return env


def run_command(cmd: list[str], env: dict[str, str], timeout: float) -> RunResult:
    """Run cmd in its own session; on timeout kill the whole process group."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        state = _process_tree_state(proc.pid)
        try:
            os.kill(proc.pid, signal.SIGABRT)  # a Python translator with faulthandler: its stacks
            proc.wait(timeout=2)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        # What a hang looked like, for the log: rare hangs are not reproduced on demand.
        sys.stderr.write(f"conformance: {' '.join(cmd[-1:])} timed out; its processes then:\n{state}"
                         f"its stderr (last lines):\n" + "\n".join(_text(err).splitlines()[-60:]) + "\n")
        return RunResult(_text(out), _text(err), None, timed_out=True,
                         seconds=time.monotonic() - started, limit=timeout)
    return RunResult(_text(out), _text(err), proc.returncode, seconds=time.monotonic() - started, limit=timeout)


def _process_tree_state(root: int) -> str:
    """Each task under ``root``: its state, what it waits in (wchan), its syscall line, and its
    pending and blocked signals."""
    lines, pending = [], [root]
    while pending:
        pid = pending.pop()
        try:
            tasks = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
        except OSError:
            continue
        for tid in tasks:
            base = f"/proc/{pid}/task/{tid}"
            fields = {}
            for name in ("comm", "wchan", "syscall"):
                try:
                    with open(f"{base}/{name}") as f:
                        fields[name] = f.read().strip()
                except OSError:
                    fields[name] = "?"
            try:
                with open(f"{base}/status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
                extra = " ".join(f"{k}={status[k].strip()}" for k in ("State", "SigPnd", "ShdPnd", "SigBlk", "TracerPid")
                                 if k in status)
            except OSError:
                extra = ""
            lines.append(f"  {pid}/{tid} {fields['comm']} wchan={fields['wchan']} syscall={fields['syscall']} {extra}")
            try:
                with open(f"{base}/children") as f:
                    pending += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return "".join(line + "\n" for line in lines)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def run_case(launcher: Launcher, image: Path, case: str,
             timeout: float = DEFAULT_TIMEOUT) -> RunResult:
    program = f"{GUEST_DIR}/{case}"
    return run_command(launcher.command(image, program), launcher.environment(), timeout)


def prepare_image(source: Path, dest: Path, binaries: dict[str, Path]) -> None:
    """Copy the image to dest and install binaries under /conformance/."""
    if not (source / "bin").exists():
        raise FileNotFoundError(f"{source} does not look like a rootfs (no /bin)")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{source}/.", str(dest)], check=True)
    for name, mode in (("tmp", 0o1777), ("proc", 0o555), ("root", 0o700)):
        path = dest / name
        if not path.exists() and not path.is_symlink():
            path.mkdir()
            path.chmod(mode)
    target = dest / GUEST_DIR.lstrip("/")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(mode=0o755)
    for name, binary in binaries.items():
        shutil.copy2(binary, target / name)
        (target / name).chmod(0o755)
