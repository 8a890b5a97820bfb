"""The benchmark harness measures what it claims (native runner only, so these tests do not
depend on the translator): twice the work reads as about twice the time, the microbench parser,
statistics, table and ratios are right on synthetic samples, history appends and reads back,
and a failing run is reported as a failure, never as a figure."""
from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the pytest script (unlike `python -m pytest`) omits the repo root
    sys.path.insert(0, str(REPO))

from bench import history, report  # noqa: E402
from bench.build import microbench_binary, prepare_image  # noqa: E402
from bench.ops import micro, parse_microbench, select, workload  # noqa: E402
from bench.runner import main, measure  # noqa: E402
from bench.runners import RUNNERS, Sample, run_sample  # noqa: E402

NATIVE = RUNNERS["native"]
needs_native = pytest.mark.skipif(NATIVE.unavailable() is not None or shutil.which("chroot") is None,
                                  reason="the native runner needs root and chroot")


@pytest.fixture(scope="module")
def native_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from linuxabi.image import default_image

    return prepare_image(default_image(), tmp_path_factory.mktemp("bench") / "native", microbench_binary(),
                         dev_nodes=True)


def _paired_ratio(samples: list[Sample], slow: str, fast: str) -> float:
    """Median over rounds of slow/fast within the same round: the harness interleaves the ops
    of a round, so pairing cancels drift of the machine's load (other tests, other users)."""
    assert all(s.error is None and s.seconds and s.seconds > 0 for s in samples), samples
    t = {(s.op, s.round): s.seconds for s in samples if s.seconds}
    rounds = sorted({s.round for s in samples})
    return statistics.median(t[slow, r] / t[fast, r] for r in rounds)


def _count_to(n: int) -> str:
    # One CPU-bound process: its wall time stays proportional to its work when other jobs load
    # the machine, which a pipeline's (`seq N | wc -l`, scheduling-bound) does not.
    return f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); done; echo $i"


@needs_native
def test_twice_the_work_measures_about_twice_as_long_workload(native_image: Path) -> None:
    # Large enough that the fixed cost of starting the runner (namespaces, chroot, sh: ~20 ms)
    # cannot pull a doubled loop's ratio below the bound.
    ops = [workload("count_150k", _count_to(150000), expect="150000"),
           workload("count_300k", _count_to(300000), expect="300000")]
    samples = measure(ops, [NATIVE], {"native": native_image}, rounds=9, quick=False)
    # A harness that measured nothing would read ~1.0; on a loaded 2-core machine a doubled
    # loop reads 1.4-2.1 (wall time), hence the lower bound.
    assert 1.3 <= _paired_ratio(samples, "count_300k", "count_150k") <= 3.0


@needs_native
def test_twice_the_entries_measures_about_twice_as_long_microbench(native_image: Path) -> None:
    ops = [micro("getdents_1000", 150), micro("getdents_2000", 150)]
    samples = measure(ops, [NATIVE], {"native": native_image}, rounds=9, quick=False)
    assert {s.iters for s in samples} == {150}  # the guest did every iteration it was asked for
    # twice the entries: about twice the time (cache effects make it a little more than 2x)
    assert 1.3 <= _paired_ratio(samples, "getdents_2000", "getdents_1000") <= 3.2
    # The table's figure, the ratio of medians, says the same.
    summary = report.summarize(samples)
    assert 1.3 <= summary["getdents_2000"]["native"].median / summary["getdents_1000"]["native"].median <= 3.2


@needs_native
def test_failures_are_reported_not_measured(native_image: Path) -> None:
    s = run_sample(NATIVE, workload("fails", "exit 3"), native_image, 0, quick=True, max_seconds=0.1)
    assert s.seconds is None and s.error and "exit status 3" in s.error
    s = run_sample(NATIVE, workload("wrong", "echo 12", expect="13"), native_image, 0, quick=True, max_seconds=0.1)
    assert s.seconds is None and "lacks" in (s.error or "")
    s = run_sample(NATIVE, micro("no_such_op", 10), native_image, 0, quick=True, max_seconds=0.1)
    assert s.seconds is None and "unknown op" in (s.error or "")


def test_parse_microbench() -> None:
    r = parse_microbench("warming up\nop=stat iters=1000 ns_per_op=1234.5\n")
    assert r is not None and (r.op, r.iters, r.ns_per_op) == ("stat", 1000, 1234.5)
    r = parse_microbench("op=getdents_1000 iters=7 ns_per_op=2.5e+05")
    assert r is not None and r.ns_per_op == 250000.0
    assert parse_microbench("") is None
    assert parse_microbench("op=stat iters=x ns_per_op=1") is None
    assert parse_microbench("microbench: stat: No such file or directory\n") is None


def _samples(op: str, runner: str, values: list[float | None]) -> list[Sample]:
    return [Sample(op, runner, i, v, error=None if v is not None else "boom") for i, v in enumerate(values)]


def test_statistics_table_and_ratios() -> None:
    samples = (_samples("a", "native", [3e-6, 1e-6, 2e-6]) + _samples("a", "linuxabi", [10e-6, 300e-6, 20e-6])
               + _samples("b", "native", [1.0, 1.0]) + _samples("b", "linuxabi", [None, 4.0])
               + _samples("c", "native", [1e-3]) + _samples("c", "linuxabi", [None, None]))
    summary = report.summarize(samples)
    a = summary["a"]["linuxabi"]
    assert (a.min, a.median, a.max, a.n, a.failed) == (10e-6, 20e-6, 300e-6, 3, 0)
    assert report.ratio(summary, "a", "linuxabi") == pytest.approx(10.0)
    assert report.ratio(summary, "a", "native") == pytest.approx(1.0)
    assert report.ratio(summary, "b", "linuxabi") == pytest.approx(4.0)  # the failed round is left out
    assert summary["b"]["linuxabi"].failed == 1
    assert report.ratio(summary, "c", "linuxabi") is None
    assert report.geomean([10.0, 4.0, 0.0]) == pytest.approx(40 ** 0.5)

    table = report.format_table(summary, ["a", "b", "c"], ["native", "linuxabi", "runsc"],
                                {"runsc": "not installed"}, kinds={"a": "micro", "b": "micro", "c": "micro"})
    row_a = next(ln for ln in table.splitlines() if ln.startswith("a "))
    assert row_a.split()[1:] == ["native", "1", "us", "2", "us", "3", "us", "3", "1.00x"]
    assert "20 us" in table and "10.00x" in table and "4.00x" in table
    assert "1 failed: boom" in table and "failed: boom" in table and "not installed" in table
    assert "geomean micro" in table and "6.32x" in table  # sqrt(10 * 4)


def test_history_appends_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.json"
    assert history.load(path) == []
    for commit, native, translated in (("abc1234", 1e-6, 10e-6), ("abc1234", 1e-6, 12e-6), ("def5678", 1e-6, 5e-6)):
        summary = report.summarize(_samples("stat", "native", [native]) + _samples("stat", "linuxabi", [translated]))
        history.append(path, history.make_entry(summary, ["native", "linuxabi"], commit, quick=False))
    entries = history.load(path)
    assert [e["commit"] for e in entries] == ["abc1234", "abc1234", "def5678"]
    assert entries[2]["median_s"]["stat"] == {"native": 1e-6, "linuxabi": 5e-6}
    assert entries[2]["ratio"]["stat"] == {"linuxabi": pytest.approx(5.0)}
    trend = history.trend(entries)
    linuxabi_row = next(ln for ln in trend.splitlines() if "linuxabi" in ln)
    # The median per commit: abc1234 ran twice (10 and 12 us).
    assert "abc1234: 11 us (11.00x)" in linuxabi_row and "def5678: 5 us (5.00x)" in linuxabi_row
    assert linuxabi_row.index("abc1234") < linuxabi_row.index("def5678")
    path.write_text("{not json")
    with pytest.raises(history.HistoryError):
        history.load(path)


def test_op_selection() -> None:
    assert [op.name for op in select("stat,workloads")][:2] == ["stat", "startup_true"]
    assert select("getdents_500")[0].guest_argv(quick=False, max_seconds=1.0)[1:3] == ["getdents_500", "2000"]
    with pytest.raises(ValueError):
        select("nope")


@needs_native
def test_cli_end_to_end_native(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.runners
    import net.compiled

    real_which = shutil.which
    monkeypatch.setattr(bench.runners.shutil, "which", lambda name: None if name == "runsc" else real_which(name))
    out, hist = tmp_path / "samples.json", tmp_path / "history.json"
    rc = main(["--quick", "--compare", "native,runsc", "--ops", "getpid,seq_20000_wc", "--json", str(out),
               "--history-file", str(hist)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "runsc" in text and "not installed" in text
    doc = json.loads(out.read_text())
    assert {(s["op"], s["runner"]) for s in doc["samples"]} == {("getpid", "native"), ("seq_20000_wc", "native")}
    stack = "compiled" if net.compiled.active() else "plain Python"   # (compiled after make setup)
    assert doc["net_stack"] == stack and f"the network stack {stack}" in text
    assert all(s["error"] is None and s["seconds"] > 0 for s in doc["samples"])
    assert len(history.load(hist)) == 1
    assert main(["--history", "--history-file", str(hist)]) == 0
    assert "no benchmark history" in capsys.readouterr().out  # --quick runs are left out of the trend
    assert main(["--compare", "bogus"]) == 2
    assert main(["--ops", "bogus", "--compare", "native"]) == 2


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    summary = report.summarize(_samples("a", "native", [1.0]) + _samples("a", "linuxabi", [3.0]))
    path = tmp_path / "plot.png"
    report.plot(summary, ["a"], ["native", "linuxabi"], path)
    assert path.read_bytes()[:4] == b"\x89PNG"



def test_server_ops_apply_to_their_runners_only() -> None:
    nginx_op = next(op for op in select("servers") if op.name == "nginx_keepalive")
    assert nginx_op.runners == ("native", "linuxabi")
    assert measure([nginx_op], [RUNNERS["proot"]], {"proot": Path("/nonexistent")}, rounds=2, quick=True) == []
    summary = report.summarize(_samples("nginx_keepalive", "native", [1e-5]) +
                               _samples("nginx_keepalive", "linuxabi", [8e-5]))
    table = report.format_table(summary, ["nginx_keepalive"], ["native", "linuxabi", "proot"],
                                kinds={"nginx_keepalive": "server"}, only={"nginx_keepalive": nginx_op.runners})
    assert "n/a (native and linuxabi only)" in table
    assert "8.00x" in table and "geomean server" in table


def test_the_warm_runner_measures_workloads_through_a_server_it_starts(tmp_path: Path) -> None:
    from bench.runners import WarmServer
    from linuxabi import client_build

    if not client_build.built():
        client_build.build()
    warm = RUNNERS["warm"]
    ops = {op.kind: op for op in select("all")}
    assert warm.applies_to(ops["workload"]) and not warm.applies_to(ops["micro"])
    assert not warm.applies_to(ops["server"])
    assert measure([ops["micro"]], [warm], {"warm": Path("/nonexistent")}, rounds=1, quick=True) == []
    table = report.format_table(report.summarize([]), [ops["micro"].name], ["warm"],
                                kinds={ops["micro"].name: "micro"}, runner_kinds={"warm": ("workload",)})
    assert "n/a (workloads only)" in table
    with WarmServer(tmp_path / "s.sock") as server:
        runner = server.runner(warm)
        assert runner.env is not None and runner.env["LINUXABI_SERVER"] == str(tmp_path / "s.sock")
        command = runner.command(Path("/ignored"), ["true"])
        assert command[0] == str(client_build.target())  # the C client, as `make setup` builds it
        r = subprocess.run(command[:command.index("--root")] + ["--", "sh", "-c", "exit 6"],
                           env=runner.env, cwd=runner.cwd, timeout=60)
        assert r.returncode == 6
        proc = server.proc
    assert proc is not None and proc.returncode == 0  # stopped (SIGTERM, by its pid) and reaped
    assert not (tmp_path / "s.sock").exists()


def test_servers_that_cannot_run_are_reported_not_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.nginx

    monkeypatch.setattr(bench.nginx.shutil, "which", lambda name: None)
    rc = main(["--quick", "--compare", "native", "--ops", "nginx_close,getpid", "--no-record",
               "--json", str(tmp_path / "s.json")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "nginx_close: not measured: wrk is not installed" in text
    assert {s["op"] for s in json.loads((tmp_path / "s.json").read_text())["samples"]} == {"getpid"}


@needs_native
def test_a_server_sample_is_the_time_per_request() -> None:
    from bench import nginx

    s = nginx.sample("nginx_keepalive", "native", 0, close=False, quick=True)
    assert s.error is None and s.seconds is not None and s.iters is not None
    rate = 1 / s.seconds  # wrk's requests per second...
    assert 0.5 < s.iters / (rate * nginx.QUICK_SECONDS) < 2.0  # ...agrees with its request count


@needs_native
def test_native_micro_ops_have_a_network_namespace_of_their_own() -> None:
    # As each sandbox does: connections of earlier rounds (TIME-WAITs in the host's namespace)
    # must not slow a native round's connects.
    probe = ("import socket; l = socket.create_server(('127.0.0.1', 0)); "
             "c = socket.create_connection(l.getsockname()); "
             "print(sorted(x.split(':')[0].strip() for x in open('/proc/net/dev').read().splitlines()[2:]))")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "own_netns.py"), sys.executable, "-c", probe],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['lo']"  # the loopback only, and up (the connect worked)
    cmd = NATIVE.command(Path("/img"), ["/bench/microbench", "stat", "10", "1"])
    assert cmd[1:] == [str(REPO / "bench" / "own_netns.py"), "chroot", "/img", "/bench/microbench", "stat", "10", "1"]
    assert NATIVE.command(Path("/img"), ["/bin/sh", "-c", "true"]) == ["chroot", "/img", "/bin/sh", "-c", "true"]


@needs_native
def test_a_round_trip_across_the_link_is_measured_on_both_sides(native_image: Path, tmp_path: Path) -> None:
    # natively over a veth pair, under linuxabi through its own stack and a TAP; both against
    # the echo peer in a namespace the sample makes and removes
    from bench import link
    from bench.ops import select as pick

    assert link.prepare() is None, link.prepare()
    op = pick("tcp_rtt_link")[0]
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    from linuxabi.image import default_image

    translated_image = prepare_image(default_image(), tmp_path / "linuxabi", microbench_binary(), dev_nodes=False)
    for runner, image in ((NATIVE, native_image), (RUNNERS["linuxabi"], translated_image)):
        s = run_sample(runner, op, image, 0, quick=True, max_seconds=2.0)
        assert s.error is None and s.seconds is not None and s.seconds > 0, s
        assert s.iters == op.quick_iters
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == before


def test_a_warm_sample_is_followed_by_a_quiet_server(tmp_path: Path) -> None:
    """After a warm sample the harness waits until the server's processes use no CPU (its next
    spare is made once a run is over), so that the next sample has the CPUs to itself."""
    from bench.runners import WarmServer, _cpu_ns

    server = WarmServer(tmp_path / "s.sock")
    # A stand-in process tree: a child that computes for a while, then only sleeps.
    server.proc = subprocess.Popen(["sh", "-c", "sh -c 'i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done; "
                                    "sleep 30' & wait"], start_new_session=True)
    try:
        busy = _cpu_ns(server.proc.pid)
        server.wait_quiet(interval=0.05, longest=30)
        quiet = _cpu_ns(server.proc.pid)
        assert quiet > busy  # it waited while the child computed...
        subprocess.run(["sleep", "0.2"])
        assert _cpu_ns(server.proc.pid) == quiet  # ...and returned once nothing did
    finally:
        os.killpg(server.proc.pid, signal.SIGKILL)  # (its group: the child too)
        server.proc.wait()
