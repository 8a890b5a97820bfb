"""execve/execveat: resolve the program, its #! interpreter and ELF headers in the VFS.

The host kernel still performs the exec (fresh address space, close-on-exec, signal reset),
but on a file the translator opened and checked: the platform rewrites the guest's call into
execveat(fd, "", argv, envp, AT_EMPTY_PATH). The path string in guest memory is read once
and never trusted again.
"""
from __future__ import annotations

import io
import os
import stat as st

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from .base import ExecPlan, Result, Task
from .elfverdicts import ElfVerdicts, default_path
from vfs.types import Location

from .fsutil import AT_FDCWD, anonymous_kind, base_for, err, fd_location, s32

Args = tuple[int, int, int, int, int, int]
BINPRM_BUF_SIZE = 256
MAX_INTERP_DEPTH = 4  # Linux gives ELOOP past 4 nested interpreters
MAX_ARG_STRLEN = 32 * 4096


def _read_strings(task: Task, addr: int) -> list[bytes]:
    if addr == 0:
        return []
    return [task.mem.read_cstr(p, MAX_ARG_STRLEN) for p in task.mem.read_ptr_array(addr)]


def _open_checked(task: Task, base, path: bytes, *, follow: bool) -> tuple[int, bytes]:
    """Open ``path`` for exec after Linux's checks; returns (host fd, absolute guest path)."""
    vfs, fs = task.kernel.vfs, task.process.fs
    m, d, magic = vfs.resolve(fs, base, path, follow)
    if follow and magic is not None and d.inode is magic:
        # A /proc/PID/fd link to a file of the guest's own outside the VFS (a memfd it wrote)
        return _checked_own_file(task, magic.open_host(os.O_RDONLY))
    loc = Location(m, d)
    _check_exec(task, loc)  # (a symlink, the one thing open's O_NOFOLLOW would refuse, fails here)
    opened = vfs.open_location(fs, loc, os.O_RDONLY)  # what the lookup found: no second walk
    return opened.host_fd, vfs.path_of(loc, fs.root)


def _checked_own_file(task: Task, fd: int) -> tuple[int, bytes]:
    """Exec of a memfd the guest made and wrote (outside the VFS): Linux's checks on it (a
    regular file with an exec bit), and its name as Linux shows it ("/memfd:NAME (deleted)").
    No capability is asked: the guest can already run that code (it wrote it, and may map it
    executable); the exec is audited like any other. Any other host file a guest holds (its
    stdio may be one) is EACCES: running it would be an exec no capability granted."""
    try:
        s = os.fstat(fd)
        if anonymous_kind(fd) != "memfd" or not s.st_mode & 0o111:
            raise err(E.EACCES)
        name = os.readlink(f"/proc/self/fd/{fd}").encode()
    except BaseException:
        os.close(fd)
        raise
    task.kernel.audit_exec(name)
    return fd, name


def _check_exec(task: Task, loc) -> None:
    s = task.kernel.vfs.stat_location(loc)
    if st.S_ISLNK(s.mode):
        raise err(E.ELOOP)
    if not st.S_ISREG(s.mode):
        raise err(E.EACCES)
    if not s.mode & 0o111:
        raise err(E.EACCES)
    task.kernel.authorize_exec(loc)  # the sandbox's capability to exec it: EACCES + audit record
    fs = task.process.fs
    if fs.uid != 0:
        if s.uid == fs.uid:
            ok = s.mode & 0o100
        elif s.gid == fs.gid or s.gid in fs.groups:
            ok = s.mode & 0o010
        else:
            ok = s.mode & 0o001
        if not ok:
            raise err(E.EACCES)


_ELF_VERDICTS = ElfVerdicts(default_path())


def elf_verdicts() -> ElfVerdicts:
    """The process's verdict cache (a warm server preloads it for its children)."""
    return _ELF_VERDICTS


def _check_elf(fd: int) -> bytes:
    """ENOEXEC unless an x86-64 executable; returns its PT_INTERP (b"" for a static one)."""
    return _ELF_VERDICTS.check(fd)


def _open_interp(task: Task, interp: bytes) -> int:
    """The ELF interpreter, resolved in the guest's VFS as the kernel would (open_exec)."""
    fd, _ = _open_checked(task, base_for(task, AT_FDCWD, interp), interp, follow=True)
    try:
        if not os.pread(fd, 4, 0) == b"\x7fELF":
            raise err(E.ELIBBAD)
        if _check_elf(fd):
            raise err(E.ELIBBAD)  # an interpreter that itself needs one
    except BaseException:
        os.close(fd)
        raise
    return fd


def plan_exec(task: Task, dirfd: int, path_addr: int, argv_addr: int, envp_addr: int, flags: int) -> Result:
    if flags & ~(F.AT_EMPTY_PATH | F.AT_SYMLINK_NOFOLLOW):
        raise err(E.EINVAL)
    path = task.mem.read_cstr(path_addr)
    if not path:
        if not flags & F.AT_EMPTY_PATH:
            raise err(E.ENOENT)
        loc = fd_location(task, dirfd)
        if loc is None:  # fexecve of a file outside the VFS (a memfd the guest wrote)
            fd, guest_path = _checked_own_file(task, task.host_fd(dirfd))
        else:
            _check_exec(task, loc)
            fd = task.host_fd(dirfd)  # fexecve: the kernel loads the guest's own open file
            if task.kernel.vfs.is_stand_in(fd):  # an O_PATH fd: load the file it names
                os.close(fd)
                fd = task.kernel.vfs.open_location(task.process.fs, loc, os.O_RDONLY).host_fd
            guest_path = task.kernel.vfs.path_of(loc, task.process.fs.root)
    else:
        fd, guest_path = _open_checked(task, base_for(task, dirfd, path), path,
                                       follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    new_argv: list[bytes] | None = None
    # What the kernel calls the file (bprm->filename): an interpreter gets it as the script's
    # path, so a program run through a dirfd is named through /dev/fd as on Linux.
    via_fd = not (s32(dirfd) == AT_FDCWD or path[:1] == b"/")
    if via_fd:
        script_name = f"/dev/fd/{s32(dirfd)}".encode() + (b"/" + path if path else b"")
    else:
        script_name = path
    try:
        for depth in range(MAX_INTERP_DEPTH + 1):
            head = os.pread(fd, BINPRM_BUF_SIZE, 0)
            if head.startswith(b"\x7fELF"):
                interp = _check_elf(fd)
                # The task's new name: the path's last part; for an fd's own file, the file's
                # name (Linux 6.14+: its dentry, without the " (deleted)" of a memfd's path).
                named = path or guest_path.removesuffix(b" (deleted)")
                comm = named.rsplit(b"/", 1)[-1][:15]
                interp_fd = _open_interp(task, interp) if interp else -1
                return ExecPlan(fd, guest_path, new_argv, argv_addr, envp_addr, comm, interp, interp_fd)
            if not head.startswith(b"#!") or depth == MAX_INTERP_DEPTH:
                raise err(E.ELOOP if head.startswith(b"#!") else E.ENOEXEC)
            interp, arg = _parse_shebang(head)
            if depth == 0 and via_fd and _closes_on_exec(task, dirfd):
                # The interpreter could not open /dev/fd/N once the exec closed N: Linux gives
                # up first (binfmt_script, BINPRM_FLAGS_PATH_INACCESSIBLE).
                raise err(E.ENOENT)
            if new_argv is None:
                new_argv = _read_strings(task, argv_addr)
            new_argv = [interp] + ([arg] if arg else []) + [script_name] + new_argv[1:]
            script_name = interp
            os.close(fd)
            fd = -1
            fd, guest_path = _open_checked(task, base_for(task, AT_FDCWD, interp), interp, follow=True)
        raise err(E.ELOOP)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _closes_on_exec(task: Task, fd: int) -> bool:
    check = getattr(task, "fd_closes_on_exec", None)  # (optional for a platform: see base.Task)
    return bool(check is not None and check(s32(fd)))


def _parse_shebang(head: bytes) -> tuple[bytes, bytes]:
    line = head[2:].split(b"\n", 1)[0]
    line = line.replace(b"\t", b" ").strip(b" ")
    if not line:
        raise err(E.ENOEXEC)
    interp, _, arg = line.partition(b" ")
    return interp, arg.strip(b" ")


def sys_execve(task: Task, a: Args) -> Result:
    return plan_exec(task, AT_FDCWD, a[0], a[1], a[2], 0)


def sys_execveat(task: Task, a: Args) -> Result:
    return plan_exec(task, s32(a[0]), a[1], a[2], a[3], s32(a[4]))
