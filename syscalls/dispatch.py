"""The dispatcher: from a trapped call to its declaration's verdict or handler result."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from linuxabi.abi import errno as E

from .base import CONTINUE, Disposition, Result, Task
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
    def __init__(self, *, swap: ErrnoSwap | None = None, tracer: Tracer | None = None) -> None:
        self.swap = swap if swap is not None else ErrnoSwap.from_env(os.environ.get("LINUXABI_SWAP_ERRNO"))
        self.tracer = tracer
        self.counts: dict[int, int] = {}
        self.denied: dict[int, int] = {}

    def dispatch(self, task: Task, nr: int, args: tuple[int, int, int, int, int, int]) -> Result:
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
            result = -code
        if self.tracer is not None:
            self.tracer(task, nr, args, result if isinstance(result, int) else repr(result))
        return result
