"""Builds ``linuxabi-run`` (linuxabi/client.c), the warm client in C, beside this interpreter
(``.venv/bin/linuxabi-run`` for ``make setup``), for the interpreter that runs this.

``linuxabi-run ARGS...`` is ``linuxabi run ARGS...``: through the server that
``LINUXABI_SERVER`` names when there is one (no Python started: ~1 ms instead of ~12), else
the cold run, by exec of this interpreter.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "client.c"
NAME = "linuxabi-run"


def target() -> Path:
    return Path(sys.executable).parent / NAME


def built() -> bool:
    """Whether a client newer than its source and this builder, for this interpreter, is in place."""
    t = target()
    try:
        mtime = t.stat().st_mtime
    except OSError:
        return False
    return mtime >= max(SOURCE.stat().st_mtime, Path(__file__).stat().st_mtime)


def build() -> Path:
    t = target()
    python = sys.executable.replace("\\", "\\\\").replace('"', '\\"')
    with tempfile.TemporaryDirectory(prefix=".linuxabi-client-", dir=t.parent) as tmp:
        out = Path(tmp) / NAME
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f'-DLINUXABI_PYTHON="{python}"', "-o", str(out),
               str(SOURCE)]
        # Static where the C library's archive is there: a warm run's client then starts
        # without the dynamic loader (warm `busybox true` 0.87-0.92x over 30-40 pairs).
        r = subprocess.run(cmd + ["-static"], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip() or f"gcc exited {r.returncode}")
        os.replace(out, t)  # (never half a program where the old one was)
    return t


def main() -> int:
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except (OSError, RuntimeError) as e:  # no compiler: `linuxabi run` does the same, slower
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: {NAME} not built ({last[0]}); use `linuxabi run`", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
