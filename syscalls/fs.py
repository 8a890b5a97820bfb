"""Filesystem syscalls, carried out on the sandbox's VFS."""
from __future__ import annotations

import dataclasses
import os
import stat as st
import struct
import time

from caps import Rights
from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from vfs.scoped import RESOLVE_ALL, RESOLVE_BENEATH, RESOLVE_IN_ROOT
from vfs.special import SpecialInode

from . import dirents
from .base import CONTINUE, Answers, InstallFd, Park, Result, Task
from .fsutil import (
    AT_FDCWD, anonymous_kind, base_for, dir_location, err, fd_location, pack_stat, pack_statx, path_arg, s32,
    stat_from_host,
)

Args = tuple[int, int, int, int, int, int]
_SEE = Rights(0)  # capability checks: "some capability covers it" (see syscalls.capguard)

_OPEN_VALID = (
    F.O_ACCMODE | F.O_CREAT | F.O_EXCL | F.O_NOCTTY | F.O_TRUNC | F.O_APPEND | F.O_NONBLOCK
    | F.O_DSYNC | F.O_SYNC | F.FASYNC | F.O_DIRECT | F.O_LARGEFILE | F.O_DIRECTORY | F.O_NOFOLLOW
    | F.O_NOATIME | F.O_CLOEXEC | F.O_PATH | F.O_TMPFILE
)


# A path that does not resolve: its stat's or open's failure may be answered again from the
# platform's cache, while no name changes (the lookup's remembered failure says so).
_KEPT_FAILURES = (E.ENOENT, E.ENOTDIR)

# ---- open ---------------------------------------------------------------------------------


def _do_open(task: Task, dirfd: int, path_addr: int, flags: int, mode: int, resolve: int = 0) -> Result:
    path = path_arg(task, path_addr)
    if not path:
        raise err(E.ENOENT)
    # the kernel ignores unknown open(2) flags (openat2 checks them)
    flags &= _OPEN_VALID | 0xFFFFFFFF
    if flags & F.O_TMPFILE == F.O_TMPFILE and flags & F.O_ACCMODE == F.O_RDONLY:
        raise err(E.EINVAL)
    # RESOLVE_BENEATH/IN_ROOT scope even an absolute path to the dirfd's directory
    scoped = resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT)
    base = dir_location(task, dirfd) if scoped else base_for(task, dirfd, path)
    vfs = task.kernel.vfs
    try:
        opened = vfs.open(task.process.fs, base, path, flags & ~F.O_CLOEXEC, mode & 0o7777, resolve)
    except OSError as e:
        answers = task.kernel.answers
        if answers is not None and e.errno in _KEPT_FAILURES and not resolve and path[:1] == b"/" \
                and not flags & (F.O_ACCMODE | F.O_CREAT | F.O_TRUNC | F.O_TMPFILE) \
                and vfs.failure_kept(task.process.fs, path, follow=not flags & F.O_NOFOLLOW) == e.errno:
            answers.remember_open_error(task, flags, path, e.errno)  # (ls -l: /etc/localtime per file)
        raise
    if flags & F.O_PATH:
        # O_PATH files cannot be injected: hand over a stand-in that names the same object
        os.close(opened.host_fd)
        return InstallFd(vfs.stand_in_fd(opened.location), bool(flags & F.O_CLOEXEC))
    inode = opened.location.inode
    if isinstance(inode, SpecialInode) and st.S_ISFIFO(inode.mode):
        return _fifo_opened(task, inode, opened.host_fd, flags)
    answers = task.kernel.answers
    if answers is not None and opened.reopen is not None and not resolve and path[:1] == b"/":
        guard = task.kernel.guard
        if guard is None or not guard.records_opens:  # (a recorded open must reach the log)
            answers.remember_open(task, flags, path, opened.reopen)
    return InstallFd(opened.host_fd, bool(flags & F.O_CLOEXEC))


def _fifo_opened(task: Task, fifo: SpecialInode, fd: int, flags: int) -> Result:
    """Linux blocks a fifo's open for reading until a writer is there, and for writing until a
    reader is (a guest blocked in such an open counts as one). The VFS already opened the host
    fifo without blocking; the answer waits here, parked, until the other end arrives, and a
    signal interrupts it as it would the kernel's wait."""
    acc = flags & F.O_ACCMODE
    fifo.arrived(acc)
    cloexec = bool(flags & F.O_CLOEXEC)
    if flags & F.O_NONBLOCK or acc not in (F.O_RDONLY, F.O_WRONLY):
        return InstallFd(fd, cloexec, counted=True)
    other = F.O_WRONLY if acc == F.O_RDONLY else F.O_RDONLY
    if fifo.waiting(other) or _fifo_end_open(task, os.fstat(fd), want_write=other == F.O_WRONLY):
        return InstallFd(fd, cloexec, counted=True)
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    fifo.wait(acc, efd)

    def done() -> None:
        fifo.unwait(acc, efd)
        os.close(efd)

    def finish() -> Result:
        done()
        return InstallFd(fd, cloexec, counted=True)

    def cancel() -> None:
        done()
        os.close(fd)
    return Park(efd, finish, cancel=cancel)


def _fifo_end_open(task: Task, fifo: os.stat_result, *, want_write: bool) -> bool:
    """Whether some guest process holds the fifo open for writing (or reading): read off the
    fd tables themselves, as fds travel natively (dup, fork, SCM_RIGHTS). Fifo opens are rare."""
    kernel = task.kernel
    for proc in list(kernel.processes.values()):
        for gfd in kernel.proc_fds(proc):
            try:
                s = os.stat(f"/proc/{proc.host_pid}/fd/{gfd}")
                if (s.st_dev, s.st_ino) != (fifo.st_dev, fifo.st_ino):
                    continue
                with open(f"/proc/{proc.host_pid}/fdinfo/{gfd}", "rb") as f:
                    acc = int(f.read().split(b"flags:", 1)[1].split()[0], 8) & F.O_ACCMODE
            except (OSError, IndexError, ValueError):
                continue
            if acc == F.O_RDWR or acc == (F.O_WRONLY if want_write else F.O_RDONLY):
                return True
    return False


def sys_open(task: Task, a: Args) -> Result:
    return _do_open(task, AT_FDCWD, a[0], s32(a[1]), a[2])


def sys_openat(task: Task, a: Args) -> Result:
    return _do_open(task, a[0], a[1], s32(a[2]), a[3])


def sys_creat(task: Task, a: Args) -> Result:
    return _do_open(task, AT_FDCWD, a[0], F.O_CREAT | F.O_WRONLY | F.O_TRUNC, a[1])


_OPEN_HOW = struct.Struct("=QQQ")


def sys_openat2(task: Task, a: Args) -> Result:
    size = a[3]
    if size < _OPEN_HOW.size or size > 4096:
        raise err(E.EINVAL)
    raw = task.mem.read(a[2], size)
    if any(raw[_OPEN_HOW.size:]):
        raise err(E.E2BIG)
    flags, mode, resolve = _OPEN_HOW.unpack_from(raw)
    if flags & ~_OPEN_VALID or resolve & ~RESOLVE_ALL:
        raise err(E.EINVAL)
    if mode and not flags & (F.O_CREAT | F.O_TMPFILE):
        raise err(E.EINVAL)
    if mode & ~0o7777:
        raise err(E.EINVAL)
    if resolve & RESOLVE_BENEATH and resolve & RESOLVE_IN_ROOT:
        raise err(E.EINVAL)
    return _do_open(task, a[0], a[1], flags, mode, resolve)


# ---- stat family ----------------------------------------------------------------------------


def _stat_fd(task: Task, fd: int):
    loc = fd_location(task, fd)
    if loc is None:  # a pipe or socket: the host's own view of it
        hfd = task.host_fd(s32(fd))
        try:
            return stat_from_host(os.fstat(hfd))
        finally:
            os.close(hfd)
    task.kernel.check_location(loc, _SEE, "fstat")
    return task.kernel.vfs.stat_location(loc)


def _stat_path(task: Task, dirfd: int, path_addr: int, flags: int):
    return _stat_read_path(task, dirfd, task.mem.read_cstr(path_addr), flags)


def _stat_read_path(task: Task, dirfd: int, path: bytes, flags: int):
    if not path:
        if flags & F.AT_EMPTY_PATH:
            if s32(dirfd) == AT_FDCWD:
                return task.kernel.vfs.stat_location(task.process.fs.cwd)
            return _stat_fd(task, dirfd)
        raise err(E.ENOENT)
    base = base_for(task, dirfd, path)
    return task.kernel.vfs.stat(task.process.fs, base, path, follow=not flags & F.AT_SYMLINK_NOFOLLOW)


def sys_stat(task: Task, a: Args) -> Result:
    task.mem.write(a[1], pack_stat(_stat_path(task, AT_FDCWD, a[0], 0)))
    return 0


def sys_lstat(task: Task, a: Args) -> Result:
    task.mem.write(a[1], pack_stat(_stat_path(task, AT_FDCWD, a[0], F.AT_SYMLINK_NOFOLLOW)))
    return 0


def sys_fstat(task: Task, a: Args) -> Result:
    task.mem.write(a[1], pack_stat(_stat_fd(task, a[0])))
    return 0


_NEWFSTATAT_FLAGS = F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH | F.AT_NO_AUTOMOUNT


def sys_newfstatat(task: Task, a: Args) -> Result:
    flags = a[3] & 0xFFFFFFFF
    if flags & ~_NEWFSTATAT_FLAGS:
        raise err(E.EINVAL)
    mem = task.mem
    path = mem.read_cstr(a[1])
    answers = task.kernel.answers
    if path[:1] == b"/":  # the hot path (a program's stat of an absolute path), inline
        follow = not flags & F.AT_SYMLINK_NOFOLLOW
        vfs, fs = task.kernel.vfs, task.process.fs
        try:
            s, held = vfs.stat_held(fs, path, follow=follow)
        except OSError as e:
            if answers is not None and e.errno in _KEPT_FAILURES and vfs.failure_kept(fs, path, follow=follow) == e.errno:
                answers.remember_stat_error(task, follow, path, e.errno)
            raise
        packed = pack_stat(s)
        mem.write(a[2], packed)
        if held and answers is not None:
            answers.remember_path(task, follow, path, packed)
        return 0
    if not path and flags & F.AT_EMPTY_PATH and answers is not None and s32(a[0]) >= 0:
        _fstat_kept(task, s32(a[0]), a[2], answers)
        return 0
    mem.write(a[2], pack_stat(_stat_read_path(task, a[0], path, flags)))
    return 0


def _fstat_kept(task: Task, fd: int, buf: int, answers: Answers) -> None:
    """fstat of guest fd ``fd`` into ``buf``, its answer left in ``answers`` if it holds."""
    key_of = getattr(task, "host_key", None)  # a platform that keeps answers has it
    key = key_of(fd) if key_of is not None else None
    vfs = task.kernel.vfs
    loc = vfs.location_of_host_key(*key) if key is not None else None
    if key is None or loc is None or vfs.wants_host_stat(loc):
        task.mem.write(buf, pack_stat(_stat_fd(task, fd)))
        return
    task.kernel.check_location(loc, _SEE, "fstat")
    packed = pack_stat(vfs.stat_location(loc))
    task.mem.write(buf, packed)
    inode = loc.inode
    if inode.stat_held:
        answers.remember_fd(task, key, packed, live=False)
    elif inode.stat_live:
        answers.remember_fd(task, key, packed, live=True)


_STATX_FLAGS = F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH | F.AT_NO_AUTOMOUNT | 0x6000  # AT_STATX_SYNC_TYPE


def sys_statx(task: Task, a: Args) -> Result:
    flags, mask = s32(a[2]), a[3] & 0xFFFFFFFF
    if flags & ~_STATX_FLAGS or flags & 0x6000 == 0x6000 or mask & 0x80000000:
        raise err(E.EINVAL)
    if a[1] == 0:  # NULL path with AT_EMPTY_PATH means the fd (Linux 6.11+)
        if not flags & F.AT_EMPTY_PATH:
            raise err(E.EFAULT)
        s = _stat_fd(task, a[0]) if s32(a[0]) != AT_FDCWD else task.kernel.vfs.stat_location(task.process.fs.cwd)
    else:
        s = _stat_path(task, a[0], a[1], flags)
    task.mem.write(a[4], pack_statx(s, mask))
    return 0


# ---- access ---------------------------------------------------------------------------------


def _access(task: Task, dirfd: int, path_addr: int, mode: int, flags: int) -> Result:
    if mode & ~7:
        raise err(E.EINVAL)
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EACCESS | F.AT_EMPTY_PATH):
        raise err(E.EINVAL)
    path = path_arg(task, path_addr)
    ctx = task.process.fs
    if not flags & F.AT_EACCESS and (ctx.ruid, ctx.rgid) != (ctx.uid, ctx.gid):
        ctx = dataclasses.replace(ctx, uid=ctx.ruid, gid=ctx.rgid)  # access(2) asks as the real ids
    if not path:
        if not flags & F.AT_EMPTY_PATH:
            raise err(E.ENOENT)
        loc = ctx.cwd if s32(dirfd) == AT_FDCWD else fd_location(task, dirfd)
        if loc is None:
            return 0  # a pipe or socket: Linux grants access to what one already holds
        task.kernel.vfs.access(ctx, loc, b".", mode)
        return 0
    base = base_for(task, dirfd, path)
    task.kernel.vfs.access(ctx, base, path, mode, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    return 0


def sys_access(task: Task, a: Args) -> Result:
    return _access(task, AT_FDCWD, a[0], s32(a[1]), 0)


def sys_faccessat(task: Task, a: Args) -> Result:
    return _access(task, a[0], a[1], s32(a[2]), 0)


def sys_faccessat2(task: Task, a: Args) -> Result:
    return _access(task, a[0], a[1], s32(a[2]), s32(a[3]))


# ---- namespace changes ----------------------------------------------------------------------


def _at(task: Task, dirfd: int, addr: int):
    path = path_arg(task, addr)
    if not path:
        raise err(E.ENOENT)
    return base_for(task, dirfd, path), path


def sys_mkdir(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    task.kernel.vfs.mkdir(task.process.fs, base, path, a[1] & 0o7777)
    return 0


def sys_mkdirat(task: Task, a: Args) -> Result:
    base, path = _at(task, a[0], a[1])
    task.kernel.vfs.mkdir(task.process.fs, base, path, a[2] & 0o7777)
    return 0


def _mknod(task: Task, dirfd: int, addr: int, mode: int, dev: int) -> Result:
    base, path = _at(task, dirfd, addr)
    mode &= 0xFFFF
    if st.S_IFMT(mode) == 0:
        mode |= st.S_IFREG
    task.kernel.vfs.mknod(task.process.fs, base, path, mode, dev & 0xFFFFFFFF)
    return 0


def sys_mknod(task: Task, a: Args) -> Result:
    return _mknod(task, AT_FDCWD, a[0], a[1], a[2])


def sys_mknodat(task: Task, a: Args) -> Result:
    return _mknod(task, a[0], a[1], a[2], a[3])


def sys_unlink(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    task.kernel.vfs.unlink(task.process.fs, base, path)
    return 0


def sys_rmdir(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    task.kernel.vfs.rmdir(task.process.fs, base, path)
    return 0


def sys_unlinkat(task: Task, a: Args) -> Result:
    flags = s32(a[2])
    if flags & ~F.AT_REMOVEDIR:
        raise err(E.EINVAL)
    base, path = _at(task, a[0], a[1])
    if flags & F.AT_REMOVEDIR:
        task.kernel.vfs.rmdir(task.process.fs, base, path)
    else:
        task.kernel.vfs.unlink(task.process.fs, base, path)
    return 0


def _rename(task: Task, d1: int, p1: int, d2: int, p2: int, flags: int) -> Result:
    if flags & ~(F.RENAME_NOREPLACE | F.RENAME_EXCHANGE | F.RENAME_WHITEOUT):
        raise err(E.EINVAL)
    if flags & F.RENAME_EXCHANGE and flags & (F.RENAME_NOREPLACE | F.RENAME_WHITEOUT):
        raise err(E.EINVAL)
    if flags & F.RENAME_WHITEOUT:
        raise err(E.EPERM)
    b1, path1 = _at(task, d1, p1)
    b2, path2 = _at(task, d2, p2)
    task.kernel.vfs.rename(task.process.fs, b1, path1, b2, path2, flags)
    return 0


def sys_rename(task: Task, a: Args) -> Result:
    return _rename(task, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)


def sys_renameat(task: Task, a: Args) -> Result:
    return _rename(task, a[0], a[1], a[2], a[3], 0)


def sys_renameat2(task: Task, a: Args) -> Result:
    return _rename(task, a[0], a[1], a[2], a[3], s32(a[4]))


def _link(task: Task, d1: int, p1: int, d2: int, p2: int, flags: int) -> Result:
    if flags & ~(F.AT_SYMLINK_FOLLOW | F.AT_EMPTY_PATH):
        raise err(E.EINVAL)
    if flags & F.AT_EMPTY_PATH and not path_arg(task, p1):
        # linkat(fd, "", AT_EMPTY_PATH): name the file fd refers to (an O_TMPFILE file, say)
        old = task.process.fs.cwd if s32(d1) == AT_FDCWD else _fd_loc_or_ebadf(task, d1, allow_o_path=True)
        b2, path2 = _at(task, d2, p2)
        task.kernel.vfs.link_location(task.process.fs, old, b2, path2)
        return 0
    b1, path1 = _at(task, d1, p1)
    b2, path2 = _at(task, d2, p2)
    task.kernel.vfs.link(task.process.fs, b1, path1, b2, path2, follow=bool(flags & F.AT_SYMLINK_FOLLOW))
    return 0


def sys_link(task: Task, a: Args) -> Result:
    return _link(task, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)


def sys_linkat(task: Task, a: Args) -> Result:
    return _link(task, a[0], a[1], a[2], a[3], s32(a[4]))


def _symlink(task: Task, target_addr: int, dirfd: int, addr: int) -> Result:
    target = path_arg(task, target_addr)
    if not target:
        raise err(E.ENOENT)
    base, path = _at(task, dirfd, addr)
    task.kernel.vfs.symlink(task.process.fs, target, base, path)
    return 0


def sys_symlink(task: Task, a: Args) -> Result:
    return _symlink(task, a[0], AT_FDCWD, a[1])


def sys_symlinkat(task: Task, a: Args) -> Result:
    return _symlink(task, a[0], a[1], a[2])


def _readlink(task: Task, dirfd: int, addr: int, buf: int, size: int) -> Result:
    size = s32(size)
    if size <= 0:
        raise err(E.EINVAL)
    path = path_arg(task, addr)  # (read once: busybox's readlink of /proc/self/exe is per exec)
    if not path:
        if s32(dirfd) == AT_FDCWD:
            raise err(E.ENOENT)
        # readlinkat(fd, "", ...): the symlink an O_PATH|O_NOFOLLOW fd names
        loc = _fd_loc_or_ebadf(task, dirfd, allow_o_path=True)
        if not st.S_ISLNK(loc.inode.mode):
            raise err(E.ENOENT)
        task.kernel.check_location(loc, _SEE, "readlink")
        target = loc.inode.readlink()[:size]
        task.mem.write(buf, target)
        return len(target)
    target = task.kernel.proc_self_exe(task.process) if path == b"/proc/self/exe" else None
    if target is None:
        target = task.kernel.vfs.readlink(task.process.fs, base_for(task, dirfd, path), path)
    target = target[:size]
    task.mem.write(buf, target)
    return len(target)


def sys_readlink(task: Task, a: Args) -> Result:
    return _readlink(task, AT_FDCWD, a[0], a[1], a[2])


def sys_readlinkat(task: Task, a: Args) -> Result:
    return _readlink(task, a[0], a[1], a[2], a[3])


# ---- metadata -------------------------------------------------------------------------------


def _fd_loc_or_ebadf(task: Task, fd: int, *, allow_o_path: bool = False):
    hfd = task.host_fd(s32(fd))
    try:
        loc = task.kernel.vfs.location_of_host_fd(hfd)
        if loc is None:
            raise err(E.EPERM)  # a host-only object (pipe, socket): its metadata is not ours to change
        if not allow_o_path and task.kernel.vfs.is_stand_in(hfd):
            raise err(E.EBADF)  # fchmod/fchown/futimens need a real open, as on Linux
        return loc
    finally:
        os.close(hfd)


def sys_chmod(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    task.kernel.vfs.chmod(task.process.fs, base, path, a[1] & 0o7777)
    return 0


def _fd_loc_or_own(task: Task, fd: int):
    """The VFS location behind guest fd ``fd``, or None for an anonymous object of the guest's
    own (a memfd it made, a pipe, a socket): that object's metadata is the host kernel's, so a
    call on it (no pointer arguments) runs natively, with the guest's credentials. A host file
    it was given (stdio redirected to one) is EPERM: its metadata is not the guest's to change."""
    hfd = task.host_fd(s32(fd))
    try:
        vfs = task.kernel.vfs
        loc = vfs.location_of_host_fd(hfd)
        if loc is None and anonymous_kind(hfd) is None:
            raise err(E.EPERM)
        if loc is not None and vfs.is_stand_in(hfd):
            raise err(E.EBADF)  # fchmod/fchown need a real open, as on Linux
        return loc
    finally:
        os.close(hfd)


def sys_fchmod(task: Task, a: Args) -> Result:
    loc = _fd_loc_or_own(task, a[0])
    if loc is None:
        return CONTINUE
    task.kernel.vfs.chmod_location(task.process.fs, loc, a[1] & 0o7777)
    return 0


def sys_fchmodat(task: Task, a: Args) -> Result:
    base, path = _at(task, a[0], a[1])
    task.kernel.vfs.chmod(task.process.fs, base, path, a[2] & 0o7777)
    return 0


def sys_fchmodat2(task: Task, a: Args) -> Result:
    """fchmodat with flags (Linux 6.6): AT_SYMLINK_NOFOLLOW (a symlink's own mode cannot be
    changed: EOPNOTSUPP), AT_EMPTY_PATH (the dirfd itself)."""
    flags = s32(a[3])
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise err(E.EINVAL)
    vfs, ctx = task.kernel.vfs, task.process.fs
    path = path_arg(task, a[1])
    if not path:
        if not flags & F.AT_EMPTY_PATH:
            raise err(E.ENOENT)
        loc = ctx.cwd if s32(a[0]) == AT_FDCWD else fd_location(task, a[0])
        if loc is None:
            raise err(E.EBADF)  # a pipe or socket: not a VFS object this chmod reaches
    else:
        loc = vfs.lookup(ctx, base_for(task, a[0], path), path, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    vfs.chmod_location(ctx, loc, a[2] & 0o7777)
    return 0


def _id(v: int) -> int:
    v &= 0xFFFFFFFF
    return -1 if v == 0xFFFFFFFF else v


def sys_chown(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    task.kernel.vfs.chown(task.process.fs, base, path, _id(a[1]), _id(a[2]))
    return 0


def sys_lchown(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    task.kernel.vfs.chown(task.process.fs, base, path, _id(a[1]), _id(a[2]), follow=False)
    return 0


def sys_fchown(task: Task, a: Args) -> Result:
    loc = _fd_loc_or_own(task, a[0])
    if loc is None:
        return CONTINUE
    task.kernel.vfs.chown_location(task.process.fs, loc, _id(a[1]), _id(a[2]))
    return 0


def sys_fchownat(task: Task, a: Args) -> Result:
    flags = s32(a[4])
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise err(E.EINVAL)
    path = path_arg(task, a[1])
    if not path and flags & F.AT_EMPTY_PATH:
        loc = task.process.fs.cwd if s32(a[0]) == AT_FDCWD else _fd_loc_or_ebadf(task, a[0], allow_o_path=True)
        task.kernel.vfs.chown_location(task.process.fs, loc, _id(a[2]), _id(a[3]))
        return 0
    if not path:
        raise err(E.ENOENT)
    base = base_for(task, a[0], path)
    task.kernel.vfs.chown(task.process.fs, base, path, _id(a[2]), _id(a[3]),
                          follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    return 0


def sys_umask(task: Task, a: Args) -> Result:
    old = task.process.fs.umask
    task.process.fs.umask = a[0] & 0o777
    return old


def sys_truncate(task: Task, a: Args) -> Result:
    length = a[1] if a[1] < 1 << 63 else a[1] - (1 << 64)
    if length < 0:
        raise err(E.EINVAL)
    base, path = _at(task, AT_FDCWD, a[0])
    limit_of = getattr(task, "file_size_limit", None)
    if limit_of is not None and length > (limit := limit_of()) >= 0:
        # Linux's order: the lookup's errors first, then SIGXFSZ and EFBIG for a regular file.
        if st.S_ISREG(task.kernel.vfs.stat(task.process.fs, base, path).mode):
            raise_signal = getattr(task, "raise_signal", None)
            if raise_signal is not None:
                raise_signal(F.SIGXFSZ)
            raise err(E.EFBIG)
    task.kernel.vfs.truncate(task.process.fs, base, path, length)
    return 0


_TIMESPEC2 = struct.Struct("=qqqq")
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _ts_to_ns(sec: int, nsec: int, now: int) -> int | None:
    if nsec == UTIME_OMIT:
        return None
    if nsec == UTIME_NOW:
        return now
    if not 0 <= nsec < 1_000_000_000:
        raise err(E.EINVAL)
    return sec * 1_000_000_000 + nsec


def _utimens(task: Task, dirfd: int, path_addr: int, times: tuple[int | None, int | None], flags: int) -> Result:
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise err(E.EINVAL)
    vfs = task.kernel.vfs
    if path_addr == 0:  # futimens: the fd itself
        loc = task.process.fs.cwd if s32(dirfd) == AT_FDCWD else _fd_loc_or_ebadf(task, dirfd)
        if s32(dirfd) == AT_FDCWD:
            raise err(E.EFAULT)
        vfs.utimens_location(task.process.fs, loc, times[0], times[1])
        return 0
    path = path_arg(task, path_addr)
    if not path:
        if flags & F.AT_EMPTY_PATH:
            loc = task.process.fs.cwd if s32(dirfd) == AT_FDCWD else _fd_loc_or_ebadf(task, dirfd, allow_o_path=True)
            vfs.utimens_location(task.process.fs, loc, times[0], times[1])
            return 0
        raise err(E.ENOENT)
    base = base_for(task, dirfd, path)
    vfs.utimens(task.process.fs, base, path, times[0], times[1], follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    return 0


def sys_utimensat(task: Task, a: Args) -> Result:
    now = time.time_ns()
    if a[2]:
        s1, n1, s2, n2 = _TIMESPEC2.unpack(task.mem.read(a[2], _TIMESPEC2.size))
        times = (_ts_to_ns(s1, n1, now), _ts_to_ns(s2, n2, now))
    else:
        times = (now, now)
    return _utimens(task, a[0], a[1], times, s32(a[3]))


_TIMEVAL2 = struct.Struct("=qqqq")


def _timeval_times(task: Task, addr: int) -> tuple[int | None, int | None]:
    if not addr:
        now = time.time_ns()
        return now, now
    s1, u1, s2, u2 = _TIMEVAL2.unpack(task.mem.read(addr, _TIMEVAL2.size))
    if not (0 <= u1 < 1_000_000 and 0 <= u2 < 1_000_000):
        raise err(E.EINVAL)
    return s1 * 1_000_000_000 + u1 * 1000, s2 * 1_000_000_000 + u2 * 1000


def sys_utimes(task: Task, a: Args) -> Result:
    return _utimens(task, AT_FDCWD, a[0], _timeval_times(task, a[1]), 0)


def sys_futimesat(task: Task, a: Args) -> Result:
    return _utimens(task, a[0], a[1], _timeval_times(task, a[2]), 0)


def sys_utime(task: Task, a: Args) -> Result:
    if a[1]:
        at, mt = struct.unpack("=qq", task.mem.read(a[1], 16))
        times: tuple[int | None, int | None] = (at * 1_000_000_000, mt * 1_000_000_000)
    else:
        now = time.time_ns()
        times = (now, now)
    return _utimens(task, AT_FDCWD, a[0], times, 0)


# ---- directories ----------------------------------------------------------------------------


def _getdents(task: Task, a: Args, *, legacy: bool) -> Result:
    count = a[2] & 0xFFFFFFFF
    hfd = task.host_fd(s32(a[0]))
    try:
        loc = task.kernel.vfs.location_of_host_fd(hfd)
        if loc is not None and task.kernel.vfs.is_stand_in(hfd):
            raise err(E.EBADF)  # an O_PATH fd
        if loc is None or not st.S_ISDIR(loc.inode.mode):
            raise err(E.ENOTDIR)
        task.kernel.check_location(loc, Rights.READ, "getdents")
        # The guest's own open file description keeps the position (f_pos): shared with our
        # dup, so telldir/seekdir/rewinddir (native lseek) just work.
        cookie = os.lseek(hfd, 0, os.SEEK_CUR)
        entries, parent_ino = task.kernel.vfs.listing(loc)
        taken = dirents.packed(loc.inode, parent_ino, entries, legacy).take(cookie, count)
        if taken is None:
            raise err(E.EINVAL)  # the next record alone is larger than the buffer
        records, cookie = taken
        size = len(records)
        if size:
            task.mem.write(a[1], records)
        os.lseek(hfd, cookie, os.SEEK_SET)
        return size
    finally:
        os.close(hfd)


def sys_getdents64(task: Task, a: Args) -> Result:
    return _getdents(task, a, legacy=False)


def sys_getdents(task: Task, a: Args) -> Result:
    return _getdents(task, a, legacy=True)


def sys_getcwd(task: Task, a: Args) -> Result:
    path = task.kernel.vfs.getcwd(task.process.fs) + b"\0"
    if a[1] < len(path):
        raise err(E.ERANGE)
    task.mem.write(a[0], path)
    return len(path)


def sys_chdir(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    fs = task.process.fs
    loc = task.kernel.vfs.lookup(fs, base, path, directory=True)
    task.kernel.vfs.access(fs, loc, b".", 1)
    task.kernel.check_search(loc, "chdir")
    fs.cwd = loc
    return 0


def sys_fchdir(task: Task, a: Args) -> Result:
    loc = fd_location(task, a[0])
    if loc is None or not st.S_ISDIR(loc.inode.mode):
        raise err(E.ENOTDIR)
    task.kernel.vfs.access(task.process.fs, loc, b".", 1)
    task.kernel.check_search(loc, "chdir")
    task.process.fs.cwd = loc
    return 0


def sys_chroot(task: Task, a: Args) -> Result:
    fs = task.process.fs
    if fs.uid != 0:
        raise err(E.EPERM)
    base, path = _at(task, AT_FDCWD, a[0])
    loc = task.kernel.vfs.lookup(fs, base, path, directory=True)
    task.kernel.check_search(loc, "chroot")
    fs.root = loc
    return 0


# ---- statfs -----------------------------------------------------------------------------------

_STATFS = struct.Struct("=qqQQQQQiiqqq4q")  # struct statfs (x86_64, 120 bytes)


def _pack_statfs(d: dict) -> bytes:
    return _STATFS.pack(
        d.get("f_type", 0x01021994), d.get("f_bsize", 4096), d.get("f_blocks", 0), d.get("f_bfree", 0),
        d.get("f_bavail", 0), d.get("f_files", 0), d.get("f_ffree", 0), 0, 0,
        d.get("f_namelen", 255), d.get("f_frsize", d.get("f_bsize", 4096)), d.get("f_flags", 0), 0, 0, 0, 0,
    )


def sys_statfs(task: Task, a: Args) -> Result:
    base, path = _at(task, AT_FDCWD, a[0])
    loc = task.kernel.vfs.lookup(task.process.fs, base, path)
    task.kernel.check_location(loc, _SEE, "statfs")
    task.mem.write(a[1], _pack_statfs(task.kernel.vfs.statfs(loc)))
    return 0


def sys_fstatfs(task: Task, a: Args) -> Result:
    loc = fd_location(task, a[0])
    if loc is None:
        hfd = task.host_fd(s32(a[0]))
        try:
            r = os.fstatvfs(hfd)
        finally:
            os.close(hfd)
        d = {"f_type": 0x50495045, "f_bsize": r.f_bsize, "f_namelen": r.f_namemax}  # PIPEFS_MAGIC
    else:
        task.kernel.check_location(loc, _SEE, "statfs")
        d = task.kernel.vfs.statfs(loc)
    task.mem.write(a[1], _pack_statfs(d))
    return 0
