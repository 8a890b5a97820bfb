"""OverlayFs: a writable RAM layer over a read-only ImageFs.

The namespace of the upper layer is built lazily: the first lookup in a directory adopts
every entry of the matching lower directory as an upper inode that still points at its
lower inode (metadata copied, data not). From then on the upper directory is the truth:

- deleting a lower entry removes it from the upper directory (a whiteout, in effect), and
  re-creating the name makes a new upper inode;
- rmdir + mkdir of a lower directory gives a new, empty, opaque directory;
- chmod/chown/utimens only change the upper inode's metadata (a metadata copy-up);
- the first open for writing, or a truncate, copies the data into a memfd (copy-up);
- rename works for files and directories alike (the namespace lives in RAM), so there is
  no EXDEV for lower directories;
- hard links in the image stay one inode in the overlay (link counts stay right).

The host image directory is only ever read. Files not yet copied up are opened read-only on
the image; directories adopted from the image use the image directory as their host object.
"""
from __future__ import annotations

import itertools

from .filesystem import OVERLAYFS_SUPER_MAGIC
from .imagefs import ImageDir, ImageFile, ImageFs, ImageSymlink
from .inode import Inode
from .scratch import HostScratch
from .tmpfs import MemDir, MemFile, MemSpecial, MemSymlink, TmpFs

# Inode numbers of upper-only inodes start above any 32-bit host inode number.
_UPPER_INO_BASE = 1 << 32


class OverlayFs(TmpFs):
    magic = OVERLAYFS_SUPER_MAGIC
    statfs_flags = 0

    def __init__(self, lower: ImageFs) -> None:
        super().__init__()
        self.lower = lower
        self._inos = itertools.count(_UPPER_INO_BASE)
        self._adopted: dict[int, Inode] = {}  # lower inode number -> upper inode
        self._allocated: set[int] = set()

    def new_ino(self) -> int:
        while True:
            ino = next(self._inos)
            if ino not in self._adopted:
                self._allocated.add(ino)
                return ino

    def make_root(self) -> Inode:
        return self.adopt(self.lower.root.inode)

    def adopt(self, li: Inode) -> Inode:
        """The upper inode standing for lower inode ``li`` (one per lower inode)."""
        known = self._adopted.get(li.ino)
        if known is not None and not isinstance(li, ImageDir):
            return known
        ino = li.ino if li.ino not in self._allocated else self.new_ino()
        args = (self, ino, li.mode, li.uid, li.gid)
        times = (li.atime_ns, li.mtime_ns, li.ctime_ns, li.btime_ns)
        inode: Inode
        if isinstance(li, ImageDir):
            inode = MemDir(*args, lower=li, nlink=li.nlink, times=times)
        elif isinstance(li, ImageFile):
            inode = MemFile(*args, lower=li, nlink=li.nlink, times=times)
        elif isinstance(li, ImageSymlink):
            inode = MemSymlink(*args, lower=li, nlink=li.nlink, times=times)
        else:
            inode = MemSpecial(*args, nlink=li.nlink, rdev=li.rdev, times=times)
        self._adopted[li.ino] = inode
        return inode

    def attach(self, scratch: HostScratch) -> None:
        super().attach(scratch)
        self.lower.attach(scratch)

    def statfs(self) -> dict[str, int]:
        d = self.lower.statfs()
        d.update(f_type=self.magic, f_flags=0)
        return d

    def close(self) -> None:
        super().close()
        self.lower.close()
