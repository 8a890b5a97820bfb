"""linuxabi's benchmark suite: a microbenchmark guest and whole-program workloads, run natively,
under linuxabi and under peer sandboxes, with ratios to native taken in one interleaved run.

`linuxabi bench` is `bench.runner.main`; `pytest bench/` runs the pytest-benchmark suite.
"""
