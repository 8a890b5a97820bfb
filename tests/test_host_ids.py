"""Guest thread ids as the supervisor learns them: the pid-namespace ioctl and the pidfd's
fdinfo give what /proc/TID/status says (NSpid's last field)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from linuxabi.host.task import guest_tid_of, tid_in_pidns


def _status_nspid(tid: int) -> int:
    for line in Path(f"/proc/{tid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError("no NSpid line")


def _kernel_at_least(major: int, minor: int) -> bool:
    parts = os.uname().release.split(".")
    return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_guest_ids_from_the_namespace_and_from_the_pidfd_agree_with_proc() -> None:
    # A pid namespace with an init (sh) and two children, which take ids 2 and 3 in it.
    outer = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                              "sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 10
        while True:
            inits = _children(outer.pid)
            tids = inits + [t for i in inits for t in _children(i)]
            if len(tids) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert len(tids) == 3
        ns = os.open(f"/proc/{inits[0]}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            got = [(guest_tid_of(t, ns), guest_tid_of(t), _status_nspid(t)) for t in tids]
            asked = [tid_in_pidns(ns, t) for t in tids]
        finally:
            os.close(ns)
        assert sorted(g[0] for g in got) == [1, 2, 3]
        assert all(a == b == c for a, b, c in got)
        if _kernel_at_least(6, 8):  # the namespace's own answer, one ioctl (NS_GET_PID_IN_PIDNS)
            assert asked == [g[2] for g in got]
    finally:
        os.kill(outer.pid, signal.SIGKILL)
        outer.wait()
