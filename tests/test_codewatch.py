"""linuxabi/codewatch.py: a warm server's "has a module it loaded changed" (then it stops and its
clients run cold), by inotify, or file by file where inotify cannot be had."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from linuxabi import codewatch
from linuxabi.codewatch import CodeWatch


def _files(tmp_path: Path) -> dict[str, int]:
    (tmp_path / "pkg").mkdir()
    for name in ("a.py", "b.py"):
        (tmp_path / "pkg" / name).write_text("x = 1\n")
    return {str(p): p.stat().st_mtime_ns for p in (tmp_path / "pkg" / "a.py", tmp_path / "pkg" / "b.py")}


@pytest.fixture(params=["inotify", "stat"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stat":
        def no_inotify(nr: int, *args: int) -> int:
            raise OSError(24, "Too many open files")  # (as when the user's instances are used up)

        monkeypatch.setattr(codewatch, "raw_syscall", no_inotify)
    return request.param


@pytest.mark.parametrize("change", ["touched", "rewritten", "replaced", "removed"])
def test_a_changed_module_is_seen_and_stays_seen(tmp_path: Path, how: str, change: str) -> None:
    files = _files(tmp_path)
    watch = CodeWatch(files)
    assert (watch._fd >= 0) == (how == "inotify")
    assert not watch.changed()
    a = tmp_path / "pkg" / "a.py"
    if change == "touched":
        os.utime(a, ns=(0, files[str(a)] + 1_000_000_000))
    elif change == "rewritten":
        a.write_text("x = 2\n")
        os.utime(a, ns=(0, files[str(a)] + 1_000_000_000))  # (a write within the same tick)
    elif change == "replaced":
        (tmp_path / "pkg" / "a.py.new").write_text("x = 3\n")
        os.replace(tmp_path / "pkg" / "a.py.new", a)
    else:
        a.unlink()
    assert watch.changed() and watch.changed()


def test_other_files_beside_the_modules_are_no_change(tmp_path: Path, how: str) -> None:
    watch = CodeWatch(_files(tmp_path))
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "pkg" / ".a.py.swp").write_bytes(b"")
    (tmp_path / "pkg" / "c.py").write_text("")
    assert not watch.changed()


def test_a_change_before_the_watch_began_is_seen(tmp_path: Path, how: str) -> None:
    files = _files(tmp_path)
    os.utime(tmp_path / "pkg" / "b.py", ns=(0, files[str(tmp_path / "pkg" / "b.py")] + 1_000_000_000))
    assert CodeWatch(files).changed()


def test_the_modules_watched_are_ours_as_loaded() -> None:
    import linuxabi.terminal

    loaded = codewatch._loaded_files()
    assert loaded[linuxabi.terminal.__file__] == os.stat(linuxabi.terminal.__file__).st_mtime_ns
    assert all(Path(p).suffix == ".py" for p in loaded)
    assert not any("pytest" in p for p in loaded)
