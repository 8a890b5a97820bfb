"""Builds ``linuxabi-launcher`` (linuxabi/host/launcher.c), the guest's first process from its
new namespaces to its exec, beside its source. Without it, the same steps run in Python
(linuxabi/host/launch.py), with the same behaviour and ~1 ms more per run (the exec from a
copy of the translator's ~100 MB). ``make setup`` runs ``python -m linuxabi.host.launcher_build``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from linuxabi.cprogram import build_main, compile_program, is_built

SOURCE = Path(__file__).resolve().parent / "launcher.c"
TARGET = SOURCE.with_name("linuxabi-launcher")


def built() -> bool:
    return is_built(TARGET, SOURCE, Path(__file__))


def build() -> Path:
    return compile_program(SOURCE, TARGET)


def main() -> int:
    return build_main(built, build, TARGET.name, "guests start through the Python launcher")


if __name__ == "__main__":
    sys.exit(main())
