"""Shared pieces of the filesystem handlers: path arguments, dirfds, struct packing."""
from __future__ import annotations

import os
import stat as st
import struct
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F
from linuxabi.abi import x86_64

from vfs import Location, StatResult

if TYPE_CHECKING:
    from .base import Task

AT_FDCWD = F.AT_FDCWD


def err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def s32(v: int) -> int:
    """An int argument register as the kernel reads it (lower 32 bits, signed)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def path_arg(task: "Task", addr: int) -> bytes:
    path = task.mem.read_cstr(addr)
    return path


def dir_location(task: "Task", dirfd: int) -> Location:
    """The Location a guest dirfd names (AT_FDCWD is the cwd); ENOTDIR/EBADF as Linux."""
    dirfd = s32(dirfd)
    if dirfd == AT_FDCWD:
        return task.process.fs.cwd
    loc = fd_location(task, dirfd)
    if loc is None or not st.S_ISDIR(loc.inode.mode):
        raise err(E.ENOTDIR)
    if task.kernel.guard is not None:  # a dirfd into a revoked subtree is no base any more
        task.kernel.guard.see(loc.mount, loc.dentry)
    return loc


def fd_location(task: "Task", fd: int) -> Location | None:
    """The VFS Location behind guest fd ``fd``; None for host-only objects (pipes, sockets)."""
    fd = s32(fd)
    vfs = task.kernel.vfs
    key_of = getattr(task, "host_key", None)
    if key_of is not None:
        loc = vfs.location_of_host_key(*key_of(fd))
        if loc is None or not vfs.wants_host_stat(loc):
            return loc
    hfd = task.host_fd(fd)
    try:
        return vfs.location_of_host_fd(hfd)
    finally:
        os.close(hfd)


_ANON_DEVS: dict[str, int] = {}  # the kernel's internal mounts: "pipe" (pipefs), "memfd" (shmem)


def _anon_dev(kind: str) -> int:
    dev = _ANON_DEVS.get(kind)
    if dev is None:
        if kind == "pipe":
            r, w = os.pipe()
            dev = os.fstat(r).st_dev
            os.close(r)
            os.close(w)
        else:
            fd = os.memfd_create("linuxabi-probe", os.MFD_CLOEXEC)
            dev = os.fstat(fd).st_dev
            os.close(fd)
        dev = _ANON_DEVS[kind] = dev
    return dev


def anonymous_kind(hfd: int) -> str | None:
    """For a host fd the VFS did not hand out: "memfd", "pipe" or "socket" when it is one of
    those anonymous objects (made by the guest, or by us for it), else None. A guest can also
    hold host files it was given (its stdio redirected to a file, a named fifo): those are
    None, and a call that would run natively on an anonymous object must not run on them."""
    s = os.fstat(hfd)
    if st.S_ISSOCK(s.st_mode):
        return "socket"  # (its inode is sockfs's, even when bound to a path)
    if st.S_ISFIFO(s.st_mode) and s.st_dev == _anon_dev("pipe"):
        return "pipe"
    if st.S_ISREG(s.st_mode) and s.st_dev == _anon_dev("memfd"):
        return "memfd"
    return None


def base_for(task: "Task", dirfd: int, path: bytes) -> Location:
    """Where ``path`` starts: dirfd's directory for relative paths (absolute ones ignore it)."""
    if path.startswith(b"/"):
        return task.process.fs.cwd
    return dir_location(task, dirfd)


# struct stat, x86_64 kernel layout (144 bytes)
_STAT = struct.Struct("=QQQIIIIQqqqqqqqqq24x")


def pack_stat(s: StatResult) -> bytes:
    dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, atime, mtime, ctime, _b, _m = s
    return _STAT.pack(dev, ino, nlink, mode, uid, gid, 0, rdev, size, blksize, blocks,
                      atime // 1_000_000_000, atime % 1_000_000_000,
                      mtime // 1_000_000_000, mtime % 1_000_000_000,
                      ctime // 1_000_000_000, ctime % 1_000_000_000)


def stat_from_host(r: os.stat_result) -> StatResult:
    """A StatResult for a host-only object (pipe, socket, guest-made memfd): the kernel's view."""
    return StatResult(
        dev=r.st_dev, ino=r.st_ino, mode=r.st_mode, nlink=r.st_nlink, uid=r.st_uid, gid=r.st_gid,
        rdev=r.st_rdev, size=r.st_size, blksize=r.st_blksize, blocks=r.st_blocks,
        atime_ns=r.st_atime_ns, mtime_ns=r.st_mtime_ns, ctime_ns=r.st_ctime_ns,
        btime_ns=0, mnt_id=0,
    )


def _major(dev: int) -> int:
    return os.major(dev)


def _minor(dev: int) -> int:
    return os.minor(dev)


# struct statx (256 bytes)
_STATX_HEAD = struct.Struct("=IIQIIIHHQQQQ")
_STATX_TS = struct.Struct("=qIi")
_STATX_TAIL = struct.Struct("=IIIIQII")
STATX_BASIC = 0x7FF
STATX_BTIME = 0x800
STATX_MNT_ID = 0x1000


STATX_MTIME_CTIME = 0x40 | 0x80
_gated: int | None = None


def _host_gated_bits() -> int:
    """The statx fields this host kernel reports only when asked for, found by asking it once
    (a tmpfs file, with mask 0 and with every bit): on Linux 6.13+ (multigrain timestamps) that
    is mtime, ctime and btime, whose values are then zero as well; older kernels gate fewer."""
    global _gated
    if _gated is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)
        fd = os.memfd_create("linuxabi-statx-probe", os.MFD_CLOEXEC)
        try:
            def mask_for(want: int) -> int:
                if libc.syscall(x86_64.NR["statx"], fd, b"", F.AT_EMPTY_PATH, want, buf) != 0:
                    return 0
                return struct.unpack_from("=I", buf.raw)[0]
            _gated = (mask_for(0xFFF) & ~mask_for(0)) & (STATX_MTIME_CTIME | STATX_BTIME)
        finally:
            os.close(fd)
    return _gated


def pack_statx(s: StatResult, mask: int) -> bytes:
    got = STATX_BASIC | STATX_MNT_ID | (STATX_BTIME if s.btime_ns else 0)
    atime, btime, ctime, mtime = s.atime_ns, s.btime_ns, s.ctime_ns, s.mtime_ns
    # What the host leaves out (and zeroes) unless asked for; mtime and ctime go together:
    # asking for either reports both, as the kernel's multigrain timestamps do.
    asked = mask | (STATX_MTIME_CTIME if mask & STATX_MTIME_CTIME else 0)
    drop = _host_gated_bits() & ~asked
    if drop:
        got &= ~drop
        if drop & STATX_MTIME_CTIME:
            ctime = mtime = 0
        if drop & STATX_BTIME:
            btime = 0
    out = _STATX_HEAD.pack(
        got, s.blksize, 0, s.nlink, s.uid, s.gid, s.mode, 0, s.ino, s.size, s.blocks, 0
    )
    for t in (atime, btime, ctime, mtime):
        out += _STATX_TS.pack(t // 1_000_000_000, t % 1_000_000_000, 0)
    out += _STATX_TAIL.pack(_major(s.rdev), _minor(s.rdev), _major(s.dev), _minor(s.dev), s.mnt_id, 0, 0)
    return out.ljust(256, b"\0")
