"""The results history: one JSON list of runs, each keyed by git commit and date."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .report import Summary, fmt_time, ratio

Entry = dict[str, Any]


class HistoryError(Exception):
    """The history file exists but is not a history (a one-line reason)."""


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "linuxabi" / "bench-history.json"


def git_commit(repo: Path) -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "unknown"


def make_entry(summary: Summary, runners: list[str], commit: str, *, quick: bool) -> Entry:
    medians = {op: {rn: st.median for rn, st in row.items() if st.n > 0} for op, row in summary.items()}
    ratios = {op: {rn: r for rn in row if rn != "native" and (r := ratio(summary, op, rn)) is not None}
              for op, row in summary.items()}
    return {"commit": commit, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runners": runners, "quick": quick, "median_s": medians, "ratio": ratios}


def load(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HistoryError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(data, list):
        raise HistoryError(f"{path}: not a bench history (expected a JSON list)")
    return data


def append(path: Path, entry: Entry) -> None:
    """Add one run; written to a temporary file and renamed so a crash never truncates it."""
    entries = load(path)
    entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bench-history-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def trend(entries: list[Entry], *, include_quick: bool = False) -> str:
    """Per operation and runner, the median per commit (commits in first-run order), with the
    ratio to native; a commit measured several times shows the median of its runs."""
    entries = [e for e in entries if include_quick or not e.get("quick")]
    if not entries:
        return "no benchmark history yet\n"
    commits: list[str] = []
    for e in entries:
        if e["commit"] not in commits:
            commits.append(e["commit"])
    # op -> runner -> commit -> [medians] (and the same for ratios)
    med: dict[str, dict[str, dict[str, list[float]]]] = {}
    rat: dict[str, dict[str, dict[str, list[float]]]] = {}
    for e in entries:
        for op, row in e.get("median_s", {}).items():
            for rn, v in row.items():
                med.setdefault(op, {}).setdefault(rn, {}).setdefault(e["commit"], []).append(v)
        for op, row in e.get("ratio", {}).items():
            for rn, v in row.items():
                rat.setdefault(op, {}).setdefault(rn, {}).setdefault(e["commit"], []).append(v)
    lines = []
    for op in med:
        lines.append(op)
        for rn, per_commit in med[op].items():
            cells = []
            for c in commits:
                if c not in per_commit:
                    continue
                cell = f"{c}: {fmt_time(statistics.median(per_commit[c]))}"
                rs = rat.get(op, {}).get(rn, {}).get(c)
                if rs:
                    cell += f" ({statistics.median(rs):.2f}x)"
                cells.append(cell)
            lines.append(f"  {rn:<9} " + "  ".join(cells))
    return "\n".join(lines) + "\n"
