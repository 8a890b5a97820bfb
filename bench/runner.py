"""`linuxabi bench`: run the selected ops on each runner, interleaved over rounds, and report.

Rounds are round-robin (op1/native, op1/linuxabi, ..., op2/native, ..., then the next round)
so that drift of the machine (other load, frequency, cache state) hits every runner alike and
the ratios of medians stay fair.
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

from linuxabi.image import ImageError

from . import history, report
from .build import BuildError, microbench_binary, prepare_image
from .ops import Op, select
from .runners import REPO, RUNNERS, Runner, Sample, WarmServer, ensure_installed, run_sample

DEFAULT_COMPARE = "native,linuxabi,warm"
DEFAULT_ROUNDS = 3
MAX_SECONDS = 1.0  # cap on one microbench loop: keeps a slow runner's run bounded
QUICK_MAX_SECONDS = 0.2
MAX_HANGS = 3  # time-outs after which a runner is dropped for the rest of the run
PACKAGES = ("linuxabi", "syscalls", "vfs", "net", "caps")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="linuxabi bench", description="Benchmark linuxabi against native and peer sandboxes.")
    p.add_argument("--compare", default=DEFAULT_COMPARE, metavar="LIST",
                   help=f"runners, comma-separated: {', '.join(RUNNERS)} or all (default {DEFAULT_COMPARE})")
    p.add_argument("--rounds", type=int, metavar="N", help=f"rounds per op and runner (default {DEFAULT_ROUNDS}; 1 with --quick)")
    p.add_argument("--ops", metavar="LIST", help="op names or groups (micro, workloads, all); default all")
    p.add_argument("--json", metavar="FILE", type=Path, help="write every raw sample as JSON")
    p.add_argument("--plot", metavar="FILE", type=Path, help="write a PNG bar chart of ratios to native (matplotlib)")
    p.add_argument("--history", action="store_true", help="print the per-commit trend from the history file and exit")
    p.add_argument("--history-file", metavar="FILE", type=Path, help=f"default {history.default_path()}")
    p.add_argument("--no-record", action="store_true", help="do not append this run to the history file")
    p.add_argument("--quick", action="store_true", help="1 round, tiny iteration counts (for tests)")
    p.add_argument("--pin", metavar="CPUS", help="run every configuration under taskset -c CPUS (default: unpinned)")
    p.add_argument("--image", metavar="DIR", type=Path, help="base image (default: the built-in default image)")
    p.add_argument("--list", action="store_true", help="list the ops and runners and exit")
    return p


def _log(msg: str) -> None:
    sys.stderr.write(f"bench: {msg}\n")
    sys.stderr.flush()


def _runners(spec: str) -> list[Runner]:
    names = list(RUNNERS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in RUNNERS]
    if unknown or not names:
        raise _UsageError(f"--compare: unknown runner {', '.join(unknown) or '(none)'} (runners: {', '.join(RUNNERS)})")
    return [RUNNERS[n] for n in dict.fromkeys(names)]


def measure(ops: list[Op], runners: list[Runner], images: dict[str, Path], rounds: int, *, quick: bool,
            pin: str | None = None) -> list[Sample]:
    """All samples, interleaved round-robin: every round visits each op on each runner."""
    max_s = QUICK_MAX_SECONDS if quick else MAX_SECONDS
    samples: list[Sample] = []
    # A run that timed out tends to time out again: skip that op on that runner from then on,
    # and the whole runner after MAX_HANGS time-outs, so a hanging runner cannot stall the run.
    hung: set[tuple[str, str]] = set()
    hangs: dict[str, int] = {}
    # Server ops run after every round of the others: `Connection: close` under wrk leaves tens
    # of thousands of loopback connections in TIME_WAIT on the host for a minute, which made
    # the native runs' connects (the host's namespace) slow by up to 1000x.
    passes = [(kind, [op for op in ops if (op.kind == "server") == (kind == "server")]) for kind in ("", "server")]
    for kind, group in passes:
        if group:
            samples += _rounds(group, runners, images, rounds, quick, max_s, pin, hung, hangs, kind)
    return samples


def _rounds(ops: list[Op], runners: list[Runner], images: dict[str, Path], rounds: int, quick: bool,
            max_s: float, pin: str | None, hung: set[tuple[str, str]], hangs: dict[str, int],
            kind: str) -> list[Sample]:
    samples: list[Sample] = []
    for rnd in range(rounds):
        t0 = time.monotonic()
        for op in ops:
            for runner in runners:
                if not runner.applies_to(op):
                    continue
                if (op.name, runner.name) in hung or hangs.get(runner.name, 0) >= MAX_HANGS:
                    samples.append(Sample(op.name, runner.name, rnd, None, error="skipped after time-outs"))
                    continue
                s = run_sample(runner, op, images[runner.name], rnd, quick=quick, max_seconds=max_s, pin=pin)
                if runner.settle is not None:
                    runner.settle()
                if s.error:
                    _log(f"{op.name}/{runner.name} round {rnd + 1}: {s.error}")
                    if s.error.startswith("timed out"):
                        hung.add((op.name, runner.name))
                        hangs[runner.name] = hangs.get(runner.name, 0) + 1
                samples.append(s)
        _log(f"{kind + ' ' if kind else ''}round {rnd + 1}/{rounds} done in {time.monotonic() - t0:.1f} s")
    return samples


def _base_image(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    from linuxabi.image import default_image

    return default_image()


def run(args: argparse.Namespace) -> int:
    hist_path = args.history_file or history.default_path()
    if args.history:
        sys.stdout.write(history.trend(history.load(hist_path)))
        return 0
    try:
        ops = select(args.ops)
    except ValueError as e:
        raise _UsageError(f"--ops: {e}") from None
    runners = _runners(args.compare)
    if args.list:
        for op in ops:
            print(f"{op.name:<24} {op.kind}")
        for r in RUNNERS.values():
            print(f"runner {r.name:<9} {r.unavailable() or 'available'}")
        return 0
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else DEFAULT_ROUNDS)
    if rounds < 1:
        raise _UsageError("--rounds must be at least 1")

    for r in runners:
        ensure_installed(r, _log)
    _compile_bytecode()
    unavailable = {r.name: why for r in runners if (why := r.unavailable()) is not None}
    active = [r for r in runners if r.name not in unavailable]
    not_measured = _servers_unavailable(ops)
    ops = [op for op in ops if op.name not in not_measured]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="linuxabi-bench-") as tmp:
        base = _base_image(args.image)
        guest = microbench_binary()
        images = {r.name: prepare_image(base, Path(tmp) / r.name, guest, dev_nodes=r.dev_nodes) for r in active}
        with contextlib.ExitStack() as stack:
            if any(r.needs_server and any(r.applies_to(op) for op in ops) for r in active):
                warm_image = next((images[r.name] for r in active if r.needs_server), None)
                server = stack.enter_context(WarmServer(Path(tmp) / "server.sock", warm_image))
                active = [server.runner(r) if r.needs_server else r for r in active]
            samples = measure(ops, active, images, rounds, quick=args.quick, pin=args.pin)
    elapsed = time.monotonic() - started

    summary = report.summarize(samples)
    names = [r.name for r in runners]
    op_names = [op.name for op in ops]
    kinds = {op.name: op.kind for op in ops}
    only = {op.name: op.runners for op in ops if op.runners is not None}
    runner_kinds = {r.name: r.kinds for r in runners if r.kinds is not None}
    sys.stdout.write(report.format_table(summary, op_names, names, unavailable, kinds=kinds, only=only,
                                         runner_kinds=runner_kinds))
    for name, why in not_measured.items():
        sys.stdout.write(f"{name}: not measured: {why}\n")
    import net.compiled  # (the runs use this tree and environment: the same answer as theirs)
    stack = "compiled" if net.compiled.active() else "plain Python"
    sys.stdout.write(f"{rounds} round(s), {elapsed:.0f} s; micro ops: guest ns/op; workloads: whole-process wall time; "
                     f"servers: wall time per request (1 / requests per second); the network stack {stack}\n")
    commit = history.git_commit(REPO)
    if args.json:
        doc = {"commit": commit, "net_stack": stack, "runners": names, "unavailable": unavailable, "rounds": rounds,
               "quick": args.quick,
               "ops": [{"name": op.name, "kind": op.kind} for op in ops],
               "samples": [dataclasses.asdict(s) for s in samples]}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if args.plot:
        report.plot(summary, op_names, [r.name for r in active], args.plot, kinds)
    if not args.no_record:
        history.append(hist_path, history.make_entry(summary, [r.name for r in active], commit, quick=args.quick))
    return 1 if any(s.error for s in samples) else 0


def _servers_unavailable(ops: list[Op]) -> dict[str, str]:
    """Server and link ops that cannot run here (no wrk, no nginx image, no TAP), with the reason."""
    out: dict[str, str] = {}
    links = [op for op in ops if op.link]
    if links:
        from . import link

        why = link.prepare()
        out.update({op.name: why for op in links} if why else {})
    servers = [op for op in ops if op.kind == "server"]
    if servers:
        from . import nginx

        why = nginx.prepare()
        out.update({op.name: why for op in servers} if why else {})
    return out


def _compile_bytecode() -> None:
    """Every workload includes linuxabi's start-up: measure it with the bytecode a user has
    (make setup writes it), not with each process recompiling the sources, which is what
    happens where PYTHONDONTWRITEBYTECODE is set and the bytecode is stale."""
    for package in PACKAGES:
        compileall.compile_dir(str(REPO / package), quiet=1)


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: running guests are killed, scratch images removed


def main(argv: Sequence[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        return run(args)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except _UsageError as e:
        sys.stderr.write(f"linuxabi bench: {e}\n")
        return 2
    except (BuildError, ImageError, history.HistoryError) as e:
        sys.stderr.write(f"linuxabi bench: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
