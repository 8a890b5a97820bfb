"""The committed baseline: checks known to fail under translation, with reasons.

File format (conformance/baseline.json)::

    {
      "version": 1,
      "known_failures": {
        "open.o_tmpfile": "O_TMPFILE not implemented by the VFS yet"
      }
    }

Every check not listed is expected to pass; a listed check may fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from conformance.compare import CheckResult

BASELINE_PATH = Path(__file__).resolve().parent / "baseline.json"
FORMAT_VERSION = 1
_REASON_LIMIT = 120


@dataclass
class Baseline:
    known_failures: dict[str, str] = field(default_factory=dict)

    def is_known(self, check: str) -> bool:
        return check in self.known_failures

    def regressions(self, results: list[CheckResult]) -> list[CheckResult]:
        """Failing checks that the baseline does not list."""
        return [r for r in results if not r.passed and not self.is_known(r.name)]

    def fixed(self, results: list[CheckResult]) -> list[CheckResult]:
        """Listed checks that now pass (the baseline can be tightened)."""
        return [r for r in results if r.passed and self.is_known(r.name)]

    def updated(self, results: list[CheckResult], families: set[str]) -> Baseline:
        """A baseline for this run: entries of the run's families are replaced
        by its failures (keeping existing reasons); other families are kept."""
        kept = {name: reason for name, reason in self.known_failures.items()
                if family_of(name) not in families}
        for result in results:
            if not result.passed:
                kept[result.name] = self.known_failures.get(result.name) or default_reason(result)
        return Baseline(dict(sorted(kept.items())))


def family_of(check: str) -> str:
    return check.split(".", 1)[0]


def default_reason(result: CheckResult) -> str:
    """A first reason for a new entry: what the translated side printed."""
    if result.translated is None:
        return "missing under translation"
    if result.native is None:
        return "only printed under translation"
    detail = result.translated.partition(": ")[2]
    reason = f"translated: {detail}"
    return reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."


def load(path: Path = BASELINE_PATH) -> Baseline:
    if not path.exists():
        return Baseline()
    data = json.loads(path.read_text())
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported baseline version {data.get('version')!r}")
    failures = data.get("known_failures", {})
    if not isinstance(failures, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in failures.items()):
        raise ValueError(f"{path}: known_failures must map check names to reason strings")
    return Baseline(dict(failures))


def save(baseline: Baseline, path: Path = BASELINE_PATH) -> None:
    data = {"version": FORMAT_VERSION, "known_failures": baseline.known_failures}
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
