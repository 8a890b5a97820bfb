"""Hostile arguments for every translated syscall (tests/syscall_fuzz.c): the translator answers
each with an errno, never with an internal error, and keeps serving the guest afterwards.

Each syscall gets its own forked child making seeded random calls (bad, unmapped, read-only
and kernel-half pointers, unterminated and over-long paths, bad fds, random flags, huge
lengths); a child may end by SIGALRM (a call that blocks as Linux's would, a fifo open say),
never by another signal. execve/execveat are left out (a lucky call would replace the child),
and tkill/tgkill (a lucky one would kill a child or the fuzzer).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from linuxabi.api import Sandbox, SandboxConfig
from syscalls.table import SYSCALLS

SOURCE = Path(__file__).with_name("syscall_fuzz.c")
SKIP = {"execve", "execveat", "tkill", "tgkill"}  # a lucky exec replaces the child; a lucky kill ends one
CALLS = 1500
SIGALRM = 14


def _translated() -> list[int]:
    return [nr for nr, d in sorted(SYSCALLS.items()) if d.handler is not None and d.name not in SKIP]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hostile_arguments_never_break_the_translator(image_copy: Path, tmp_path: Path, seed: int,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    assert shutil.which("gcc"), "gcc is installed by make test"
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "fuzz"), str(SOURCE)], check=True)
    nrs = _translated()
    box = Sandbox(SandboxConfig(root=image_copy))
    code = box.run(["/fuzz", str(seed), str(CALLS), *map(str, nrs)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert box.supervisor is not None and box.supervisor.errors == 0, err
    assert "Traceback" not in err, err
    lines = out.splitlines()
    assert lines[-1] == "alive", out
    ends = dict(line.split(" ", 1) for line in lines[:-1])
    assert set(ends) == {str(nr) for nr in nrs}, out
    bad = {SYSCALLS[int(nr)].name: how for nr, how in ends.items()
           if how != "exit 0" and how != f"signal {SIGALRM}"}
    assert bad == {}, out
