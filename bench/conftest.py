"""Fixtures for the pytest-benchmark suite (`pytest bench/`): one image copy per runner, and a
closing table of the guests' own figures with ratios to native (the same table as `linuxabi bench`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from . import report
from .build import microbench_binary, prepare_image
from .ops import ALL_OPS
from .runners import RUNNERS, Sample

BENCH_RUNNERS = ("native", "linuxabi")
COLLECTED: list[Sample] = []  # every sample the suite took, for the closing table


@pytest.fixture(scope="session")
def bench_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from linuxabi.image import default_image

    base, guest = default_image(), microbench_binary()
    root = tmp_path_factory.mktemp("bench-images")
    return {name: prepare_image(base, root / name, guest, dev_nodes=RUNNERS[name].dev_nodes)
            for name in BENCH_RUNNERS if RUNNERS[name].unavailable() is None}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COLLECTED:
        return
    seen = {s.op for s in COLLECTED}
    ops = [op for op in ALL_OPS if op.name in seen]
    terminalreporter.section("linuxabi bench: guest ns/op (micro) and wall time (workloads)")
    terminalreporter.write(report.format_table(report.summarize(COLLECTED), [op.name for op in ops],
                                               list(BENCH_RUNNERS), kinds={op.name: op.kind for op in ops}))
