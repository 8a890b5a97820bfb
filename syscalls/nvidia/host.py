"""Where the NVIDIA devices come from: the host's driver, or a stand-in for absent hardware.

``NvidiaHost`` is what the sandbox needs of a driver: the device nodes to show in the guest's
/dev, the driver's version (which ABI tables apply) and the ioctl that reaches it. ``real()``
is the running host's driver; a test can pass another (a device double that answers the
version handshake and reports no GPUs) through ``SandboxConfig.nvidia``, while the guest's
client, its ioctls and the shim stay real.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from .devices import HostNode, discover
from .memory import HostIoctl, libc_ioctl


# What the driver shows in /proc that its user-space libraries read (libnvidia-ml reads the
# MIG capability files to find /dev/nvidia-caps/*, and /proc/devices for their major number).
DRIVER_PROC_FILES = ("driver/nvidia/version", "driver/nvidia/params", "driver/nvidia/registry",
                     "driver/nvidia/capabilities/mig/config", "driver/nvidia/capabilities/mig/monitor")


@dataclass
class NvidiaHost:
    nodes: list[HostNode]
    version: str | None
    ioctl: HostIoctl = field(default=libc_ioctl)
    # files the guest's /proc shows (path relative to /proc -> content at each open)
    proc: dict[bytes, Callable[[], bytes]] = field(default_factory=dict)

    @classmethod
    def real(cls) -> "NvidiaHost | None":
        """The host's driver, or None where it has no NVIDIA device (nothing imported then)."""
        try:
            if not any(name.startswith("nvidia") for name in os.listdir("/dev")):
                return None
        except OSError:
            return None
        from .abi import host_driver_version

        proc: dict[bytes, Callable[[], bytes]] = {
            rel.encode(): (lambda rel=rel: _read(f"/proc/{rel}"))
            for rel in DRIVER_PROC_FILES if os.path.exists(f"/proc/{rel}")}
        proc[b"devices"] = lambda: nvidia_devices_text(_read("/proc/devices"))
        return cls(discover(), host_driver_version(), proc=proc)


def nvidia_devices_text(devices: bytes) -> bytes:
    """/proc/devices as the guest sees it: the section headers and the NVIDIA drivers' lines
    (the rest of the host's drivers is none of its business)."""
    keep = [line for line in devices.splitlines()
            if not line.strip() or line.endswith(b":") or line.split()[-1].startswith(b"nvidia")]
    return b"\n".join(keep) + b"\n"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""
