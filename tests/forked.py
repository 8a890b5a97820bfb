"""Running a piece of a test in a forked child: for what changes the process itself (its
copy-on-write state, its CPU set), which the test process must not keep."""
from __future__ import annotations

import os
from typing import Callable


def in_child(work: Callable[[], bytes]) -> bytes:
    """What ``work`` returns, run in a forked child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, work())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 1 << 16):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out
