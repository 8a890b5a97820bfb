"""The translator's kernel state for one sandbox: its VFS, its processes, its UTS names.

Process state that Linux keeps per process (cwd, root, umask, credentials) is the
translator's, because path syscalls are carried out here; a child inherits its parent's state
as of the fork (the platform calls ``fork_process`` while the parent is stopped at the event).
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from vfs import FsContext, Location, Vfs


@dataclass
class Uts:
    sysname: bytes = b"Linux"
    nodename: bytes = b"linuxabi"
    release: bytes = field(default_factory=lambda: os.uname().release.encode())
    version: bytes = field(default_factory=lambda: os.uname().version.encode())
    machine: bytes = b"x86_64"
    domainname: bytes = b"(none)"


@dataclass
class Process:
    """A guest thread group as the translator sees it."""

    pid: int  # guest pid (in the sandbox's pid namespace)
    host_pid: int
    ppid: int
    fs: FsContext  # shared between threads; copied on fork (CLONE_FS shares it)
    exe: bytes = b""  # guest path of the program image
    threads: set[int] = field(default_factory=set)  # host tids
    creds_stale: bool = False  # a set*id call ran natively: re-read before the next check
    # The kernel names an fd-exec'd task after the file (e.g. "busybox"); Linux would name it
    # after the path exec'd ("cat"). procfs shows ``comm`` while the kernel still says that.
    comm: bytes = b""
    kernel_comm: bytes = b""
    exited: bool = False


class Kernel:
    def __init__(self, vfs: Vfs, *, hostname: bytes = b"linuxabi") -> None:
        self.vfs = vfs
        self.uts = Uts(nodename=hostname)
        self.processes: dict[int, Process] = {}  # guest pid -> Process
        self.by_host_pid: dict[int, Process] = {}
        self.started = time.monotonic()
        # Set by the platform: the process whose call is being served (procfs's "self"),
        # and how to get a host fd for a guest fd of any process (procfs's fd/ links).
        self.current: Process | None = None
        self.dup_guest_fd: Callable[[Process, int], int] | None = None

    # ---- what procfs asks (vfs.procfs.ProcessProvider) -----------------------------------------

    def proc_pids(self) -> list[int]:
        return sorted(self.processes)

    def proc_get(self, pid: int) -> Process | None:
        return self.processes.get(pid)

    def proc_self(self) -> int | None:
        return self.current.pid if self.current is not None else None

    def proc_threads(self, proc: Process) -> list[int]:
        """Guest tids of the thread group (the innermost pid of each host thread)."""
        tids = []
        for host_tid in sorted(proc.threads):
            try:
                with open(f"/proc/{proc.host_pid}/task/{host_tid}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"NSpid:"):
                            tids.append(int(line.split()[-1]))
                            break
            except OSError:
                continue
        return sorted(tids)

    def proc_fds(self, proc: Process) -> list[int]:
        try:
            return sorted(int(n) for n in os.listdir(f"/proc/{proc.host_pid}/fd"))
        except OSError:
            return []

    @contextlib.contextmanager
    def _guest_fd(self, proc: Process, fd: int) -> Iterator[int]:
        """A host dup of a guest fd, closed afterwards (ENOENT when there is no platform)."""
        if self.dup_guest_fd is None:
            raise OSError(2, os.strerror(2))
        dup = self.dup_guest_fd(proc, fd)
        try:
            yield dup
        finally:
            os.close(dup)

    def proc_fd_open(self, proc: Process, fd: int, flags: int) -> int:
        """Reopen what guest fd ``fd`` refers to, as Linux's /proc/PID/fd/N magic links do."""
        with self._guest_fd(proc, fd) as dup:
            loc = self.vfs.location_of_host_fd(dup)
            if loc is not None:
                # A VFS file is reopened through the VFS (permissions, copy-up): never by
                # reopening the host object, which could be a read-only image file.
                path = self.vfs.path_of(loc, proc.fs.root)
                return self.vfs.open(proc.fs, proc.fs.root, path, flags, 0).host_fd
            # the guest's own pipes, sockets, anonymous inodes: reopened as Linux does
            return os.open(f"/proc/self/fd/{dup}", flags | os.O_CLOEXEC)

    def proc_fd_target(self, proc: Process, fd: int) -> bytes:
        with self._guest_fd(proc, fd) as dup:
            loc = self.vfs.location_of_host_fd(dup)
            if loc is not None:
                return self.vfs.path_of(loc, proc.fs.root)
            target = os.readlink(f"/proc/self/fd/{dup}").encode()
            # Pipes, sockets, anon inodes read like Linux's. Of host paths only the terminal
            # and null devices the guest was given show (as the guest's devfs names them).
            if not target.startswith(b"/") or target.startswith((b"/dev/pts/", b"/dev/tty", b"/dev/null")):
                return target
            return b"anon_inode:[unknown]"

    def proc_location_path(self, proc: Process, loc: Location) -> bytes:
        return self.vfs.path_of(loc, proc.fs.root)

    def proc_fd_location(self, proc: Process, fd: int) -> Location | None:
        try:
            with self._guest_fd(proc, fd) as dup:
                return self.vfs.location_of_host_fd(dup)
        except OSError:
            return None

    def proc_lookup(self, proc: Process, path: bytes) -> Location | None:
        try:
            return self.vfs.lookup(proc.fs, proc.fs.root, path)
        except OSError:
            return None

    def proc_open_path(self, proc: Process, path: bytes, flags: int) -> int:
        return self.vfs.open(proc.fs, proc.fs.root, path, flags, 0).host_fd

    def proc_mounts(self) -> list[tuple[bytes, bytes, bytes, bytes]]:
        """(source, mount point, type, options) per mount, as /proc/mounts lists them."""
        from vfs import DevFs, ImageFs, OverlayFs, TmpFs
        from vfs.procfs import ProcFs

        names = ((ProcFs, b"proc"), (DevFs, b"devtmpfs"), (OverlayFs, b"overlay"), (ImageFs, b"ext4"),
                 (TmpFs, b"tmpfs"))
        out = []
        root = self.vfs.root()
        for m in self.vfs.table.mounts:
            fstype = next((n for cls, n in names if isinstance(m.fs, cls)), b"none")
            point = b"/" if m.mountpoint is None else self.vfs.path_of(Location(m.parent, m.mountpoint), root)
            if fstype == b"proc":  # read-only by nature, listed as Linux lists it
                opts = b"rw,nosuid,nodev,noexec"
            else:
                opts = b"ro" if m.readonly or m.fs.readonly else b"rw"
            out.append((fstype if fstype != b"ext4" else b"/dev/root", point, fstype, opts + b",relatime"))
        return out

    def proc_host_path(self, proc: Process, host_path: bytes) -> bytes | None:
        """The guest path of a host file mapped by the guest (its maps), if the VFS knows it."""
        try:
            fd = os.open(host_path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            loc = self.vfs.location_of_host_fd(fd)
            return self.vfs.path_of(loc, proc.fs.root) if loc is not None else None
        finally:
            os.close(fd)

    def proc_hostname(self) -> bytes:
        return self.uts.nodename

    def add_process(self, proc: Process) -> None:
        self.processes[proc.pid] = proc
        self.by_host_pid[proc.host_pid] = proc

    def fork_process(self, parent: Process, pid: int, host_pid: int, *, share_fs: bool) -> Process:
        child = Process(
            pid=pid,
            host_pid=host_pid,
            ppid=parent.pid,
            fs=parent.fs if share_fs else parent.fs.copy(),
            exe=parent.exe,
            creds_stale=parent.creds_stale,
            comm=parent.comm,
            kernel_comm=parent.kernel_comm,
        )
        child.threads.add(host_pid)
        self.add_process(child)
        return child

    def remove_process(self, proc: Process) -> None:
        proc.exited = True
        self.processes.pop(proc.pid, None)
        self.by_host_pid.pop(proc.host_pid, None)
