"""AF_UNIX sockets named in the filesystem: bind/connect/sendto on a guest path.

Not served yet: each refuses with EACCES (see syscalls/net.py, which routes path names here).
bind_path/connect_path: the caller closes ``g``; sendto_path owns ``g`` and closes it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from linuxabi.abi import errno as E

from .base import Result
from .fsutil import err

if TYPE_CHECKING:
    from .base import Task
    from .net import _GuestSocket


def bind_path(task: "Task", g: "_GuestSocket", raw: bytes) -> Result:
    raise err(E.EACCES)


def connect_path(task: "Task", g: "_GuestSocket", raw: bytes) -> Result:
    raise err(E.EACCES)


def sendto_path(task: "Task", g: "_GuestSocket", raw: bytes, data: bytes, flags: int) -> Result:
    raise err(E.EACCES)
