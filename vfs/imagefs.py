"""ImageFs: a read-only view of a host directory (the guest image).

Directories are read lazily, once (one scandir + lstat per entry, then cached: the image is
assumed not to change). Metadata comes from the host lstat; inode numbers are the host's
(stable and unique within the image); st_dev is this instance's own. Opening a file opens
the host file O_RDONLY|O_NOFOLLOW relative to the image root fd. Nothing under the image
directory is ever written: no create, chmod or utime, and O_NOATIME so that reads do not
even move atimes.
"""
from __future__ import annotations

import ctypes
import os
import stat as st_
import struct
from typing import Any

from .errors import E, fail
from .filesystem import EXT4_SUPER_MAGIC, FileSystem
from .inode import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, Dentry, DirInode, Inode, SymlinkInode
from .special import SpecialInode

_OPEN_BASE = os.O_CLOEXEC | os.O_NOFOLLOW


def _times(s: os.stat_result) -> tuple[int, int, int, int]:
    return s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns, 0


def _host_magic(fd: int) -> int:
    """The host filesystem's f_type (statfs), so statfs answers what the image lives on."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the loaded libc (find_library runs ldconfig)
        buf = ctypes.create_string_buffer(128)
        if libc.fstatfs(fd, buf) == 0:
            return int(struct.unpack_from("=q", buf.raw)[0])
    except (OSError, AttributeError):
        pass
    return EXT4_SUPER_MAGIC


def _meta(fs: "ImageFs", s: os.stat_result) -> tuple[tuple[FileSystem, int, int, int, int], dict[str, Any]]:
    """Inode constructor arguments from a host lstat."""
    return (fs, s.st_ino, s.st_mode, s.st_uid, s.st_gid), {"nlink": s.st_nlink, "times": _times(s)}


class ImageFile(Inode):
    __slots__ = ("rel", "hsize", "hblocks", "hdev")
    stat_held = True  # metadata and size are the VFS's (a read-only image, or RAM)

    def __init__(self, fs: "ImageFs", rel: bytes, s: os.stat_result) -> None:
        a, kw = _meta(fs, s)
        super().__init__(*a, **kw)
        self.rel = rel
        self.hsize = s.st_size
        self.hblocks = s.st_blocks
        self.hdev = s.st_dev

    def host_key(self) -> tuple[int, int]:
        return self.hdev, self.ino  # the host file, which is never replaced (the image is read-only)

    def data_stat(self) -> tuple[int, int, int, int, int]:
        return self.hsize, self.hblocks, self.atime_ns, self.mtime_ns, self.ctime_ns

    def size(self) -> int:
        return self.hsize

    def open_host(self, flags: int) -> int:
        if flags & (os.O_ACCMODE | os.O_TRUNC):
            fail(E.EROFS)
        fs: ImageFs = self.fs  # type: ignore[assignment]
        return fs.open_rel(self.rel, os.O_RDONLY | (flags & (os.O_NONBLOCK | os.O_LARGEFILE | os.O_DIRECT)))

    def open_path(self) -> int:
        fs: ImageFs = self.fs  # type: ignore[assignment]
        return fs.open_rel(self.rel, os.O_PATH)

    def reopen(self, flags: int) -> tuple[int, bytes, int] | None:
        if flags & (os.O_ACCMODE | os.O_TRUNC):
            return None
        fs: ImageFs = self.fs  # type: ignore[assignment]
        # open_rel's flags (the reopen too tries O_NOATIME first, without it if refused)
        return fs.root_fd, self.rel, (os.O_RDONLY | (flags & (os.O_NONBLOCK | os.O_LARGEFILE | os.O_DIRECT))
                                      | _OPEN_BASE | os.O_NOATIME)


class ImageSymlink(SymlinkInode):
    __slots__ = ("rel", "hsize", "_target")
    stat_held = True  # metadata and size are the VFS's (a read-only image, or RAM)

    def __init__(self, fs: "ImageFs", rel: bytes, s: os.stat_result) -> None:
        a, kw = _meta(fs, s)
        super().__init__(*a, **kw)
        self.rel = rel
        self.hsize = s.st_size
        self._target: bytes | None = None  # read on first use

    def readlink(self) -> bytes:
        if self._target is None:
            fs: ImageFs = self.fs  # type: ignore[assignment]
            self._target = os.readlink(self.rel, dir_fd=fs.root_fd)
        return self._target

    def size(self) -> int:
        return self.hsize

    def open_path(self) -> int:
        fs: ImageFs = self.fs  # type: ignore[assignment]
        return fs.open_rel(self.rel, os.O_PATH)


class ImageSpecial(SpecialInode):
    """A fifo/socket/device node in the image: fifos get a scratch shadow, devices EACCES."""

    __slots__ = ()


class ImageDir(DirInode):
    __slots__ = ("rel", "hsize", "_children", "_order")
    stat_held = True  # metadata and size are the VFS's (a read-only image, or RAM)

    def __init__(self, fs: "ImageFs", rel: bytes, s: os.stat_result) -> None:
        a, kw = _meta(fs, s)
        super().__init__(*a, **kw)
        self.rel = rel
        self.hsize = s.st_size
        self._children: dict[bytes, Dentry] | None = None  # loaded on first lookup
        self._order: list[Dentry] | None = None

    def lookup(self, name: bytes) -> Dentry | None:
        ch = self._children
        if ch is None:
            ch = self._load()
        return ch.get(name)

    def listing(self) -> list[Dentry]:
        if self._order is None:
            ch = self._children if self._children is not None else self._load()
            self._order = list(ch.values())
        return self._order

    def size(self) -> int:
        return self.hsize

    def open_host(self, flags: int) -> int:
        fs: ImageFs = self.fs  # type: ignore[assignment]
        return fs.open_rel(self.rel, os.O_RDONLY | os.O_DIRECTORY | (flags & os.O_NONBLOCK))

    def open_path(self) -> int:
        fs: ImageFs = self.fs  # type: ignore[assignment]
        return fs.open_rel(self.rel, os.O_PATH | os.O_DIRECTORY)

    def _load(self) -> dict[bytes, Dentry]:
        fs: ImageFs = self.fs  # type: ignore[assignment]
        self._children = fs.load(self)
        return self._children


def _identity(host_dir: str) -> tuple[int, int, int]:
    s = os.stat(host_dir)
    return s.st_dev, s.st_ino, s.st_mtime_ns


# host directory -> (its identity then, an ImageFs with every directory read): see keep_loaded.
_KEPT: dict[str, tuple[tuple[int, int, int], "ImageFs"]] = {}


def keep_loaded(host_dir: str | os.PathLike[str]) -> None:
    """Read a whole image ahead and keep it for the next ``ImageFs.open`` of that directory: a
    server that forks a sandbox per run does this once, and each run starts with the image's
    directories read (a fresh image reads /bin, ~400 entries, on a program's first lookup)."""
    key = os.path.abspath(host_dir)
    identity = _identity(key)
    fs = ImageFs(key)
    fs.load_all()
    old = _KEPT.pop(key, None)
    if old is not None:
        old[1].close()
    _KEPT[key] = (identity, fs)


class ImageFs(FileSystem):
    readonly = True
    stable_names = True  # the host image directory is never written

    def __init__(self, host_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.host_dir = os.fspath(host_dir)
        self.root_fd = os.open(self.host_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.magic = _host_magic(self.root_fd)
        self._linked: dict[int, Inode] = {}  # host ino -> inode, for hard-linked non-directories

    def make_root(self) -> Inode:
        return self._inode(b".", os.fstat(self.root_fd))

    @classmethod
    def open(cls, host_dir: str | os.PathLike[str]) -> "ImageFs":
        """An ImageFs of ``host_dir``: the one ``keep_loaded`` read ahead, if it is of this very
        directory as it is now (taken once: each forked child has its own copy), else a new one."""
        host_dir = os.fspath(host_dir)
        kept = _KEPT.pop(os.path.abspath(host_dir), None) if _KEPT else None
        if kept is not None:
            identity, fs = kept
            try:
                same = _identity(host_dir) == identity
            except OSError:
                same = False
            if same:
                return fs
            fs.close()
        return cls(host_dir)

    def load_all(self) -> None:
        """Read every directory of the image now (each is otherwise read on its first lookup)."""
        pending: list[Inode] = [self.root.inode]
        while pending:
            d = pending.pop()
            if isinstance(d, ImageDir):
                pending.extend(dent.inode for dent in d.listing())

    def open_rel(self, rel: bytes, flags: int) -> int:
        """Open a path of the image relative to its root; O_NOATIME where the host allows it."""
        if not flags & os.O_PATH:
            try:
                return os.open(rel, flags | _OPEN_BASE | os.O_NOATIME, dir_fd=self.root_fd)
            except PermissionError:
                pass
        return os.open(rel, flags | _OPEN_BASE, dir_fd=self.root_fd)

    def load(self, d: ImageDir) -> dict[bytes, Dentry]:
        children: dict[bytes, Dentry] = {}
        fd = self.open_rel(d.rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(fd) as it:
                entries = [(os.fsencode(e.name), e.stat(follow_symlinks=False)) for e in it]
        finally:
            os.close(fd)
        prefix = b"" if d.rel == b"." else d.rel + b"/"
        for cookie, (name, s) in enumerate(entries, 2):
            inode = self._inode(prefix + name, s)
            dent = Dentry(name, d.dentry, inode, cookie)
            if isinstance(inode, DirInode):
                inode.dentry = dent
            children[name] = dent
        return children

    def _inode(self, rel: bytes, s: os.stat_result) -> Inode:
        kind = s.st_mode & S_IFMT
        if kind != S_IFDIR and s.st_nlink > 1:
            known = self._linked.get(s.st_ino)
            if known is not None:
                return known
        inode: Inode
        if kind == S_IFDIR:
            inode = ImageDir(self, rel, s)
        elif kind == S_IFREG:
            inode = ImageFile(self, rel, s)
        elif kind == S_IFLNK:
            inode = ImageSymlink(self, rel, s)
        else:
            a, kw = _meta(self, s)
            rdev = s.st_rdev if st_.S_ISCHR(s.st_mode) or st_.S_ISBLK(s.st_mode) else 0
            inode = ImageSpecial(*a, rdev=rdev, **kw)
        if kind != S_IFDIR and s.st_nlink > 1:
            self._linked[s.st_ino] = inode
        return inode

    def statfs(self) -> dict[str, int]:
        v = os.statvfs(self.root_fd)
        return {"f_type": self.magic, "f_bsize": v.f_bsize, "f_blocks": v.f_blocks, "f_bfree": v.f_bfree,
                "f_bavail": v.f_bavail, "f_files": v.f_files, "f_ffree": v.f_ffree,
                "f_namelen": v.f_namemax, "f_frsize": v.f_frsize, "f_flags": 1}

    def close(self) -> None:
        super().close()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1
