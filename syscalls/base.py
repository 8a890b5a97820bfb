"""What a syscall declaration is, and what handlers receive and return.

Handlers do not know how they were called: they get a ``Task`` (the calling thread as the
platform presents it) and the six raw argument registers, and return a result. Errors are
raised as ``OSError`` carrying the Linux errno.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Union

if TYPE_CHECKING:
    from .kernel import Kernel, Process


class Disposition(enum.Enum):
    NATIVE = "native"  # the filter lets it through: host kernel, native cost
    TRANSLATED = "translated"  # trapped and carried out by a handler
    DENIED = "denied"  # fails with a fixed errno, in the filter itself


class Trap(enum.Enum):
    NOTIFY = "notify"  # seccomp user notification (the normal trap)
    TRACE = "trace"  # seccomp RET_TRACE + ptrace stop (execve: the syscall must be rewritten)


class Cmp(enum.Enum):
    EQ = "=="
    MASKED_EQ = "&=="  # (arg & mask) == value


@dataclass(frozen=True)
class ArgRule:
    """An argument-dependent disposition: when ``arg`` compares true, ``disposition`` applies."""

    arg: int
    cmp: Cmp
    value: int
    disposition: Disposition
    errno: int = 0
    mask: int = 0xFFFFFFFFFFFFFFFF
    why: str = ""

    def matches(self, args: tuple[int, ...]) -> bool:
        a = args[self.arg]
        if self.cmp is Cmp.EQ:
            return (a & self.mask) == self.value
        return (a & self.mask) == self.value


@dataclass(frozen=True)
class SyscallDecl:
    nr: int
    name: str
    disposition: Disposition
    handler: "Handler | None" = None
    errno: int = 0  # for DENIED
    trap: Trap = Trap.NOTIFY
    rules: tuple[ArgRule, ...] = ()
    # When no rule matches: this decl's disposition applies (evaluated by the dispatcher for
    # the cases the filter hands it).
    note: str = ""
    # A sandbox feature ("uplink") that the handler serves; a sandbox without it runs the call
    # natively, in the filter (its handler would only continue it).
    native_without: str = ""

    def native_in(self, features: frozenset[str]) -> bool:
        """Whether a sandbox with ``features`` runs this call natively for want of its feature."""
        return bool(self.native_without) and self.native_without not in features

    def resolve(self, args: tuple[int, ...]) -> tuple[Disposition, int]:
        """(disposition, errno) for these arguments: first matching rule, else the default."""
        for rule in self.rules:
            if rule.matches(args):
                return rule.disposition, rule.errno
        return self.disposition, self.errno


# ---- what handlers return ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallFd:
    """Hand host fd ``host_fd`` to the guest as the syscall's result (the platform closes ours).

    ``counted``: the object counts its holders, and the guest can tell (a FIFO's writers make a
    read wait instead of seeing end-of-file; a socket's last close sends the FIN). Ours is then
    closed before the guest runs on, at the cost of answering apart from the fd's install."""

    host_fd: int
    cloexec: bool
    counted: bool = False


@dataclass(frozen=True, slots=True)
class ReplaceFd:
    """Put host fd ``host_fd`` in place of the guest's fd ``guest_fd`` (as dup2 would, keeping
    its number), then answer ``result`` (the platform closes ours)."""

    host_fd: int
    guest_fd: int
    cloexec: bool
    result: int = 0


class _Continue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CONTINUE"


# Let the trapped call run natively. Only for calls whose safety does not depend on guest memory.
CONTINUE = _Continue()


@dataclass(slots=True)
class ExecPlan:
    """An exec the platform must perform: the kernel execs ``host_fd`` with ``argv``/``envp``."""

    host_fd: int  # the file the kernel loads (the translator's fd; the platform injects it)
    guest_path: bytes  # the guest's path of the program (for /proc/PID/exe)
    argv: list[bytes] | None  # replacement argv (#! scripts), or None to keep the guest's
    argv_addr: int
    envp_addr: int
    comm: bytes = b""  # the task name Linux gives: the basename of the path the guest exec'd
    interp: bytes = b""  # PT_INTERP of a dynamic ELF: the platform stages interp_fd there
    interp_fd: int = -1


@dataclass(slots=True)
class Park:
    """Answer later: ``ready`` is polled by the event loop; ``finish`` produces the result."""

    wait_fd: int
    finish: Callable[[], "Result"]
    events: int = 1  # select.POLLIN
    # Called instead of finish when the call goes away unanswered (the guest was interrupted
    # and restarts it, or exited): release what finish would have released.
    cancel: Callable[[], None] | None = None


Result = Union[int, InstallFd, ReplaceFd, _Continue, ExecPlan, Park]


class Memory(Protocol):
    def read(self, addr: int, size: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def read_cstr(self, addr: int, limit: int = 4096) -> bytes: ...
    def read_ptr_array(self, addr: int, limit: int = ...) -> list[int]: ...


class Task(Protocol):
    """The calling thread, as any platform (Linux host, microkernel server) presents it."""

    tid: int  # guest thread id
    process: "Process"
    kernel: "Kernel"
    mem: Memory
    creds_stale: bool  # set by a set*id handler: the platform re-reads this thread's credentials

    def host_fd(self, guest_fd: int) -> int:
        """A host fd (owned by the caller) for the guest's ``guest_fd``; EBADF if none."""
        ...

    # Optional (a platform without them skips what needs them, or takes the long way):
    # host_key(guest_fd) -> (st_dev, st_ino): what host_fd + fstat would say, cheaper;
    # file_size_limit() -> int: the process's RLIMIT_FSIZE soft limit (-1: none);
    # raise_signal(signo): queue a signal for this thread, as the kernel would;
    # renamed: bool, False while the thread keeps the name its exec gave it (PR_SET_NAME sets it);
    # fd_closes_on_exec(guest_fd) -> bool: whether the guest's fd has FD_CLOEXEC.


class CpuAffinity(Protocol):
    """Each thread's CPU set as the guest sees it, where the platform places threads itself."""

    cpus: frozenset[int]  # the sandbox's CPUs: a thread's set unless it chose its own

    def wanted(self, host_tid: int) -> frozenset[int]: ...
    def set_wanted(self, host_tid: int, cpus: frozenset[int]) -> None: ...  # OSError as the kernel's


class Answers(Protocol):
    """Where a handler leaves an answer that holds until the platform's cache empties (see
    linuxabi/host/answers.py): the struct stat of an absolute path for the calling thread, or
    of the file a host key names. The platform decides whether it keeps them."""

    def remember_path(self, task: "Task", follow: bool, path: bytes, stat: bytes) -> None: ...
    # live: the file's size, blocks and times are the host object's (a memfd), the rest ``stat``'s
    def remember_fd(self, task: "Task", key: tuple[int, int], stat: bytes, *, live: bool) -> None: ...
    # an open(2) of ``path`` with ``flags`` that ``reopen`` (vfs.Opened.reopen) repeats
    def remember_open(self, task: "Task", flags: int, path: bytes, reopen: tuple[int, bytes, int]) -> None: ...
    # a stat or open of ``path`` that fails with ``errno`` while no name changes
    def remember_stat_error(self, task: "Task", follow: bool, path: bytes, errno: int) -> None: ...
    def remember_open_error(self, task: "Task", flags: int, path: bytes, errno: int) -> None: ...


Handler = Callable[["Task", tuple[int, int, int, int, int, int]], Result]


@dataclass
class Counters:
    """Per-syscall counts for the tracer and the compat report."""

    calls: dict[int, int] = field(default_factory=dict)
    errors: dict[int, int] = field(default_factory=dict)
