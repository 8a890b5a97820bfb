"""THE syscall table: one declaration per x86_64 syscall — the single source of truth.

The seccomp filter (linuxabi.host.filter), the dispatcher, the tracer and `linuxabi compat`
are all derived from SYSCALLS. A number the table does not declare is never allowed: the
filter's default action traps it and the dispatcher answers ENOSYS.
"""
from __future__ import annotations

import os

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F
from linuxabi.abi import x86_64

from . import exec as ex
from . import fs, process


def _net(name: str) -> Handler:
    """A socket handler, imported on a guest's first socket call: the socket layer (socket,
    ctypes, the uplink's modules) is not paid for by every sandbox's start-up."""
    def handler(task, args):  # noqa: ANN001, ANN202
        from . import net

        return getattr(net, name)(task, args)
    handler.__name__ = handler.__qualname__ = name
    return handler


from .base import ArgRule, Cmp, Disposition, Handler, SyscallDecl, Trap

N, T, D = Disposition.NATIVE, Disposition.TRANSLATED, Disposition.DENIED

# Run natively: they act only on memory, on fds the translator already handed out, on the
# calling process itself, or on objects inside the sandbox's own namespaces (pid, ipc, net).
NATIVE = """
read write close poll lseek mmap mprotect munmap brk rt_sigaction rt_sigprocmask rt_sigreturn
pread64 pwrite64 readv writev pipe select sched_yield mremap msync mincore madvise shmget shmat
shmctl dup dup2 pause nanosleep getitimer alarm setitimer getpid sendfile socketpair recvfrom
recvmsg shutdown accept accept4 setsockopt getsockopt fork vfork exit wait4 kill semget
semop semctl shmdt msgget msgsnd msgrcv msgctl flock fsync fdatasync ftruncate gettimeofday
getrlimit getrusage sysinfo times getuid getgid geteuid getegid setpgid getppid getpgrp setsid
getgroups getresuid getresgid getpgid getsid capget rt_sigpending rt_sigtimedwait
rt_sigqueueinfo rt_sigsuspend sigaltstack personality getpriority setpriority sched_setparam
sched_getparam sched_setscheduler sched_getscheduler sched_get_priority_max
sched_get_priority_min sched_rr_get_interval mlock munlock mlockall munlockall arch_prctl
setrlimit sync gettid readahead time futex
set_thread_area io_setup io_destroy io_getevents io_submit io_cancel get_thread_area
epoll_create remap_file_pages set_tid_address restart_syscall semtimedop fadvise64 timer_create
timer_settime timer_gettime timer_getoverrun timer_delete clock_gettime clock_getres
clock_nanosleep exit_group epoll_wait epoll_ctl mbind set_mempolicy get_mempolicy
mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr waitid ioprio_set
ioprio_get migrate_pages pselect6 ppoll set_robust_list get_robust_list splice tee
sync_file_range vmsplice move_pages epoll_pwait signalfd timerfd_create eventfd fallocate
timerfd_settime timerfd_gettime signalfd4 eventfd2 epoll_create1 dup3 pipe2 preadv pwritev
rt_tgsigqueueinfo prlimit64 syncfs getcpu kcmp
sched_setattr sched_getattr seccomp getrandom memfd_create membarrier mlock2 copy_file_range
preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free io_pgetevents rseq pidfd_send_signal
pidfd_open close_range process_madvise epoll_pwait2 process_mrelease futex_waitv
set_mempolicy_home_node recvmmsg sendmsg sendmmsg
""".split()

HANDLERS: dict[str, Handler] = {
    "open": fs.sys_open, "openat": fs.sys_openat, "creat": fs.sys_creat, "openat2": fs.sys_openat2,
    "stat": fs.sys_stat, "lstat": fs.sys_lstat, "fstat": fs.sys_fstat,
    "newfstatat": fs.sys_newfstatat, "statx": fs.sys_statx,
    "access": fs.sys_access, "faccessat": fs.sys_faccessat, "faccessat2": fs.sys_faccessat2,
    "mkdir": fs.sys_mkdir, "mkdirat": fs.sys_mkdirat, "mknod": fs.sys_mknod, "mknodat": fs.sys_mknodat,
    "unlink": fs.sys_unlink, "unlinkat": fs.sys_unlinkat, "rmdir": fs.sys_rmdir,
    "rename": fs.sys_rename, "renameat": fs.sys_renameat, "renameat2": fs.sys_renameat2,
    "link": fs.sys_link, "linkat": fs.sys_linkat, "symlink": fs.sys_symlink,
    "symlinkat": fs.sys_symlinkat, "readlink": fs.sys_readlink, "readlinkat": fs.sys_readlinkat,
    "chmod": fs.sys_chmod, "fchmod": fs.sys_fchmod, "fchmodat": fs.sys_fchmodat,
    "fchmodat2": fs.sys_fchmodat2,
    "chown": fs.sys_chown, "fchown": fs.sys_fchown, "lchown": fs.sys_lchown, "fchownat": fs.sys_fchownat,
    "sched_getaffinity": process.sys_sched_getaffinity, "sched_setaffinity": process.sys_sched_setaffinity,
    "umask": fs.sys_umask, "truncate": fs.sys_truncate,
    "utime": fs.sys_utime, "utimes": fs.sys_utimes, "utimensat": fs.sys_utimensat,
    "futimesat": fs.sys_futimesat,
    "getdents": fs.sys_getdents, "getdents64": fs.sys_getdents64, "getcwd": fs.sys_getcwd,
    "chdir": fs.sys_chdir, "fchdir": fs.sys_fchdir, "chroot": fs.sys_chroot,
    "statfs": fs.sys_statfs, "fstatfs": fs.sys_fstatfs,
    **{name: _net(f"sys_{name}") for name in
       "socket bind listen connect getsockname getpeername".split()},
    "clock_settime": process.sys_clock_settime,
    "process_vm_readv": process.sys_process_vm_readv, "process_vm_writev": process.sys_process_vm_writev,
    "tkill": process.sys_tkill, "tgkill": process.sys_tgkill,
    "uname": process.sys_uname, "sethostname": process.sys_sethostname,
    "setdomainname": process.sys_setdomainname,
    **{name: process.sys_set_creds for name in (
        "setuid setgid setreuid setregid setresuid setresgid setfsuid setfsgid setgroups capset".split())},
}

# Translated only in a sandbox with the feature named (see SyscallDecl.native_without).
NATIVE_WITHOUT: dict[str, tuple[str, str]] = {
    name: ("outside", "translated with -p or --net tap (sockets whose other end is outside); native otherwise")
    for name in ("getsockname", "getpeername")
}

TRACED: dict[str, Handler] = {"execve": ex.sys_execve, "execveat": ex.sys_execveat}

# Denied in the filter itself, with the errno a program copes with.
DENIED: dict[str, int] = {
    # host administration: never for a guest
    **{n: E.EPERM for n in (
        "mount umount2 pivot_root swapon swapoff reboot acct settimeofday adjtimex "
        "clock_adjtime iopl ioperm init_module finit_module delete_module "
        "kexec_load kexec_file_load quotactl quotactl_fd vhangup syslog lookup_dcookie "
        "open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr setns ptrace "
        "perf_event_open bpf userfaultfd fanotify_init fanotify_mark name_to_handle_at "
        "open_by_handle_at io_uring_setup io_uring_enter io_uring_register add_key request_key "
        "keyctl pidfd_getfd"
    ).split()},
    # removed from Linux, or not implemented by it
    **{n: E.ENOSYS for n in (
        "create_module get_kernel_syms query_module nfsservctl getpmsg putpmsg afs_syscall tuxcall "
        "security vserver epoll_ctl_old epoll_wait_old _sysctl uselib ustat sysfs modify_ldt "
        "landlock_create_ruleset landlock_add_rule landlock_restrict_self memfd_secret "
        "clone3"  # flags live in memory, where the filter cannot check them; glibc falls back to clone
    ).split()},
    # not translated yet: file notifications on host objects, extended attributes
    "inotify_init": E.ENOSYS, "inotify_init1": E.ENOSYS, "inotify_add_watch": E.ENOSYS,
    "inotify_rm_watch": E.ENOSYS,
    **{n: E.EOPNOTSUPP for n in (
        "setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr "
        "removexattr lremovexattr fremovexattr"
    ).split()},
    "unshare": E.EPERM,
}

# clone: namespace flags and CLONE_UNTRACED (a child the translator would not follow) are refused.
_CLONE_REFUSED = (
    F.CLONE_NEWNS | F.CLONE_NEWCGROUP | F.CLONE_NEWUTS | F.CLONE_NEWIPC | F.CLONE_NEWUSER
    | F.CLONE_NEWPID | F.CLONE_NEWNET | F.CLONE_UNTRACED
)
_FCNTL_NATIVE = (
    F.F_DUPFD, F.F_GETFD, F.F_SETFD, F.F_GETFL, F.F_SETFL, F.F_GETLK, F.F_SETLK, F.F_SETLKW,
    F.F_SETOWN, F.F_GETOWN, F.F_SETSIG, F.F_GETSIG, F.F_SETOWN_EX, F.F_GETOWN_EX,
    F.F_OFD_GETLK, F.F_OFD_SETLK, F.F_OFD_SETLKW, F.F_DUPFD_CLOEXEC, F.F_SETPIPE_SZ,
    F.F_GETPIPE_SZ, F.F_SETLEASE, F.F_GETLEASE, F.F_NOTIFY,
)
# Terminal and generic fd ioctls on the host objects a guest holds (its tty, pipes, files).
# TIOCSTI (typing into the host terminal), TIOCCONS, TIOCSETD and TIOCLINUX are not here.
_IOCTL_NATIVE = (
    F.TCGETS, F.TCSETS, F.TCSETSW, F.TCSETSF, F.TCGETA, F.TCSETA, F.TCSETAW, F.TCSETAF,
    F.TCSBRK, F.TCXONC, F.TCFLSH, F.TIOCGPGRP, F.TIOCSPGRP, F.TIOCOUTQ, F.TIOCGWINSZ,
    F.TIOCSWINSZ, F.TIOCGSID, F.TIOCGPTN, F.TIOCSPTLCK, F.TIOCNOTTY, F.TIOCEXCL, F.TIOCNXCL,
    F.TIOCGETD, F.FIONREAD, F.FIONBIO, F.FIOCLEX, F.FIONCLEX, F.FIOASYNC, F.TIOCSCTTY,
)
_PRCTL_NATIVE = (
    F.PR_SET_PDEATHSIG, F.PR_GET_PDEATHSIG, F.PR_GET_DUMPABLE, F.PR_SET_DUMPABLE,
    F.PR_GET_KEEPCAPS, F.PR_SET_KEEPCAPS, F.PR_GET_SECCOMP,
    F.PR_SET_SECCOMP, F.PR_CAPBSET_READ, F.PR_CAPBSET_DROP, F.PR_GET_TIMERSLACK,
    F.PR_SET_TIMERSLACK, F.PR_SET_NO_NEW_PRIVS, F.PR_GET_NO_NEW_PRIVS,
    F.PR_SET_CHILD_SUBREAPER, F.PR_GET_CHILD_SUBREAPER, F.PR_GET_TID_ADDRESS,
    F.PR_SET_THP_DISABLE, F.PR_GET_THP_DISABLE, F.PR_CAP_AMBIENT, F.PR_GET_SPECULATION_CTRL,
    F.PR_SET_VMA,
)


def _allow_eq(arg: int, values: tuple[int, ...], why: str) -> tuple[ArgRule, ...]:
    return tuple(ArgRule(arg, Cmp.MASKED_EQ, v, N, mask=0xFFFFFFFF, why=why) for v in values)


RULED: dict[str, SyscallDecl] = {}


def _ruled(name: str, default: Disposition, rules: tuple[ArgRule, ...], *, handler: Handler | None = None,
           errno: int = 0, note: str = "") -> None:
    RULED[name] = SyscallDecl(x86_64.NR[name], name, default, handler, errno, Trap.NOTIFY, rules, note)


_ruled("clone", D, (ArgRule(0, Cmp.MASKED_EQ, 0, N, mask=_CLONE_REFUSED, why="no namespace/untraced flags"),),
       errno=E.EPERM, note="native unless it asks for new namespaces or CLONE_UNTRACED")
_ruled("fcntl", T, _allow_eq(1, _FCNTL_NATIVE, "fd flags, locks, dup"), handler=process.sys_fcntl_other,
       note="native for flags/locks/dup; seals only on the guest's own memfds")
_ruled("ioctl", T, _allow_eq(1, _IOCTL_NATIVE, "tty and generic fd ioctls"), handler=process.sys_ioctl_other,
       note="native for termios/winsize/FIO*; everything else ENOTTY (no translated device yet)")
_ruled("sendto", T, (ArgRule(4, Cmp.EQ, 0, N, why="no destination address"),), handler=_net("sys_sendto"),
       note="native without an address; an address is checked against the capabilities, then sent")
_ruled("prctl", T, _allow_eq(0, _PRCTL_NATIVE, "options about the caller itself"),
       handler=process.sys_prctl_other,
       note="process-local options native; PR_GET_NAME translated (the name Linux gives); PR_SET_NAME "
            "seen, then native; others EINVAL")


def _build() -> dict[int, SyscallDecl]:
    table: dict[int, SyscallDecl] = {}
    for name, nr in x86_64.NR.items():
        if name in RULED:
            decl = RULED[name]
        elif name in HANDLERS:
            feature, note = NATIVE_WITHOUT.get(name, ("", ""))
            decl = SyscallDecl(nr, name, T, HANDLERS[name], note=note, native_without=feature)
        elif name in TRACED:
            decl = SyscallDecl(nr, name, T, TRACED[name], trap=Trap.TRACE, note="rewritten to execveat on a checked fd")
        elif name in DENIED:
            decl = SyscallDecl(nr, name, D, errno=DENIED[name])
        elif name in NATIVE:
            decl = SyscallDecl(nr, name, N)
        else:
            raise RuntimeError(f"syscall {name} ({nr}) has no declaration")
        table[nr] = decl
    if not set(NATIVE_WITHOUT) <= set(HANDLERS):
        raise RuntimeError("a syscall native without a feature must have a handler")
    declared = set(NATIVE) | set(HANDLERS) | set(TRACED) | set(DENIED) | set(RULED)
    unknown = declared - set(x86_64.NR)
    if unknown:
        raise RuntimeError(f"declarations for unknown syscalls: {sorted(unknown)}")
    return table


SYSCALLS: dict[int, SyscallDecl] = _build()
BY_NAME: dict[str, SyscallDecl] = {d.name: d for d in SYSCALLS.values()}

# Calls that change nothing a cached stat answer depends on: the VFS's names and metadata, a
# thread's credentials and root, the capabilities (linuxabi/host/answers.py). After any other
# call served by a handler, the platform's answer cache empties; a call not listed here is
# assumed to change something.
_KEEPS_ANSWERS_NAMES = (
    "stat lstat fstat newfstatat statx access faccessat faccessat2 readlink readlinkat getcwd "
    "uname umask sched_getaffinity statfs fstatfs getsockname getpeername accept accept4 "
    "recvfrom sendto recvmsg sendmsg"
).split()
KEEPS_ANSWERS: frozenset[int] = frozenset(BY_NAME[n].nr for n in _KEEPS_ANSWERS_NAMES)
# Opens keep them too when they only read: no copy-up, no new name, no truncation.
_OPEN_FLAGS_ARG = {BY_NAME["open"].nr: 1, BY_NAME["openat"].nr: 2}
_OPEN_CHANGES = os.O_ACCMODE | os.O_CREAT | os.O_TRUNC | (F.O_TMPFILE & ~os.O_DIRECTORY)


def keeps_answers(nr: int, args: tuple[int, ...]) -> bool:
    """Whether call ``nr`` with ``args`` leaves every cached stat answer true."""
    if nr in KEEPS_ANSWERS:
        return True
    i = _OPEN_FLAGS_ARG.get(nr)
    return i is not None and not args[i] & _OPEN_CHANGES
