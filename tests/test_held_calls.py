"""The calls that keep the interpreter lock (linuxabi/host/held.py, syscalls/sockutil.py) say
what their releasing twins say, errors included: a child's memory (readable, read-only,
unmapped), a child's fd, a socket's name, readiness and inode."""
from __future__ import annotations

import ctypes
import mmap
import os
import signal
import socket

import pytest

from linuxabi.host import held
from syscalls.sockutil import close_held, inode_held, readable_held, sockname_held

PIDFD_OPEN = 434


@pytest.fixture
def child():
    """A stopped child with a writable page, a read-only page and an unmapped one after it,
    and a pipe's read end at a known fd: (pid, pidfd, rw address, ro address, hole, fd)."""
    rw = mmap.mmap(-1, mmap.PAGESIZE * 3)
    base = ctypes.addressof(ctypes.c_char.from_buffer(rw))
    rw[:5] = b"hello"
    r, w = os.pipe()
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(base + mmap.PAGESIZE), mmap.PAGESIZE, mmap.PROT_READ) == 0
    assert libc.munmap(ctypes.c_void_p(base + 2 * mmap.PAGESIZE), mmap.PAGESIZE) == 0
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    pidfd = libc.syscall(PIDFD_OPEN, pid, 0)
    assert pidfd >= 0
    try:
        yield pid, pidfd, base, base + mmap.PAGESIZE, base + 2 * mmap.PAGESIZE, r
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for fd in (pidfd, r, w):
            os.close(fd)


def test_a_childs_memory_reads_and_writes_as_with_process_vm(child) -> None:
    pid, _, rw, ro, hole, _ = child
    assert held.vm_read(pid, rw, 5) == b"hello"
    assert held.vm_write(pid, rw, b"HELLO") and held.vm_read(pid, rw, 5) == b"HELLO"
    assert held.vm_read(pid, ro, 4) == b"\0" * 4
    assert not held.vm_write(pid, ro, b"x")            # page protections hold, as in the kernel's copy
    assert held.vm_read(pid, hole, 4) is None and not held.vm_write(pid, hole, b"x")
    assert held.vm_read(pid, hole - 2, 4) is None      # (half of it past the end: all or nothing)


def test_a_childs_fd_and_a_sockets_name_readiness_and_inode(child) -> None:
    _, pidfd, _, _, _, r = child
    fd = held.pidfd_getfd(pidfd, r)
    try:
        assert os.fstat(fd).st_ino == os.fstat(r).st_ino
        assert inode_held(fd) == os.fstat(fd).st_ino
    finally:
        close_held(fd)
    with pytest.raises(OSError) as e:
        held.pidfd_getfd(pidfd, 999)
    assert e.value.errno == 9                          # EBADF
    a, b = socket.socketpair()
    lst = socket.socket()
    try:
        lst.bind(("127.0.0.1", 0))
        assert sockname_held(lst.fileno()) == socket.inet_aton("127.0.0.1").join(
            [(socket.AF_INET).to_bytes(2, "little") + lst.getsockname()[1].to_bytes(2, "big"), bytes(8)])
        assert not readable_held(a.fileno())
        b.send(b"x")
        assert readable_held(a.fileno())
        with pytest.raises(OSError) as e:
            sockname_held(r)
        assert e.value.errno == 88                     # ENOTSOCK
    finally:
        for s in (a, b, lst):
            s.close()
