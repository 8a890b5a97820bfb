"""procfs: /proc generated from the translator's process table.

Pids are the sandbox's namespace pids; /proc/self is whoever asks (the process whose call the
translator is serving); links (exe, cwd, root, fd/N) are magic links that jump to the VFS
object, and fd/N reopens the guest's own object (a pipe, say) as Linux does.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Protocol

from . import procfs_text as text
from .inode import Inode
from .synthetic import DynamicDir, DynamicSymlink, MagicLink, SyntheticFile, SyntheticFs
from .types import Location


class ProcEntry(Protocol):
    pid: int
    host_pid: int
    ppid: int
    exe: bytes
    threads: set[int]

    @property
    def fs(self): ...  # noqa: ANN201 - an FsContext


class ProcessProvider(Protocol):
    """What procfs needs from the translator's kernel (syscalls.kernel.Kernel implements it)."""

    started: float

    def proc_pids(self) -> list[int]: ...
    def proc_get(self, pid: int) -> ProcEntry | None: ...
    def proc_self(self) -> int | None: ...
    def proc_fds(self, proc: ProcEntry) -> list[int]: ...
    def proc_fd_open(self, proc: ProcEntry, fd: int, flags: int) -> int: ...
    def proc_fd_target(self, proc: ProcEntry, fd: int) -> bytes: ...
    def proc_location_path(self, proc: ProcEntry, loc: Location) -> bytes: ...
    def proc_mounts(self) -> list[tuple[bytes, bytes, bytes, bytes]]: ...
    def proc_host_path(self, proc: ProcEntry, host_path: bytes) -> bytes | None: ...
    def proc_hostname(self) -> bytes: ...
    def proc_fd_location(self, proc: ProcEntry, fd: int) -> Location | None: ...
    def proc_threads(self, proc: ProcEntry) -> list[int]: ...
    def proc_open_path(self, proc: ProcEntry, path: bytes, flags: int) -> int: ...
    def proc_open_comm(self, proc: ProcEntry, host_tid: int, flags: int) -> int: ...
    def proc_lookup(self, proc: ProcEntry, path: bytes) -> Location | None: ...


def _enoent() -> OSError:
    return OSError(2, os.strerror(2))


class ProcFs(SyntheticFs):
    refuses_like_procfs = True

    def __init__(self, provider: ProcessProvider) -> None:
        super().__init__()
        self.provider = provider
        self._pid_dirs: dict[int, tuple[ProcEntry, PidDir]] = {}

    def make_root(self) -> Inode:
        return ProcRoot(self, 1)

    def add_file(self, path: bytes, gen: Callable[[], bytes]) -> None:
        """Show a file at ``path`` (relative to /proc, e.g. b"driver/nvidia/version") whose
        content ``gen`` makes at each open; missing directories are made."""
        *dirs, leaf = path.split(b"/")
        node: DynamicDir = self.root.inode  # type: ignore[assignment]
        for name in dirs:
            sub = node.generate(name)
            if sub is None:
                sub = _StaticDir(self, self.new_ino(), {})
                node.add(name, sub)  # type: ignore[attr-defined]
            node = sub  # type: ignore[assignment]
        node.add(leaf, SyntheticFile(self, self.new_ino(), gen))  # type: ignore[attr-defined]

    def pid_dir(self, pid: int) -> "PidDir | None":
        proc = self.provider.proc_get(pid)
        if proc is None:
            proc = self._thread_group_of(pid)
        if proc is None:
            self._pid_dirs.pop(pid, None)
            return None
        cached = self._pid_dirs.get(pid)
        if cached is not None and cached[0] is proc:
            return cached[1]
        d = PidDir(self, self.new_ino(), proc)
        self._pid_dirs[pid] = (proc, d)
        return d


    def _thread_group_of(self, tid: int) -> ProcEntry | None:
        """/proc/TID of a thread that does not lead its group: Linux resolves it (it is only
        left out of /proc's listing) to the thread's view of its process."""
        threads = getattr(self.provider, "proc_threads", None)
        if threads is None:
            return None
        for pid in self.provider.proc_pids():
            proc = self.provider.proc_get(pid)
            if proc is not None and tid in threads(proc):
                return proc
        return None


class _StaticDir(DynamicDir):
    """A directory with a fixed set of children, made once."""

    __slots__ = ("_children",)

    def __init__(self, fs: ProcFs, ino: int, children: dict[bytes, Callable[[], Inode]]) -> None:
        super().__init__(fs, ino)
        self._children = {name: make() for name, make in children.items()}

    def generate(self, name: bytes) -> Inode | None:
        return self._children.get(name)

    def names(self) -> Iterable[bytes]:
        return list(self._children)

    def add(self, name: bytes, inode: Inode) -> None:
        self._children[name] = inode


class ProcRoot(DynamicDir):
    __slots__ = ("_static",)

    def __init__(self, fs: ProcFs, ino: int) -> None:
        super().__init__(fs, ino)
        p = fs.provider
        f = lambda gen: SyntheticFile(fs, fs.new_ino(), gen)  # noqa: E731
        self._static: dict[bytes, Inode] = {
            b"self": DynamicSymlink(fs, fs.new_ino(), self._self_target),
            b"thread-self": DynamicSymlink(fs, fs.new_ino(), self._thread_self_target),
            b"meminfo": f(text.meminfo_text),
            b"cpuinfo": f(text.cpuinfo_text),
            b"uptime": f(lambda: text.uptime_text(p.started)),
            b"loadavg": f(lambda: text.loadavg_text(len(p.proc_pids()), max(p.proc_pids() or [0]))),
            b"mounts": f(lambda: text.mounts_text(p.proc_mounts())),
            b"version": f(lambda: _host_file("/proc/version")),
            b"filesystems": f(lambda: b"nodev\ttmpfs\nnodev\tproc\nnodev\toverlay\n"),
            b"sys": _StaticDir(fs, fs.new_ino(), {
                b"kernel": lambda: _StaticDir(fs, fs.new_ino(), {
                    b"hostname": lambda: f(lambda: p.proc_hostname() + b"\n"),
                    b"osrelease": lambda: f(lambda: os.uname().release.encode() + b"\n"),
                    b"ostype": lambda: f(lambda: b"Linux\n"),
                    b"pid_max": lambda: f(lambda: b"4194304\n"),
                }),
                b"vm": lambda: _StaticDir(fs, fs.new_ino(), {
                    b"overcommit_memory": lambda: f(lambda: _host_file("/proc/sys/vm/overcommit_memory")),
                }),
            }),
        }

    def _self_target(self) -> bytes:
        pid = self.fs.provider.proc_self()  # type: ignore[attr-defined]
        if pid is None:
            raise _enoent()
        return str(pid).encode()

    def _thread_self_target(self) -> bytes:
        pid = self._self_target()
        return pid + b"/task/" + pid

    def generate(self, name: bytes) -> Inode | None:
        if name.isdigit():
            return self.fs.pid_dir(int(name))  # type: ignore[attr-defined]
        return self._static.get(name)

    def names(self) -> Iterable[bytes]:
        return [str(pid).encode() for pid in self.fs.provider.proc_pids()] + list(self._static)  # type: ignore[attr-defined]

    def add(self, name: bytes, inode: Inode) -> None:
        self._static[name] = inode


_PID_FILES = (b"stat", b"status", b"cmdline", b"environ", b"comm", b"maps", b"mounts", b"mountinfo",
              b"limits", b"auxv", b"exe", b"cwd", b"root", b"fd", b"fdinfo")


class PidDir(DynamicDir):
    """/proc/PID (also used for /proc/PID/task/TID, with the same files).

    Each file's inode is made on first lookup: most processes are looked at for one file
    (a program reading /proc/self/exe as it starts, say), and there is a PidDir per process."""

    __slots__ = ("proc", "_files", "_thread_host_tid", "_with_task")

    def __init__(self, fs: ProcFs, ino: int, proc: ProcEntry, *, with_task: bool = True,
                 thread_host_tid: int | None = None) -> None:
        super().__init__(fs, ino)
        self.proc = proc
        self._files: dict[bytes, Inode] = {}
        self._thread_host_tid = thread_host_tid
        self._with_task = with_task

    def _make(self, name: bytes) -> Inode:
        fs: ProcFs = self.fs  # type: ignore[assignment]
        proc, p = self.proc, fs.provider
        gen: Callable[[], bytes] | None = None
        if name == b"stat":
            gen = lambda: text.stat_text(proc, getattr(p, "current_tid", None))  # noqa: E731
        elif name == b"status":
            tid = self._thread_host_tid
            gen = lambda: text.status_text(proc, tid, getattr(p, "current_tid", None),  # noqa: E731
                                           getattr(p, "proc_cpus", None))
        elif name == b"cmdline":
            gen = lambda: text.cmdline_text(proc)  # noqa: E731
        elif name == b"environ":
            gen = lambda: text.environ_text(proc)  # noqa: E731
        elif name == b"comm":
            tid = self._thread_host_tid
            name = lambda: text.status_text(proc, tid).split(b"\n", 1)[0].split(b"\t", 1)[-1] + b"\n"  # noqa: E731
            return CommFile(fs, fs.new_ino(), name, lambda fl: p.proc_open_comm(proc, tid or proc.host_pid, fl))
        elif name == b"maps":
            gen = lambda: text.maps_text(proc, lambda hp: p.proc_host_path(proc, hp))  # noqa: E731
        elif name == b"mounts":
            gen = lambda: text.mounts_text(p.proc_mounts())  # noqa: E731
        elif name == b"mountinfo":
            gen = lambda: text.mountinfo_text(p.proc_mounts())  # noqa: E731
        elif name == b"limits":
            gen = lambda: text.limits_text(proc)  # noqa: E731
        elif name == b"auxv":
            gen = lambda: text.auxv_text(proc)  # noqa: E731
        if gen is not None:
            return SyntheticFile(fs, fs.new_ino(), gen)
        if name == b"exe":
            return MagicLink(fs, fs.new_ino(), lambda: proc.exe, lambda: p.proc_lookup(proc, proc.exe),
                             lambda fl: self._open_exe(fl))
        if name in (b"cwd", b"root"):
            get: Callable[[], Location] = (lambda: proc.fs.cwd) if name == b"cwd" else (lambda: proc.fs.root)
            return MagicLink(fs, fs.new_ino(), lambda: p.proc_location_path(proc, get()), get,
                             lambda fl: self._open_loc(get(), fl))
        if name == b"fd":
            return FdDir(fs, fs.new_ino(), proc)
        if name == b"fdinfo":
            return FdInfoDir(fs, fs.new_ino(), proc)
        assert name == b"task"
        return TaskDir(fs, fs.new_ino(), proc)

    def _open_loc(self, loc: Location, flags: int) -> int:
        p = self.fs.provider  # type: ignore[attr-defined]
        return p.proc_open_path(self.proc, p.proc_location_path(self.proc, loc), flags)

    def _open_exe(self, flags: int) -> int:
        return self.fs.provider.proc_open_path(self.proc, self.proc.exe, flags)  # type: ignore[attr-defined]

    def generate(self, name: bytes) -> Inode | None:
        inode = self._files.get(name)
        if inode is None and (name in _PID_FILES or (name == b"task" and self._with_task)):
            inode = self._files[name] = self._make(name)
        return inode

    def names(self) -> Iterable[bytes]:
        return _PID_FILES + ((b"task",) if self._with_task else ())


class CommFile(SyntheticFile):
    """/proc/PID/comm: read, the name as the guest knows it; opened for writing, the thread's own
    comm file on the host (``open_write``), which renames it as Linux's does (only a thread of
    the same group may: the host kernel checks the writer)."""

    __slots__ = ("open_write",)

    def __init__(self, fs: ProcFs, ino: int, content: Callable[[], bytes], open_write: Callable[[int], int]) -> None:
        super().__init__(fs, ino, content, mode=0o644)
        self.open_write = open_write

    writable_on_readonly_fs = True

    def open_host(self, flags: int) -> int:
        if flags & os.O_ACCMODE == os.O_RDONLY:
            return super().open_host(flags)
        return self.open_write(flags)

    def truncate(self, length: int) -> None:
        """O_TRUNC: nothing (Linux's procfs ignores a size change of its files)."""


class TaskDir(DynamicDir):
    """/proc/PID/task: one directory per thread of the group, named by its guest tid."""

    __slots__ = ("proc", "_threads")

    def __init__(self, fs: ProcFs, ino: int, proc: ProcEntry) -> None:
        super().__init__(fs, ino)
        self.proc = proc
        self._threads: dict[int, PidDir] = {}

    def _tids(self) -> list[int]:
        tids = self.fs.provider.proc_threads(self.proc)  # type: ignore[attr-defined]
        return tids or [self.proc.pid]

    def generate(self, name: bytes) -> Inode | None:
        if not name.isdigit() or int(name) not in self._tids():
            return None
        tid = int(name)
        d = self._threads.get(tid)
        if d is None:
            # A thread's status (Pid: is its tid) and comm are its own; its other files are its group's.
            host = getattr(self.fs.provider, "proc_thread_map", lambda p: {})(self.proc).get(tid)  # type: ignore[attr-defined]
            d = self._threads[tid] = PidDir(self.fs, self.fs.new_ino(), self.proc, with_task=False,  # type: ignore[arg-type]
                                            thread_host_tid=host)
        return d

    def names(self) -> Iterable[bytes]:
        return [str(t).encode() for t in self._tids()]


class FdDir(DynamicDir):
    """/proc/PID/fd: one magic link per open guest fd."""

    __slots__ = ("proc", "_links")

    def __init__(self, fs: ProcFs, ino: int, proc: ProcEntry) -> None:
        super().__init__(fs, ino, mode=0o500)
        self.proc = proc
        self._links: dict[int, MagicLink] = {}

    def generate(self, name: bytes) -> Inode | None:
        if not name.isdigit():
            return None
        fd = int(name)
        p = self.fs.provider  # type: ignore[attr-defined]
        if fd not in p.proc_fds(self.proc):
            self._links.pop(fd, None)
            return None
        link = self._links.get(fd)
        if link is None:
            link = MagicLink(self.fs, self.fs.new_ino(), lambda: p.proc_fd_target(self.proc, fd),
                             lambda: _fd_jump(p, self.proc, fd),
                             lambda flags: p.proc_fd_open(self.proc, fd, flags), mode=0o700)
            self._links[fd] = link
        return link

    def names(self) -> Iterable[bytes]:
        return [str(fd).encode() for fd in self.fs.provider.proc_fds(self.proc)]  # type: ignore[attr-defined]


class FdInfoDir(DynamicDir):
    """/proc/PID/fdinfo: position and flags come from the host object itself (it is the
    guest's open file description), so they are exact."""

    __slots__ = ("proc", "_files")

    def __init__(self, fs: ProcFs, ino: int, proc: ProcEntry) -> None:
        super().__init__(fs, ino)
        self.proc = proc
        self._files: dict[int, SyntheticFile] = {}

    def generate(self, name: bytes) -> Inode | None:
        if not name.isdigit():
            return None
        fd = int(name)
        if fd not in self.fs.provider.proc_fds(self.proc):  # type: ignore[attr-defined]
            self._files.pop(fd, None)
            return None
        f = self._files.get(fd)
        if f is None:
            f = SyntheticFile(self.fs, self.fs.new_ino(), lambda: _fdinfo(self.proc, fd))
            self._files[fd] = f
        return f

    def names(self) -> Iterable[bytes]:
        return [str(fd).encode() for fd in self.fs.provider.proc_fds(self.proc)]  # type: ignore[attr-defined]


def _fdinfo(proc: ProcEntry, fd: int) -> bytes:
    try:
        raw = _host_file(f"/proc/{proc.host_pid}/fdinfo/{fd}")
    except OSError:
        raise _enoent() from None
    keep = [line for line in raw.splitlines() if line.startswith((b"pos:", b"flags:"))]
    return b"\n".join(keep) + b"\n"


def _fd_jump(p: ProcessProvider, proc: ProcEntry, fd: int) -> Location | None:
    return p.proc_fd_location(proc, fd)


def _host_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
