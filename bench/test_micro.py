"""pytest-benchmark suite: each op as a whole guest process, natively and under linuxabi.

pytest-benchmark's own statistics are whole-process times (start-up included); for microbench
ops the guest's per-op figure, which excludes start-up, is in extra_info["ns_per_op"]. Each op
is its own benchmark group, so the runners of one op are compared side by side.
Run with `pytest bench/` (outside the regular `pytest tests` run).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from .conftest import BENCH_RUNNERS, COLLECTED
from .ops import MICRO_OPS, WORKLOADS, Op
from .runners import RUNNERS, Sample, run_sample

MAX_SECONDS = 0.5  # per microbench process: keeps the translated side of the suite short
ROUNDS = 3


def _bench(benchmark: Any, images: dict[str, Path], runner: str, op: Op) -> list[Sample]:
    if runner not in images:
        pytest.skip(f"{runner}: {RUNNERS[runner].unavailable()}")
    samples: list[Sample] = []

    def once() -> None:
        s = run_sample(RUNNERS[runner], op, images[runner], len(samples), quick=False, max_seconds=MAX_SECONDS)
        COLLECTED.append(s)
        assert s.error is None, f"{op.name} under {runner}: {s.error}"
        samples.append(s)

    benchmark.group = op.name
    benchmark.extra_info["runner"] = runner
    benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    return samples


@pytest.mark.parametrize("runner", BENCH_RUNNERS)
@pytest.mark.parametrize("op", MICRO_OPS, ids=lambda op: op.name)
def test_micro(benchmark: Any, bench_images: dict[str, Path], runner: str, op: Op) -> None:
    samples = _bench(benchmark, bench_images, runner, op)
    benchmark.extra_info["ns_per_op"] = statistics.median(s.seconds * 1e9 for s in samples if s.seconds)
    benchmark.extra_info["iters"] = [s.iters for s in samples]


@pytest.mark.parametrize("runner", BENCH_RUNNERS)
@pytest.mark.parametrize("op", WORKLOADS, ids=lambda op: op.name)
def test_workload(benchmark: Any, bench_images: dict[str, Path], runner: str, op: Op) -> None:
    _bench(benchmark, bench_images, runner, op)
