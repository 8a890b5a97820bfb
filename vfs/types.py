"""The value types the syscall handlers see: locations, per-process fs state, stat results."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inode import Dentry, Inode
    from .mount import Mount


@dataclass(frozen=True)
class Location:
    """A place in the namespace: a (mount, dentry) pair, as Linux's ``struct path``.

    Mount and Dentry compare by identity, so two Locations are equal exactly when they name
    the same dentry through the same mount.
    """

    mount: "Mount"
    dentry: "Dentry"

    @property
    def inode(self) -> "Inode":
        return self.dentry.inode


@dataclass
class FsContext:
    """Per-process filesystem state (shared under CLONE_FS, copied on fork)."""

    root: Location
    cwd: Location
    umask: int = 0o022
    uid: int = 0  # fsuid
    gid: int = 0  # fsgid
    groups: tuple[int, ...] = ()
    ruid: int = 0  # real ids: access(2) checks with these
    rgid: int = 0

    def copy(self) -> "FsContext":
        return replace(self)


@dataclass(frozen=True)
class StatResult:
    dev: int
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    btime_ns: int
    mnt_id: int


_new = object.__new__


def make_stat(dev: int, ino: int, mode: int, nlink: int, uid: int, gid: int, rdev: int, size: int,
              blksize: int, blocks: int, atime_ns: int, mtime_ns: int, ctime_ns: int, btime_ns: int,
              mnt_id: int) -> StatResult:
    """StatResult(...) at a third of the cost (a frozen dataclass __init__ sets each field through
    object.__setattr__): stat is the hot path of the translator."""
    o = _new(StatResult)
    d = o.__dict__
    d["dev"] = dev
    d["ino"] = ino
    d["mode"] = mode
    d["nlink"] = nlink
    d["uid"] = uid
    d["gid"] = gid
    d["rdev"] = rdev
    d["size"] = size
    d["blksize"] = blksize
    d["blocks"] = blocks
    d["atime_ns"] = atime_ns
    d["mtime_ns"] = mtime_ns
    d["ctime_ns"] = ctime_ns
    d["btime_ns"] = btime_ns
    d["mnt_id"] = mnt_id
    return o


@dataclass(frozen=True)
class DirEntry:
    ino: int
    next_cookie: int  # d_off: where the next getdents call resumes
    dtype: int
    name: bytes


@dataclass
class Opened:
    location: Location
    host_fd: int  # owned by the caller
