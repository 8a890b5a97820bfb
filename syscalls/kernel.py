"""The translator's kernel state for one sandbox: its VFS, its processes, its UTS names.

Process state that Linux keeps per process (cwd, root, umask, credentials) is the
translator's, because path syscalls are carried out here; a child inherits its parent's state
as of the fork (the platform calls ``fork_process`` while the parent is stopped at the event).
"""
from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from vfs import FsContext, Location, Vfs
from vfs.epoch import EPOCH

if TYPE_CHECKING:
    from caps import CSpace, Rights
    from net.socklayer import GuestNet

    from .base import Answers, CpuAffinity, Task
    from .capguard import CapGuard


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
    # A set*id call ran natively in one of its threads: from then on each thread's own
    # credentials are put in place before its calls are checked (see HostTask.refresh_creds).
    creds_stale: bool = False
    # The kernel names an fd-exec'd task after the file (e.g. "busybox"); Linux would name it
    # after the path exec'd ("cat"). procfs shows ``comm`` while the kernel still says that.
    comm: bytes = b""
    kernel_comm: bytes = b""
    exited: bool = False


class Kernel:
    # Capabilities (install_cspace): the sandbox's authority, and the guard the VFS asks.
    cspace: "CSpace | None" = None
    guard: "CapGuard | None" = None
    # Set by the platform: replace each listed (process, guest fd) by an fd whose reads and
    # writes fail (their capability is gone but the host fd bypasses the translator).
    on_revoke_fds: "Callable[[list[tuple[Process, int]]], None] | None" = None
    # Set by the platform: make each listed (process, [(start, end)]) range of guest memory
    # inaccessible (a mapping of a file whose capability is gone).
    on_revoke_maps: "Callable[[list[tuple[Process, list[tuple[int, int]]]]], None] | None" = None
    # Set by the platform: each thread's CPU set as the guest sees it, when the platform runs
    # threads elsewhere (linuxabi.host.placement.Placement: wanted, set_wanted, cpus).
    cpu_affinity: "CpuAffinity | None" = None
    # Set by the platform: thread ``host_tid`` may have a new name (its comm file was opened for
    # writing), so that its name is asked of the host from then on (see thread_comm).
    on_thread_renamed: "Callable[[int], None] | None" = None
    # Where stat handlers leave answers that hold until a call changes something (the
    # platform's answer cache); None: nobody keeps them.
    answers: "Answers | None" = None
    _nvidia = None  # the NVIDIA ioctl shim, made on a guest's first NVIDIA ioctl
    nvidia_host = None  # syscalls.nvidia.host.NvidiaHost: the driver behind the devices shown
    _net: "GuestNet | None" = None  # the socket layer, made on a guest's first socket call
    # (namespace epoch, whether "/proc" from the root is procfs and searchable by all): see
    # proc_self_exe
    _proc_at_root: tuple[int, bool] = (-1, False)

    def __init__(self, vfs: Vfs, *, hostname: bytes = b"linuxabi") -> None:
        self.vfs = vfs
        self.uts = Uts(nodename=hostname)
        self.processes: dict[int, Process] = {}  # guest pid -> Process
        self.by_host_pid: dict[int, Process] = {}
        self.started = time.monotonic()
        # Set by the platform: the process whose call is being served (procfs's "self"),
        # and how to get a host fd for a guest fd of any process (procfs's fd/ links).
        self.current: Process | None = None
        self.current_tid: int | None = None  # the host thread whose call is being served
        self.dup_guest_fd: Callable[[Process, int], int] | None = None
        # and how to give the guest a host fd during the trapped call a task is in, and to reap
        # a thread (guest tid) that has exited and is only kept by its ptracer
        self.install_fd: "Callable[[Any, int, bool], int] | None" = None
        self.reap_exited_thread: Callable[[int], None] | None = None
        # and how to run an ioctl in a task's own context (the NVIDIA shim's UVM commands)
        self.run_ioctl_in_guest: "Callable[[Any, int, int, bytes], tuple[int, bytes]] | None" = None

    @property
    def net_if_any(self) -> "GuestNet | None":
        return self._net

    @property
    def net(self) -> "GuestNet":
        if self._net is None:
            from net.socklayer import GuestNet

            self._net = GuestNet()
        return self._net

    def close(self) -> None:
        """Release what the sandbox's kernel objects hold on the host (at the sandbox's end)."""
        if self._net is not None:
            self._net.close()

    # ---- what procfs asks (vfs.procfs.ProcessProvider) -----------------------------------------

    def proc_pids(self) -> list[int]:
        return sorted(self.processes)

    def proc_get(self, pid: int) -> Process | None:
        return self.processes.get(pid)

    def proc_self(self) -> int | None:
        return self.current.pid if self.current is not None else None

    def proc_threads(self, proc: Process) -> list[int]:
        """Guest tids of the thread group (the innermost pid of each host thread)."""
        return sorted(self.proc_thread_map(proc))

    def proc_cpus(self, host_tid: int) -> frozenset[int] | None:
        """The CPUs thread ``host_tid`` may run on as the guest sees them (None: the host's)."""
        return self.cpu_affinity.wanted(host_tid) if self.cpu_affinity is not None else None

    def host_tid_of(self, tid: int) -> int | None:
        """The host thread of guest tid ``tid`` (any process of the sandbox), or None."""
        proc = self.processes.get(tid)
        if proc is not None:
            return proc.host_pid
        for proc in list(self.processes.values()):
            host = self.proc_thread_map(proc).get(tid) if len(proc.threads) > 1 else None
            if host is not None:
                return host
        return None

    def proc_thread_map(self, proc: Process) -> dict[int, int]:
        """Guest tid -> host tid for each thread of the group."""
        out: dict[int, int] = {}
        for host_tid in sorted(proc.threads):
            try:
                with open(f"/proc/{proc.host_pid}/task/{host_tid}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"NSpid:"):
                            out[int(line.split()[-1])] = host_tid
                            break
            except OSError:
                continue
        return out

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

    def proc_open_comm(self, proc: Process, host_tid: int, flags: int) -> int:
        """The host's comm file of thread ``host_tid`` of ``proc``, opened for writing: a write
        renames the thread (the host kernel lets only a thread of its group do it, EINVAL for
        others, as Linux's own file)."""
        keep = os.O_ACCMODE | os.O_NONBLOCK | os.O_APPEND | os.O_TRUNC
        fd = os.open(f"/proc/{proc.host_pid}/task/{host_tid}/comm", (flags & keep) | os.O_CLOEXEC)
        if self.on_thread_renamed is not None:
            self.on_thread_renamed(host_tid)
        return fd

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

    # ---- capabilities ----------------------------------------------------------------------------

    def nvidia_ioctl(self, task, guest_fd: int, request: int, argp: int, *, describe: bool = False):  # noqa: ANN001, ANN201
        """An ioctl on an NVIDIA device fd: decoded, checked and re-issued by the shim (one per
        sandbox, made on first use). Fds the driver makes (a dma-buf) are installed in the guest
        through the platform's install_fd; commands that must run in the guest's own context
        (UVM) through its run_ioctl_in_guest (refused where a platform has none)."""
        from .nvidia.platform import TaskContext
        from .nvidia.shim import NvidiaShim

        host = self.nvidia_host
        if self._nvidia is None:
            cs = self.cspace
            self._nvidia = NvidiaShim.for_host(
                version=host.version if host is not None else None,
                audit=getattr(cs, "audit", None), cspace_name=getattr(cs, "name", "sandbox"),
                authorize=(lambda p: cs.authorize_device(p, _ioctl_right())) if cs is not None else None)

        def device_lookup(fd: int):  # noqa: ANN202
            return self.nvidia_device_of(task, fd)

        install = self.install_fd

        def installer(host_fd: int, cloexec: bool) -> int:
            if install is None:
                raise OSError(95, "installing driver fds is not supported on this platform")
            return install(task, host_fd, cloexec)

        run = self.run_ioctl_in_guest
        in_guest = (lambda fd, request, params: run(task, fd, request, params)) if run is not None else None
        ctx = TaskContext(task, task.process.host_pid, device_lookup, installer, in_guest)
        if host is not None:
            ctx.host_ioctl = host.ioctl
        if describe:
            if device_lookup(guest_fd) is None:
                raise ValueError("not an NVIDIA device fd")
            return self._nvidia.describe(ctx, guest_fd, request, argp)
        return self._nvidia.handle_ioctl(ctx, guest_fd, request, argp)

    def nvidia_device_of(self, task, guest_fd: int):  # noqa: ANN001, ANN201 - an NvDevice or None
        """The NVIDIA device a guest fd is open on (EBADF for a bad fd). Read off the devfs
        node (syscalls.nvidia.devices.NvidiaDeviceInode.nv): no import where there is none."""
        hfd = task.host_fd(guest_fd)
        try:
            loc = self.vfs.location_of_host_fd(hfd)
        finally:
            os.close(hfd)
        return getattr(loc.inode, "nv", None) if loc is not None else None

    def nvidia_describe(self, task, guest_fd: int, request: int, argp: int) -> str:  # noqa: ANN001
        """For the tracer: the NVIDIA ioctl decoded (see nvidia_ioctl)."""
        return self.nvidia_ioctl(task, guest_fd, request, argp, describe=True)

    def install_cspace(self, cspace: "CSpace") -> None:
        """Make ``cspace`` the authority every VFS operation, exec and fd use is checked against."""
        from .capguard import CapGuard

        self.cspace = cspace
        self.guard = CapGuard(cspace, self.vfs)
        self.vfs.guard = self.guard
        cspace.actor = lambda: self.current.pid if self.current is not None else None

    def proc_self_exe(self, proc: Process, *, ahead: bool = False) -> bytes | None:
        """readlink("/proc/self/exe") for ``proc`` without the walk, when nothing can make the
        walk end elsewhere: busybox asks on every start, and the walk (the new process's
        /proc/PID, its exe link, their dentries) costs ~100 µs in place. None: walk.
        The same capability check as the walk's end (guard.see of /proc/PID/exe). ``ahead``: for
        an answer kept before the guest asks (answers.py): None where the check would refuse,
        without its audit record."""
        root = self.vfs.root()
        if proc.fs.root != root or not proc.exe:
            return None  # chrooted: /proc may be anything, or nothing
        epoch, usable = self._proc_at_root
        if epoch != EPOCH.value:  # (any mount, rename or mode change moves the epoch)
            usable = self._proc_root_usable(root)
            self._proc_at_root = (EPOCH.value, usable)
        if not usable:
            return None
        if self.guard is not None:
            path = b"/proc/%d/exe" % proc.pid
            if not ahead:
                self.guard.see_path(path)
            elif not self.guard.sees_path(path):
                return None
        return proc.exe

    def _proc_root_usable(self, root: Location) -> bool:
        """Whether "/proc" is a procfs root that anyone may search through from ``root`` (then
        "/proc/self/exe" resolves the same for every process whose root that is)."""
        from vfs.procfs import ProcFs

        try:
            loc = self.vfs.lookup(self.vfs.new_context(b"/"), root, b"/proc", directory=True)
        except OSError:
            return False
        searchable = all(inode.mode & 0o111 == 0o111 for inode in (root.dentry.inode, loc.dentry.inode))
        return isinstance(loc.mount.fs, ProcFs) and loc.dentry is loc.mount.root and searchable

    def authorize_exec(self, loc: Location) -> None:
        """EACCES (and an audit record) unless a capability lets the sandbox exec ``loc``."""
        if self.guard is not None:
            self.guard.exec(loc.mount, loc.dentry)

    def audit_exec(self, name: bytes) -> None:
        """The exec of a file the guest made outside the VFS (a memfd): no capability is
        needed (see syscalls.exec), but like every exec it goes in the audit log."""
        cs = self.cspace
        if cs is not None and cs.audit is not None:
            cs.audit.record("exec", cspace=cs.name, path=name, cap=None)

    def check_location(self, loc: Location, rights: "Rights", op: str) -> None:
        """An fd-based call (fstat, getdents, fchdir, *at on a dirfd) still needs a capability
        for the object the fd names: a revoke takes effect at the next trapped use."""
        if self.guard is not None:
            self.guard.require(loc.mount, loc.dentry, rights, op)

    def check_search(self, loc: Location, op: str) -> None:
        """chdir/fchdir/chroot into ``loc``: EXEC or READ on it."""
        if self.guard is not None:
            self.guard.search(loc.mount, loc.dentry, op)

    def authorize_net(self, op: str, proto: str, ip: str, port: int) -> None:
        """For the socket layer: ``op`` is "bind", "listen" or "connect" (sendto counts as
        connect); EACCES (bind, listen) or EPERM (connect) plus an audit record when refused,
        and an audit record of every one allowed."""
        cs = self.cspace
        if cs is None:
            return
        check = {"bind": cs.authorize_bind, "listen": cs.authorize_listen, "connect": cs.authorize_connect}[op]
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]  # an IPv4 peer seen through a dual-stack socket is that IPv4 address
        elif ip == "::" and op != "connect" and not cs.allows_net(op, proto, ip, port):
            # A dual-stack wildcard takes IPv4 too: the IPv4 wildcard's capability covers it.
            # (Asked without recording first, so that the log holds one decision, not a
            # refusal of "::" followed by the IPv4 wildcard's grant.)
            ip = "0.0.0.0"
        check(proto, ip, port)

    def stale_fds(self) -> list[tuple[Process, int]]:
        """Every (process, guest fd) that names a VFS file its holder may no longer use with the
        fd's access mode. Computed from the fd tables themselves (fds travel natively through
        dup, fork and SCM_RIGHTS), so no open is missed however it got there. Directories are
        left out: every use of a directory fd traps and is checked there."""
        guard = self.guard
        if guard is None:
            return []
        from caps import Rights

        by_mode = (Rights.READ, Rights.WRITE, Rights.READ | Rights.WRITE, Rights.READ | Rights.WRITE)
        out: list[tuple[Process, int]] = []
        for proc in list(self.processes.values()):
            for fd in self.proc_fds(proc):
                try:
                    s = os.stat(f"/proc/{proc.host_pid}/fd/{fd}")
                    with open(f"/proc/{proc.host_pid}/fdinfo/{fd}", "rb") as f:
                        flags = int(f.read().split(b"flags:", 1)[1].split()[0], 8)
                except (OSError, IndexError, ValueError):
                    continue
                if self.vfs.is_stand_in_key(s.st_dev, s.st_ino):
                    continue  # an O_PATH stand-in carries no data
                loc = self.vfs.location_of_host_key(s.st_dev, s.st_ino)
                if loc is None or stat.S_ISDIR(loc.inode.mode):
                    continue
                if not guard.allows(loc.mount, loc.dentry, by_mode[flags & 3]):
                    out.append((proc, fd))
        return out

    def stale_mappings(self) -> list[tuple[Process, list[tuple[int, int]]]]:
        """Every guest memory range that maps a VFS file its process may no longer read: read
        off /proc/PID/maps (mappings outlive their fds). Executable mappings (the running
        programs and their libraries) are left alone: taking them would kill the process."""
        guard = self.guard
        if guard is None:
            return []
        from caps import Rights

        out: list[tuple[Process, list[tuple[int, int]]]] = []
        for proc in list(self.processes.values()):
            ranges: list[tuple[int, int]] = []
            try:
                with open(f"/proc/{proc.host_pid}/maps") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                parts = line.split(None, 5)
                if len(parts) < 5 or parts[4] == "0" or "x" in parts[1]:
                    continue
                major, minor = (int(x, 16) for x in parts[3].split(":"))
                loc = self.vfs.location_of_host_key(os.makedev(major, minor), int(parts[4]))
                if loc is None or guard.allows(loc.mount, loc.dentry, Rights.READ):
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
            if ranges:
                out.append((proc, ranges))
        return out

    def revoked(self) -> list[tuple[Process, int]]:
        """After a revoke: hand the fds that must stop working, and the mappings of files
        that must stop being readable, to the platform's hooks."""
        stale = self.stale_fds()
        if stale and self.on_revoke_fds is not None:
            self.on_revoke_fds(stale)
        maps = self.stale_mappings()
        if maps and self.on_revoke_maps is not None:
            self.on_revoke_maps(maps)
        return stale

    def audit_denied_syscall(self, task: "Task", nr: int, errno: int) -> None:
        """A syscall the table refuses outright (mount, ptrace, bpf, unshare...): a refusal of
        authority, so it is audited like a capability refusal."""
        if self.cspace is None or self.cspace.audit is None or errno not in (1, 13):  # EPERM, EACCES
            return
        from .table import SYSCALLS

        decl = SYSCALLS.get(nr)
        self.cspace.audit.record("deny", cspace=self.cspace.name, kind="syscall",
                                 syscall=decl.name if decl is not None else str(nr),
                                 errno="EPERM" if errno == 1 else "EACCES", pid=task.process.pid,
                                 reason="the sandbox never allows this call")


def _ioctl_right():  # noqa: ANN202
    from caps.rights import Rights

    return Rights.IOCTL
