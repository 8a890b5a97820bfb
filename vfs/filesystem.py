"""FileSystem: one filesystem instance (its device number, root, statfs answer)."""
from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from .inode import Dentry, DirInode, Inode

if TYPE_CHECKING:
    from .scratch import HostScratch

TMPFS_MAGIC = 0x01021994
OVERLAYFS_SUPER_MAGIC = 0x794C7630
EXT4_SUPER_MAGIC = 0xEF53
PROC_SUPER_MAGIC = 0x9FA0
ST_RDONLY = 1
ST_NOSUID = 2
ST_NODEV = 4

# Anonymous device numbers (major 0), one per filesystem instance, as Linux gives tmpfs.
_minors = itertools.count(64)


class FileSystem:
    """Base class. Subclasses build their root inode in ``make_root``.

    ``readonly`` filesystems make every namespace or metadata change fail with EROFS.
    ``scratch`` is the Vfs's HostScratch, set when the filesystem is mounted.
    """

    magic = TMPFS_MAGIC
    readonly = False
    # A read-only filesystem that refuses changes as Linux's procfs does, not with EROFS (Linux
    # mounts procfs read-write and its files refuse one by one): a new name fails its lookup
    # (ENOENT), a name cannot go or move (EPERM), nor a mode change (EPERM); chown, utimens and
    # truncate are accepted (with their usual permission checks) and change nothing.
    refuses_like_procfs = False
    statfs_flags = 0
    # Whether a name here resolves the same until the namespace epoch moves (vfs/epoch.py):
    # true where every change goes through MemDir or a read-only image, false for filesystems
    # whose entries come and go by themselves (procfs's pids, devpts).
    stable_names = False

    def __init__(self) -> None:
        self.dev = os.makedev(0, next(_minors))
        self.scratch: "HostScratch | None" = None
        self._root: Dentry | None = None
        self.holders: set[Inode] = set()  # inodes holding host fds (memfds, fifo ends)

    @property
    def root(self) -> Dentry:
        if self._root is None:
            inode = self.make_root()
            self._root = Dentry(b"/", None, inode)
            if isinstance(inode, DirInode):
                inode.dentry = self._root
        return self._root

    def make_root(self) -> Inode:
        raise NotImplementedError

    def attach(self, scratch: "HostScratch") -> None:
        if self.scratch is not None and self.scratch is not scratch:
            raise ValueError("a filesystem instance belongs to one Vfs")
        self.scratch = scratch

    def statfs(self) -> dict[str, int]:
        pages = os.sysconf("SC_PHYS_PAGES") // 2
        free = min(pages, os.sysconf("SC_AVPHYS_PAGES"))
        return {"f_type": self.magic, "f_bsize": 4096, "f_blocks": pages, "f_bfree": free,
                "f_bavail": free, "f_files": pages, "f_ffree": pages, "f_namelen": 255,
                "f_frsize": 4096, "f_flags": self.statfs_flags | (ST_RDONLY if self.readonly else 0)}

    def close(self) -> None:
        """Release host resources (backing fds). The Vfs calls it once on close()."""
        for inode in list(self.holders):
            inode.close_host()
        self.holders.clear()
