"""Placement (linuxabi/host/placement.py): a sandbox runs on the translator's CPU while that is
enough and spreads when its guests compete for it; guests see their own CPU sets throughout.

The policy is tested as the state machine it is (fed a clock and counters); the rest with real
guests, read from the host side (/proc/PID/status of the guest's host processes)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from forked import in_child
from host_tasks import host_tasks_with, wait_for
from oracle import REPO, run_native, run_translated

from linuxabi.host.placement import PlacementPolicy
from vfs.procfs_text import render_list, render_mask

CPUS = frozenset(os.sched_getaffinity(0))
COMPACTS = len(CPUS) > 1  # with one CPU there is nothing to place


# ---- the policy ------------------------------------------------------------------------------

def test_a_compact_sandbox_spreads_once_its_guests_are_preempted_often_over_a_whole_window() -> None:
    p = PlacementPolicy()
    assert p.compact and p.due(10.0)
    assert not p.observe(10.0, preempted=1000)  # the window starts
    assert not p.due(10.1)
    assert not p.observe(10.1, preempted=1100)  # often, but the window is not over
    assert p.compact and p.due(10.25)
    assert p.observe(10.25, preempted=1150) and not p.compact  # 600 per second


def test_a_compact_sandbox_stays_compact_while_its_guests_block_of_their_own_accord() -> None:
    p = PlacementPolicy()
    for i in range(30):
        assert not p.observe(i * 0.1, preempted=i * 10)  # 100 per second
    assert p.compact


def test_a_spread_sandbox_compacts_once_its_cpus_are_mostly_idle() -> None:
    p = PlacementPolicy(compact=False)
    assert not p.observe(0.0, busy=50.0)
    assert not p.observe(0.5, busy=51.0)
    assert not p.observe(1.0, busy=51.9)  # 1.9 CPUs busy over the second: stays spread
    assert not p.compact
    assert not p.observe(1.0, busy=51.9)
    assert p.observe(2.0, busy=52.5) and p.compact  # 0.6 CPUs


def test_the_policy_ignores_the_other_modes_counter() -> None:
    p = PlacementPolicy()
    assert not p.observe(0.0, busy=1.0)  # busy is what a spread sandbox watches
    assert not p.observe(5.0, busy=9.0)
    assert p.compact and p.due(5.0)


def test_a_thread_is_pinned_for_a_wake_up_only_while_spread_and_gets_its_own_set_back() -> None:
    from linuxabi.host.notify import cpu_mask
    from linuxabi.host.placement import Placement

    p = Placement(frozenset({0, 1}), 0)
    assert p.compact and p.mask_after_pin(7) is None  # compact: on the translator's CPU already
    p.policy.compact = False
    p._wanted[8] = frozenset({1})
    assert p.mask_after_pin(7) == cpu_mask({0, 1}) and p.mask_after_pin(8) == cpu_mask({1})
    assert Placement(frozenset({3}), 3).mask_after_pin(7) is None  # one CPU: nothing to pin


# ---- what /proc/PID/status shows -----------------------------------------------------------

def test_cpu_sets_are_written_as_linux_writes_them() -> None:
    assert render_mask(frozenset({0, 1}), b"1") == b"3"
    assert render_mask(frozenset({0, 1, 33}), b"00000000,00000001") == b"00000002,00000003"
    assert render_mask(frozenset(range(8)), b"01") == b"ff"
    assert render_list(frozenset({0, 1, 2, 5, 7, 8})) == b"0-2,5,7-8"
    assert render_list(frozenset({3})) == b"3"


# ---- real guests ------------------------------------------------------------------------------

def _host_cpus(pid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(pid))


def _say(proc: subprocess.Popen[bytes], line: bytes) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line)
    proc.stdin.flush()


def test_guests_see_their_own_cpu_sets_as_natively(default_image: Path) -> None:
    first = min(CPUS)
    script = ("nproc; grep Cpus_allowed_list /proc/self/status; taskset -p $$ | sed 's/.*: //'; "
              f"taskset -c {first} sh -c 'nproc; grep Cpus_allowed_list /proc/self/status'; nproc")
    native = run_native(["/bin/sh", "-c", script], default_image)
    translated = run_translated(["/bin/sh", "-c", script])
    assert native.returncode == 0, native.stderr
    assert translated.returncode == 0, translated.stderr
    assert translated.stdout == native.stdout
    lines = translated.stdout.split(b"\n")
    assert lines[0] == str(len(CPUS)).encode() and lines[3] == b"1"


def test_a_sandbox_keeps_to_one_cpu_until_its_guests_compete_then_spreads() -> None:
    """Where the guest's processes run, seen from the host: one CPU while idle, every CPU once
    two busy loops compete for it, one CPU again after they end."""
    marker = "41.0271"
    script = ("sleep 30.5 & read start; while :; do :; done & b1=$!; while :; do :; done & b2=$!; "
              f"read stop; kill $b1 $b2; sleep {marker}")
    cmd = [sys.executable, "-m", "linuxabi", "run", "--", "/bin/sh", "-c", script]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        sleeper = wait_for(lambda: host_tasks_with("sleep\x0030.5"), 30)
        assert sleeper, "the guest did not start"
        if not COMPACTS:  # one CPU: every thread keeps it
            assert _host_cpus(sleeper[0]) == CPUS
            return
        assert len(_host_cpus(sleeper[0])) == 1
        # Two busy loops make each other wait for that CPU: the sandbox spreads (it looks every 0.2 s).
        _say(proc, b"start\n")
        assert wait_for(lambda: _host_cpus(sleeper[0]) == CPUS, 20), "never spread"
        _say(proc, b"stop\n")
        last = wait_for(lambda: host_tasks_with(f"sleep\x00{marker}"), 20)
        assert last, "the loops were not stopped"
        # Idle again: compact within a couple of one-second windows, on a single CPU.
        assert wait_for(lambda: len(_host_cpus(last[0])) == 1, 20), "never compacted again"
        assert _host_cpus(sleeper[0]) == _host_cpus(last[0])
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


def test_a_storm_of_opens_keeps_the_sandbox_compact() -> None:
    """Each fd install wakes the translator, which takes the CPU back from the guest: an
    involuntary switch of the guest, but no competition. A guest opening files in a loop (its
    fds installed by the cache's C path, and by Python's where the cache is off) stays on one CPU."""
    if not COMPACTS:
        return
    marker = "30.5171"
    storm = "i=0; while [ $i -lt 20000 ]; do read x < /etc/passwd; i=$((i+1)); done"  # ~1 s
    for trace in (False, True):  # (the tracer turns the cache off: every open through Python)
        script = f"sleep {marker} & read go; {storm}; echo done"
        cmd = [sys.executable, "-m", "linuxabi", *(["trace", "-o", os.devnull] if trace else ["run"]),
               "--", "/bin/sh", "-c", script]
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            sleeper = wait_for(lambda: host_tasks_with(f"sleep\x00{marker}"), 30)
            assert sleeper, "the guest did not start"
            _say(proc, b"go\n")
            seen = set()
            while proc.poll() is None:  # the sleeper's set is the sandbox's mode
                try:
                    seen.add(_host_cpus(sleeper[0]))
                except ProcessLookupError:  # the sandbox is ending
                    break
                time.sleep(0.02)
            proc.wait(timeout=30)
            assert proc.stdout is not None and proc.stdout.read() == b"done\n"
            assert len(seen) >= 1 and all(len(cpus) == 1 for cpus in seen), (trace, seen)
        finally:
            with contextlib.suppress(ProcessLookupError):  # (ended already, as it should)
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def test_a_served_child_claims_its_cpu_and_the_next_spare_prepares_away_from_it() -> None:
    from linuxabi.host import placement

    def claim() -> bytes:
        cpu = placement.claim_home()
        pinned = sorted(os.sched_getaffinity(0))
        p = placement.Placement.for_sandbox(os.getpid())  # (this process stands in for the guest)
        return repr((cpu, pinned, p.home, sorted(p.translator_cpus))).encode()

    cpu, pinned, home, translator = eval(in_child(claim))  # noqa: S307 - our own repr
    if len(CPUS) == 1:
        assert cpu == -1 and pinned == sorted(CPUS)
        return
    assert pinned == [cpu] and home == cpu and translator == sorted(CPUS)

    def prepare() -> bytes:
        with placement.away_from(cpu):
            inside = sorted(os.sched_getaffinity(0))
        return repr((inside, sorted(os.sched_getaffinity(0)))).encode()

    inside, after = eval(in_child(prepare))  # noqa: S307
    assert inside == sorted(CPUS - {cpu}) and after == sorted(CPUS)
