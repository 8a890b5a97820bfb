"""Each frontend and UVM parameter struct built by a C program with the driver's real header,
then decoded, validated and re-encoded by the shim: byte for byte what the C compiler laid out,
both in what the driver receives and in what the guest gets back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nvharness import FD_CTL, FD_GPU0, FD_UVM, FakeGuest, GuestBuffers, header_structs
from nvheaders import run_build
from syscalls.nvidia.abi import load_abi
from syscalls.nvidia.codec import Layouts
from syscalls.nvidia.core import ioc
from syscalls.nvidia.shim import NvidiaShim
from syscalls.nvidia.uvm import ALLOWED as UVM_ALLOWED

ABI = load_abi("535.261.03")
STRUCTS = header_structs(ABI)
LAYOUTS = Layouts(ABI.structs)
FD_VALUES = {"ctl_fd": FD_CTL, "fd": FD_CTL, "rmCtrlFd": FD_CTL, "uvmFd": FD_UVM}


def pattern(leaves: list[Any], overrides: dict[str, int] | None = None) -> tuple[list[int], dict[str, int | bytes]]:
    """argv values for the C builder and the values the shim must decode."""
    argv: list[int] = []
    expect: dict[str, int | bytes] = {}
    for i, leaf in enumerate(leaves):
        if leaf.is_int:
            v = ((i + 1) * 0x01030507 + 0x11) & ((1 << (8 * leaf.size - 1)) - 1)
            if overrides and leaf.path.rsplit(".", 1)[-1] in overrides:
                v = overrides[leaf.path.rsplit(".", 1)[-1]]
            argv.append(v)
            expect[leaf.path] = v
        else:
            seed = (i * 13 + 5) & 0xFF
            argv.append(seed)
            expect[leaf.path] = bytes((seed + 7 * k) & 0xFF for k in range(leaf.size))
    return argv, expect


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_decode_reencode_byte_for_byte(name: str, probe: Path) -> None:
    leaves = STRUCTS[name]
    argv, expect = pattern(leaves)
    raw = run_build(probe, name, argv)
    lay = LAYOUTS(name)
    assert len(raw) == lay.size
    got = lay.decode(raw)
    for path, v in expect.items():
        assert got[path] == v, f"{name}.{path}"
    assert lay.encode(got) == raw


# Frontend escapes that carry a struct: (escape, struct, device fd, fields set to guest fds).
FRONTEND = [
    ("NV_ESC_CHECK_VERSION_STR", "nv_ioctl_rm_api_version_t", FD_CTL, {}),
    ("NV_ESC_REGISTER_FD", "nv_ioctl_register_fd_t", FD_GPU0, {"ctl_fd": FD_CTL}),
    ("NV_ESC_ALLOC_OS_EVENT", "nv_ioctl_alloc_os_event_t", FD_GPU0, {"fd": FD_GPU0, "Status": 0}),
    ("NV_ESC_FREE_OS_EVENT", "nv_ioctl_free_os_event_t", FD_GPU0, {"fd": FD_GPU0, "Status": 0}),
    ("NV_ESC_STATUS_CODE", "nv_ioctl_status_code_t", FD_CTL, {}),
    ("NV_ESC_SYS_PARAMS", "nv_ioctl_sys_params_t", FD_CTL, {}),
    ("NV_ESC_NUMA_INFO", "nv_ioctl_numa_info_t", FD_GPU0, {}),
]


@pytest.mark.parametrize("esc_name,struct,dev_fd,fds", FRONTEND, ids=[f[0] for f in FRONTEND])
def test_frontend_escape_through_shim(esc_name: str, struct: str, dev_fd: int, fds: dict[str, int],
                                      probe: Path, guest: FakeGuest, bufs: GuestBuffers) -> None:
    shim = NvidiaShim(ABI)
    argv, _ = pattern(STRUCTS[struct], fds)
    raw = run_build(probe, struct, argv)
    esc = ABI.escape_by_name(esc_name)
    assert esc is not None
    addr = bufs.alloc(raw)
    assert shim.handle_ioctl(guest, dev_fd, ioc(esc.nr, len(raw)), addr) == 0
    rec = guest.driver.calls[-1]
    assert rec.request == ioc(esc.nr, len(raw))
    assert f"nv-{'nvidiactl' if dev_fd == FD_CTL else 'nvidia0'}-{dev_fd}" in rec.fd_name
    lay = LAYOUTS(struct)
    sent, want = lay.decode(rec.data), lay.decode(raw)
    for path in fds:
        if path in ("ctl_fd", "fd"):
            # translated: the driver saw the translator's own fd, never the guest's number
            assert sent.pop(path) != fds[path]
            want.pop(path)
    assert sent == want
    assert bufs.read(addr, len(raw)) == raw  # the guest gets its own fd numbers back, byte for byte
    assert len(shim.os_events) == (1 if esc_name == "NV_ESC_ALLOC_OS_EVENT" else 0)


def test_card_info_array_and_xfer(probe: Path, guest: FakeGuest, bufs: GuestBuffers) -> None:
    shim = NvidiaShim(ABI)
    one = run_build(probe, "nv_ioctl_card_info_t", pattern(STRUCTS["nv_ioctl_card_info_t"])[0])
    arr = one * 32  # what userspace passes: NV_MAX_DEVICES entries
    addr = bufs.alloc(arr)
    card = ABI.escape_by_name("NV_ESC_CARD_INFO")
    assert card is not None
    # 32 * 72 = 2304 bytes fits _IOC_SIZE; issue it directly and through NV_ESC_IOCTL_XFER_CMD.
    assert shim.handle_ioctl(guest, FD_CTL, ioc(card.nr, len(arr)), addr) == 0
    assert guest.driver.calls[-1].data == arr
    xlay = LAYOUTS("nv_ioctl_xfer_t")
    x = bytearray(xlay.size)
    xlay.set(x, "cmd", card.nr)
    xlay.set(x, "size", len(arr))
    xlay.set(x, "ptr", addr)
    xaddr = bufs.alloc(bytes(x))
    assert shim.handle_ioctl(guest, FD_CTL, ioc(ABI.xfer_nr, 16), xaddr) == 0
    rec = guest.driver.calls[-1]
    assert rec.request == ioc(ABI.xfer_nr, 16)
    sent = xlay.decode(rec.data)
    assert sent["cmd"] == card.nr and sent["size"] == len(arr)
    assert sent["ptr"] != addr  # re-wrapped around the translator's copy
    assert bufs.read(addr, len(arr)) == arr


UVM_CMDS = sorted(n for n, c in ABI.raw["uvm"]["commands"].items()
                  if n in UVM_ALLOWED and c.get("params_type") in STRUCTS)


@pytest.mark.parametrize("name", UVM_CMDS)
def test_uvm_command_runs_in_guest_context(name: str, probe: Path, guest: FakeGuest, bufs: GuestBuffers) -> None:
    shim = NvidiaShim(ABI)
    cmd = ABI.raw["uvm"]["commands"][name]
    struct = cmd["params_type"]
    argv, _ = pattern(STRUCTS[struct], FD_VALUES)
    raw = run_build(probe, struct, argv)
    lay = LAYOUTS(struct)
    reply = bytearray(raw)
    if lay.has("rmStatus"):
        lay.set(reply, "rmStatus", 0)
    guest.guest_reply = lambda req, params: (0, bytes(reply))
    addr = bufs.alloc(raw)
    assert shim.handle_ioctl(guest, FD_UVM, cmd["value"], addr) == 0
    assert guest.driver.calls == []  # never re-issued by the translator
    fd, req, params = guest.guest_calls[-1]
    assert (fd, req, params) == (FD_UVM, cmd["value"], raw)  # the guest's own fd numbers, byte for byte
    assert bufs.read(addr, len(raw)) == bytes(reply)


def test_uvm_commands_cover_cuda_startup() -> None:
    for name in ("UVM_INITIALIZE", "UVM_MM_INITIALIZE", "UVM_REGISTER_GPU", "UVM_REGISTER_GPU_VASPACE",
                 "UVM_REGISTER_CHANNEL", "UVM_CREATE_RANGE_GROUP", "UVM_MAP_EXTERNAL_ALLOCATION", "UVM_FREE",
                 "UVM_PAGEABLE_MEM_ACCESS", "UVM_MIGRATE", "UVM_ALLOC_SEMAPHORE_POOL"):
        assert name in UVM_CMDS, name
