"""TmpFs: everything in RAM. Regular files keep their pages in a memfd the inode owns.

An open hands out a fresh open file description of the memfd (a reopen through
/proc/self/fd with the requested access mode), so O_RDONLY fds cannot write, O_APPEND
works natively and offsets are per open. Size, atime and mtime of a memfd-backed file are
the memfd's own (writes happen natively); mode, owner, links, inode number and ctime on
metadata changes are the VFS's.

The same inode classes carry OverlayFs's upper layer: a ``MemDir`` or ``MemFile`` may have a
``lower`` image inode it was built from (see overlay.py).
"""
from __future__ import annotations

import itertools
import os
import resource
from typing import TYPE_CHECKING

from .epoch import EPOCH
from .errors import E, fail
from .filesystem import ST_NODEV, ST_NOSUID, TMPFS_MAGIC, FileSystem
from .inode import PASS_FLAGS, S_IFDIR, S_IFLNK, S_ISGID, S_ISUID, Dentry, DirInode, Inode, SymlinkInode
from .special import SpecialInode

if TYPE_CHECKING:
    from .imagefs import ImageDir, ImageFile, ImageSymlink


_KILLABLE = S_ISUID | S_ISGID
_AT_FDCWD = -100  # openat's dirfd for "a path as given"


def _memfd() -> int:
    try:
        return os.memfd_create("linuxabi-vfs", os.MFD_CLOEXEC)
    except OSError as e:
        if e.errno != E.EMFILE:
            raise
        # Every tmpfs file holds one fd: grow the soft limit to the hard one and retry.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == hard:
            fail(E.ENOSPC)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return os.memfd_create("linuxabi-vfs", os.MFD_CLOEXEC)


def _copy_data(src: int, dst: int) -> None:
    offset = 0
    while True:
        try:
            n = os.sendfile(dst, src, offset, 1 << 24)
        except OSError as e:
            if e.errno not in (E.EINVAL, E.ENOSYS):
                raise
            os.lseek(src, offset, os.SEEK_SET)
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
            return
        if n == 0:
            return
        offset += n


class MemFile(Inode):
    """A regular file whose data is a memfd (created on first open), or, in an overlay,
    still the lower image file until something writes it (copy-up)."""

    __slots__ = ("memfd", "lower", "detached", "linkable", "_memfd_key")

    def __init__(self, *a, lower: "ImageFile | None" = None, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.memfd: int | None = None
        self._memfd_key: tuple[int, int] | None = None
        self.lower = lower
        self.detached: os.stat_result | None = None  # last host fstat once the memfd is closed
        self.linkable = False  # an O_TMPFILE opened without O_EXCL: linkat may give it a name

    @property
    def stat_held(self) -> bool:  # type: ignore[override]
        """Until its data lives in a memfd (which native writes change), a file's stat is the
        VFS's own: its metadata, and the size of its image file or 0."""
        return self.memfd is None and self.detached is None

    def data_stat(self) -> tuple[int, int, int, int, int]:
        s = os.fstat(self.memfd) if self.memfd is not None else self.detached
        if s is not None:
            if self.mode & _KILLABLE and (s.st_mode ^ self.mode) & _KILLABLE:
                # A native write by an unprivileged guest made the host kernel drop the memfd's
                # setuid/setgid bits (see sync_mode): the file's mode follows, as on Linux.
                self.mode &= ~_KILLABLE | (s.st_mode & _KILLABLE)
            return s.st_size, s.st_blocks, s.st_atime_ns, s.st_mtime_ns, max(self.ctime_ns, s.st_ctime_ns)
        if self.lower is not None:
            return self.lower.hsize, self.lower.hblocks, self.atime_ns, self.mtime_ns, self.ctime_ns
        return 0, 0, self.atime_ns, self.mtime_ns, self.ctime_ns

    def size(self) -> int:
        return self.data_stat()[0]

    def sync_mode(self) -> None:
        """Mirror the permission bits onto the memfd, so that the host kernel applies Linux's
        "a write by an unprivileged process clears setuid/setgid" to the native writes too.
        (Owner rw stays set: the translator must always be able to reopen the memfd.)"""
        if self.memfd is not None:
            os.fchmod(self.memfd, (self.mode & 0o7777) | 0o600)

    def materialize(self, *, copy: bool = True) -> int:
        """The memfd, created (and filled from the lower file: copy-up) if needed."""
        if self.memfd is None:
            if self.detached is not None:
                fail(E.ENOENT)  # unlinked and closed: only the guest's own fds still reach it
            fd = _memfd()
            try:
                if self.lower is not None and copy:
                    src = self.lower.open_host(os.O_RDONLY)
                    try:
                        _copy_data(src, fd)
                    finally:
                        os.close(src)
                os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
            except BaseException:
                os.close(fd)
                raise
            s = os.fstat(fd)
            self.memfd = fd
            self._memfd_key = (s.st_dev, s.st_ino)
            self.lower = None
            self.fs.holders.add(self)
            self.sync_mode()
        return self.memfd

    def host_key(self) -> tuple[int, int] | None:
        if self.memfd is not None:
            return self._memfd_key
        return self.lower.host_key() if self.lower is not None else None

    def open_host(self, flags: int) -> int:
        if self.memfd is None and self.lower is not None and flags & os.O_ACCMODE == os.O_RDONLY:
            return self.lower.open_host(flags & ~os.O_TRUNC)  # reads need no copy-up
        memfd = self.materialize()
        return os.open(f"/proc/self/fd/{memfd}", (flags & PASS_FLAGS) | os.O_CLOEXEC)

    def reopen(self, flags: int) -> tuple[int, bytes, int] | None:
        if self.memfd is None and self.detached is None and self.lower is not None:
            return self.lower.reopen(flags)
        if self.memfd is not None and not flags & (os.O_ACCMODE | os.O_TRUNC):
            return _AT_FDCWD, b"/proc/self/fd/%d" % self.memfd, (flags & PASS_FLAGS) | os.O_CLOEXEC  # as open_host
        return None

    @property
    def stat_live(self) -> bool:  # type: ignore[override]
        """The memfd's figures with the VFS's metadata (not with setuid/setgid bits, which a
        native write may clear: then the mode too comes from the memfd)."""
        return self.memfd is not None and not self.mode & _KILLABLE

    def open_path(self) -> int:
        if self.memfd is None and self.lower is not None:
            return self.lower.open_path()
        return os.open(f"/proc/self/fd/{self.materialize()}", os.O_PATH | os.O_CLOEXEC)

    def truncate(self, length: int) -> None:
        os.ftruncate(self.materialize(copy=length > 0), length)

    def set_times(self, atime_ns: int | None, mtime_ns: int | None, now: int) -> None:
        if self.memfd is None:
            super().set_times(atime_ns, mtime_ns, now)
            return
        s = os.fstat(self.memfd)
        os.utime(self.memfd, ns=(s.st_atime_ns if atime_ns is None else atime_ns,
                                 s.st_mtime_ns if mtime_ns is None else mtime_ns))
        self.ctime_ns = now

    def close_host(self) -> None:
        if self.memfd is not None:
            os.close(self.memfd)
            self.memfd = None

    def released(self) -> None:
        # The guest's fds keep the pages alive as long as it needs them; we let go.
        if self.memfd is not None:
            self.detached = os.fstat(self.memfd)
            self.close_host()
        self.lower = None
        self.fs.holders.discard(self)
        super().released()


class MemSymlink(SymlinkInode):
    __slots__ = ("target", "lower")
    stat_held = True  # metadata and size are the VFS's (a read-only image, or RAM)

    def __init__(self, *a, target: bytes | None = None, lower: "ImageSymlink | None" = None,  # type: ignore[no-untyped-def]
                 **kw) -> None:
        super().__init__(*a, **kw)
        self.target = target
        self.lower = lower

    def readlink(self) -> bytes:
        if self.target is None:
            assert self.lower is not None
            self.target = self.lower.readlink()
        return self.target

    def size(self) -> int:
        if self.target is None and self.lower is not None:
            return self.lower.hsize
        return len(self.readlink())


class MemSpecial(SpecialInode):
    __slots__ = ()


class MemSocket(MemSpecial):
    """A socket inode made by a guest's bind(2) (see syscalls/unix_names.py). Its shadow in the
    HostScratch is the bound host socket itself: a connect to the guest's path goes there, and
    it goes away with the last name (``released``), so an unlinked name refuses connections."""

    __slots__ = ()


class MemDir(DirInode):
    """A RAM directory. Entry cookies (getdents positions) come from a per-directory
    counter, so they stay valid while other entries come and go."""

    __slots__ = ("lower", "_children", "_order", "_seq", "_looked_up")
    stat_held = True  # metadata and size are the VFS's (a read-only image, or RAM)

    def __init__(self, *a, lower: "ImageDir | None" = None, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.lower = lower
        self._children: dict[bytes, Dentry] | None = None if lower is not None else {}
        self._order: list[Dentry] | None = None
        self._seq = 2  # cookies 0 and 1 are "." and ".."
        # Before the upper view is built: the lower entries adopted one by one, by lookup.
        self._looked_up: dict[bytes, Dentry] | None = None

    # ---- reading --------------------------------------------------------------------------------

    @property
    def children(self) -> dict[bytes, Dentry]:
        ch = self._children
        return ch if ch is not None else self._load()

    def _load(self) -> dict[bytes, Dentry]:
        """Build the upper view of a lower directory: every lower entry adopted as is (those
        looked up before are kept: the same dentries, the same inodes)."""
        children: dict[bytes, Dentry] = {}
        self._children = children
        assert self.lower is not None
        looked_up, self._looked_up = self._looked_up or {}, None
        for ld in self.lower.listing():
            d = looked_up.get(ld.name) or self._adopt_entry(ld, self._seq)
            self._seq += 1
            children[ld.name] = d
        return children

    def _adopt_entry(self, ld: Dentry, cookie: int) -> Dentry:
        inode = self.fs.adopt(ld.inode)  # type: ignore[attr-defined]
        d = Dentry(ld.name, self.dentry, inode, cookie)
        if isinstance(inode, DirInode):
            inode.dentry = d
        return d

    def lookup(self, name: bytes) -> Dentry | None:
        ch = self._children
        if ch is not None:
            return ch.get(name)
        # A lower directory nothing has changed yet: adopt the one entry looked up, not all of
        # them (a program's lookup in /bin would adopt its ~400 entries). Its cookie is the one
        # the whole view gives it: the lower entry's position, counted the same way.
        looked_up = self._looked_up
        if looked_up is None:
            looked_up = self._looked_up = {}
        d = looked_up.get(name)
        if d is None:
            assert self.lower is not None
            ld = self.lower.lookup(name)
            if ld is None:
                return None
            d = looked_up[name] = self._adopt_entry(ld, ld.cookie)
        return d

    def listing(self) -> list[Dentry]:
        if self._order is None:
            self._order = sorted(self.children.values(), key=lambda d: d.cookie)
        return self._order

    def size(self) -> int:
        if self._children is None and self.lower is not None:
            return self.lower.hsize
        return 40 + 20 * len(self.children)

    def is_empty(self) -> bool:
        return not self.children

    def open_host(self, flags: int) -> int:
        if self.lower is not None:  # the image directory itself is this directory's host object
            return self.lower.open_host(flags)
        return super().open_host(flags)

    def open_path(self) -> int:
        if self.lower is not None:
            return self.lower.open_path()
        return super().open_path()

    # ---- changing -------------------------------------------------------------------------------

    def _changed(self, now: int) -> None:
        EPOCH.value += 1  # every change of this directory's entries comes through here
        self._order = None
        self.mtime_ns = self.ctime_ns = now

    def insert(self, name: bytes, inode: Inode, now: int) -> Dentry:
        """Give ``inode`` the name ``name`` here (a new link; nlink bookkeeping included)."""
        d = Dentry(name, self.dentry, inode, self._seq)
        self._seq += 1
        self.children[name] = d
        if isinstance(inode, DirInode):
            inode.dentry = d
            self.nlink += 1
        else:
            inode.nlink += 1
            inode.ctime_ns = now
        self._changed(now)
        return d

    def remove(self, d: Dentry, now: int) -> None:
        """Take the name away; the inode is released when its last name goes."""
        del self.children[d.name]
        d.dead = True
        inode = d.inode
        if isinstance(inode, DirInode):
            self.nlink -= 1
            inode.nlink = 0
            inode.released()
        else:
            inode.nlink -= 1
            inode.ctime_ns = now
            if inode.nlink <= 0 and not getattr(inode, "linkable", False):
                inode.released()
        self._changed(now)

    def move(self, d: Dentry, new_dir: "MemDir", new_name: bytes, now: int) -> None:
        """rename: the same dentry (and so every Location on it) gets its new place."""
        del self.children[d.name]
        d.name = new_name
        d.parent = new_dir.dentry
        d.cookie = new_dir._seq
        new_dir._seq += 1
        new_dir.children[new_name] = d
        if isinstance(d.inode, DirInode) and new_dir is not self:
            self.nlink -= 1
            new_dir.nlink += 1
        d.inode.ctime_ns = now
        self._changed(now)
        new_dir._changed(now)

    def exchange(self, a: Dentry, new_dir: "MemDir", b: Dentry, now: int) -> None:
        """RENAME_EXCHANGE of a (here) and b (in new_dir): names and positions swap."""
        a_dir, b_dir = isinstance(a.inode, DirInode), isinstance(b.inode, DirInode)
        a.name, b.name = b.name, a.name
        a.cookie, b.cookie = b.cookie, a.cookie
        a.parent, b.parent = b.parent, a.parent
        new_dir.children[a.name] = a
        self.children[b.name] = b
        if new_dir is not self and a_dir != b_dir:
            delta = 1 if a_dir else -1
            new_dir.nlink += delta
            self.nlink -= delta
        a.inode.ctime_ns = b.inode.ctime_ns = now
        self._changed(now)
        new_dir._changed(now)


class TmpFs(FileSystem):
    magic = TMPFS_MAGIC
    statfs_flags = ST_NOSUID | ST_NODEV
    stable_names = True

    def __init__(self, mode: int = 0o1777) -> None:
        super().__init__()
        self.root_mode = mode
        self._inos = itertools.count(2)

    def make_root(self) -> Inode:
        return MemDir(self, 1, S_IFDIR | self.root_mode, 0, 0, nlink=2)

    def new_ino(self) -> int:
        return next(self._inos)

    def new_dir(self, mode: int, uid: int, gid: int) -> MemDir:
        return MemDir(self, self.new_ino(), mode, uid, gid, nlink=2)

    def new_file(self, mode: int, uid: int, gid: int) -> MemFile:
        return MemFile(self, self.new_ino(), mode, uid, gid, nlink=0)

    def new_symlink(self, target: bytes, uid: int, gid: int) -> MemSymlink:
        return MemSymlink(self, self.new_ino(), S_IFLNK | 0o777, uid, gid, nlink=0, target=target)

    def new_special(self, mode: int, rdev: int, uid: int, gid: int) -> MemSpecial:
        return MemSpecial(self, self.new_ino(), mode, uid, gid, nlink=0, rdev=rdev)

    def new_socket(self, mode: int, uid: int, gid: int, shadow: str) -> MemSocket:
        inode = MemSocket(self, self.new_ino(), mode, uid, gid, nlink=0)
        inode.shadow = shadow
        return inode
