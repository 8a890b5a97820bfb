"""Builds ``linuxabi-launcher`` (linuxabi/host/launcher.c), the guest's first process from its
new namespaces to its exec, beside its source. Without it, the same steps run in Python
(linuxabi/host/launch.py), with the same behaviour and ~1 ms more per run (the exec from a
copy of the translator's ~100 MB). ``make setup`` runs ``python -m linuxabi.host.launcher_build``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from linuxabi.cprogram import compile_program, is_built

SOURCE = Path(__file__).resolve().parent / "launcher.c"
TARGET = SOURCE.with_name("linuxabi-launcher")


def built() -> bool:
    return is_built(TARGET, SOURCE, Path(__file__))


def build() -> Path:
    return compile_program(SOURCE, TARGET)


def main() -> int:
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except (OSError, RuntimeError) as e:  # no compiler: the Python launcher does the same
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: linuxabi-launcher not built ({last[0]}); guests start through the Python launcher",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
