"""Is this file an x86-64 executable, and which interpreter does it ask for?

pyelftools answers (the headers and PT_INTERP), but importing it costs ~25 ms and parsing
~0.5 ms, and nearly every exec loads one of the same few files of an image. Verdicts are
therefore cached by file identity (device, inode, size, mtime, ctime: a rewritten or
re-stamped file gets a fresh look), in memory and in ``$XDG_CACHE_HOME/linuxabi/elf-verdicts.json``
so that the next sandbox's first exec needs neither the import nor the parse. Files of the
RAM filesystems (memfds, whose identities do not outlive a run) are kept in memory only.
"""
from __future__ import annotations

import json
import os

from linuxabi.abi import errno as E

Key = tuple[int, int, int, int, int]
Verdict = tuple[int, bytes]  # (errno, or 0 for an executable; its PT_INTERP, b"" if static)

MAX_ENTRIES = 4096
MAX_SAVED = 512  # the file is rewritten on each miss: kept small, newest first to stay
MAX_INTERP = 4096
_FORMAT = 1


class ElfVerdicts:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._memory: dict[Key, Verdict] = {}
        self._loaded = path is None
        self._memfd_dev: int | None = None
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file as last read

    def check(self, fd: int) -> bytes:
        """PT_INTERP of the executable open at ``fd`` (b"" for a static one); OSError(ENOEXEC) otherwise."""
        s = os.fstat(fd)
        key = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
        if not self._loaded:
            self._load()
        verdict = self._memory.get(key)
        if verdict is None and self._file_changed():  # another sandbox saved since we read it
            self._load()
            verdict = self._memory.get(key)
        if verdict is None:
            try:
                verdict = (0, parse_elf(fd))
            except OSError as e:
                verdict = (e.errno or E.ENOEXEC, b"")
            if len(self._memory) >= MAX_ENTRIES:
                self._memory.clear()
            self._memory[key] = verdict
            if s.st_dev != self._ram_dev():
                self._save()
        if verdict[0]:
            raise OSError(verdict[0], os.strerror(verdict[0]))
        return verdict[1]

    def _ram_dev(self) -> int:
        if self._memfd_dev is None:
            fd = os.memfd_create("linuxabi-probe", os.MFD_CLOEXEC)
            try:
                self._memfd_dev = os.fstat(fd).st_dev
            finally:
                os.close(fd)
        return self._memfd_dev

    def preload(self) -> None:
        """Read the file now (a warm server, whose children then start with it in memory)."""
        if not self._loaded:
            self._load()

    def _file_changed(self) -> bool:
        if self.path is None:
            return False
        try:
            s = os.stat(self.path)
        except OSError:
            return False
        return (s.st_mtime_ns, s.st_size) != self._stamp

    def _load(self) -> None:
        self._loaded = True
        try:
            with open(self.path, "rb") as f:  # type: ignore[arg-type]
                s = os.fstat(f.fileno())
                self._stamp = (s.st_mtime_ns, s.st_size)
                doc = json.load(f)
            if doc.get("format") != _FORMAT:
                return
            for dev, ino, size, mtime, ctime, errno, interp in doc["verdicts"][:MAX_ENTRIES]:
                self._memory[(dev, ino, size, mtime, ctime)] = (int(errno), bytes.fromhex(interp))
        except (OSError, ValueError, KeyError, TypeError):
            self._memory.clear()  # absent or damaged: parse again and rewrite

    def _save(self) -> None:
        """Replace the file atomically; a concurrent sandbox's entries may be lost (re-parsed later)."""
        assert self.path is not None
        ram = self._ram_dev()
        kept = [[*k, v[0], v[1].hex()] for k, v in self._memory.items() if k[0] != ram][-MAX_SAVED:]
        doc = {"format": _FORMAT, "verdicts": kept}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(doc, f)
                f.flush()
                s = os.fstat(f.fileno())
            os.replace(tmp, self.path)
            self._stamp = (s.st_mtime_ns, s.st_size)  # our own save is not news to us
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def parse_elf(fd: int) -> bytes:
    """pyelftools' reading of the file at ``fd``: its PT_INTERP, or OSError(ENOEXEC)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    enoexec = OSError(E.ENOEXEC, os.strerror(E.ENOEXEC))
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            elf = ELFFile(f)
            if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
                raise enoexec
            if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
                raise enoexec
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    raw = seg.data()
                    interp = raw.split(b"\0", 1)[0]
                    if not interp or len(raw) > MAX_INTERP:
                        raise enoexec
                    return interp
            return b""
    except ELFError:
        raise enoexec from None


def default_path() -> str:
    from linuxabi.images.store import cache_dir

    return str(cache_dir() / "elf-verdicts.json")
