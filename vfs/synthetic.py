"""The extension point for generated filesystems (procfs is written on it).

A generated filesystem is a ``SyntheticFs`` subclass whose ``make_root`` returns a
``DynamicDir``. Its inodes are made on lookup; three kinds are provided:

``DynamicDir``
    Subclass and implement ``generate(name) -> Inode | None`` (the child called ``name``, or
    None for ENOENT) and ``names() -> Iterable[bytes]`` (the listing, in getdents order).
    Return the *same* inode object for the same thing on every call (cache it, e.g. per
    pid) so that its inode number, its shadow directory and fds on it stay stable. The base
    class keeps one dentry per live name, so a cwd inside survives re-lookups; a name that
    ``generate`` stops returning becomes a dead dentry (getcwd then gives ENOENT). getdents
    cookies are positions in ``names()`` (as in Linux's procfs).

``SyntheticFile``
    A regular file whose bytes come from ``content()`` at open time: the guest gets a memfd
    filled with them, sealed, reopened read-only (reads, lseek and mmap are then native). An
    open for writing fails with EACCES. stat shows size 0, as procfs files do.

``DynamicSymlink``
    An ordinary symlink whose text is ``target()`` at each resolution (/proc/self,
    /proc/thread-self): the walk resolves the text like any symlink's.

``MagicLink``
    A symlink whose ``target()`` is what readlink says, and which the walk does not resolve
    as text: following it jumps to ``jump()`` (a Location, e.g. a process's cwd, or None for
    an object outside the VFS such as a pipe), and opening it calls ``open_magic(flags)``
    which must return a new host fd for the actual object (for /proc/PID/fd/N: reopen the
    guest's own fd). stat through a magic link whose jump() is None fstat()s
    ``open_magic(O_PATH)``.

Everything else (permissions, O_NOFOLLOW, ELOOP budget, trailing slashes) is the common
walk's. Generated filesystems are read-only (``readonly = True``): any namespace or metadata
change on them fails with EROFS.
"""
from __future__ import annotations

import fcntl
import os
from typing import Callable, Iterable

from .errors import E, fail
from .filesystem import PROC_SUPER_MAGIC, FileSystem
from .inode import S_IFDIR, S_IFLNK, S_IFREG, Dentry, DirInode, Inode, SymlinkInode
from .types import Location

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class SyntheticFs(FileSystem):
    readonly = True
    magic = PROC_SUPER_MAGIC

    def __init__(self) -> None:
        super().__init__()
        self._next = 1

    def new_ino(self) -> int:
        self._next += 1
        return self._next


class SyntheticFile(Inode):
    __slots__ = ("content",)
    ephemeral_host = True

    def __init__(self, fs: FileSystem, ino: int, content: Callable[[], bytes], *, mode: int = 0o444,
                 uid: int = 0, gid: int = 0) -> None:
        super().__init__(fs, ino, S_IFREG | (mode & 0o7777), uid, gid)
        self.content = content

    def _filled(self, data: bytes) -> int:
        fd = os.memfd_create("linuxabi-synthetic", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(fd)

    def open_host(self, flags: int) -> int:
        if flags & (os.O_ACCMODE | os.O_TRUNC):
            fail(E.EACCES)
        fd = self._filled(self.content())
        if flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
        return fd

    def open_path(self) -> int:
        fd = self._filled(b"")
        try:
            return os.open(f"/proc/self/fd/{fd}", os.O_PATH | os.O_CLOEXEC)
        finally:
            os.close(fd)


class DynamicSymlink(SymlinkInode):
    __slots__ = ("target",)

    def __init__(self, fs: FileSystem, ino: int, target: Callable[[], bytes], *, uid: int = 0,
                 gid: int = 0) -> None:
        super().__init__(fs, ino, S_IFLNK | 0o777, uid, gid)
        self.target = target

    def readlink(self) -> bytes:
        return self.target()


class MagicLink(Inode):
    __slots__ = ("target", "jump", "open_magic")

    def __init__(self, fs: FileSystem, ino: int, target: Callable[[], bytes],
                 jump: Callable[[], Location | None], open_magic: Callable[[int], int], *,
                 uid: int = 0, gid: int = 0, mode: int = 0o777) -> None:
        super().__init__(fs, ino, S_IFLNK | mode, uid, gid)
        self.target = target
        self.jump = jump
        self.open_magic = open_magic

    def readlink(self) -> bytes:
        return self.target()

    def size(self) -> int:
        return 0

    def open_host(self, flags: int) -> int:
        return self.open_magic(flags)

    def open_path(self) -> int:
        return self._scratch_open(os.O_PATH, "symlink")


class DynamicDir(DirInode):
    __slots__ = ("_names",)

    def __init__(self, fs: FileSystem, ino: int, *, mode: int = 0o555, uid: int = 0, gid: int = 0) -> None:
        super().__init__(fs, ino, S_IFDIR | (mode & 0o7777), uid, gid, nlink=2)
        self._names: dict[bytes, Dentry] = {}

    def generate(self, name: bytes) -> Inode | None:
        raise NotImplementedError

    def names(self) -> Iterable[bytes]:
        raise NotImplementedError

    def lookup(self, name: bytes) -> Dentry | None:
        inode = self.generate(name)
        d = self._names.get(name)
        if d is not None and d.inode is not inode:
            d.dead = True
            del self._names[name]
            d = None
        if inode is None:
            return None
        if d is None:
            d = Dentry(name, self.dentry, inode)
            if isinstance(inode, DirInode):
                inode.dentry = d
            self._names[name] = d
        return d

    def listing(self) -> list[Dentry]:
        out = []
        for pos, name in enumerate(self.names(), 2):
            d = self.lookup(name)
            if d is not None:
                d.cookie = pos
                out.append(d)
        return out

    def size(self) -> int:
        return 0
