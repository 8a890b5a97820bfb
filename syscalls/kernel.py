"""The translator's kernel state for one sandbox: its VFS, its processes, its UTS names.

Process state that Linux keeps per process (cwd, root, umask, credentials) is the
translator's, because path syscalls are carried out here; a child inherits its parent's state
as of the fork (the platform calls ``fork_process`` while the parent is stopped at the event).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from vfs import FsContext, Vfs


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
    exited: bool = False


class Kernel:
    def __init__(self, vfs: Vfs, *, hostname: bytes = b"linuxabi") -> None:
        self.vfs = vfs
        self.uts = Uts(nodename=hostname)
        self.processes: dict[int, Process] = {}  # guest pid -> Process
        self.by_host_pid: dict[int, Process] = {}

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
        )
        child.threads.add(host_pid)
        self.add_process(child)
        return child

    def remove_process(self, proc: Process) -> None:
        proc.exited = True
        self.processes.pop(proc.pid, None)
        self.by_host_pid.pop(proc.host_pid, None)
