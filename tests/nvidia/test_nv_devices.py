"""Device nodes, version detection, the tracer's rendering, and the native ioctl list."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from caps.cspace import CSpace
from caps.objects import DeviceClass
from caps.rights import Rights
from syscalls.nvidia.abi import Abi, UnknownDriverVersion, load_abi, parse_proc_version
from syscalls.nvidia.codec import Layouts
from syscalls.nvidia.core import CTL, GPU, UVM, ioc
from syscalls.nvidia.decode import render
from syscalls.nvidia.devices import capability_allows, discover, install, nv_device
from vfs.devfs import DevFs


@pytest.fixture
def host_dev(tmp_path: Path) -> Path:
    """A /dev with the nodes an NVIDIA host has (real character device nodes, made with mknod)."""
    d = tmp_path / "dev"
    (d / "nvidia-caps").mkdir(parents=True)
    for name, major, minor in (("nvidiactl", 195, 255), ("nvidia0", 195, 0), ("nvidia1", 195, 1),
                               ("nvidia-uvm", 509, 0), ("nvidia-uvm-tools", 509, 1), ("nvidia-modeset", 195, 254),
                               ("nvidia-caps/nvidia-cap1", 237, 1), ("null", 1, 3)):
        os.mknod(d / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    (d / "nvidia-notadevice").write_text("")
    return d


def test_discover_host_nodes(host_dev: Path) -> None:
    got = {n.name: (n.kind, n.major, n.minor) for n in discover(str(host_dev))}
    assert got == {b"nvidiactl": (CTL, 195, 255), b"nvidia0": (GPU, 195, 0), b"nvidia1": (GPU, 195, 1),
                   b"nvidia-uvm": (UVM, 509, 0), b"nvidia-caps/nvidia-cap1": ("caps", 237, 1)}
    assert discover(str(host_dev / "missing")) == []


def test_devfs_shows_nodes_only_with_the_capability(host_dev: Path) -> None:
    nodes = discover(str(host_dev))
    without = DevFs()
    assert install(without, nodes, capability_allows(CSpace("none"))) == []
    assert without.root.inode.lookup(b"nvidiactl") is None  # type: ignore[attr-defined]

    cs = CSpace("gpu")
    cs.insert(DeviceClass("/dev/nvidia*"), Rights.READ | Rights.WRITE | Rights.IOCTL)
    fs = DevFs()
    added = install(fs, nodes, capability_allows(cs))
    assert sorted(added) == [b"/dev/nvidia-caps/nvidia-cap1", b"/dev/nvidia-uvm", b"/dev/nvidia0", b"/dev/nvidia1",
                             b"/dev/nvidiactl"]
    root = fs.root.inode
    ctl = root.lookup(b"nvidiactl").inode  # type: ignore[attr-defined, union-attr]
    assert os.major(ctl.rdev) == 195 and os.minor(ctl.rdev) == 255 and stat.S_ISCHR(ctl.mode)
    assert nv_device(ctl).kind == CTL and nv_device(ctl).path == b"/dev/nvidiactl"
    cap1 = root.lookup(b"nvidia-caps").inode.lookup(b"nvidia-cap1").inode  # type: ignore[attr-defined, union-attr]
    assert os.minor(cap1.rdev) == 1
    assert root.lookup(b"null") is not None  # the standard nodes are untouched

    only_ctl = CSpace("ctl")
    only_ctl.insert(DeviceClass("/dev/nvidiactl"), Rights.READ)
    assert install(DevFs(), nodes, capability_allows(only_ctl)) == [b"/dev/nvidiactl"]


def test_version_parsing_and_table_choice() -> None:
    prop = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Tue Mar 10 00:00:00 UTC 2026\nGCC version:  gcc\n"
    opn = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.261.03  Release Build  (dvs-builder@U16)\n"
    assert parse_proc_version(prop) == "580.159.04"
    assert parse_proc_version(opn) == "535.261.03"
    assert parse_proc_version("garbage") is None
    assert load_abi("535.261.03").match == "exact"
    a = load_abi("580.159.04")
    assert (a.match, a.table_version, a.version) == ("branch", "580.142", "580.159.04")
    for bad in ("470.256.02", "", None, "not-a-version"):
        with pytest.raises(UnknownDriverVersion):
            load_abi(bad)
    with pytest.raises(UnknownDriverVersion):
        load_abi("535.999.01", accept_branch=False)


def test_tracer_renders_by_name(abi580: Abi) -> None:
    lay = Layouts(abi580.structs)
    ctl = lay("NVOS54_PARAMETERS").encode({"hClient": 0xC1D00001, "hObject": 0x5C000003,
                                           "cmd": abi580.control_by_name["NV2080_CTRL_CMD_GPU_GET_NAME_STRING"],
                                           "paramsSize": 132, "status": abi580.status("NV_ERR_NOT_SUPPORTED")})
    s = render(abi580, lay, GPU, ioc(0x2A, 32), ctl)
    assert s == ("NV_ESC_RM_CONTROL{hClient=0xc1d00001 hObject=0x5c000003 cmd=NV2080_CTRL_CMD_GPU_GET_NAME_STRING "
                 "paramsSize=132 status=NV_ERR_NOT_SUPPORTED}")
    alloc = lay("NVOS64_PARAMETERS").encode({"hRoot": 1, "hClass": abi580.class_by_name["HOPPER_CHANNEL_GPFIFO_A"]})
    assert "hClass=HOPPER_CHANNEL_GPFIFO_A" in render(abi580, lay, CTL, ioc(0x2B, 48), alloc)
    assert render(abi580, lay, CTL, ioc(0x2B, 48)).startswith("NV_ESC_RM_ALLOC")
    uvm = abi580.raw["uvm"]["commands"]["UVM_REGISTER_GPU"]
    assert render(abi580, lay, UVM, uvm["value"], bytes(uvm["params_size"])).startswith("UVM_REGISTER_GPU{")
    assert render(abi580, lay, CTL, ioc(0xEE, 4)) == "NV_ESC_0xee(size=4)"
    assert render(None, None, CTL, 0x1234) == "NVIDIA_IOCTL(0x1234)"


def test_native_ioctls_never_reach_an_nvidia_command(abi: Abi) -> None:
    """The table lets some tty/FIO ioctls run natively on any fd, NVIDIA fds included: none of
    them may be a request the NVIDIA driver would act on."""
    from syscalls import table
    from syscalls.nvidia.frontend import _size_ok, decode_request

    for req in table._IOCTL_NATIVE:
        _, _, nr, size = decode_request(req)
        esc = abi.escapes.get(nr)
        # e.g. TIOCGSID (0x5429) is nr 0x29 = NV_ESC_RM_FREE to nv.c, which looks only at nr and
        # size: it is harmless only because size 0 fails RM_FREE's exact size check.
        assert esc is None or not esc.handled or (esc.size_check != "none" and not _size_ok(esc, size)), hex(req)
        assert req not in abi.uvm, hex(req)
