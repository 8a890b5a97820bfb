"""What keeps linuxabi's start-up short without changing behaviour: the compiled libc
declarations, the ELF verdicts that outlive a sandbox, the kept filter program, and a run
that ends without the interpreter's teardown."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linuxabi.abi import errno as E
from linuxabi.host import filter as seccomp_filter
from linuxabi.host import libc, libc_decls
from syscalls import elfverdicts
from syscalls.elfverdicts import ElfVerdicts

STATIC = Path("/bin/busybox")  # busybox-static, which make test installs
DYNAMIC = Path(shutil.which("true") or "/bin/true")


def test_compiled_libc_declarations_match_their_source(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.py"
    libc_decls.generate(fresh)
    assert libc_decls.GENERATED.read_text() == fresh.read_text(), \
        "run `python -m linuxabi.host.libc_decls` after changing the declarations"


def test_compiled_libc_calls_the_kernel() -> None:
    assert libc.raw_syscall(39) == os.getpid()  # getpid
    with pytest.raises(OSError) as e:
        libc.raw_syscall(3, 10_000)  # close of a descriptor that is not open
    assert e.value.errno == E.EBADF


def test_cli_start_up_loads_neither_pycparser_nor_the_image_builder() -> None:
    code = ("import sys, linuxabi.api, linuxabi.cli; "
            "print(sorted(m for m in ('pycparser', 'cffi.cparser', 'linuxabi.images.build', 'elftools') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_default_run_loads_none_of_the_modules_it_does_not_need() -> None:
    """OpenSSL's hashlib (CPython's own SHA-256 does), tomllib (the default policy is kept
    parsed), shutil (argparse wants it only for the terminal's width) and secrets: each a few
    milliseconds of every cold start."""
    code = ("import os, sys, linuxabi.cli as cli\n"
            "real_exit = os._exit\n"
            "def done(code):\n"
            "    print(sorted(m for m in ('_hashlib', 'hashlib', 'tomllib', 'shutil', 'secrets') if m in sys.modules))\n"
            "    sys.stdout.flush()\n"
            "    real_exit(code)\n"
            "os._exit = done\n"
            "cli.main(['run', '--', 'true'])\n"
            "done(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_kept_pieces_agree_with_what_they_stand_for() -> None:
    import hashlib
    import tomllib

    from caps.digest import sha256_hex
    from caps.policy import DEFAULT_POLICY_TOML, default_policy_doc

    assert default_policy_doc() == tomllib.loads(DEFAULT_POLICY_TOML)
    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    # The terminal's width, as argparse's own formatter finds it (COLUMNS first).
    for columns in ("50", "200", "", "junk"):
        env = dict(os.environ, COLUMNS=columns)
        code = ("import argparse, linuxabi.cli as c; "
                "print(c._Formatter('x')._width, argparse.HelpFormatter('x')._width)")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        ours, theirs = out.stdout.split()
        assert ours == theirs, columns


def test_kept_filter_is_what_libseccomp_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seccomp_filter.build_filter.cache_clear()
    try:
        prog = seccomp_filter.build_filter()
        kept = list((tmp_path / "linuxabi" / "filters").iterdir())
        assert len(kept) == 1 and kept[0].read_bytes() == prog
        assert prog == seccomp_filter.compile_filter()
        # A damaged program is never loaded: it is compiled again and replaced.
        kept[0].write_bytes(b"\x06\x00\x00\x00\xff\x7f")  # 6 bytes: no whole instruction
        seccomp_filter.build_filter.cache_clear()
        assert seccomp_filter.build_filter() == prog
        assert kept[0].read_bytes() == prog
    finally:
        seccomp_filter.build_filter.cache_clear()


def test_a_program_is_built_once_however_it_is_asked_for() -> None:
    # (a warm server's spare asks by keyword; a run's launch positionally)
    first = seccomp_filter.build_filter(trace_denied=True)
    assert seccomp_filter.build_filter(True, frozenset()) is first
    assert seccomp_filter.build_filter(1, set()) is first  # type: ignore[arg-type]


def test_a_table_change_keeps_its_own_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = seccomp_filter.filter_rules()
    nr, action, cond = rules[0]
    changed = [(nr, ("errno", 1) if action != ("errno", 1) else ("allow",), cond)] + rules[1:]
    assert seccomp_filter._cache_path(changed) != seccomp_filter._cache_path(rules)
    assert seccomp_filter._cache_path(seccomp_filter.filter_rules(trace_denied=True)) != \
        seccomp_filter._cache_path(rules)


def test_a_run_loads_no_libseccomp_once_its_filter_is_kept() -> None:
    code = ("import sys; from linuxabi.cli import main; code = main(['run', '--', 'true']); "
            "print(code, 'pyseccomp' in sys.modules, 'subprocess' in sys.modules)")
    for _ in range(2):  # the first run may compile and keep it
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False", "False"]


def test_the_cli_exits_without_teardown_and_loses_no_output(tmp_path: Path) -> None:
    # Guest output larger than a pipe buffer, the exit status and a written profile all arrive.
    prof = tmp_path / "profile.txt"
    r = subprocess.run([sys.executable, "-m", "linuxabi", "run", "--profile", str(prof), "--",
                        "sh", "-c", "seq 30000; echo done >&2; exit 7"], capture_output=True, text=True)
    assert r.returncode == 7
    assert r.stdout.split() == [str(i) for i in range(1, 30001)] and r.stderr == "done\n"
    assert "total" in prof.read_text()


def _interp_of(path: Path) -> bytes:
    with open(path, "rb") as f:
        fd = f.fileno()
        return elfverdicts.parse_elf(fd)


def _check(verdicts: ElfVerdicts, path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return verdicts.check(fd)
    finally:
        os.close(fd)


def test_verdicts_read_the_headers() -> None:
    assert _interp_of(STATIC) == b""
    assert _interp_of(DYNAMIC).startswith(b"/lib") and b"ld-linux-x86-64" in _interp_of(DYNAMIC)
    with pytest.raises(OSError) as e:
        _interp_of(Path(__file__))
    assert e.value.errno == E.ENOEXEC


def test_a_later_sandbox_answers_from_the_saved_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "cache" / "elf-verdicts.json"
    first = ElfVerdicts(str(store))
    expected = _check(first, DYNAMIC)
    assert store.exists()

    def no_parse(fd: int) -> bytes:
        raise AssertionError("parsed again although the verdict was saved")

    monkeypatch.setattr(elfverdicts, "parse_elf", no_parse)
    assert _check(ElfVerdicts(str(store)), DYNAMIC) == expected


def test_a_changed_file_is_looked_at_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "elf-verdicts.json"
    program = tmp_path / "prog"
    shutil.copy(STATIC, program)
    assert _check(ElfVerdicts(str(store)), program) == b""
    before = program.stat()
    program.write_bytes(b"#!/bin/sh\n" + b"\0" * (before.st_size - 10))  # same size...
    os.utime(program, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and mtime: only ctime tells
    with pytest.raises(OSError) as e:
        _check(ElfVerdicts(str(store)), program)
    assert e.value.errno == E.ENOEXEC


def test_a_damaged_verdict_file_is_ignored_and_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "elf-verdicts.json"
    store.write_text('{"format": 1, "verdicts": [[1, 2, "x"]]}')
    assert _check(ElfVerdicts(str(store)), STATIC) == b""

    def no_parse(fd: int) -> bytes:
        raise AssertionError("the rewritten file should have answered")

    monkeypatch.setattr(elfverdicts, "parse_elf", no_parse)
    assert _check(ElfVerdicts(str(store)), STATIC) == b""


def test_memfd_programs_are_not_saved(tmp_path: Path) -> None:
    store = tmp_path / "elf-verdicts.json"
    fd = os.memfd_create("prog")
    try:
        os.write(fd, STATIC.read_bytes())
        assert ElfVerdicts(str(store)).check(fd) == b""
    finally:
        os.close(fd)
    assert not store.exists() or '"verdicts": []' in store.read_text()


def test_a_verdict_another_sandbox_saved_is_read_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "elf-verdicts.json"
    warm = ElfVerdicts(str(store))
    warm.preload()  # read before the other sandbox saved (a warm server, say)
    expected = _check(ElfVerdicts(str(store)), DYNAMIC)

    def no_parse(fd: int) -> bytes:
        raise AssertionError("parsed although another sandbox had saved the verdict")

    monkeypatch.setattr(elfverdicts, "parse_elf", no_parse)
    assert _check(warm, DYNAMIC) == expected


def test_proc_self_exe_answers_without_the_walk_where_the_walk_would_agree(
        image_copy: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from linuxabi.api import Sandbox, SandboxConfig
    from vfs.vfs import Vfs

    walked: list[bytes] = []
    readlink = Vfs.readlink

    def counted(self, ctx, base, path):  # noqa: ANN001, ANN202
        walked.append(path)
        return readlink(self, ctx, base, path)

    monkeypatch.setattr(Vfs, "readlink", counted)
    # Busybox itself reads /proc/self/exe as it starts; in a chroot without /proc, the walk
    # answers (and fails, as on Linux).
    script = ("readlink /proc/self/exe; mkdir -p /tmp/r/bin /tmp/r/proc; cp /bin/busybox /tmp/r/bin/; "
              "chroot /tmp/r /bin/busybox readlink /proc/self/exe; echo rc=$?")
    status = Sandbox(SandboxConfig(root=image_copy)).run(["sh", "-c", script])
    out, _err = capfd.readouterr()
    assert status == 0 and out == "/bin/busybox\nrc=1\n"
    assert walked and set(walked) == {b"/proc/self/exe"}  # only from inside the chroot
    assert len(walked) <= 3
