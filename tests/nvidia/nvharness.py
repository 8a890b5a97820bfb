"""The NVIDIA shim tests' harness.

The guest is real memory: this test process's own pages, read and written through
/proc/self/mem and checked against /proc/self/maps, exactly as the translator does for a guest.
The guest's NVIDIA fds are real fds too (memfds standing in for the open device files, as this
machine has no GPU). The only fake is the driver itself: ``RecordingDriver`` records every ioctl
the shim issues (request, fd, the bytes at the argument address and what they point to) and
answers as a script says.
"""
from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from caps.audit import AuditLog, show
from linuxabi.host.memory import GuestMemory, open_mem
from syscalls.nvidia.abi import Abi
from syscalls.nvidia.codec import Layouts
from syscalls.nvidia.core import NvDevice
from syscalls.nvidia.memory import ProcMaps

from nvheaders import c_paths

FD_CTL, FD_GPU0, FD_UVM, FD_PIPE, FD_CTL2 = 30, 31, 32, 33, 34


class GuestBuffers:
    """Anonymous mappings in this process standing for guest memory."""

    def __init__(self) -> None:
        self._maps: list[mmap.mmap] = []

    def alloc(self, data: bytes, size: int | None = None, prot: int = mmap.PROT_READ | mmap.PROT_WRITE) -> int:
        n = max(len(data), size or 0, 1)
        m = mmap.mmap(-1, (n + 4095) & ~4095, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        m[:len(data)] = data
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        if prot != mmap.PROT_READ | mmap.PROT_WRITE:
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.mprotect(ctypes.c_void_p(addr), ctypes.c_size_t(len(m)), prot) == 0
        self._maps.append(m)
        return addr

    @staticmethod
    def read(addr: int, n: int) -> bytes:
        return ctypes.string_at(addr, n)

    def unmapped(self) -> int:
        """An address the guest cannot access: a reserved PROT_NONE range (kept reserved, so no
        later mapping lands there)."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
        a = libc.mmap(None, 1 << 16, 0, 0x22, -1, 0)  # PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS
        assert a not in (None, ctypes.c_void_p(-1).value)
        return int(a) + 4096


@dataclass
class Rec:
    fd_name: str
    request: int
    addr: int
    data: bytes
    extra: dict[str, bytes] = field(default_factory=dict)


class RecordingDriver:
    """The host side: records each ioctl; ``responders[nr]`` may edit the memory and return a
    result (or raise OSError)."""

    def __init__(self) -> None:
        self.calls: list[Rec] = []
        self.responders: dict[int, Callable[[Rec], int]] = {}

    def __call__(self, fd: int, request: int, addr: int) -> int:
        size = (request >> 16) & 0x3FFF
        name = os.readlink(f"/proc/self/fd/{fd}")
        rec = Rec(name, request, addr, ctypes.string_at(addr, size))
        self.calls.append(rec)
        fn = self.responders.get(request & 0xFF)
        return fn(rec) if fn else 0


@dataclass
class FakeGuest:
    """The IoctlContext of one guest process: real memory, real fds, recorded driver."""

    driver: RecordingDriver
    pid: int = field(default_factory=os.getpid)
    fds: dict[int, tuple[NvDevice | None, int]] = field(default_factory=dict)
    installed: list[int] = field(default_factory=list)
    guest_calls: list[tuple[int, int, bytes]] = field(default_factory=list)
    guest_reply: Callable[[int, bytes], tuple[int, bytes]] | None = None

    def __post_init__(self) -> None:
        self.mem = _Mem(os.getpid())
        self.host_ioctl = self.driver

    def device_of(self, guest_fd: int) -> NvDevice | None:
        entry = self.fds.get(guest_fd)
        return entry[0] if entry else None

    def host_fd(self, guest_fd: int) -> int:
        if guest_fd not in self.fds:
            raise OSError(9, "EBADF")
        return os.dup(self.fds[guest_fd][1])

    def install_fd(self, host_fd: int, cloexec: bool) -> int:
        n = 100 + len(self.installed)
        self.installed.append(os.dup(host_fd))
        return n

    def guest_ioctl(self, guest_fd: int, request: int, params: bytes) -> tuple[int, bytes]:
        self.guest_calls.append((guest_fd, request, params))
        if self.guest_reply:
            return self.guest_reply(request, params)
        return 0, params


class _Mem:
    def __init__(self, pid: int) -> None:
        self._mem = GuestMemory(pid, open_mem(pid))
        self._maps = ProcMaps(pid)

    def read(self, addr: int, size: int) -> bytes:
        return self._mem.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self._mem.write(addr, data)

    def mapped(self, addr: int, size: int, write: bool) -> bool:
        return self._maps.mapped(addr, size, write)



def header_structs(abi: Abi) -> dict[str, list[Any]]:
    """The 535 table's structs that the Debian package's headers define: the frontend ones
    (nv-ioctl.h, nv-ioctl-numa.h) and every UVM params struct (uvm_ioctl.h)."""
    lay = Layouts(abi.structs)
    out: dict[str, list[Any]] = {}
    for name, spec in abi.structs.items():
        origin = spec.get("origin", "")
        frontend = origin.startswith("frontend") and (name.startswith("nv_ioctl_") or name == "nv_pci_info_t") \
            and "parameters_with_fd" not in name
        if frontend or origin.startswith("uvm"):
            out[name] = c_paths(list(lay(name).leaves))
    return out


def header_macros(abi: Abi) -> list[str]:
    fe = abi.raw["frontend"]
    names = sorted(fe["non_rm_escape_macros"]) + ["NV_IOCTL_MAGIC", "NV_IOCTL_BASE", "NV_RM_API_VERSION_CMD_QUERY",
                                                   "NV_RM_API_VERSION_CMD_RELAXED", "NV_DMABUF_EXPORT_MAX_HANDLES"]
    names += sorted(c["name"] for c in abi.raw["uvm"]["commands"].values()
                    if c["name"] not in abi.raw["uvm"].get("defined_only_for_windows", []))
    return names


def denials(log: AuditLog) -> list[dict[str, Any]]:
    return [r["details"] for r in show(log.path) if r["event"] == "deny"]
