"""The seccomp user-notification listener: the trap on the hot path.

Plain ``fcntl.ioctl`` on preallocated buffers (measured as fast as cffi and needs no build).
One listener serves every task that inherited the filter.
"""
from __future__ import annotations

import fcntl
import functools
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from linuxabi.abi import flags

from .libc import block_all_signals, current_cpu, restore_signals

if TYPE_CHECKING:
    from .answers import AnswerCache

try:  # compiled by `make setup` (linuxabi/host/vm_build.py)
    from linuxabi.host._vm import ffi as _ffi
    from linuxabi.host._vm import lib as _vm_lib

    _addfd_pinned = getattr(_vm_lib, "addfd_pinned", None)
except ImportError:
    _ffi = None
    _addfd_pinned = None

_NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, nr, arch, ip, args[6]
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_ADDFD = struct.Struct("=QIIII")  # id, flags, srcfd, newfd, newfd_flags
_ID = struct.Struct("=Q")
_unpack_notif = _NOTIF.unpack
_pack_resp = _RESP.pack_into
_RECV = flags.SECCOMP_IOCTL_NOTIF_RECV
_SEND = flags.SECCOMP_IOCTL_NOTIF_SEND

# Kernel 6.6 additions, newer than the uapi headers linuxabi.abi is generated from.
SECCOMP_IOCTL_NOTIF_SET_FLAGS = 0x40082104  # SECCOMP_IOW(4, __u64)
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1


def cpu_mask(cpus: "set[int] | tuple[int, ...]") -> bytes:
    """A cpu_set_t (1024 CPUs) as bytes, as sched_setaffinity takes it."""
    return sum(1 << c for c in cpus).to_bytes(128, "little")


@functools.lru_cache(maxsize=4)
def cpus_of_mask(mask: bytes) -> frozenset[int]:
    bits = int.from_bytes(mask, "little")
    return frozenset(c for c in range(len(mask) * 8) if bits >> c & 1)


def _answered(fd: int, request: int, buf: bytearray) -> bool:
    """ioctl(fd, request, buf): True if it succeeded, False if the kernel refused (ENOENT: the
    notification's task is gone). The kernel takes the listener's lock interruptibly, so a
    signal to us (SIGCHLD, the tick) while a guest thread holds it fails the call with EINTR,
    and fcntl.ioctl does not retry as other calls do (PEP 475): an answer dropped then left
    the guest waiting forever (a multi-threaded guest under a signal storm hung so)."""
    while True:
        try:
            fcntl.ioctl(fd, request, buf, True)
            return True
        except InterruptedError:
            continue
        except OSError:
            return False


def _pin(tid: int, cpus: "set[int] | tuple[int, ...]") -> bool:
    try:
        os.sched_setaffinity(tid, cpus)
        return True
    except OSError:
        return False


@dataclass(slots=True)
class Notification:
    id: int
    pid: int  # host tid of the trapped thread
    nr: int
    arch: int
    ip: int
    args: tuple[int, int, int, int, int, int]


class Listener:
    """Receive notifications and answer them (value, errno, CONTINUE or an injected fd)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._rbuf = bytearray(_NOTIF.size)
        self._zero = bytes(_NOTIF.size)
        self._sbuf = bytearray(_RESP.size)
        self.sync_wakeup = self._try_sync_wakeup()
        self.recv_errno = 0  # why recv_prepared last returned None (0: it did not fail)
        self._answering: "Callable[[], int] | None" = None

    def _try_sync_wakeup(self) -> bool:
        # Keeps the guest's wake-up on the supervisor's CPU; without it a cross-CPU wake
        # costs 35-60 us on small VMs. Older kernels answer EINVAL.
        try:
            # the flags are the ioctl's argument itself, not a pointer to them
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
            return True
        except OSError:
            return False

    def recv(self) -> Notification | None:
        """The next notification (blocks); None if it vanished (its task died) or EINTR."""
        self.prepare()
        try:
            fcntl.ioctl(self.fd, flags.SECCOMP_IOCTL_NOTIF_RECV, self._rbuf, True)
        except OSError:
            return None
        return self.received()

    def prepare(self) -> None:
        """Zero the buffer: the kernel requires it, and a non-zero id later proves a receipt."""
        self._rbuf[:] = self._zero

    def received(self) -> Notification | None:
        """What the last RECV put in the buffer, if it put anything there."""
        nid, pid, _fl, nr, arch, ip, a0, a1, a2, a3, a4, a5 = _NOTIF.unpack(self._rbuf)
        if nid == 0 and pid == 0:
            return None
        return Notification(nid, pid, nr, arch, ip, (a0, a1, a2, a3, a4, a5))

    def recv_prepared(self) -> Notification | None:
        """RECV into a buffer ``prepare`` already zeroed (``received`` inlined: the hot path)."""
        try:
            fcntl.ioctl(self.fd, _RECV, self._rbuf, True)
        except OSError as e:
            self.recv_errno = e.errno or 0
            return None
        nid, pid, _fl, nr, arch, ip, a0, a1, a2, a3, a4, a5 = _unpack_notif(self._rbuf)
        if nid == 0 and pid == 0:
            return None
        return Notification(nid, pid, nr, arch, ip, (a0, a1, a2, a3, a4, a5))

    def answer_with(self, answers: "AnswerCache | None", wake_fd: int = -1) -> None:
        """Have ``recv_answering`` answer in C the calls ``answers`` holds (answers.py), and
        return when a byte comes on ``wake_fd`` (the interpreter's signal wakeup fd)."""
        self._answering = answers.receiver(self.fd, self._rbuf, wake_fd) if answers is not None else None

    def recv_answering(self) -> Notification | None:
        """recv_prepared, the calls the ``answer_with`` cache holds answered in C on the way.
        None also after a run of such answers, so that signal handlers get their turn."""
        r = self._answering()  # type: ignore[misc]
        if r == 1:
            nid, pid, _fl, nr, arch, ip, a0, a1, a2, a3, a4, a5 = _unpack_notif(self._rbuf)
            return Notification(nid, pid, nr, arch, ip, (a0, a1, a2, a3, a4, a5))
        if r < 0:
            self.recv_errno = -r
        return None

    def no_tasks_left(self) -> bool:
        """Whether every task under the filter has exited (the fd polls hung up): from then on
        RECV fails at once (ENOENT), however often it is asked."""
        import select

        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return any(ev & select.POLLHUP for _fd, ev in p.poll(0))

    def reply(self, nid: int, val: int = 0, error: int = 0) -> bool:
        """Answer with a return value or -errno; False if the task is gone."""
        _pack_resp(self._sbuf, 0, nid, val, error, 0)
        return _answered(self.fd, _SEND, self._sbuf)

    def reply_errno(self, nid: int, errno: int) -> bool:
        return self.reply(nid, 0, -errno)

    def reply_continue(self, nid: int) -> bool:
        """Let the syscall run natively. Only for calls whose safety does not depend on memory."""
        _RESP.pack_into(self._sbuf, 0, nid, 0, 0, flags.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        return _answered(self.fd, _SEND, self._sbuf)

    def addfd(self, nid: int, srcfd: int, *, cloexec: bool, send: bool, newfd: int | None = None,
              pin: "tuple[int, bytes] | None" = None) -> int:
        """Install host fd ``srcfd`` in the trapped task; with ``send`` it is also the syscall's result.

        ``pin`` (guest tid, the supervisor's CPU mask as cpu_set_t bytes) keeps that thread on
        our CPU during the call: ADDFD wakes it without the synchronous-wake hint, and the
        scheduler would send it to the idle CPU (a cross-CPU wake-up each way, ~40 us each on
        small VMs). Returns the guest fd number; raises OSError (ENOENT when the task is gone,
        EMFILE...).
        """
        fl = 0
        if send:
            fl |= flags.SECCOMP_ADDFD_FLAG_SEND
        if newfd is not None:
            fl |= flags.SECCOMP_ADDFD_FLAG_SETFD
        # A mutable buffer makes fcntl.ioctl return the ioctl's integer result (the new fd).
        req = bytearray(_ADDFD.pack(nid, fl, srcfd, newfd or 0, os.O_CLOEXEC if cloexec else 0))
        # ADDFD waits for the target to install the fd. A signal to the supervisor (SIGCHLD,
        # the tick) would interrupt that wait, and with SEND the kernel has already marked the
        # call answered: the guest's call would return 0, and our fd never arrive. So no
        # signal may interrupt it; they are handled right after.
        if _addfd_pinned is not None:
            tid, mask = pin if pin is not None else (0, b"")
            r = _addfd_pinned(self.fd, flags.SECCOMP_IOCTL_NOTIF_ADDFD, _ffi.from_buffer(req), tid,
                              mask, len(mask))
            if r < 0:
                raise OSError(-r, os.strerror(-r))
            return r
        block_all_signals()
        pinned = pin is not None and _pin(pin[0], (current_cpu(),))
        try:
            while True:
                try:
                    return fcntl.ioctl(self.fd, flags.SECCOMP_IOCTL_NOTIF_ADDFD, req, True)
                except InterruptedError:
                    continue
        finally:
            if pinned:
                _pin(pin[0], cpus_of_mask(pin[1]))  # type: ignore[index]
            restore_signals()

    def id_valid(self, nid: int) -> bool:
        return _answered(self.fd, flags.SECCOMP_IOCTL_NOTIF_ID_VALID, bytearray(_ID.pack(nid)))
