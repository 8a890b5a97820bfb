"""An IoctlContext over the translator's Task, for wiring the shim into the ioctl handler.

The pieces the Task does not have are passed in by the platform: which NVIDIA device a guest fd
is (from the fd -> VFS object view), handing a translator fd to the guest (SECCOMP_IOCTL_NOTIF_ADDFD
without SEND), and running an ioctl in the guest's own context (uvm.py says how).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .core import NvDevice
from .memory import CheckedMemory, HostIoctl, ProcMaps, libc_ioctl


@dataclass
class TaskContext:
    task: Any  # syscalls.base.Task
    host_pid: int
    device_lookup: Callable[[int], NvDevice | None]
    installer: Callable[[int, bool], int]
    in_guest: Callable[[int, int, bytes], tuple[int, bytes]] | None = None
    host_ioctl: HostIoctl = libc_ioctl
    mem: CheckedMemory = field(init=False)

    def __post_init__(self) -> None:
        self.mem = CheckedMemory(self.task.mem, ProcMaps(self.host_pid))

    @property
    def pid(self) -> int:
        return self.host_pid

    def device_of(self, guest_fd: int) -> NvDevice | None:
        return self.device_lookup(guest_fd)

    def host_fd(self, guest_fd: int) -> int:
        return int(self.task.host_fd(guest_fd))

    def install_fd(self, host_fd: int, cloexec: bool) -> int:
        return self.installer(host_fd, cloexec)

    def guest_ioctl(self, guest_fd: int, request: int, params: bytes) -> tuple[int, bytes]:
        if self.in_guest is None:
            raise OSError(25, "no in-guest execution on this platform")
        return self.in_guest(guest_fd, request, params)
