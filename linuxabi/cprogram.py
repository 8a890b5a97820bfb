"""Building linuxabi's small C programs (the warm client, the guest launcher) with gcc, at
`make setup`: static where the C library's archive is there, never half a program in place."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable


def is_built(target: Path, *sources: Path) -> bool:
    """Whether ``target`` exists and is newer than each of ``sources`` (its C file, its builder)."""
    try:
        mtime = target.stat().st_mtime
    except OSError:
        return False
    return mtime >= max(s.stat().st_mtime for s in sources)


def compile_program(source: Path, target: Path, extra: "list[str] | tuple[str, ...]" = ()) -> Path:
    """gcc ``source`` into ``target`` (replaced whole); RuntimeError with gcc's message."""
    import subprocess  # (here: a run only asks whether its programs are built)
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".linuxabi-build-", dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", *extra, "-o", str(out), str(source)]
        # Static where the C library's archive is there: the program then starts without the
        # dynamic loader (the warm client: warm `busybox true` 0.87-0.92x over 30-40 pairs).
        r = subprocess.run(cmd + ["-static"], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip() or f"gcc exited {r.returncode}")
        os.replace(out, target)
    return target


def build_main(built: Callable[[], bool], build: Callable[[], Path], name: str, instead: str) -> int:
    """A builder's ``python -m``: build unless built (``--force``: anyway); without a compiler,
    one line saying what does the program's work ``instead``. Always 0: it is optional."""
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except (OSError, RuntimeError) as e:
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: {name} not built ({last[0]}); {instead}", file=sys.stderr)
    return 0
