"""The dispatcher: from a trapped call to its declaration's verdict or handler result."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from linuxabi.abi import errno as E

from .base import CONTINUE, Disposition, Handler, Result, Task
from .table import SYSCALLS


@dataclass(frozen=True)
class ErrnoSwap:
    """Test hook: answer ``to`` where ``syscall``'s handler says ``from_``.

    Set with LINUXABI_SWAP_ERRNO=SYSCALL:FROM:TO (errno names), e.g. mkdirat:EEXIST:EACCES.
    It lets the conformance suite prove that it reports exactly the checks a broken handler breaks.
    """

    nr: int
    from_: int
    to: int

    @classmethod
    def from_env(cls, value: str | None) -> "ErrnoSwap | None":
        if not value:
            return None
        from .table import BY_NAME

        name, frm, to = value.split(":")
        return cls(BY_NAME[name].nr, getattr(E, frm), getattr(E, to))


Tracer = Callable[[Task, int, tuple[int, ...], "int | str"], None]


class Dispatcher:
    def __init__(self, *, swap: ErrnoSwap | None = None, tracer: Tracer | None = None,
                 profile: bool = False) -> None:
        self.swap = swap if swap is not None else ErrnoSwap.from_env(os.environ.get("LINUXABI_SWAP_ERRNO"))
        self.tracer = tracer
        self.counts: dict[int, int] = {}
        self.denied: dict[int, int] = {}
        self.profile = profile
        self.time_ns: dict[int, int] = {}  # with profile: translator time per syscall
        # Told of every call the table refuses outright (when the filter lets those trap).
        self.on_denied: Callable[[Task, int, int], None] | None = None
        # Handlers of declarations that are TRANSLATED whatever the arguments (no rules).
        self._plain: dict[int, Handler] = {
            nr: d.handler for nr, d in SYSCALLS.items()
            if d.disposition is Disposition.TRANSLATED and not d.rules and d.handler is not None}

    def dispatch(self, task: Task, nr: int, args: tuple[int, int, int, int, int, int]) -> Result:
        handler = self._plain.get(nr)
        # The hot path: a translated call with nothing to resolve, and nobody (trace, profile,
        # errno swap) asking to see it.
        if handler is not None and self.tracer is None and self.swap is None and not self.profile:
            counts = self.counts
            counts[nr] = counts.get(nr, 0) + 1
            try:
                return handler(task, args)
            except OSError as e:
                return -(e.errno or E.EIO)
        if not self.profile:
            return self._dispatch(task, nr, args)
        t0 = time.perf_counter_ns()
        try:
            return self._dispatch(task, nr, args)
        finally:
            self.time_ns[nr] = self.time_ns.get(nr, 0) + time.perf_counter_ns() - t0

    def write_profile(self, out) -> None:  # noqa: ANN001 - a text file
        """A flat profile: calls and translator time per syscall, most expensive first."""
        from .table import SYSCALLS as table

        rows = sorted(self.counts, key=lambda nr: -self.time_ns.get(nr, 0))
        total = sum(self.time_ns.values()) or 1
        out.write(f"{'calls':>9} {'total ms':>10} {'us/call':>9} {'share':>6}  syscall\n")
        for nr in rows:
            n, t = self.counts[nr], self.time_ns.get(nr, 0)
            name = table[nr].name if nr in table else f"syscall_{nr}"
            out.write(f"{n:9d} {t / 1e6:10.2f} {t / n / 1e3:9.2f} {100 * t / total:5.1f}%  {name}\n")
        out.write(f"{sum(self.counts.values()):9d} {total / 1e6:10.2f} {'':>9} {'':>6}  total "
                  "(handler time; excludes the trap round trip itself)\n")

    def _dispatch(self, task: Task, nr: int, args: tuple[int, int, int, int, int, int]) -> Result:
        """Return the handler's result; errors come back as a negative errno (int)."""
        self.counts[nr] = self.counts.get(nr, 0) + 1
        decl = SYSCALLS.get(nr)
        try:
            if decl is None:
                raise OSError(E.ENOSYS, "not a declared syscall")
            disposition, errno = decl.resolve(args)
            if disposition is Disposition.NATIVE:
                result: Result = CONTINUE
            elif disposition is Disposition.DENIED:
                raise OSError(errno, os.strerror(errno))
            else:
                assert decl.handler is not None
                result = decl.handler(task, args)
        except OSError as e:
            code = e.errno or E.EIO
            if self.swap is not None and nr == self.swap.nr and code == self.swap.from_:
                code = self.swap.to
            if decl is None or decl.disposition is Disposition.DENIED:
                self.denied[nr] = self.denied.get(nr, 0) + 1
                if self.on_denied is not None and decl is not None:
                    self.on_denied(task, nr, code)  # the audit log's record of the refusal
            result = -code
        if self.tracer is not None:
            self.tracer(task, nr, args, result if isinstance(result, int) else repr(result))
        return result
