"""The answer cache (linuxabi/host/answers.py): repeated stats are answered in C, and only
while nothing they depend on has changed. Linux's side of it (every change between two stats
of one thread shows in the second) is conformance/cases/stat.c's "repeat" checks; these are
the platform's side."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from linuxabi.api import Sandbox, SandboxConfig
from linuxabi.host.supervisor import Supervisor
from syscalls.dispatch import Dispatcher
from syscalls.table import BY_NAME

NEWFSTATAT = BY_NAME["newfstatat"].nr
OPENAT = BY_NAME["openat"].nr
# 300 opens of one file by the shell itself (a redirection of its builtin `read`)
OPENS = "i=0; while [ $i -lt 300 ]; do read x < /etc/passwd || exit 9; i=$((i+1)); done"


def _run(image: Path, script: str, dispatcher: Dispatcher | None = None, **config: object) -> tuple[int, Sandbox]:
    box = Sandbox(SandboxConfig(root=image, **config), dispatcher=dispatcher)  # type: ignore[arg-type]
    return box.run(["sh", "-c", script]), box


def _served(image: Path, script: str, dispatcher: Dispatcher | None = None) -> Supervisor:
    """The translator of a run of ``script``, which exited 0 and met no bug of its own."""
    code, box = _run(image, script, dispatcher)
    assert code == 0
    assert box.supervisor is not None and box.supervisor.errors == 0
    return box.supervisor


def test_repeated_stats_are_answered_without_python(image_copy: Path) -> None:
    # busybox sh's `[ -e ]` is a builtin: 300 stats of one path from one thread.
    sup = _served(image_copy, "for i in $(seq 300); do [ -e /etc/passwd ] || exit 9; done")
    assert sup.answered >= 290
    assert sup.dispatcher.counts.get(NEWFSTATAT, 0) < 10  # the handler saw the first few only


def test_repeated_opens_are_answered_without_python(image_copy: Path) -> None:
    sup = _served(image_copy, OPENS + "; echo $x > /tmp/first; cat /tmp/first")
    assert sup.answered >= 290
    assert sup.dispatcher.counts.get(OPENAT, 0) < 20


def test_a_new_programs_first_questions_are_answered_without_python(image_copy: Path) -> None:
    # busybox asks readlink("/proc/self/exe") and prctl(PR_GET_NAME) on every start: 300 starts.
    script = ("i=0; while [ $i -lt 300 ]; do /bin/true || exit 9; i=$((i+1)); done; "
              "[ \"$(readlink /proc/self/exe)\" = /bin/busybox ] || exit 10; "
              "[ \"$(cat /proc/self/comm)\" = cat ] || exit 11")
    sup = _served(image_copy, script)
    assert sup.answered >= 540
    assert sup.dispatcher.counts.get(BY_NAME["readlink"].nr, 0) < 30
    assert sup.dispatcher.counts.get(BY_NAME["prctl"].nr, 0) < 30


def test_every_open_is_audited_at_the_verbose_level(image_copy: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    code, _box = _run(image_copy, OPENS, audit=str(log), audit_level="verbose")
    assert code == 0
    opens = [line for line in log.read_text().splitlines()
             if '"event":"open"' in line and '"/etc/passwd"' in line]
    assert len(opens) >= 300


def test_a_path_that_does_not_resolve_is_answered_until_it_does(image_copy: Path) -> None:
    # ls -l opens a missing /etc/localtime for each file it shows: failures are answers too.
    script = ("exec 2>/dev/null; i=0; while [ $i -lt 300 ]; do [ -e /tmp/later ] && exit 8; "
              "read x < /tmp/later && exit 9; i=$((i+1)); done; "
              "echo hi > /tmp/later; [ -e /tmp/later ] || exit 10; read x < /tmp/later; [ \"$x\" = hi ] || exit 11")
    sup = _served(image_copy, script)
    assert sup.dispatcher.counts.get(NEWFSTATAT, 0) < 20  # the shell's 300 stats of /tmp/later
    assert sup.dispatcher.counts.get(OPENAT, 0) < 20  # and its 300 opens


def test_a_change_between_stats_is_seen(image_copy: Path) -> None:
    # The shell's own chmod (an applet run as a child) and its `[ -x ]` (a stat in the shell).
    script = ("for i in 1 2 3; do [ -x /etc/passwd ] && exit 8; done; chmod 755 /etc/passwd; "
              "[ -x /etc/passwd ] || exit 9; chmod 644 /etc/passwd; [ -x /etc/passwd ] && exit 10; "
              "mv /etc/group /etc/passwd; [ -e /etc/group ] && exit 11; exit 0")
    assert _served(image_copy, script).answered > 0


def test_stat_failure_of_a_cached_path_after_unlink(image_copy: Path) -> None:
    script = "for i in 1 2 3 4; do [ -e /etc/hostname ] || exit 8; done; rm /etc/hostname; [ -e /etc/hostname ] && exit 9; exit 0"
    (image_copy / "etc" / "hostname").write_text("box\n")
    code, _box = _run(image_copy, script)
    assert code == 0
    assert (image_copy / "etc" / "hostname").exists()  # the image is never written


class _Seeing(Dispatcher):
    """A dispatcher that sees every call (as the tracer and the profile do)."""

    def __init__(self) -> None:
        super().__init__(tracer=lambda task, nr, args, result: None)


def test_a_tracer_sees_every_call(image_copy: Path) -> None:
    sup = _served(image_copy, "for i in $(seq 50); do [ -e /etc/passwd ]; done", dispatcher=_Seeing())
    assert sup.answered == 0
    assert sup.dispatcher.counts.get(NEWFSTATAT, 0) >= 50


def test_signals_and_exits_are_served_during_a_stat_storm(image_copy: Path) -> None:
    # The storm never leaves the C loop's hits, yet the child's exit, the kill and the wait
    # must be served (the loop gives Python a turn after a run of answers).
    script = ("while :; do [ -e /etc/passwd ]; done & storm=$!; "
              "for i in 1 2 3; do sh -c 'exit 3'; echo child $?; done; kill $storm; wait $storm; echo storm $?")
    out = subprocess.run([sys.executable, "-m", "linuxabi", "run", "--root", str(image_copy), "--", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["child 3", "child 3", "child 3", "storm 143", ""]


def test_a_failed_receive_leaves_no_notification_behind() -> None:
    # The run loop reads the buffer back when a signal breaks its wait: whatever the C loop
    # returns but 1, the buffer must be empty, or a call it answered already would be served
    # again (its answer written into a stack the guest has moved on from).
    import errno
    import os

    from linuxabi.host._vm import ffi, lib
    from linuxabi.host.notify import _NOTIF

    cache = ffi.gc(lib.answers_new(), lib.answers_free)
    buf = bytearray(b"\xa5" * _NOTIF.size)  # what an answered notification left there
    r, w = os.pipe2(os.O_NONBLOCK)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK)
    try:
        os.write(w, b"x")  # readable: the RECV on it fails (not a listener)
        assert lib.answers_serve(r, ffi.from_buffer(buf), cache, wake_r) == -errno.ENOTTY
        assert buf == bytes(_NOTIF.size)
        # A signal the interpreter took: back to Python, the wakeup bytes read, nothing left.
        buf[:] = b"\xa5" * _NOTIF.size
        os.write(wake_w, b"\x11\x11")
        assert lib.answers_serve(r, ffi.from_buffer(buf), cache, wake_r) == 0
        assert buf == bytes(_NOTIF.size)
        with pytest.raises(BlockingIOError):
            os.read(wake_r, 1)
    finally:
        for fd in (r, w, wake_r, wake_w):
            os.close(fd)
