"""Statistics over samples, the results table (ratios of medians to native) and the bar chart."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .runners import Sample

BASELINE = "native"


@dataclass(frozen=True)
class Stats:
    min: float
    median: float
    max: float
    n: int  # successful rounds
    failed: int = 0
    error: str | None = None  # the first failure's reason


Summary = dict[str, dict[str, Stats]]  # op -> runner -> stats


def stats_of(samples: Iterable[Sample]) -> Stats | None:
    samples = list(samples)
    if not samples:
        return None
    ok = [s.seconds for s in samples if s.seconds is not None]
    bad = [s for s in samples if s.seconds is None]
    error = bad[0].error if bad else None
    if not ok:
        return Stats(math.nan, math.nan, math.nan, 0, len(bad), error)
    return Stats(min(ok), statistics.median(ok), max(ok), len(ok), len(bad), error)


def summarize(samples: Iterable[Sample]) -> Summary:
    grouped: dict[str, dict[str, list[Sample]]] = {}
    for s in samples:
        grouped.setdefault(s.op, {}).setdefault(s.runner, []).append(s)
    out: Summary = {}
    for op, by_runner in grouped.items():
        out[op] = {}
        for runner, ss in by_runner.items():
            st = stats_of(ss)
            if st is not None:
                out[op][runner] = st
    return out


def ratio(summary: Summary, op: str, runner: str, baseline: str = BASELINE) -> float | None:
    """Median under `runner` over the median under `baseline` for the same op (same run)."""
    row = summary.get(op, {})
    a, b = row.get(runner), row.get(baseline)
    if a is None or b is None or a.n == 0 or b.n == 0 or b.median <= 0:
        return None
    return a.median / b.median


def geomean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None


def fmt_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_table(summary: Summary, ops: list[str], runners: list[str],
                 unavailable: dict[str, str] | None = None, kinds: dict[str, str] | None = None,
                 only: dict[str, tuple[str, ...]] | None = None,
                 runner_kinds: dict[str, tuple[str, ...]] | None = None) -> str:
    """One row per op and runner: min, median, max, rounds, median/native.

    `kinds` (op -> "micro"/"workload"/"server") adds a geometric-mean row of the ratios per kind;
    `only` (op -> runners) marks the runners an op does not apply to; `runner_kinds` (runner ->
    op kinds) the ops of other kinds a runner does not measure.
    """
    unavailable = unavailable or {}
    only = only or {}
    runner_kinds = runner_kinds or {}
    head = f"{'operation':<24} {'runner':<9} {'min':>9} {'median':>9} {'max':>9} {'rounds':>6} {'x native':>9}"
    lines = [head, "-" * len(head)]
    for op in ops:
        first = True
        for runner in runners:
            label = op if first else ""
            first = False
            if runner in unavailable:
                lines.append(f"{label:<24} {runner:<9} {unavailable[runner]}")
                continue
            if runner in runner_kinds and (kinds or {}).get(op) not in runner_kinds[runner]:
                lines.append(f"{label:<24} {runner:<9} n/a ({', '.join(k + 's' for k in runner_kinds[runner])} only)")
                continue
            if op in only and runner not in only[op]:
                lines.append(f"{label:<24} {runner:<9} n/a ({' and '.join(only[op])} only)")
                continue
            st = summary.get(op, {}).get(runner)
            if st is None:
                lines.append(f"{label:<24} {runner:<9} (no samples)")
                continue
            if st.n == 0:
                lines.append(f"{label:<24} {runner:<9} failed: {st.error}")
                continue
            r = ratio(summary, op, runner)
            rtxt = f"{r:.2f}x" if r is not None else "-"
            failed = f"  ({st.failed} failed: {st.error})" if st.failed else ""
            lines.append(f"{label:<24} {runner:<9} {fmt_time(st.min):>9} {fmt_time(st.median):>9} "
                         f"{fmt_time(st.max):>9} {st.n:>6} {rtxt:>9}{failed}")
    if kinds:
        lines.append("-" * len(head))
        for kind in sorted(set(kinds.values())):
            for runner in runners:
                if runner == BASELINE or runner in unavailable:
                    continue
                g = geomean(r for op in ops if kinds.get(op) == kind
                            if (r := ratio(summary, op, runner)) is not None)
                if g is not None:
                    lines.append(f"{'geomean ' + kind:<24} {runner:<9} {'':>9} {'':>9} {'':>9} {'':>6} {g:>8.2f}x")
    return "\n".join(lines) + "\n"


def plot(summary: Summary, ops: list[str], runners: list[str], path: Path,
         kinds: dict[str, str] | None = None) -> None:
    """A PNG bar chart of median/native per op (log scale), one bar per runner; a dashed line
    separates op kinds (per-op micro figures from whole-process workloads)."""
    import matplotlib  # lazily: an optional dependency, needed only for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [r for r in runners if r != BASELINE]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(ops) + 2), 4.5))
    width = 0.8 / max(1, len(others))
    for i, runner in enumerate(others):
        xs, ys = [], []
        for j, op in enumerate(ops):
            r = ratio(summary, op, runner)
            if r is not None:
                xs.append(j + (i - (len(others) - 1) / 2) * width)
                ys.append(r)
        ax.bar(xs, ys, width=width, label=runner)
    ax.axhline(1.0, color="black", linewidth=0.8)
    for j in range(1, len(ops)):
        if kinds and kinds.get(ops[j]) != kinds.get(ops[j - 1]):
            ax.axvline(j - 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(ops)))
    ax.set_xticklabels(ops, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("median / native (log)")
    ax.set_title("linuxabi bench: slowdown relative to native")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
