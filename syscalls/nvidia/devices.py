"""The NVIDIA device nodes in the guest's /dev: found on the host, shown only with the device
capability, opened as the host's own device (so mmap on the fd runs natively), each node
knowing which NVIDIA device it is so the ioctl shim can route and check fds.

Only /dev/nvidiactl, /dev/nvidiaN, /dev/nvidia-uvm and /dev/nvidia-caps/* are exposed:
/dev/nvidia-uvm-tools (profiling of other processes' UVM state) and /dev/nvidia-modeset
(display) are not.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Callable

from caps.objects import DeviceClass
from vfs.devfs import DevFs, DeviceInode
from vfs.inode import S_IFDIR

from .core import CAPS, CTL, GPU, UVM, NvDevice

_GPU_RX = re.compile(r"nvidia(\d+)")


@dataclass(frozen=True)
class HostNode:
    """A host NVIDIA device node: its name under /dev, host path and device numbers."""

    name: bytes  # relative to /dev: b"nvidiactl", b"nvidia0", b"nvidia-caps/nvidia-cap1"
    host_path: str
    major: int
    minor: int
    kind: str

    @property
    def guest_path(self) -> bytes:
        return b"/dev/" + self.name


def _kind(name: str) -> str | None:
    if name == "nvidiactl":
        return CTL
    if name == "nvidia-uvm":
        return UVM
    if _GPU_RX.fullmatch(name):
        return GPU
    return None


def discover(dev_root: str = "/dev") -> list[HostNode]:
    """The host's NVIDIA character devices (none on a machine without the driver)."""
    out: list[HostNode] = []
    try:
        names = sorted(os.listdir(dev_root))
    except OSError:
        return out
    for name in names:
        kind = _kind(name)
        if kind is not None:
            node = _node(dev_root, name, kind)
            if node:
                out.append(node)
    caps_dir = os.path.join(dev_root, "nvidia-caps")
    if os.path.isdir(caps_dir):
        for name in sorted(os.listdir(caps_dir)):
            node = _node(caps_dir, name, CAPS, prefix="nvidia-caps/")
            if node:
                out.append(node)
    return out


def _node(directory: str, name: str, kind: str, prefix: str = "") -> HostNode | None:
    path = os.path.join(directory, name)
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    return HostNode((prefix + name).encode(), path, os.major(st.st_rdev), os.minor(st.st_rdev), kind)


class NvidiaDeviceInode(DeviceInode):
    """A DeviceInode that knows it is an NVIDIA device (the fd table asks via ``nv_device``)."""

    __slots__ = ("nv",)

    def __init__(self, fs: DevFs, ino: int, node: HostNode) -> None:
        super().__init__(fs, ino, node.host_path, node.major, node.minor)
        self.nv = NvDevice(node.kind, node.minor, node.guest_path)


def nv_device(inode: object) -> NvDevice | None:
    """The NVIDIA device behind a VFS inode (None for anything else)."""
    return inode.nv if isinstance(inode, NvidiaDeviceInode) else None


def capability_allows(cspace: object) -> Callable[[bytes], bool]:
    """A quiet "does a held device capability cover this guest path" (no audit record: a node
    that is simply not shown is not a refusal)."""

    def allows(path: bytes) -> bool:
        for _, cap in cspace:  # type: ignore[attr-defined]
            if isinstance(cap.obj, DeviceClass) and cap.valid and cap.obj.matches(path):
                return True
        return False

    return allows


def install(devfs: DevFs, nodes: list[HostNode], allows: Callable[[bytes], bool]) -> list[bytes]:
    """Add to ``devfs`` the nodes the capability covers; returns their guest paths."""
    root = devfs.root.inode
    added: list[bytes] = []
    for node in nodes:
        if not allows(node.guest_path):
            continue
        parent = root
        *dirs, leaf = node.name.split(b"/")
        for d in dirs:
            found = parent.lookup(d)  # type: ignore[attr-defined]
            if found is None or found.inode is None:
                sub = devfs.new_dir(S_IFDIR | 0o755, 0, 0)
                parent.insert(d, sub, parent.mtime_ns)  # type: ignore[attr-defined]
                parent = sub
            else:
                parent = found.inode
        inode = NvidiaDeviceInode(devfs, devfs.new_ino(), node)
        parent.insert(leaf, inode, parent.mtime_ns)  # type: ignore[attr-defined]
        added.append(node.guest_path)
    return added
