"""Tests of the conformance suite: the cases, the runner, the comparator and the baseline.

The end-to-end tests need root (the native side runs in a chroot) and a static
busybox at /bin/busybox (Debian package busybox-static, installed by the Makefile).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import runner
from conformance.baseline import Baseline, default_reason
from conformance.build import compile_all
from conformance.cases import CASES_DIR, HEADER_NAME, declared_syscalls, discover, matches
from conformance.compare import CheckResult, compare_outputs, duplicate_names, parse_checks
from conformance.execute import RunResult
from conformance.report import CaseOutcome

BUSYBOX = Path("/bin/busybox")
SWAP_FAMILY = "mkdir"
SWAP_CHECK = "mkdir.mkdirat_existing"

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance-cache")


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal rootfs: /bin/busybox with its applet links, /tmp, /etc, /root."""
    if os.geteuid() != 0:
        pytest.fail("the conformance runner needs root (chroot); run the tests as root")
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox missing: install busybox-static (see the Makefile)")
    root = tmp_path_factory.mktemp("image")
    for name in ("bin", "tmp", "etc", "root", "proc"):
        (root / name).mkdir()
    (root / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    return root


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = runner.main(argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def failing(report: dict) -> dict[str, dict]:
    return {c["name"]: c for fam in report["families"] for c in fam["checks"]
            if c["verdict"] != "pass"}


def fake_cases(tmp_path: Path, sources: dict[str, str]) -> Path:
    """A cases dir holding verdict.h and the given C sources."""
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy2(CASES_DIR / HEADER_NAME, cases / HEADER_NAME)
    for name, text in sources.items():
        (cases / f"{name}.c").write_text(text)
    return cases


FLAKY_CASE = """// syscalls: getpid
#include "verdict.h"
int main(void) {
    vd_begin("fake");
    checkf("stable", "ret=0");
    checkf("pid", "pid=%d", getpid());
    return vd_end();
}
"""

BROKEN_CASE = """// syscalls: exit_group
#include "verdict.h"
int main(void) {
    vd_begin("broken");
    checkf("before_crash", "ret=0");
    return 3;
}
"""

# ---------------------------------------------------------------- the cases


def test_every_case_compiles_without_warnings(tmp_path: Path) -> None:
    cases, helpers = discover()
    built = compile_all(cases + helpers, tmp_path)
    assert set(built) == {p.name for p in cases + helpers}
    warnings = {name: b.warnings for name, b in built.items() if b.warnings.strip()}
    assert warnings == {}


def test_cases_cover_the_targets() -> None:
    cases, helpers = discover()
    assert 20 <= len(cases) <= 40
    assert [h.name for h in helpers] == ["_exec_helper"]
    for case in cases:
        assert case.syscalls, f"{case.name}.c has no '// syscalls:' line"
    assert len({s for c in cases for s in c.syscalls}) >= 80


def test_declared_syscalls_parsing() -> None:
    text = "// syscalls: open openat\n/* x */\n// syscalls: openat creat\nint x;"
    assert declared_syscalls(text) == ("open", "openat", "creat")


def test_oracle_is_deterministic(busybox_image: Path, cache_dir: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "oracle.json"
    rc, out, err = run_main(["--oracle-check", "--root", str(busybox_image),
                             "--cache-dir", str(cache_dir), "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    broken = {f["family"]: (f["oracle_problem"], f["native_stderr"])
              for f in report["families"] if f["oracle_problem"]}
    assert broken == {}
    assert failing(report) == {}, out
    assert rc == 0, out + err
    assert report["summary"]["total"] >= 600
    assert len(report["summary"]["syscalls"]) >= 80
    assert "conformance: " in out.splitlines()[-1]


def test_list_and_filter(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["--list", "--filter", "open,stat"])
    assert rc == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["open", "stat"]
    assert matches("signal", "sig*") and not matches("signal", "sig")
    rc, _, err = run_main(["--list", "--filter", "no-such-family"])
    assert rc == 2 and "no case matches" in err

# ---------------------------------------------------------------- the comparator


NATIVE = """\
some banner line
check open.a: ret=0
check open.b: ret=-1 errno=EEXIST
check open.c: mode=f0644 size=5
check open.d: ret=fd
"""


def test_identical_outputs_all_pass() -> None:
    results = compare_outputs(NATIVE, NATIVE)
    assert [r.name for r in results] == ["open.a", "open.b", "open.c", "open.d"]
    assert all(r.passed for r in results)


def test_one_changed_errno_reports_only_that_check() -> None:
    translated = NATIVE.replace("errno=EEXIST", "errno=EACCES")
    failures = [r for r in compare_outputs(NATIVE, translated) if not r.passed]
    assert failures == [CheckResult("open.b", "check open.b: ret=-1 errno=EEXIST",
                                    "check open.b: ret=-1 errno=EACCES")]


def test_missing_and_extra_checks_fail() -> None:
    translated = NATIVE.replace("check open.c: mode=f0644 size=5\n", "") + "check open.z: ret=0\n"
    failures = {r.name: r for r in compare_outputs(NATIVE, translated) if not r.passed}
    assert set(failures) == {"open.c", "open.z"}
    assert failures["open.c"].translated is None
    assert failures["open.z"].native is None


def test_non_check_lines_and_order_are_ignored() -> None:
    lines = NATIVE.splitlines()
    shuffled = "\n".join(["noise", lines[4], "check-not-a-verdict", lines[2], lines[1], lines[3]])
    assert all(r.passed for r in compare_outputs(NATIVE, shuffled))


def test_truncated_output_fails_the_rest() -> None:
    truncated = "\n".join(NATIVE.splitlines()[:3])
    failures = [r.name for r in compare_outputs(NATIVE, truncated) if not r.passed]
    assert failures == ["open.c", "open.d"]


def test_duplicate_check_names_are_kept_and_flagged() -> None:
    text = "check x.a: 1\ncheck x.a: 2\n"
    assert list(parse_checks(text)) == ["x.a", "x.a#2"]
    assert duplicate_names(text) == ["x.a"]

# ---------------------------------------------------------------- the baseline


def outcome(name: str, native: str, translated: str, native_rc: int = 0) -> CaseOutcome:
    from conformance.cases import Program

    return CaseOutcome(Program(name, Path(f"{name}.c"), ("open",)),
                       RunResult(native, "", native_rc), RunResult(translated, "", 0),
                       compare_outputs(native, translated))


def test_a_run_near_its_time_limit_is_named_in_the_table() -> None:
    # sigdeliver took 14-27 s of its 30 s under translation, unnoticed until CI timed it out.
    from dataclasses import replace

    from conformance.report import write_table

    def timed(name: str, seconds: float) -> CaseOutcome:
        o = outcome(name, NATIVE, NATIVE)
        return replace(o, translated=replace(o.translated, seconds=seconds, limit=30.0))

    out = io.StringIO()
    write_table([timed("open", 14.2), timed("link", 9.9)], Baseline(), out)
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
    assert lines["open"].endswith("translated slow: 14.2 s of its 30 s limit")
    assert "slow" not in lines["link"]


def test_known_failure_does_not_fail_the_run() -> None:
    changed = NATIVE.replace("errno=EEXIST", "errno=EACCES")
    outcomes = [outcome("open", NATIVE, changed)]
    assert runner.exit_status(outcomes, Baseline({"open.b": "swap test"})) == 0
    assert runner.exit_status(outcomes, Baseline()) == 1


def test_regression_fails_even_with_other_known_failures() -> None:
    changed = NATIVE.replace("errno=EEXIST", "errno=EACCES").replace("f0644", "f0600")
    outcomes = [outcome("open", NATIVE, changed)]
    baseline = Baseline({"open.b": "known"})
    assert [r.name for r in baseline.regressions(outcomes[0].checks)] == ["open.c"]
    assert runner.exit_status(outcomes, baseline) == 1


def test_broken_oracle_fails_the_run() -> None:
    outcomes = [outcome("open", NATIVE, NATIVE, native_rc=1)]
    assert outcomes[0].oracle_problem() == "native exit 1"
    assert runner.exit_status(outcomes, Baseline()) == 1


def test_baseline_update_keeps_reasons_and_other_families() -> None:
    changed = NATIVE.replace("errno=EEXIST", "errno=EACCES").replace("f0644", "f0600")
    results = compare_outputs(NATIVE, changed)
    old = Baseline({"open.b": "kept reason", "open.gone": "stale", "stat.x": "other family"})
    new = old.updated(results, {"open"})
    assert new.known_failures == {
        "open.b": "kept reason",
        "open.c": "translated: mode=f0600 size=5",
        "stat.x": "other family",
    }
    assert default_reason(CheckResult("a.b", "check a.b: 1", None)) == \
        "missing under translation"


def test_baseline_end_to_end(busybox_image: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A check whose output differs between runs is a regression until the
    baseline lists it; --update-baseline records it; a crashing native case
    always fails the run."""
    cases = fake_cases(tmp_path, {"fake": FLAKY_CASE, "broken": BROKEN_CASE})
    baseline = tmp_path / "baseline.json"
    common = ["--root", str(busybox_image), "--cache-dir", str(cache_dir),
              "--cases-dir", str(cases), "--baseline", str(baseline),
              "--translated-cmd", "native"]
    rc, out, _ = run_main([*common, "--filter", "fake"])
    assert rc == 1 and "regressions (1): fake.pid" in out
    assert "conformance: 1/2 checks pass, 1 syscalls" in out
    rc, out, _ = run_main([*common, "--filter", "fake", "--update-baseline"])
    assert rc == 0
    assert json.loads(baseline.read_text())["known_failures"] == {
        "fake.pid": "translated: " + _pid_line_detail(out)}
    rc, out, _ = run_main([*common, "--filter", "fake"])
    assert rc == 0, out
    rc, out, _ = run_main([*common, "--filter", "broken"])
    assert rc == 1 and "ORACLE BROKEN: native exit 3" in out


def _pid_line_detail(table: str) -> str:
    line = next(s for s in table.splitlines() if "native#2:" in s)
    return line.split(": ", 2)[2]

# ---------------------------------------------------------------- under translation


def test_swapped_errno_is_reported_exactly(busybox_image: Path, cache_dir: Path,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """LINUXABI_SWAP_ERRNO=mkdirat:EEXIST:EACCES makes the translator's mkdirat
    handler answer EACCES where it would answer EEXIST: exactly one check of the
    mkdir family (mkdirat_existing) turns from pass to fail."""
    empty = tmp_path / "empty-baseline.json"
    common = ["--root", str(busybox_image), "--cache-dir", str(cache_dir),
              "--filter", SWAP_FAMILY, "--baseline", str(empty)]
    monkeypatch.delenv("LINUXABI_SWAP_ERRNO", raising=False)
    plain_json, swapped_json = tmp_path / "plain.json", tmp_path / "swapped.json"
    run_main([*common, "--json", str(plain_json)])
    monkeypatch.setenv("LINUXABI_SWAP_ERRNO", "mkdirat:EEXIST:EACCES")
    rc, out, _ = run_main([*common, "--json", str(swapped_json)])

    plain = failing(json.loads(plain_json.read_text()))
    swapped = failing(json.loads(swapped_json.read_text()))
    assert SWAP_CHECK not in plain, plain.get(SWAP_CHECK)
    assert set(swapped) - set(plain) == {SWAP_CHECK}, out
    assert set(plain) - set(swapped) == set()
    assert swapped[SWAP_CHECK]["native"] == f"check {SWAP_CHECK}: ret=-1 errno=EEXIST"
    assert swapped[SWAP_CHECK]["translated"] == f"check {SWAP_CHECK}: ret=-1 errno=EACCES"
    assert rc == 1
