"""Finding a guest's processes from the host side, for tests that look at them there."""
from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def host_tasks_with(marker: str) -> list[int]:
    """Host pids of processes whose command line contains ``marker`` (a guest's, here)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read() and int(name) != os.getpid():
                        out.append(int(name))
            except OSError:
                continue
    return out


def wait_for(what: Callable[[], T], seconds: float) -> T:
    """what()'s first true value within ``seconds`` (polled), else its last one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    return what()
