"""The answer cache: stat answers that the notification loop gives in C, without Python.

A stat of a path that resolves to an inode whose metadata is all the translator's (an image
file nobody wrote, a directory, a symlink) has the same answer until a call changes the VFS,
the calling thread's credentials or root, or the sandbox's capabilities. The handler answers
the first such stat and leaves its answer here (``remember_path``; ``remember_fd`` for an
fstat, keyed by the file); repeats are answered by ``answers_serve`` (vm_build.py) straight
after RECV: read the path, look it up, write the struct stat, SEND. That is the kernel's round
trip plus two copies, about half of what the same stat costs through Python. A read-only open
of a file whose host object stays the same (an image file, a memfd) is reopened and installed
the same way, and a stat or open of a path that does not resolve gets its errno again (ENOENT,
ENOTDIR: the VFS remembers the lookup's failure until a name changes; ls -l opens a missing
/etc/localtime for every file it shows). After an exec, the new program's readlink of
/proc/self/exe and its prctl(PR_GET_NAME) are answered too (``remember_exec``: busybox asks both
on every start, ~45 µs through Python).

What keeps the answers right is that the cache empties (``flush``), which the supervisor does:

- after every call it serves in Python that the syscall table does not declare to keep answers
  (``keeps_answers``: the stat family, read-only opens, ...): a chmod, an open for writing (the
  copy-up), a set*id, a chroot, an unlink, and any call added later until it is declared;
- whenever the loop handles a signal: a task's exit (its tid may come back as another
  thread), an exec, the tick (which serves the control socket: capability changes);
- and answers are only taken from a thread in no special state (held, masked, exec'ing), the
  only moment that the call being served is one the table's declarations describe.

Path answers hold for one thread (its credentials and root decided them). An fd answer holds
for the file the fd names ((st_dev, st_ino) of the host object, found again with
pidfd_getfd on each call: fd tables change natively).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

try:  # compiled by `make setup` (linuxabi/host/vm_build.py)
    from linuxabi.host._vm import ffi as _ffi
    from linuxabi.host._vm import lib as _lib

    _serve = _lib.answers_serve
except (ImportError, AttributeError):  # no compiled module: every call goes through Python
    _ffi = _lib = _serve = None

if TYPE_CHECKING:
    from .task import HostTask

STAT_SIZE = 144  # struct stat on x86_64
_SELF_EXE = b"/proc/self/exe"
_NAME_KEY = b"/proc/self/comm"  # (vm_build.py's NAME_KEY: the key of a thread's name)


class AnswerCache:
    """One sandbox's cached answers (``create`` gives None where the compiled module is missing)."""

    __slots__ = ("_c", "live", "open_for", "installs_unpinned")

    def __init__(self, c: Any) -> None:
        self._c = c
        self.live = False  # anything remembered since the last flush
        # The host tid whose call is being served, if its answers may be kept; 0 otherwise.
        self.open_for = 0
        # Whether an fd install for this host tid needs no pin (the platform's placement says;
        # a change of placement comes with a flush: it happens on the tick).
        self.installs_unpinned: Callable[[int], bool] = lambda tid: True

    @classmethod
    def create(cls) -> "AnswerCache | None":
        if _lib is None:
            return None
        c = _lib.answers_new()
        if c == _ffi.NULL:
            return None
        return cls(_ffi.gc(c, _lib.answers_free))

    def receiver(self, listener_fd: int, buf: bytearray, wake_fd: int) -> Callable[[], int]:
        """A call that RECVs into ``buf``, answering what the cache holds: it returns 1 when
        ``buf`` holds a notification for Python, 0 after a run of cached answers or when a byte
        came on ``wake_fd`` (the interpreter's signal wakeup fd, non-blocking: its signal
        handlers get their turn), -errno if RECV failed; ``buf`` is all zeros unless it returns
        1. ``buf`` must stay this size."""
        return functools.partial(_serve, listener_fd, _ffi.from_buffer(buf), self._c, wake_fd)

    def flush(self) -> None:
        if self.live:
            _lib.answers_flush(self._c)
            self.live = False

    @property
    def hits(self) -> int:
        return int(_lib.answers_hits(self._c))

    @property
    def installs(self) -> int:
        """How many of the calls answered installed an fd (the opens)."""
        return int(_lib.answers_installs(self._c))

    def _admit(self, task: "HostTask") -> bool:
        tid = task.host_tid
        if tid != self.open_for:
            return False
        _lib.answers_admit(self._c, tid, task.hp.pidfd)
        self.live = True
        return True

    # ---- syscalls.base.Answers ------------------------------------------------------------------

    def remember_path(self, task: "HostTask", follow: bool, path: bytes, stat: bytes) -> None:
        if self._admit(task):
            _lib.answers_put_path(self._c, task.host_tid, int(follow), path, len(path), stat)

    def remember_fd(self, task: "HostTask", key: tuple[int, int], stat: bytes, *, live: bool) -> None:
        if self._admit(task):
            _lib.answers_put_fd(self._c, key[0], key[1], stat, int(live))

    def remember_open(self, task: "HostTask", flags: int, path: bytes, reopen: tuple[int, bytes, int]) -> None:
        # The C install never pins the thread: only while it runs where a wake-up finds it.
        if self.installs_unpinned(task.host_tid) and self._admit(task):
            dirfd, rel, host_flags = reopen
            _lib.answers_put_open(self._c, task.host_tid, _s32(flags), path, len(path), dirfd, rel, host_flags)

    def remember_stat_error(self, task: "HostTask", follow: bool, path: bytes, errno: int) -> None:
        if self._admit(task):
            kind = _lib.ANSWER_STAT if follow else _lib.ANSWER_LSTAT
            _lib.answers_put_error(self._c, task.host_tid, kind, 0, path, len(path), errno)

    def remember_open_error(self, task: "HostTask", flags: int, path: bytes, errno: int) -> None:
        if self._admit(task):
            _lib.answers_put_error(self._c, task.host_tid, _lib.ANSWER_OPEN, _s32(flags), path, len(path), errno)

    def remember_exec(self, tid: int, exe: bytes | None, name: bytes) -> None:
        """What a program that has just been exec'd asks first (busybox on every start): its
        readlink of /proc/self/exe (``exe``; None: not to be answered here) and its
        prctl(PR_GET_NAME) (``name``, the thread's name). The supervisor calls it for a thread
        its exec left in no special state, after the flush that the exec's own stop brought."""
        if exe is not None:
            _lib.answers_put_value(self._c, tid, _lib.ANSWER_READLINK, _SELF_EXE, len(_SELF_EXE), exe, len(exe))
        value = name[:15].ljust(16, b"\0")
        _lib.answers_put_value(self._c, tid, _lib.ANSWER_NAME, _NAME_KEY, len(_NAME_KEY), value, len(value))
        self.live = True


def _s32(flags: int) -> int:
    """Open flags as the C side reads the register: a 32-bit int."""
    flags &= 0xFFFFFFFF
    return flags - (1 << 32) if flags & 0x80000000 else flags
