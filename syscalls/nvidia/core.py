"""What every shimmed ioctl shares: the platform context, refusals, and the per-call state.

The platform (the Linux-host supervisor, or a test) supplies an ``IoctlContext``; the shim
never touches guest memory, guest fds or the host driver except through it.
"""
from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .abi import Abi
from .codec import Layout
from .memory import Arena, GuestMem, HostIoctl

if TYPE_CHECKING:
    from .shim import NvidiaShim

# Device kinds (see devices.py): /dev/nvidiactl, /dev/nvidiaN, /dev/nvidia-uvm, the caps nodes.
CTL, GPU, UVM, UVM_TOOLS, CAPS = "ctl", "gpu", "uvm", "uvm-tools", "caps"


@dataclass(frozen=True)
class NvDevice:
    """An NVIDIA device node as the guest's fd table knows it."""

    kind: str
    minor: int
    path: bytes  # the guest path (/dev/nvidiactl), for audit records


class IoctlContext(Protocol):
    """The calling guest thread, as the shim needs it."""

    pid: int  # the guest process (fd numbers are per process)
    mem: GuestMem
    host_ioctl: HostIoctl

    def device_of(self, guest_fd: int) -> NvDevice | None:
        """The NVIDIA device the guest's fd refers to, or None (not an fd of the guest, or not
        an NVIDIA device)."""
        ...

    def host_fd(self, guest_fd: int) -> int:
        """A new translator fd on the same open file description as the guest's fd (the
        caller closes it); OSError(EBADF) if the guest has no such fd."""
        ...

    def install_fd(self, host_fd: int, cloexec: bool) -> int:
        """Give the guest a copy of the translator's ``host_fd``; its fd number there."""
        ...

    def guest_ioctl(self, guest_fd: int, request: int, params: bytes) -> tuple[int, bytes]:
        """Run ioctl(guest_fd, request, p) in the guest's own context, where p points to a copy
        of ``params`` that no guest thread can change while the call runs (see uvm.py);
        returns (result or -errno, the params as the kernel left them)."""
        ...


class Refused(Exception):
    """Answer the guest without reaching the driver, as the driver itself would: ``errno`` for
    the ioctl's result, or ``status`` (an NV_ERR_* name) written into the params' status
    field with the ioctl returning 0."""

    def __init__(self, reason: str, *, errno: int | None = None, status: str | None = None,
                 **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errno = errno
        self.status = status
        self.details = details


@dataclass
class Call:
    """One ioctl in flight."""

    shim: "NvidiaShim"
    ctx: IoctlContext
    dev: NvDevice
    guest_fd: int
    request: int
    argp: int
    name: str = "?"
    arena: Arena = field(default_factory=Arena)
    temp_fds: list[int] = field(default_factory=list)
    own_fd: int = -1

    @property
    def abi(self) -> Abi:
        assert self.shim.abi is not None
        return self.shim.abi

    def layout(self, type_name: str) -> Layout:
        return self.shim.layouts(type_name)

    def status_value(self, name: str) -> int:
        return self.abi.status(name)

    # -- guest memory ------------------------------------------------------------------------

    def read_guest(self, addr: int, size: int, *, write_back: bool, what: str,
                   status: str | None = None) -> bytes:
        """Copy ``size`` bytes in from the guest, once. The range must be mapped readable (and
        writable when results go back): otherwise EFAULT, or ``status`` for an embedded
        pointer the RM would report as NV_ERR_INVALID_ADDRESS."""
        if not self.ctx.mem.mapped(addr, size, write_back):
            raise Refused(f"{what} at 0x{addr:x}+{size} is outside the guest's mapped memory",
                          errno=None if status else E.EFAULT, status=status)
        try:
            return self.ctx.mem.read(addr, size)
        except OSError:
            raise Refused(f"{what} at 0x{addr:x}+{size} unreadable", errno=None if status else E.EFAULT,
                          status=status) from None

    def write_guest(self, addr: int, data: bytes) -> None:
        self.ctx.mem.write(addr, data)

    # -- fds ---------------------------------------------------------------------------------

    def nvidia_fd(self, guest_fd: int, what: str, kinds: tuple[str, ...] = (CTL, GPU)) -> NvDevice:
        """Check that ``guest_fd`` is the guest's own fd of an NVIDIA device of ``kinds``."""
        dev = self.ctx.device_of(guest_fd) if guest_fd >= 0 else None
        if dev is None:
            raise Refused(f"{what} {guest_fd} is not an NVIDIA device fd of the guest", errno=E.EINVAL,
                          fd=guest_fd)
        if dev.kind not in kinds:
            raise Refused(f"{what} {guest_fd} is {dev.path.decode(errors='replace')}, not one of {kinds}",
                          errno=E.EINVAL, fd=guest_fd)
        return dev

    def translate_fd(self, guest_fd: int, what: str, kinds: tuple[str, ...] = (CTL, GPU)) -> int:
        """The translator's own fd on the same open file description as the guest's NVIDIA fd,
        closed when the call ends."""
        self.nvidia_fd(guest_fd, what, kinds)
        fd = self.ctx.host_fd(guest_fd)
        self.temp_fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.temp_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.temp_fds.clear()

    # -- the host driver ---------------------------------------------------------------------

    def issue(self, request: int, addr: int) -> int:
        """The ioctl on the translator's own fd; 0/positive, or -errno."""
        if self.own_fd < 0:
            self.own_fd = self.ctx.host_fd(self.guest_fd)
            self.temp_fds.append(self.own_fd)
        try:
            return self.ctx.host_ioctl(self.own_fd, request, addr)
        except OSError as e:
            return -(e.errno or E.EIO)


def ioc(nr: int, size: int, magic: int = 0x46) -> int:
    """_IOWR(magic, nr, size), the request every NVIDIA frontend/RM escape uses."""
    return (3 << 30) | ((size & 0x3FFF) << 16) | (magic << 8) | (nr & 0xFF)
