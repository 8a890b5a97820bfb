"""A stand-in for the NVIDIA driver on a machine without one: it answers the version handshake
and the resource manager's calls a client makes at start-up, and has no GPU to offer.

It stands in only for the absent hardware and kernel module (syscalls.nvidia.host.NvidiaHost):
the guest's client (Debian's nvidia-smi and libnvidia-ml), its ioctls, the trap and the shim
are all real. The guest's /dev/nvidiactl and /dev/nvidia-caps/* are devfs nodes with the
driver's numbers whose host object is /dev/null; the shim's re-issued ioctls come here instead
of to a driver, on the translator's own copy of the parameters.

What it reports is what the 535 driver reports when its one GPU is excluded (NVreg_ExcludedGpus):
no card in CARD_INFO, no probed GPU but one probed-and-excluded id, no attached GPU. A client
then finds no device (libnvidia-ml treats a driver that probed nothing at all as broken).
"""
from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass, field

from syscalls.nvidia.core import CAPS, CTL, GPU, UVM
from syscalls.nvidia.devices import HostNode
from syscalls.nvidia.host import NvidiaHost

VERSION = "535.261.03"
NV_MAJOR, CTL_MINOR, CAPS_MAJOR, UVM_MAJOR = 195, 255, 238, 237
NV_OK, NV_ERR_NOT_SUPPORTED = 0, 0x56
EXCLUDED_GPU_ID = 0x100
# escape numbers (nv_escape.h / nv-ioctl-numbers.h)
RM_FREE, RM_CONTROL, RM_ALLOC, CARD_INFO, CHECK_VERSION_STR = 41, 42, 43, 200, 210
EXPORT_TO_DMABUF_FD = 217
# NV0000 controls answered with lists of GPU ids (NV0000_CTRL_GPU_INVALID_ID = all ones)
GET_ATTACHED_IDS, GET_PROBED_IDS = 0x201, 0x214
_MAX_GPUS = 32  # NV0000_CTRL_GPU_MAX_PROBED_GPUS: GET_PROBED_IDS is gpuIds[32], excludedGpuIds[32]


@dataclass
class NoGpuDriver:
    version: str = VERSION
    calls: list[tuple[int, int]] = field(default_factory=list)  # (escape nr, control cmd or class)
    handles: int = 0
    # /dev/nvidia0 too (for escapes that need a GPU device's fd), and what a dma-buf export gives
    gpu_node: bool = False
    # /dev/nvidia-uvm too, its host object /dev/urandom: an ioctl run on it in the guest's own
    # context gets the kernel's EINVAL (unknown to the random driver), where the shim's refusal
    # would be ENOTTY
    uvm_node: bool = False
    dmabuf: bytes = b"dma-buf contents\n"

    def host(self) -> NvidiaHost:
        nodes = [HostNode(b"nvidiactl", "/dev/null", NV_MAJOR, CTL_MINOR, CTL),
                 HostNode(b"nvidia-caps/nvidia-cap1", "/dev/null", CAPS_MAJOR, 1, CAPS),
                 HostNode(b"nvidia-caps/nvidia-cap2", "/dev/null", CAPS_MAJOR, 2, CAPS)]
        if self.gpu_node:
            nodes.append(HostNode(b"nvidia0", "/dev/null", NV_MAJOR, 0, GPU))
        if self.uvm_node:
            nodes.append(HostNode(b"nvidia-uvm", "/dev/urandom", UVM_MAJOR, 0, UVM))
        proc = {
            b"driver/nvidia/version": lambda: (
                f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {self.version}  (stand-in)\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n").encode(),
            b"driver/nvidia/params": lambda: (
                b"ModifyDeviceFiles: 0\nDeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\n"),
            b"devices": lambda: (f"Character devices:\n{NV_MAJOR} nvidia-frontend\n{CAPS_MAJOR} nvidia-caps\n\n"
                                 "Block devices:\n").encode(),
        }
        return NvidiaHost(nodes, self.version, self.ioctl, proc)

    def ioctl(self, fd: int, request: int, addr: int) -> int:
        """The driver's side of ioctl(fd, request, addr): ``addr`` is the translator's copy."""
        nr, size = request & 0xFF, (request >> 16) & 0x3FFF
        buf = bytearray(ctypes.string_at(addr, size))
        result = self._answer(nr, buf)
        ctypes.memmove(addr, bytes(buf), size)
        return result

    def _answer(self, nr: int, buf: bytearray) -> int:
        detail = 0
        if nr == CHECK_VERSION_STR:  # {cmd, reply, versionString[64]}
            want = bytes(buf[8:72]).split(b"\0", 1)[0].decode(errors="replace")
            struct.pack_into("<I", buf, 4, 1 if want == self.version else 0)  # REPLY_RECOGNIZED
            buf[8:72] = self.version.encode().ljust(64, b"\0")
        elif nr == CARD_INFO:  # nv_ioctl_card_info_t[N]: none valid
            buf[:] = bytes(len(buf))
        elif nr == RM_ALLOC:  # NVOS21 (32 bytes) or NVOS64 (48): a handle, whatever the class
            detail = struct.unpack_from("<I", buf, 12)[0]
            if struct.unpack_from("<I", buf, 8)[0] == 0:  # hObjectNew 0: the RM picks one
                self.handles += 1
                struct.pack_into("<I", buf, 8, 0xC1D00000 + self.handles)
            struct.pack_into("<I", buf, 40 if len(buf) == 48 else 28, NV_OK)
        elif nr == RM_FREE:  # NVOS00
            struct.pack_into("<I", buf, 12, NV_OK)
        elif nr == RM_CONTROL:  # NVOS54: {hClient, hObject, cmd, flags, params, paramsSize, status}
            detail = struct.unpack_from("<I", buf, 8)[0]
            params, size = struct.unpack_from("<QI", buf, 16)
            status = NV_ERR_NOT_SUPPORTED  # about a GPU there is not
            if detail in (GET_ATTACHED_IDS, GET_PROBED_IDS):
                ctypes.memset(params, 0xFF, size)
                if detail == GET_PROBED_IDS:
                    ctypes.memmove(params + 4 * _MAX_GPUS, struct.pack("<I", EXCLUDED_GPU_ID), 4)
                status = NV_OK
            struct.pack_into("<I", buf, 28, status)
        elif nr == EXPORT_TO_DMABUF_FD:  # {fd (out), hClient, ...; status at 2592}: a new fd here
            fd = os.memfd_create("dmabuf", os.MFD_CLOEXEC)
            os.write(fd, self.dmabuf)
            os.lseek(fd, 0, os.SEEK_SET)
            struct.pack_into("<i", buf, 0, fd)
            struct.pack_into("<I", buf, 2592, NV_OK)
        self.calls.append((nr, detail))
        return 0
