"""HostScratch: the translator's private host directory, and the removal of those that
translators killed with SIGKILL could not remove themselves."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from vfs.scratch import HostScratch


def _scratch_dirs(parent: Path) -> set[str]:
    return {p.name for p in parent.iterdir() if p.name.startswith("linuxabi-vfs-")}


def test_a_closed_scratch_leaves_nothing(tmp_path: Path) -> None:
    s = HostScratch(str(tmp_path))
    assert oct(os.stat(s.path).st_mode & 0o777) == "0o700"
    s.make_fifo()
    os.close(s.open(s.make_dir(), os.O_RDONLY | os.O_DIRECTORY))
    s.close()
    assert list(tmp_path.iterdir()) == []


def test_the_scratch_of_a_killed_translator_is_removed_by_the_next(tmp_path: Path) -> None:
    code = ("import sys, time; from vfs.scratch import HostScratch; s = HostScratch(sys.argv[1]); "
            "s.make_fifo(); s.make_dir(); print(s.path, flush=True); time.sleep(60)")
    killed = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        left = Path(killed.stdout.readline().strip())  # type: ignore[union-attr]
        live = HostScratch(str(tmp_path))  # its owner is alive: kept
        assert _scratch_dirs(tmp_path) == {left.name, Path(live.path).name}
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert left.exists() and len(list(left.iterdir())) == 2  # SIGKILL: nobody cleaned up
    again = HostScratch(str(tmp_path))
    assert _scratch_dirs(tmp_path) == {Path(live.path).name, Path(again.path).name}  # the live one stays
    again.close()
    live.close()
    assert list(tmp_path.iterdir()) == []
