"""Builds ``linuxabi-run`` (linuxabi/client.c), the warm client in C, beside this interpreter
(``.venv/bin/linuxabi-run`` for ``make setup``), for the interpreter that runs this.

``linuxabi-run ARGS...`` is ``linuxabi run ARGS...``: through the server that
``LINUXABI_SERVER`` names when there is one (no Python started: ~1 ms instead of ~12), else
the cold run, by exec of this interpreter.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .cprogram import compile_program, is_built

SOURCE = Path(__file__).resolve().parent / "client.c"
NAME = "linuxabi-run"


def target() -> Path:
    return Path(sys.executable).parent / NAME


def built() -> bool:
    """Whether a client newer than its source and this builder, for this interpreter, is in place."""
    return is_built(target(), SOURCE, Path(__file__))


def build() -> Path:
    python = sys.executable.replace("\\", "\\\\").replace('"', '\\"')
    return compile_program(SOURCE, target(), [f'-DLINUXABI_PYTHON="{python}"'])


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
