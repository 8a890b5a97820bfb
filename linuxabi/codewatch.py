"""Whether a module file of linuxabi that a warm server loaded has changed since (an upgrade, a
`git pull`): its spares would run the old code (linuxabi/server.py asks as each takes a client).

inotify watches on the directories of the loaded files, made once by the server: asking is one
read that finds nothing, where a stat of each file (~150) took ~0.2 ms of every warm run.
Where inotify cannot be had (no instance or watch left), each file is looked at instead. The
watch is shared by the spares (one open file): an event one of them reads is gone for the
others, and a change it sees stops the server. Modules a run imports later are read afresh by
each child anyway.
"""
from __future__ import annotations

import os
import struct
import sys

from .abi import x86_64
from .host.libc import address_of, raw_syscall

PACKAGES = ("linuxabi", "syscalls", "vfs", "net", "caps")
# What a changed file makes: written, touched, replaced, moved or removed.
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED = 0x4000, 0x8000
_WATCHED = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
            | _IN_DELETE_SELF | _IN_MOVE_SELF)
_LOST = _IN_Q_OVERFLOW | _IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF  # the watch itself is gone
_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len; then the name, NUL-padded


class CodeWatch:
    def __init__(self, files: "dict[str, int] | None" = None) -> None:
        """``files``: path -> mtime_ns to watch (default: our loaded modules', as they are now)."""
        self._mtimes = _loaded_files() if files is None else files
        self._names: dict[int, set[bytes]] = {}  # watch -> the loaded files' names in its directory
        self._changed = False
        try:
            self._fd = raw_syscall(x86_64.NR["inotify_init1"], os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self._fd = -1
            return
        by_dir: dict[str, set[bytes]] = {}
        for path in self._mtimes:
            by_dir.setdefault(os.path.dirname(path), set()).add(os.fsencode(os.path.basename(path)))
        try:
            for directory, names in by_dir.items():
                keep, addr = address_of(os.fsencode(directory) + b"\0")
                self._names[raw_syscall(x86_64.NR["inotify_add_watch"], self._fd, addr, _WATCHED)] = names
                del keep
        except OSError:  # (no watch left for this user: stat each file instead)
            os.close(self._fd)
            self._fd = -1
            return
        self._changed = self._stat_changed()  # (between loading and watching)

    def changed(self) -> bool:
        """Whether a loaded file changed; once it has, always."""
        if not self._changed:
            self._changed = self._read_events() if self._fd >= 0 else self._stat_changed()
        return self._changed

    def _read_events(self) -> bool:
        changed = False
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return changed
            at = 0
            while at + _EVENT.size <= len(data):
                wd, mask, _cookie, n = _EVENT.unpack_from(data, at)
                name = data[at + _EVENT.size:at + _EVENT.size + n].rstrip(b"\0")
                at += _EVENT.size + n
                if mask & _LOST or name in self._names.get(wd, ()):
                    changed = True

    def _stat_changed(self) -> bool:
        for path, mtime in self._mtimes.items():
            try:
                if os.stat(path).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False


def _loaded_files() -> dict[str, int]:
    files = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and name.split(".", 1)[0] in PACKAGES and path.endswith(".py"):
            files[path] = os.stat(path).st_mtime_ns
    return files
