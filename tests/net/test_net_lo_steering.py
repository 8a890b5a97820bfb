"""net/lo_steering.py: when the uplink's loop hands lo's work to the other CPUs (the policy, fed
figures), the sysfs bitmap it writes, the write itself in a network namespace of its own, and
what happens when it cannot be made."""
from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import net.lo_steering as lo_steering
from net.lo_steering import LoSteering, SteeringPolicy, cpu_mask

REPO = Path(__file__).resolve().parents[2]


def test_it_steers_while_the_loop_limits_and_the_others_have_room() -> None:
    p = SteeringPolicy()
    assert not p.update(0.30, 0.10) and not p.steered      # an idle loop: no gain, some latency
    assert not p.update(0.99, 0.95) and not p.steered      # keep-alive: the other CPU is full
    assert p.update(0.99, 0.45) and p.steered              # Connection: close: the other has room
    assert not p.update(0.99, 0.80) and p.steered          # busier once it takes lo's work: stays
    assert p.update(0.99, 0.95) and not p.steered          # full: back
    assert not p.update(0.99, 0.70) and not p.steered      # (between the thresholds: as it was)
    assert p.update(0.95, 0.60) and p.steered
    assert p.update(0.40, 0.20) and not p.steered          # the load went: latency first again


def test_cpu_sets_are_written_as_sysfs_bitmaps() -> None:
    assert cpu_mask(frozenset({1})) == "00000002"
    assert cpu_mask(frozenset()) == "00000000"
    assert cpu_mask(frozenset({0, 40, 63})) == "80000100,00000001"


def test_steer_sets_lo_of_the_namespace_it_runs_in() -> None:
    code = ("import sys; from net.lo_steering import steer; "
            "assert steer(frozenset({0})); print('steered', flush=True)")
    script = (f"{sys.executable} -c \"{code}\" && mount -t sysfs sysfs /sys && "
              "cat /sys/class/net/lo/queues/rx-0/rps_cpus && "
              f"{sys.executable} -c \"from net.lo_steering import steer; assert steer(frozenset())\" && "
              "cat /sys/class/net/lo/queues/rx-0/rps_cpus")
    r = subprocess.run(["unshare", "-n", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "steered" and int(lines[1].replace(",", ""), 16) == 1 and int(lines[2].replace(",", ""), 16) == 0
    host = Path("/sys/class/net/lo/queues/rx-0/rps_cpus").read_text()
    assert int(host.strip().replace(",", ""), 16) == 0            # the host's lo was not touched


def test_a_steering_it_cannot_make_leaves_lo_alone_and_stops_trying(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "fork refused")   # a process limit reached, say

    monkeypatch.setattr(lo_steering.os, "fork", no_fork)
    assert not lo_steering.steer(frozenset({0}))
    ticks = iter([(0, 0), (10, 100), (20, 200)])           # the other CPUs 10% busy
    monkeypatch.setattr(lo_steering, "busy_ticks", lambda cpus: next(ticks))
    s = LoSteering(frozenset({1}))
    monkeypatch.setattr(lo_steering.time, "thread_time", lambda: 1e9)   # the loop: always busy
    s.tick()
    assert s.failed and not s.steered and s.changes == 0
    s.tick()                                               # and does not try again
    assert s.failed and not s.steered
