"""Parsing verdict lines and comparing two runs of a case, check by check.

A verdict line is ``check FAMILY.NAME: DETAILS``.  Any other line is ignored.
Checks are matched by name; a check present on only one side fails.
"""

from __future__ import annotations

from dataclasses import dataclass

CHECK_PREFIX = "check "


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict lines from both sides (None where it is missing)."""

    name: str
    native: str | None
    translated: str | None

    @property
    def passed(self) -> bool:
        return self.native is not None and self.native == self.translated


def check_name(line: str) -> str | None:
    """The check name of a verdict line, or None if it is not one."""
    if not line.startswith(CHECK_PREFIX):
        return None
    head, sep, _ = line[len(CHECK_PREFIX):].partition(":")
    name = head.strip()
    if not sep or not name or " " in name:
        return None
    return name


def parse_checks(output: str) -> dict[str, str]:
    """Map check name -> verdict line, in output order.

    A repeated name gets a ``#N`` suffix (second occurrence ``name#2``) so that
    nothing is silently dropped.
    """
    checks: dict[str, str] = {}
    for raw in output.splitlines():
        line = raw.rstrip()
        name = check_name(line)
        if name is None:
            continue
        key, n = name, 1
        while key in checks:
            n += 1
            key = f"{name}#{n}"
        checks[key] = line
    return checks


def compare_checks(native: dict[str, str], translated: dict[str, str]) -> list[CheckResult]:
    """Pair checks by name: native order first, then translated-only checks."""
    results = [CheckResult(name, line, translated.get(name)) for name, line in native.items()]
    results += [
        CheckResult(name, None, line) for name, line in translated.items() if name not in native
    ]
    return results


def compare_outputs(native: str, translated: str) -> list[CheckResult]:
    """Compare two raw case outputs."""
    return compare_checks(parse_checks(native), parse_checks(translated))


def duplicate_names(output: str) -> list[str]:
    """Check names that occur more than once in one output (a case bug)."""
    return sorted({name.split("#", 1)[0] for name in parse_checks(output) if "#" in name})
