"""Special files found in or created on a filesystem: fifos, sockets, device nodes.

A fifo is a shadow host fifo in the scratch area, so two guest processes that open it meet
in the host kernel's pipe and data flows natively. Device nodes outside devfs are never
opened (as on a ``nodev`` mount: EACCES): an image must not smuggle in a host device.
"""
from __future__ import annotations

import fcntl
import os

from .errors import E, fail
from .inode import PASS_FLAGS, S_IFIFO, S_IFMT, S_IFSOCK, Inode


def _clear_nonblock(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)


class SpecialInode(Inode):
    """A fifo, socket or device node (mode says which). No data of its own."""

    __slots__ = ("_peer_hold", "_waiting")

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        # A host fd of the opposite end the VFS holds while a guest waits for a partner.
        self._peer_hold: tuple[int, int] | None = None  # (fd, its access mode)
        # Guests parked in a blocking open of this fifo: access mode -> their eventfds.
        self._waiting: dict[int, list[int]] = {os.O_RDONLY: [], os.O_WRONLY: []}

    # ---- blocking opens (Linux waits in open(2) until the other end is there) -----------------

    def waiting(self, acc: int) -> bool:
        return bool(self._waiting[acc])

    def wait(self, acc: int, efd: int) -> None:
        self._waiting[acc].append(efd)

    def unwait(self, acc: int, efd: int) -> None:
        if efd in self._waiting[acc]:
            self._waiting[acc].remove(efd)

    def arrived(self, acc: int) -> None:
        """An open with access mode ``acc`` happened: wake the opens waiting for that end."""
        ends = {os.O_RDONLY: (os.O_WRONLY,), os.O_WRONLY: (os.O_RDONLY,),
                os.O_RDWR: (os.O_RDONLY, os.O_WRONLY)}.get(acc, ())
        for end in ends:
            for efd in self._waiting[end]:
                os.eventfd_write(efd, 1)

    def open_host(self, flags: int) -> int:
        kind = self.mode & S_IFMT
        if kind == S_IFSOCK:
            fail(E.ENXIO)
        if kind != S_IFIFO:
            fail(E.EACCES)
        return self._open_fifo(flags)

    def open_path(self) -> int:
        if self.mode & S_IFMT == S_IFIFO:
            return self._scratch_open(os.O_PATH, "fifo")
        return self._scratch_open(os.O_PATH, "file")

    def _open_fifo(self, flags: int) -> int:
        """Open the shadow fifo without ever blocking the translator.

        Linux blocks a reader's open until a writer comes (and vice versa). The VFS cannot
        wait, so it opens non-blocking and holds a placeholder for the missing end until a
        guest opens the real one (so a reader never sees a false EOF, and a writer's data
        waits in the pipe); the open syscall's answer is then parked until the partner comes
        (syscalls/fs.py, with ``wait``/``arrived`` below). O_NONBLOCK opens and O_RDWR behave
        natively.
        """
        if self.shadow is None:
            scratch = self.fs.scratch
            if scratch is None:
                fail(E.ENXIO)
            self.shadow = scratch.make_fifo()
        scratch = self.fs.scratch
        assert scratch is not None
        passed = flags & PASS_FLAGS
        acc = flags & os.O_ACCMODE
        if flags & os.O_NONBLOCK or acc == os.O_RDWR:
            return scratch.open(self.shadow, passed)
        if acc == os.O_RDONLY:
            fd = scratch.open(self.shadow, passed | os.O_NONBLOCK)
            _clear_nonblock(fd)
            if self._peer_hold is not None and self._peer_hold[1] == os.O_RDONLY:
                self._drop_hold()  # a writer was waiting for us: it is served now
            elif self._peer_hold is None:
                self._peer_hold = (scratch.open(self.shadow, os.O_WRONLY | os.O_NONBLOCK), os.O_WRONLY)
                self.fs.holders.add(self)
            return fd
        try:
            fd = scratch.open(self.shadow, passed | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != E.ENXIO:
                raise
            # No reader yet: hold a read end so the data waits for one.
            self._peer_hold = (scratch.open(self.shadow, os.O_RDONLY | os.O_NONBLOCK), os.O_RDONLY)
            self.fs.holders.add(self)
            fd = scratch.open(self.shadow, passed | os.O_NONBLOCK)
        if self._peer_hold is not None and self._peer_hold[1] == os.O_WRONLY:
            # A reader was waiting for a writer: we are it. Only now (the real writer is
            # open) may the placeholder go, or a reader blocked in read() would see EOF.
            self._drop_hold()
        _clear_nonblock(fd)
        return fd

    def _drop_hold(self) -> None:
        if self._peer_hold is not None:
            os.close(self._peer_hold[0])
            self._peer_hold = None

    def close_host(self) -> None:
        self._drop_hold()

    def released(self) -> None:
        self._drop_hold()
        self.fs.holders.discard(self)
        super().released()
