"""The Linux-host implementation of the handlers' ``Task``: one guest thread."""
from __future__ import annotations

import fcntl
import os
import resource

from linuxabi.abi import errno as E
from linuxabi.abi import x86_64

from syscalls.kernel import Kernel, Process

from .libc import raw_syscall
from .memory import GuestMemory, open_mem

_PIDFD_GETFD = x86_64.NR["pidfd_getfd"]
_PIDFD_OPEN = x86_64.NR["pidfd_open"]
_TGKILL = x86_64.NR["tgkill"]
_PIDFD_THREAD = os.O_EXCL  # a pidfd for one thread (Linux 6.9)
# ioctl(pid namespace fd, NS_GET_PID_IN_PIDNS, tid): the thread's id in that namespace (Linux
# 6.8; Debian 12's uapi headers predate it). _IOR(NSIO 0xb7, 8, int); the tid goes by value.
_NS_GET_PID_IN_PIDNS = 0x8004B708

try:  # compiled by `make setup` (linuxabi/host/vm_build.py)
    from linuxabi.host._vm import ffi as _ffi
    from linuxabi.host._vm import lib as _vm_lib

    _fd_key = getattr(_vm_lib, "fd_key", None)
    _KEY = _ffi.new("unsigned long long[2]")  # the trap loop is single-threaded
except ImportError:
    _fd_key = None


class HostProcess:
    """Host-side handles of a guest process: its pidfd (for fds) and a read fd for its memory.

    Both are opened on first use: most forked children exec at once, and an exec makes the
    memory fd useless anyway (it stays bound to the old address space).
    """

    __slots__ = ("proc", "_pidfd", "_mem_fd", "tasks")

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self._pidfd = -1
        self._mem_fd = -1
        self.tasks: dict[int, "HostTask"] = {}  # host tid -> task

    @property
    def pidfd(self) -> int:
        if self._pidfd < 0:
            self._pidfd = raw_syscall(_PIDFD_OPEN, self.proc.host_pid, 0)
        return self._pidfd

    def mem_fd(self, host_tid: int) -> int:
        """Opened through the calling thread: the leader may have exited (a zombie has no
        memory to read) while the other threads go on. The fd then stays valid on its own."""
        if self._mem_fd < 0:
            self._mem_fd = open_mem(host_tid)
        return self._mem_fd

    def cached_mem_fd(self) -> int:
        """The memory fd if one is open already, else -1."""
        return self._mem_fd

    def exec_happened(self) -> None:
        """The address space is new: the next access opens a fresh memory fd."""
        for task in self.tasks.values():
            task._mem = None
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1

    def close(self) -> None:
        self.exec_happened()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


Creds = tuple[int, int, int, int, tuple[int, ...]]  # ruid, fsuid, rgid, fsgid, groups


class HostTask:
    __slots__ = ("host_tid", "tid", "hp", "kernel", "creds", "creds_stale", "_mem", "notif_id", "renamed")

    def __init__(self, host_tid: int, tid: int, hp: HostProcess, kernel: Kernel) -> None:
        self.host_tid = host_tid
        self.tid = tid
        self.hp = hp
        self.kernel = kernel
        self.creds: Creds | None = None  # this thread's, once its process has changed any
        self.creds_stale = False  # this thread ran a set*id natively
        self._mem: GuestMemory | None = None
        self.notif_id = 0  # the notification of the trapped call being served (fd installs)
        # Whether this thread may have renamed itself (PR_SET_NAME) since its last exec: until
        # then its name is the one its exec gave it. Unknown history counts as renamed.
        self.renamed = True

    @property
    def process(self) -> Process:
        return self.hp.proc

    @property
    def mem(self) -> GuestMemory:
        """This thread's view of its process's memory (writes go through the thread itself)."""
        mem = self._mem
        if mem is None:
            hp, tid = self.hp, self.host_tid
            mem = self._mem = GuestMemory(tid, hp.cached_mem_fd(), lambda: hp.mem_fd(tid))
        return mem

    def host_fd(self, guest_fd: int) -> int:
        if guest_fd < 0:
            raise OSError(E.EBADF, os.strerror(E.EBADF))
        try:
            return raw_syscall(_PIDFD_GETFD, self.hp.pidfd, guest_fd, 0)
        except OSError:
            pass
        if self.host_tid != self.hp.proc.host_pid:
            # The leader exited (its fd table is gone with it): ask through this thread.
            try:
                tfd = raw_syscall(_PIDFD_OPEN, self.host_tid, _PIDFD_THREAD)
            except OSError:
                tfd = -1
            if tfd >= 0:
                try:
                    return raw_syscall(_PIDFD_GETFD, tfd, guest_fd, 0)
                except OSError:
                    pass
                finally:
                    os.close(tfd)
        # pidfd_getfd refuses O_PATH fds; the fd's magic link reopens them (as O_PATH).
        try:
            return os.open(f"/proc/{self.host_tid}/fd/{guest_fd}", os.O_PATH | os.O_CLOEXEC)
        except OSError:
            raise OSError(E.EBADF, os.strerror(E.EBADF)) from None

    def host_key(self, guest_fd: int) -> tuple[int, int]:
        """(st_dev, st_ino) of what ``guest_fd`` is: host_fd + fstat + close, in one compiled
        call when there is one (else, or where it fails, the long way and its errors)."""
        if _fd_key is not None and guest_fd >= 0 and _fd_key(self.hp.pidfd, guest_fd, _KEY) == 0:
            return _KEY[0], _KEY[1]
        hfd = self.host_fd(guest_fd)
        try:
            s = os.fstat(hfd)
        finally:
            os.close(hfd)
        return s.st_dev, s.st_ino

    def fd_closes_on_exec(self, guest_fd: int) -> bool:
        """Whether the guest's fd has FD_CLOEXEC (its fdinfo's flags carry O_CLOEXEC then)."""
        try:
            flags = _proc_field(f"/proc/{self.host_tid}/fdinfo/{guest_fd}", b"flags:")
        except OSError:
            return False
        return flags is not None and bool(int(flags[0], 8) & os.O_CLOEXEC)

    def file_size_limit(self) -> int:
        soft = resource.prlimit(self.hp.proc.host_pid, resource.RLIMIT_FSIZE)[0]
        return -1 if soft == resource.RLIM_INFINITY else soft

    def raise_signal(self, signo: int) -> None:
        raw_syscall(_TGKILL, self.hp.proc.host_pid, self.host_tid, signo)

    def refresh_creds(self) -> None:
        """Put this thread's credentials in its process's context before a check.

        Linux's credentials are per thread: a raw set*id changes the calling thread only. Once
        a process has run one (natively, with CONTINUE), each of its threads' credentials are
        read from the host on its first call and after its own set*id, and applied to the
        process's FsContext when the thread being served is not the one they came from.
        """
        if self.creds is None or self.creds_stale:
            creds = self._read_creds()
            if creds is None:
                return
            self.creds, self.creds_stale = creds, False
        fs = self.hp.proc.fs
        creds = self.creds
        if (fs.ruid, fs.uid, fs.rgid, fs.gid, fs.groups) != creds:
            fs.ruid, fs.uid, fs.rgid, fs.gid, fs.groups = creds

    def _read_creds(self) -> Creds | None:
        ruid = uid = rgid = gid = 0
        groups: tuple[int, ...] = ()
        try:
            status = read_proc_file(f"/proc/{self.host_tid}/status")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                ruid, uid = int(line.split()[1]), int(line.split()[4])
            elif line.startswith(b"Gid:"):
                rgid, gid = int(line.split()[1]), int(line.split()[4])
            elif line.startswith(b"Groups:"):
                groups = tuple(int(g) for g in line.split()[1:])
        return ruid, uid, rgid, gid, groups


def read_proc_file(path: str) -> bytes:
    """A small /proc file in one read (about half the cost of open().read() on this path,
    which the fork, exec and prctl paths take once per process)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 16384)
    finally:
        os.close(fd)


def _proc_field(path: str, key: bytes) -> list[bytes] | None:
    """The words after ``key`` (b"Tgid:") on a line of a /proc file past its first; None if
    no line has it."""
    text = read_proc_file(path)
    at = text.find(b"\n" + key)
    if at < 0:
        return None
    return text[at + len(key) + 1:text.index(b"\n", at + 1)].split()


def _status_field(host_tid: int, key: bytes) -> list[bytes]:
    try:
        words = _proc_field(f"/proc/{host_tid}/status", key)
    except FileNotFoundError:
        raise ProcessLookupError(host_tid) from None
    if words is None:
        raise ProcessLookupError(host_tid)
    return words


def tid_in_pidns(pidns_fd: int, host_tid: int) -> int | None:
    """The id of thread ``host_tid`` in the pid namespace ``pidns_fd``; None where the kernel
    cannot tell (before 6.8: ENOTTY) or the thread is not there (ESRCH)."""
    try:
        return fcntl.ioctl(pidns_fd, _NS_GET_PID_IN_PIDNS, host_tid)
    except OSError:
        return None


def guest_tid_of(host_tid: int, pidns_fd: int = -1) -> int:
    """The thread's id in the sandbox's pid namespace (``pidns_fd``, when given): one ioctl on
    the namespace where the kernel has it; else the last NSpid field of a pidfd's fdinfo, which
    the kernel writes without looking at the task's memory. (/proc/TID/status, the last
    resort, walks the address space: ~35 us in place for a child that has just forked.)"""
    if pidns_fd >= 0:
        tid = tid_in_pidns(pidns_fd, host_tid)
        if tid is not None:
            return tid
    try:
        fd = raw_syscall(_PIDFD_OPEN, host_tid, _PIDFD_THREAD)
    except OSError:
        return int(_status_field(host_tid, b"NSpid:")[-1])
    try:
        info = read_proc_file(f"/proc/self/fdinfo/{fd}")
    finally:
        os.close(fd)
    at = info.find(b"\nNSpid:")
    if at < 0:
        return int(_status_field(host_tid, b"NSpid:")[-1])
    end = info.find(b"\n", at + 1)
    return int(info[at + 7:end if end >= 0 else None].split()[-1])


def host_tgid_of(host_tid: int) -> int:
    return int(_status_field(host_tid, b"Tgid:")[0])
