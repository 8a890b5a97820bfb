"""`linuxabi run -t`: the guest's terminal is a pty of the sandbox's own devpts instance.

The user's terminal is put in raw mode and bytes are relayed both ways between it and the
pty's master, as `docker run -it` and ssh do: Ctrl-C reaches the guest's line discipline,
which signals the guest's foreground process group, never the translator.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import termios
import threading
import tty
from typing import Iterator

_CHUNK = 65536


def copy_window_size(src_fd: int, master: int) -> None:
    """The guest's terminal takes the user's size (the kernel then sends SIGWINCH inside)."""
    try:
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


class TerminalRelay:
    """Copies user input to the master and guest output to the user, in a thread."""

    def __init__(self, master: int, in_fd: int = 0, out_fd: int = 1) -> None:
        self.master = master
        self.in_fd = in_fd
        self.out_fd = out_fd
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="linuxabi-tty", daemon=True)

    def start(self) -> None:
        copy_window_size(self.in_fd, self.master)
        self._thread.start()

    def on_winch(self) -> None:
        copy_window_size(self.in_fd, self.master)

    def stop(self) -> None:
        """After the guest is gone: flush what it wrote last, then end the thread."""
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._stop_r, self._stop_w, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        watch = [self.master, self._stop_r]
        stdin_open = True
        while True:
            fds = watch + ([self.in_fd] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if self.master in ready and not self._pump(self.master, self.out_fd):
                return  # EIO: every slave is closed
            if stdin_open and self.in_fd in ready:
                stdin_open = self._pump(self.in_fd, self.master)
            if self._stop_r in ready:
                while self._pump_nonblocking():
                    pass
                return

    def _pump(self, src: int, dst: int) -> bool:
        try:
            data = os.read(src, _CHUNK)
        except OSError as e:
            if e.errno in (errno.EIO, errno.EBADF):
                return False
            raise
        if not data:
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]
        return True

    def _pump_nonblocking(self) -> bool:
        ready, _, _ = select.select([self.master], [], [], 0)
        return bool(ready) and self._pump(self.master, self.out_fd)


def _in_background(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False  # not our controlling terminal: no job control applies


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The user's terminal in raw mode (restored however we leave), if it is a terminal."""
    if not os.isatty(fd) or _in_background(fd):
        yield  # a background job changing the terminal would be stopped (SIGTTOU)
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
