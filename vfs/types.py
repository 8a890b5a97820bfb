"""The value types the syscall handlers see: locations, per-process fs state, stat results."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

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


class StatResult(NamedTuple):
    """What stat(2) reports. A tuple: building one is the hot path of every translated stat."""

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


_tuple_new = tuple.__new__


def make_stat(dev: int, ino: int, mode: int, nlink: int, uid: int, gid: int, rdev: int, size: int,
              blksize: int, blocks: int, atime_ns: int, mtime_ns: int, ctime_ns: int, btime_ns: int,
              mnt_id: int) -> StatResult:
    """StatResult(...) without the keyword handling of the generated __new__ (the hot path)."""
    return _tuple_new(StatResult, (dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks,
                                   atime_ns, mtime_ns, ctime_ns, btime_ns, mnt_id))


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
    # (dirfd, path, flags): an openat that gives the same host object again, when this open's
    # outcome holds until the VFS changes (an image file nobody wrote, found by a remembered
    # lookup); for the platform's answer cache.
    reopen: tuple[int, bytes, int] | None = None
