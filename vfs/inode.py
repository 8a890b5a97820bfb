"""Inodes and dentries: what every filesystem is built from.

An ``Inode`` carries the metadata the VFS owns (mode, owner, link count, times, inode
number) and knows how to produce a fresh host fd for itself (``open_host``): the translator
hands that fd to the guest, so reads and writes never trap. A ``Dentry`` is one name of an
inode inside a directory; Locations point at dentries, so renames move them and a removed
dentry stays "dead" for whoever still holds it (getcwd's ENOENT, "(deleted)" in paths).
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Sequence

from .errors import E, fail
from .types import StatResult, make_stat

if TYPE_CHECKING:
    from .filesystem import FileSystem

S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFIFO = 0o010000
S_IFSOCK = 0o140000
S_IFCHR = 0o020000
S_IFBLK = 0o060000
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000
S_IXGRP = 0o010

DT_BY_TYPE = {S_IFIFO: 1, S_IFCHR: 2, S_IFDIR: 4, S_IFBLK: 6, S_IFREG: 8, S_IFLNK: 10, S_IFSOCK: 12}

# Flags a reopen of a host object may carry; creation/lookup flags were handled by the VFS.
PASS_FLAGS = (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC | os.O_DIRECT
              | os.O_LARGEFILE | os.O_NOATIME)
BLKSIZE = 4096


def now_ns() -> int:
    return time.time_ns()


class Dentry:
    """A name in a directory. ``cookie`` is its getdents position in the parent."""

    __slots__ = ("name", "parent", "inode", "cookie", "mounted", "dead")

    def __init__(self, name: bytes, parent: "Dentry | None", inode: "Inode", cookie: int = 0) -> None:
        self.name = name
        self.parent = parent
        self.inode = inode
        self.cookie = cookie
        self.mounted = 0  # number of mounts on this dentry (the walk only consults the table if > 0)
        self.dead = False

    def __repr__(self) -> str:
        return f"<Dentry {self.name!r} ino={self.inode.ino}{' dead' if self.dead else ''}>"


class Inode:
    """Base inode: VFS-owned metadata. Subclasses decide where data and host objects live."""

    __slots__ = ("fs", "ino", "mode", "uid", "gid", "nlink", "rdev",
                 "atime_ns", "mtime_ns", "ctime_ns", "btime_ns", "shadow")

    #: True when every open makes a one-off host object (synthetic files): the VFS keeps
    #: only a bounded number of those in its fd-identity registry.
    ephemeral_host = False
    #: True when ``stat`` depends only on this object (no host object, no clock): the answer
    #: then holds until a call changes the inode (see Vfs.stat_held).
    stat_held = False
    #: True when ``stat`` is the VFS's metadata with the host object's size, blocks and times
    #: (atime, mtime; ctime the later of the two), and nothing else.
    stat_live = False
    #: True for a file whose contents may be written on a filesystem that is otherwise
    #: read-only (procfs's /proc/PID/comm): its mode bits decide, not EROFS.
    writable_on_readonly_fs = False

    def __init__(self, fs: "FileSystem", ino: int, mode: int, uid: int = 0, gid: int = 0, *,
                 nlink: int = 1, rdev: int = 0, times: tuple[int, int, int, int] | None = None) -> None:
        self.fs = fs
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.rdev = rdev
        if times is None:
            t = now_ns()
            times = (t, t, t, t)
        self.atime_ns, self.mtime_ns, self.ctime_ns, self.btime_ns = times
        self.shadow: str | None = None  # name of this inode's shadow in the HostScratch

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ino={self.ino} mode={self.mode:o}>"

    # ---- metadata ---------------------------------------------------------------------------

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    def host_key(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the host object ``open_host`` returns now, when known without
        asking the host; None: the VFS fstats the fd it got."""
        return None

    def data_stat(self) -> tuple[int, int, int, int, int]:
        """(size, blocks, atime, mtime, ctime): what may live in the host object."""
        return self.size(), 0, self.atime_ns, self.mtime_ns, self.ctime_ns

    def reopen(self, flags: int) -> tuple[int, bytes, int] | None:
        """(dirfd, path, flags) of an openat that gives the host object ``open_host(flags)``
        gives, for a read-only open, as long as the VFS does not change: a file of the image, a
        memfd; else None."""
        return None

    def size(self) -> int:
        return 0

    def stat(self, mnt_id: int) -> StatResult:
        size, blocks, atime, mtime, ctime = self.data_stat()
        return make_stat(self.fs.dev, self.ino, self.mode, self.nlink, self.uid, self.gid, self.rdev,
                          size, BLKSIZE, blocks, atime, mtime, ctime, self.btime_ns, mnt_id)

    def set_times(self, atime_ns: int | None, mtime_ns: int | None, now: int) -> None:
        if atime_ns is not None:
            self.atime_ns = atime_ns
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
        self.ctime_ns = now

    def truncate(self, length: int) -> None:
        fail(E.EINVAL)

    def close_host(self) -> None:
        """Close host fds this inode holds (the Vfs is closing)."""

    def released(self) -> None:
        """The last name is gone (nlink 0): drop host resources the guest no longer reaches."""
        if self.shadow is not None and self.fs.scratch is not None:
            self.fs.scratch.remove(self.shadow)
            self.shadow = None

    # ---- host objects -----------------------------------------------------------------------

    def open_host(self, flags: int) -> int:
        """A new host fd for this inode (a new open file description), owned by the caller."""
        fail(E.ENXIO)

    def open_path(self) -> int:
        """An O_PATH host fd naming this inode (identity only)."""
        return self._scratch_open(os.O_PATH, "file")

    def _scratch_open(self, flags: int, kind: str) -> int:
        scratch = self.fs.scratch
        if scratch is None:
            fail(E.ENXIO)
        if self.shadow is None:
            self.shadow = getattr(scratch, "make_" + kind)()
        return scratch.open(self.shadow, flags)

    # ---- directory protocol (DirInode overrides) ---------------------------------------------

    def lookup(self, name: bytes) -> Dentry | None:
        fail(E.ENOTDIR)

    def listing(self) -> Sequence[Dentry]:
        fail(E.ENOTDIR)

    # ---- symlink protocol -------------------------------------------------------------------

    def readlink(self) -> bytes:
        fail(E.EINVAL)


class DirInode(Inode):
    """A directory. ``lookup`` finds a child; ``listing`` gives the children in cookie order.

    Default host object: an empty shadow directory in the scratch area.
    """

    __slots__ = ("removed", "dentry")

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.removed = False  # rmdir'ed (Linux's S_DEAD): lookups fail, creation gives ENOENT
        self.dentry: Dentry | None = None  # a directory has exactly one name

    def lookup(self, name: bytes) -> Dentry | None:
        raise NotImplementedError

    def listing(self) -> Sequence[Dentry]:
        raise NotImplementedError

    def size(self) -> int:
        return 40 + 20 * len(self.listing())  # tmpfs reports BOGO_DIRENT_SIZE per entry

    def open_host(self, flags: int) -> int:
        return self._scratch_open(os.O_RDONLY | os.O_DIRECTORY | (flags & os.O_NONBLOCK), "dir")

    def open_path(self) -> int:
        return self._scratch_open(os.O_PATH | os.O_DIRECTORY, "dir")

    def released(self) -> None:
        self.removed = True
        super().released()


class SymlinkInode(Inode):
    """A symlink: ``readlink`` gives the target; its O_PATH object is a shadow symlink."""

    __slots__ = ()

    def open_host(self, flags: int) -> int:
        fail(E.ELOOP)

    def open_path(self) -> int:
        return self._scratch_open(os.O_PATH, "symlink")

    def size(self) -> int:
        return len(self.readlink())

    def readlink(self) -> bytes:
        raise NotImplementedError
