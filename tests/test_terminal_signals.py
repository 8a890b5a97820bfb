"""The guest's terminal (`run -it`) and how the sandbox ends: Ctrl-C reaches the guest's
foreground job through its own pty, a faulting guest yields 128+SIGSEGV, and killing the CLI
leaves nothing behind."""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from oracle import REPO, run_native, run_translated


class Screen:
    """The user's side of a terminal: what the guest printed, and a keyboard."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "linuxabi", "run", *argv], stdin=slave,
                                     stdout=slave, stderr=slave, cwd=REPO, start_new_session=True)
        os.close(slave)
        self.text = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for(self, needle: bytes, timeout: float = 15) -> bool:
        end = time.monotonic() + timeout
        while needle not in self.text and time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.text += os.read(self.master, 65536)
                except OSError:
                    break
        return needle in self.text

    def close(self) -> int | None:
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            os.close(self.master)


def test_interactive_shell_in_its_own_pty() -> None:
    s = Screen(["-it", "--", "sh"])
    try:
        s.type(b"echo ready-$((6*7)); tty\r")
        assert s.wait_for(b"ready-42"), s.text
        assert s.wait_for(b"/dev/pts/0"), s.text  # the sandbox's own devpts, not the host's
        s.type(b"sleep 100\r")
        time.sleep(0.5)
        started = time.monotonic()
        s.type(b"\x03")  # Ctrl-C: the guest's line discipline signals its foreground job
        s.type(b"echo after-$?\r")
        assert s.wait_for(b"after-130", timeout=10), s.text
        assert time.monotonic() - started < 10  # the sleep was interrupted, not waited out
        s.type(b"ls /dev/pts; exit 5\r")
        assert s.wait_for(b"ptmx"), s.text
    finally:
        rc = s.close()
    assert rc == 5, s.text  # the shell survived Ctrl-C and its exit status came through


def test_guest_terminal_size_follows_the_users(tmp_path: Path) -> None:
    import fcntl
    import struct
    import termios

    s = Screen(["-t", "--", "sh"])
    try:
        fcntl.ioctl(s.master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        s.proc.send_signal(signal.SIGWINCH)
        time.sleep(0.3)
        s.type(b"stty size; exit\r")
        assert s.wait_for(b"33 101"), s.text
    finally:
        s.close()


FAULT_C = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1) { signal(SIGSEGV, SIG_IGN); }  /* a fault is forced through an ignore */
    fflush(stdout);
    *(volatile int *)8 = 1;
    return 0;
}
"""


def _with_fault_program(image: Path, tmp_path: Path) -> None:
    src = tmp_path / "fault.c"
    src.write_text(FAULT_C)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image / "fault"), str(src)], check=True)


def test_a_faulting_guest_dies_of_its_signal(image_copy: Path, tmp_path: Path) -> None:
    _with_fault_program(image_copy, tmp_path)
    for argv in (["/fault"], ["/fault", "ignore"]):
        r = run_translated(argv, image_copy, timeout=30)
        assert r.returncode == 128 + signal.SIGSEGV, (argv, r.stderr)
    # As a child of the guest's shell, the status is the shell's to report, as natively.
    script = "/fault; echo status=$?"
    t = run_translated(["sh", "-c", script], image_copy, timeout=30)
    n = run_native(["sh", "-c", script], image_copy, timeout=30)
    assert t.stdout == n.stdout == b"status=139\n"


def _descendants_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_kill_9_of_the_cli_leaves_no_guest(tmp_path: Path) -> None:
    cli = subprocess.Popen([sys.executable, "-m", "linuxabi", "run", "--", "sh", "-c",
                            "sleep 1000 & sleep 1000 & echo started; wait"],
                           stdout=subprocess.PIPE, cwd=REPO)
    assert cli.stdout is not None
    assert cli.stdout.readline() == b"started\n"
    guests = [int(p) for p in subprocess.run(["pgrep", "-P", str(cli.pid)], capture_output=True,
                                             text=True).stdout.split()]
    assert guests, "the guest's init is a child of the CLI"
    everyone = list(guests)
    for g in guests:
        everyone += [int(p) for p in subprocess.run(["pgrep", "-P", str(g)], capture_output=True,
                                                    text=True).stdout.split()]
    assert len(everyone) >= 3  # init and its two sleeps
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    deadline = time.monotonic() + 10
    while _descendants_alive(everyone) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _descendants_alive(everyone) == []
