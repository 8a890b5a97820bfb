"""``linuxabi conformance``: run every case natively and under translation.

    linuxabi conformance [--filter PATTERN] [--json FILE] [--root IMAGE_DIR]
                         [--dynamic] [--translated-cmd {linuxabi,native}]
                         [--oracle-check] [--update-baseline] [-v]

Exit status: 0 when no check that the baseline expects to pass fails and every
case runs cleanly natively; 1 otherwise (with --oracle-check: 1 when the two
native runs differ anywhere); 2 when the run cannot be set up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from conformance import baseline as baseline_mod
from conformance.baseline import Baseline
from conformance.build import BuildError, compile_all, default_cache_dir
from conformance.cases import CASES_DIR, Program, discover, select_cases
from conformance.compare import compare_outputs
from conformance.execute import (
    DEFAULT_TIMEOUT,
    Launcher,
    NativeLauncher,
    TranslatedLauncher,
    namespaces_available,
    prepare_image,
    run_case,
)
from conformance.report import CaseOutcome, all_checks, summary_line, write_json, write_table

EXIT_OK, EXIT_FAIL, EXIT_SETUP = 0, 1, 2


class SetupError(Exception):
    """The run cannot start (no image, compile failure, not root...)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="linuxabi conformance",
                                description="Run the Linux conformance suite natively and "
                                            "under translation and compare the verdicts.")
    p.add_argument("--filter", metavar="PATTERN",
                   help="comma-separated globs on family names (e.g. 'open,stat*')")
    p.add_argument("--json", metavar="FILE", type=Path, help="write every check's verdicts here")
    p.add_argument("--root", metavar="IMAGE_DIR", type=Path,
                   help="rootfs directory (default: linuxabi.image.default_image())")
    p.add_argument("--dynamic", action="store_true",
                   help="use dynamically linked builds (the image must have a libc)")
    p.add_argument("--translated-cmd", choices=("linuxabi", "native"), default="linuxabi",
                   help="what runs the second side; 'native' runs both sides natively")
    p.add_argument("--oracle-check", action="store_true",
                   help="run the native side twice and require identical verdicts")
    p.add_argument("--update-baseline", action="store_true",
                   help="rewrite the baseline's entries for the selected families from this run")
    p.add_argument("--baseline", type=Path, default=baseline_mod.BASELINE_PATH,
                   help="baseline file (default: conformance/baseline.json)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="compiled case cache (default: ~/.cache/linuxabi/conformance)")
    p.add_argument("--cases-dir", type=Path, default=CASES_DIR, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds per case run (default: %(default)s)")
    p.add_argument("--keep-image", action="store_true",
                   help="keep the scratch image copy and print its path")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="show every failing check")
    return p.parse_args(argv)


def default_image_dir() -> Path:
    try:
        from linuxabi.image import default_image
    except ImportError as err:
        raise SetupError(f"cannot import linuxabi.image ({err}); pass --root IMAGE_DIR") from err
    try:
        return Path(default_image())
    except Exception as err:  # the image builder's own errors (ImageError, OSError...)
        raise SetupError(f"default image unavailable ({err}); pass --root IMAGE_DIR") from err


def other_is_native(args: argparse.Namespace) -> bool:
    return bool(args.oracle_check or args.translated_cmd == "native")


def second_side(args: argparse.Namespace, native: Launcher) -> Launcher:
    return native if other_is_native(args) else TranslatedLauncher()


def run_one(case: Program, image: Path, native: Launcher, other: Launcher,
            timeout: float) -> CaseOutcome:
    first = run_case(native, image, case.name, timeout)
    second = run_case(other, image, case.name, timeout)
    return CaseOutcome(case, first, second, compare_outputs(first.stdout, second.stdout))


def run_all(args: argparse.Namespace, cases: list[Program], helpers: list[Program],
            err: TextIO) -> list[CaseOutcome]:
    if os.geteuid() != 0:
        raise SetupError("the native side uses chroot: run as root")
    cache = args.cache_dir or default_cache_dir()
    try:
        built = compile_all(cases + helpers, cache, dynamic=args.dynamic)
    except BuildError as e:
        raise SetupError(str(e)) from e
    source = args.root or default_image_dir()
    use_ns = namespaces_available()
    if not use_ns:
        err.write("warning: cannot create a mount namespace; native runs get no /proc "
                  "and no tmpfs /tmp\n")
    native = NativeLauncher(use_namespaces=use_ns)
    other = second_side(args, native)
    scratch = Path(tempfile.mkdtemp(prefix="linuxabi-conformance-"))
    image = scratch / "root"
    try:
        prepare_image(source, image, {name: b.binary for name, b in built.items()})
        return [run_one(case, image, native, other, args.timeout) for case in cases]
    finally:
        if args.keep_image:
            err.write(f"image kept at {image}\n")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def exit_status(outcomes: list[CaseOutcome], baseline: Baseline | None) -> int:
    if any(o.oracle_problem() for o in outcomes):
        return EXIT_FAIL
    checks = all_checks(outcomes)
    if baseline is None:  # oracle check: everything must agree
        return EXIT_FAIL if any(not r.passed for r in checks) else EXIT_OK
    return EXIT_FAIL if baseline.regressions(checks) else EXIT_OK


def write_footer(outcomes: list[CaseOutcome], baseline: Baseline | None, out: TextIO) -> None:
    broken = [o.case.name for o in outcomes if o.oracle_problem()]
    if broken:
        out.write(f"oracle broken (native run failed): {', '.join(broken)}\n")
    if baseline is None:
        return
    checks = all_checks(outcomes)
    regressions = baseline.regressions(checks)
    if regressions:
        names = ", ".join(r.name for r in regressions[:20])
        more = f" (+{len(regressions) - 20} more)" if len(regressions) > 20 else ""
        out.write(f"regressions ({len(regressions)}): {names}{more}\n")
    fixed = baseline.fixed(checks)
    if fixed:
        out.write(f"{len(fixed)} known failures now pass; run with --update-baseline\n")


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = parse_args(argv)
    cases, helpers = discover(args.cases_dir)
    cases = select_cases(cases, args.filter)
    if not cases:
        err.write(f"no case matches {args.filter!r}\n")
        return EXIT_SETUP
    if args.list:
        for case in cases:
            out.write(f"{case.name}: {' '.join(case.syscalls)}\n")
        return EXIT_OK
    try:
        baseline = None if args.oracle_check else baseline_mod.load(args.baseline)
        outcomes = run_all(args, cases, helpers, err)
    except (SetupError, ValueError, FileNotFoundError) as e:
        err.write(f"linuxabi conformance: {e}\n")
        return EXIT_SETUP
    side_b = "native#2" if other_is_native(args) else "translated"
    write_table(outcomes, baseline, out, side_b=side_b, verbose=args.verbose)
    out.write(summary_line(outcomes) + "\n")
    write_footer(outcomes, baseline, out)
    if args.json:
        mode = "oracle-check" if args.oracle_check else args.translated_cmd
        write_json(args.json, mode, outcomes, baseline)
    if args.update_baseline and baseline is not None:
        families = {case.name for case in cases}
        baseline = baseline.updated(all_checks(outcomes), families)
        baseline_mod.save(baseline, args.baseline)
        out.write(f"baseline written to {args.baseline}\n")
    return exit_status(outcomes, baseline)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
