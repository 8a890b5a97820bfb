"""What keeps linuxabi's start-up short without changing behaviour: the compiled libc
declarations and the ELF verdicts that outlive a sandbox."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linuxabi.abi import errno as E
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
