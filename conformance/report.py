"""Outcomes of a conformance run: the table, the summary line and the JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from conformance.baseline import Baseline
from conformance.cases import Program
from conformance.compare import CheckResult, duplicate_names
from conformance.execute import RunResult


@dataclass(frozen=True)
class CaseOutcome:
    """One case run on both sides, compared check by check."""

    case: Program
    native: RunResult
    translated: RunResult
    checks: list[CheckResult]

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.checks if not r.passed]

    def oracle_problem(self) -> str | None:
        """Why the native side cannot serve as the oracle, if it cannot."""
        if not self.native.ok:
            return f"native {self.native.describe()}"
        if not any(r.native is not None for r in self.checks):
            return "native printed no checks"
        dups = duplicate_names(self.native.stdout)
        if dups:
            return "duplicate check names: " + ", ".join(dups)
        return None


def verdict(result: CheckResult, baseline: Baseline | None) -> str:
    if result.passed:
        return "pass"
    if baseline is not None and baseline.is_known(result.name):
        return "known-failure"
    return "fail"


def summary_line(outcomes: list[CaseOutcome]) -> str:
    passed = sum(o.passed for o in outcomes)
    total = sum(len(o.checks) for o in outcomes)
    syscalls = {name for o in outcomes for name in o.case.syscalls}
    return f"conformance: {passed}/{total} checks pass, {len(syscalls)} syscalls"


def _side_label(name: str) -> str:
    return f"{name}:".ljust(12)


def write_table(outcomes: list[CaseOutcome], baseline: Baseline | None, out: TextIO,
                side_b: str = "translated", verbose: bool = False) -> None:
    """Per family: checks passed/total, then the first differing check (all of
    them with verbose) as native vs side_b lines."""
    width = max([len(o.case.name) for o in outcomes] + [6])
    out.write(f"{'family'.ljust(width)}  {'pass':>9}  notes\n")
    for outcome in outcomes:
        notes = _notes(outcome, side_b)
        score = f"{outcome.passed}/{len(outcome.checks)}"
        out.write(f"{outcome.case.name.ljust(width)}  {score:>9}  {notes}".rstrip() + "\n")
        for side, run in (("native", outcome.native), (side_b, outcome.translated)):
            tail = _last_line(run.stderr)
            if not run.ok and tail:
                out.write(f"    {side} stderr: {tail}\n")
        failures = outcome.failures
        for result in failures if verbose else failures[:1]:
            tag = verdict(result, baseline)
            out.write(f"    {result.name} [{tag}]\n")
            out.write(f"      {_side_label('native')}{result.native or '<missing>'}\n")
            out.write(f"      {_side_label(side_b)}{result.translated or '<missing>'}\n")
        if not verbose and len(failures) > 1:
            out.write(f"    (+{len(failures) - 1} more failing checks; -v lists them)\n")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _notes(outcome: CaseOutcome, side_b: str) -> str:
    notes = []
    problem = outcome.oracle_problem()
    if problem:
        notes.append(f"ORACLE BROKEN: {problem}")
    if not outcome.translated.ok:
        notes.append(f"{side_b} {outcome.translated.describe()}")
    for side, run in (("native", outcome.native), (side_b, outcome.translated)):
        if run.slow:  # a flake waiting to happen: say so before CI finds it
            notes.append(f"{side} slow: {run.seconds:.1f} s of its {run.limit:g} s limit")
    return "; ".join(notes)


def outcome_json(outcome: CaseOutcome, baseline: Baseline | None) -> dict[str, object]:
    return {
        "family": outcome.case.name,
        "syscalls": list(outcome.case.syscalls),
        "native_status": outcome.native.describe(),
        "translated_status": outcome.translated.describe(),
        "native_seconds": round(outcome.native.seconds, 3),
        "translated_seconds": round(outcome.translated.seconds, 3),
        "native_stderr": outcome.native.stderr,
        "translated_stderr": outcome.translated.stderr,
        "oracle_problem": outcome.oracle_problem(),
        "checks": [
            {
                "name": r.name,
                "native": r.native,
                "translated": r.translated,
                "verdict": verdict(r, baseline),
                "reason": baseline.known_failures.get(r.name) if baseline else None,
            }
            for r in outcome.checks
        ],
    }


def write_json(path: Path, mode: str, outcomes: list[CaseOutcome],
               baseline: Baseline | None) -> None:
    regressions = baseline.regressions(all_checks(outcomes)) if baseline else []
    data = {
        "mode": mode,
        "summary": {
            "line": summary_line(outcomes),
            "passed": sum(o.passed for o in outcomes),
            "total": sum(len(o.checks) for o in outcomes),
            "syscalls": sorted({n for o in outcomes for n in o.case.syscalls}),
            "regressions": [r.name for r in regressions],
            "oracle_broken": [o.case.name for o in outcomes if o.oracle_problem()],
        },
        "families": [outcome_json(o, baseline) for o in outcomes],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def all_checks(outcomes: list[CaseOutcome]) -> list[CheckResult]:
    return [r for o in outcomes for r in o.checks]
