"""Builds ``linuxabi-run`` (linuxabi/client.c), the warm client in C, beside this interpreter
(``.venv/bin/linuxabi-run`` for ``make setup``), for the interpreter that runs this.

``linuxabi-run ARGS...`` is ``linuxabi run ARGS...``: through the server that
``LINUXABI_SERVER`` names when there is one (no Python started: ~1 ms instead of ~12), else
the cold run, by exec of this interpreter.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .cprogram import build_main, compile_program, is_built

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
    return build_main(built, build, NAME, "use `linuxabi run`")  # (which does the same, slower)


if __name__ == "__main__":
    sys.exit(main())
