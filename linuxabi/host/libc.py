"""Raw system calls the host platform needs that the stdlib lacks (cffi, out-of-line ABI mode:
the declarations are in libc_decls.py, compiled into _libc_cffi.py).

Everything goes through libc's ``syscall()`` so the kernel's semantics are what we get, not a
libc wrapper's; errors come back as ``OSError`` with the kernel's errno.
"""
from __future__ import annotations

import os

from linuxabi.host._libc_cffi import ffi

_lib = ffi.dlopen(None)


def raw_syscall(nr: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0, a6: int = 0) -> int:
    """Issue syscall ``nr``; return its result or raise OSError(errno)."""
    ret = _lib.syscall(nr, a1, a2, a3, a4, a5, a6)
    if ret == -1:
        err = _lib.__errno_location()[0]
        raise OSError(err, os.strerror(err))
    return int(ret)


def address_of(buf: bytearray | bytes) -> tuple[object, int]:
    """Return (keep-alive cdata, address) of a buffer's first byte for passing to raw_syscall."""
    cbuf = ffi.from_buffer(buf)
    return cbuf, int(ffi.cast("long", cbuf))


def current_cpu() -> int:
    """The CPU this thread runs on (vDSO: no syscall)."""
    return int(_lib.sched_getcpu())


_SIGPROCMASK = 14  # rt_sigprocmask on x86_64
_ALL = ffi.new("unsigned long *", 0xFFFFFFFFFFFFFFFF)  # the kernel ignores SIGKILL/SIGSTOP in it
_SAVED = ffi.new("unsigned long *")
_ALL_ADDR = int(ffi.cast("long", _ALL))
_SAVED_ADDR = int(ffi.cast("long", _SAVED))


def block_all_signals() -> None:
    """Hold every signal for this thread until ``restore_signals`` (two cheap syscalls; the
    stdlib's pthread_sigmask costs ~30 µs of set conversions per call)."""
    _lib.syscall(_SIGPROCMASK, 0, _ALL_ADDR, _SAVED_ADDR, 8, 0, 0)  # SIG_BLOCK


def restore_signals() -> None:
    _lib.syscall(_SIGPROCMASK, 2, _SAVED_ADDR, 0, 8, 0, 0)  # SIG_SETMASK



_IOV = ffi.new("struct iovec[2]")  # [0] local, [1] remote; the trap loop is single-threaded


def vm_write(pid: int, addr: int, data: object, n: int) -> int:
    """process_vm_writev of ``n`` bytes of ``data`` to ``addr``: bytes moved, or -errno."""
    src = ffi.from_buffer(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    _IOV[0].iov_base, _IOV[0].iov_len = src, n
    _IOV[1].iov_base, _IOV[1].iov_len = ffi.cast("void *", addr), n
    put = _lib.process_vm_writev(pid, _IOV, 1, _IOV + 1, 1, 0)
    return int(put) if put >= 0 else -_lib.__errno_location()[0]


def vm_read(pid: int, addr: int, buf: object, n: int) -> int:
    """process_vm_readv of ``n`` bytes at ``addr`` into ``buf`` (a cdata buffer): bytes moved,
    or -errno."""
    _IOV[0].iov_base, _IOV[0].iov_len = buf, n
    _IOV[1].iov_base, _IOV[1].iov_len = ffi.cast("void *", addr), n
    got = _lib.process_vm_readv(pid, _IOV, 1, _IOV + 1, 1, 0)
    return int(got) if got >= 0 else -_lib.__errno_location()[0]
