"""Discovery of conformance cases and helper programs.

``conformance/cases/<family>.c`` is a case; ``conformance/cases/_<name>.c`` is a
helper program (built and installed next to the cases, never run as one).
Each case declares the syscalls it exercises in a header comment line::

    // syscalls: open openat creat close
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

CASES_DIR = Path(__file__).resolve().parent / "cases"
HEADER_NAME = "verdict.h"
_SYSCALLS_RE = re.compile(r"^\s*//\s*syscalls:(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Program:
    """A C source file to compile: a case or a helper."""

    name: str
    source: Path
    syscalls: tuple[str, ...] = ()

    @property
    def is_helper(self) -> bool:
        return self.name.startswith("_")


def declared_syscalls(text: str) -> tuple[str, ...]:
    """Syscall names from every ``// syscalls:`` line, deduplicated, in order."""
    names: dict[str, None] = {}
    for match in _SYSCALLS_RE.finditer(text):
        for name in match.group(1).split():
            names[name] = None
    return tuple(names)


def load_program(source: Path) -> Program:
    return Program(source.stem, source, declared_syscalls(source.read_text()))


def discover(cases_dir: Path = CASES_DIR) -> tuple[list[Program], list[Program]]:
    """All (cases, helpers) under cases_dir, sorted by name."""
    programs = [load_program(p) for p in sorted(cases_dir.glob("*.c"))]
    cases = [p for p in programs if not p.is_helper]
    helpers = [p for p in programs if p.is_helper]
    return cases, helpers


def matches(name: str, pattern: str | None) -> bool:
    """Filter: comma-separated shell globs matched against the family name."""
    if not pattern:
        return True
    parts = (p.strip() for p in pattern.split(","))
    return any(fnmatch.fnmatchcase(name, part) for part in parts if part)


def select_cases(cases: list[Program], pattern: str | None) -> list[Program]:
    return [case for case in cases if matches(case.name, pattern)]
