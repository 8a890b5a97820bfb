"""Process-level syscalls the translator answers or vets: uname, hostnames, credentials, CPU affinity,
and the fallbacks for argument-dependent rules (fcntl, ioctl, prctl) that the filter hands over.
"""
from __future__ import annotations

import functools
import os

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F
from linuxabi.abi import x86_64

from .base import CONTINUE, Result, Task
from .fsutil import err, s32

Args = tuple[int, int, int, int, int, int]
_UTS_LEN = 65


def sys_uname(task: Task, a: Args) -> Result:
    u = task.kernel.uts
    fields = (u.sysname, u.nodename, u.release, u.version, u.machine, u.domainname)
    task.mem.write(a[0], b"".join(f[: _UTS_LEN - 1].ljust(_UTS_LEN, b"\0") for f in fields))
    return 0


def _set_uts_name(task: Task, addr: int, length: int) -> bytes:
    length = s32(length)
    if length < 0 or length > 64:
        raise err(E.EINVAL)
    if task.process.fs.uid != 0:
        raise err(E.EPERM)
    return task.mem.read(addr, length).split(b"\0", 1)[0]


def sys_sethostname(task: Task, a: Args) -> Result:
    task.kernel.uts.nodename = _set_uts_name(task, a[0], a[1])
    return 0


def sys_setdomainname(task: Task, a: Args) -> Result:
    task.kernel.uts.domainname = _set_uts_name(task, a[0], a[1])
    return 0


def sys_set_creds(task: Task, a: Args) -> Result:
    """set*id: the host kernel applies Linux's rules to the calling thread (glibc's wrappers
    make every thread call it); its result is re-read before that thread's next check."""
    task.process.creds_stale = True
    task.creds_stale = True
    return CONTINUE


def sys_fcntl_other(task: Task, a: Args) -> Result:
    """fcntl commands the filter does not pass through."""
    cmd = s32(a[1])
    if cmd in (F.F_ADD_SEALS, F.F_GET_SEALS):
        # Seals belong to memfds the guest made itself; the VFS's backing memfds are not its own.
        hfd = task.host_fd(s32(a[0]))
        try:
            if task.kernel.vfs.location_of_host_fd(hfd) is None:
                return CONTINUE
        finally:
            os.close(hfd)
    raise err(E.EINVAL)


def sys_ioctl_other(task: Task, a: Args) -> Result:
    """ioctls outside the pass-through list: the NVIDIA shim's devices, else ENOTTY."""
    # EBADF for a bad fd, as Linux checks that first
    if task.kernel.nvidia_device_of(task, s32(a[0])) is None:
        raise err(E.ENOTTY)
    return task.kernel.nvidia_ioctl(task, s32(a[0]), a[1] & 0xFFFFFFFF, a[2])


def sys_prctl_other(task: Task, a: Args) -> Result:
    option = s32(a[0])
    if option == F.PR_GET_NAME:
        task.mem.write(a[1], thread_comm(task).ljust(16, b"\0")[:16])
        return 0
    if option == F.PR_SET_NAME:
        # It runs natively; this thread's name is then the kernel's to tell (see thread_comm).
        task.renamed = True
        return CONTINUE
    raise err(E.EINVAL)


def thread_comm(task: Task) -> bytes:
    """PR_GET_NAME's answer. A thread that has not renamed itself since its exec still has the
    name the exec gave it, known without asking the host (busybox asks on every start)."""
    proc = task.process
    if not getattr(task, "renamed", True) and proc.kernel_comm:
        return proc.comm or proc.kernel_comm
    return task_comm(proc, task.host_tid)


def task_comm(proc, host_tid: int) -> bytes:
    """The task name Linux would report: an fd-exec makes the kernel name the task after the
    file ("busybox"), where Linux names it after the path exec'd ("cat", or "exe" for
    /proc/self/exe, which busybox then renames itself)."""
    try:
        fd = os.open(f"/proc/{host_tid}/comm", os.O_RDONLY | os.O_CLOEXEC)
        try:
            host = os.read(fd, 64).rstrip(b"\n")
        finally:
            os.close(fd)
    except OSError:
        return proc.comm
    return proc.comm if proc.comm and host == proc.kernel_comm else host


def _process_vm(task: Task, a: Args, name: str) -> Result:
    """process_vm_readv/writev: natively on the caller's own process. Another guest process's
    memory is refused (EPERM, audited) as ptrace of it is: reading and writing another
    program's memory is debugging it, which the sandbox does not grant."""
    pid = s32(a[0])
    proc, kernel = task.process, task.kernel
    if pid <= 0 or pid in (proc.pid, task.tid):
        return CONTINUE  # the kernel's own answer (ESRCH for 0 and below)
    if pid not in kernel.processes and pid in kernel.proc_thread_map(proc):
        return CONTINUE  # another thread of the caller's process
    if pid in kernel.processes or any(pid in kernel.proc_thread_map(p) for p in list(kernel.processes.values())):
        kernel.audit_denied_syscall(task, x86_64.NR[name], E.EPERM)
        raise err(E.EPERM)
    raise err(E.ESRCH)


def sys_process_vm_readv(task: Task, a: Args) -> Result:
    return _process_vm(task, a, "process_vm_readv")


def sys_process_vm_writev(task: Task, a: Args) -> Result:
    return _process_vm(task, a, "process_vm_writev")


def _signal_thread(task: Task, tid: int) -> Result:
    """tkill/tgkill run natively, after the platform has reaped ``tid`` if it is a thread that
    has exited: its ptracer (the translator) keeps it a zombie until it waits for it, where
    Linux releases an exited thread at once, so a tgkill right after pthread_join would
    otherwise find it (0 instead of ESRCH)."""
    reap = task.kernel.reap_exited_thread
    if reap is not None and tid > 0:
        reap(tid)
    return CONTINUE


def sys_tkill(task: Task, a: Args) -> Result:
    return _signal_thread(task, s32(a[0]))


def sys_tgkill(task: Task, a: Args) -> Result:
    return _signal_thread(task, s32(a[1]))


def sys_clock_settime(task: Task, a: Args) -> Result:
    """Setting a clock is never a guest's right; Linux refuses unsettable clocks first."""
    if s32(a[0]) != F.CLOCK_REALTIME:
        raise err(E.EINVAL)
    raise err(E.EPERM)


# ---- CPU affinity: the guest's own sets, where the platform places threads itself ---------

_MASK_MAX = 1024  # bytes: the kernel's cpumask is at most NR_CPUS (8192) bits


@functools.cache
def _libc():  # noqa: ANN202 - a ctypes.CDLL, loaded on a guest's first affinity call
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _native_getaffinity_len(length: int) -> int:
    """What sched_getaffinity(0, length, buf) returns here: min(length, the kernel's cpumask
    size), or -EINVAL for a length the kernel refuses (too short for nr_cpu_ids, or not a
    multiple of sizeof(long))."""
    import ctypes

    if length & 7:
        return -E.EINVAL
    buf = ctypes.create_string_buffer(_MASK_MAX)
    r = _libc().syscall(x86_64.NR["sched_getaffinity"], 0, ctypes.c_size_t(min(length, _MASK_MAX)), buf)
    return r if r >= 0 else -ctypes.get_errno()


def _affinity_target(task: Task, pid: int) -> int:
    """The host thread a sched_*affinity call names (0: the caller); ESRCH if none."""
    if pid == 0 or pid == task.tid:
        return task.host_tid  # type: ignore[attr-defined]
    host = task.kernel.host_tid_of(pid) if pid > 0 else None
    if host is None:
        raise err(E.ESRCH)
    return host


def _mask_cpus(data: bytes) -> frozenset[int]:
    bits = int.from_bytes(data, "little")
    return frozenset(c for c in range(bits.bit_length()) if bits >> c & 1)


def sys_sched_getaffinity(task: Task, a: Args) -> Result:
    """The thread's CPU set as the guest knows it (the platform may run it on fewer)."""
    aff = task.kernel.cpu_affinity
    if aff is None:
        return CONTINUE
    length = a[1]
    retlen = _native_getaffinity_len(length)
    if retlen < 0:
        raise err(-retlen)
    cpus = aff.wanted(_affinity_target(task, s32(a[0])))
    task.mem.write(a[2], sum(1 << c for c in cpus).to_bytes(retlen, "little"))
    return retlen


def sys_sched_setaffinity(task: Task, a: Args) -> Result:
    """Linux's order: the mask is read first (EFAULT), then the thread found (ESRCH); the host
    kernel then sets it (EINVAL: no CPU of it usable) and the platform keeps what it set."""
    aff = task.kernel.cpu_affinity
    if aff is None:
        return CONTINUE
    size = _native_getaffinity_len(_MASK_MAX)
    length = min(a[1], size)
    requested = _mask_cpus(task.mem.read(a[2], length)) if length else frozenset()
    host_tid = _affinity_target(task, s32(a[0]))
    if not requested:
        raise err(E.EINVAL)
    aff.set_wanted(host_tid, requested)
    return 0
