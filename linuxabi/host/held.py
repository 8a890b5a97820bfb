"""System calls made without letting go of the interpreter lock (ctypes.PyDLL), for the short
calls of a handler served while another thread of ours runs Python: the uplink's stack
(``--net tap``) under load.

Here: taking a guest's fd and reading or writing a few bytes of its memory (the fd calls of
the same kind are in syscalls/sockutil.py). Every other way of calling (os.*, cffi,
ctypes.CDLL) lets the lock go for the call's duration; the busy thread takes it, and the
handler gets it back only at that thread's next system call: a hand-off each way, each a
cross-CPU wake-up. nginx's accept4 behind ``--net tap`` made ten
such calls and took ~450 µs, during which nginx served nothing. Only calls that never block
belong here: the other thread waits for them.
"""
from __future__ import annotations

import ctypes
import os

_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.process_vm_readv.restype = _libc.process_vm_writev.restype = ctypes.c_ssize_t
_PIDFD_GETFD = 438
_L = ctypes.c_long


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _check(r: int) -> int:
    if r < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return r


def pidfd_getfd(pidfd: int, fd: int) -> int:
    """A dup of process ``pidfd``'s fd ``fd`` (close-on-exec)."""
    return _check(_libc.syscall(_L(_PIDFD_GETFD), _L(pidfd), _L(fd), _L(0)))


def vm_read(pid: int, addr: int, size: int) -> bytes | None:
    """``size`` bytes of process ``pid``'s memory at ``addr``; None if not all are readable."""
    buf = ctypes.create_string_buffer(size)
    local, remote = _Iovec(ctypes.addressof(buf), size), _Iovec(addr, size)
    n = _libc.process_vm_readv(pid, ctypes.byref(local), _L(1), ctypes.byref(remote), _L(1), _L(0))
    return buf.raw if n == size else None


def vm_write(pid: int, addr: int, data: bytes) -> bool:
    """Write ``data`` into process ``pid``'s memory at ``addr``; False if not all of it went."""
    local, remote = _Iovec(ctypes.cast(data, ctypes.c_void_p).value, len(data)), _Iovec(addr, len(data))
    return _libc.process_vm_writev(pid, ctypes.byref(local), _L(1), ctypes.byref(remote), _L(1), _L(0)) == len(data)
