"""RM escapes through the shim. The Debian package ships the RM only as a binary, without
nvos.h or the SDK control headers, so these structs are built from the tables' layouts."""
from __future__ import annotations

import ctypes

from caps.audit import AuditLog
from nvharness import FD_CTL, FD_GPU0, FakeGuest, GuestBuffers, Rec, denials
from syscalls.nvidia.core import ioc
from syscalls.nvidia.shim import NvidiaShim


def _nvos54(shim: NvidiaShim, cmd: str, params: int, size: int) -> bytes:
    assert shim.abi is not None
    lay = shim.layouts("NVOS54_PARAMETERS")
    return lay.encode({"hClient": 0xC1D00001, "hObject": 0x5C000003, "cmd": shim.abi.control_by_name[cmd],
                       "params": params, "paramsSize": size, "status": 0})


def test_control_params_copied_into_translator_memory(shim580: NvidiaShim, guest: FakeGuest,
                                                      bufs: GuestBuffers) -> None:
    abi = shim580.abi
    assert abi is not None
    size = abi.controls[abi.control_by_name["NV2080_CTRL_CMD_GPU_GET_NAME_STRING"]]["params_size"]
    p = bufs.alloc(b"\x01" + b"\0" * (size - 1))
    a = bufs.alloc(_nvos54(shim580, "NV2080_CTRL_CMD_GPU_GET_NAME_STRING", p, size))
    seen: dict[str, bytes] = {}

    def driver(rec: Rec) -> int:
        lay = shim580.layouts("NVOS54_PARAMETERS")
        ptr = int(lay.get(rec.data, "params"))
        assert ptr != p  # the RM never sees the guest's address
        seen["params"] = ctypes.string_at(ptr, size)
        ctypes.memmove(ptr + 4, b"NVIDIA H100 80GB HBM3\0", 22)
        return 0

    guest.driver.responders[0x2A] = driver
    assert shim580.handle_ioctl(guest, FD_CTL, ioc(0x2A, 32), a) == 0
    assert seen["params"] == b"\x01" + b"\0" * (size - 1)
    assert bufs.read(p + 4, 21) == b"NVIDIA H100 80GB HBM3"
    assert shim580.layouts("NVOS54_PARAMETERS").get(bufs.read(a, 32), "params") == p  # guest's pointer restored


def test_control_embedded_list_deep_copied(shim535: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers) -> None:
    abi = shim535.abi
    assert abi is not None
    lst = bufs.alloc(b"\0" * 16)
    play = shim535.layouts("NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS")
    p = bufs.alloc(play.encode({"numClasses": 4, "classList": lst}))
    a = bufs.alloc(_nvos54(shim535, "NV0080_CTRL_CMD_GPU_GET_CLASSLIST", p, play.size))

    def driver(rec: Rec) -> int:
        params = int(shim535.layouts("NVOS54_PARAMETERS").get(rec.data, "params"))
        inner = int(play.get(ctypes.string_at(params, play.size), "classList"))
        assert inner not in (0, lst)
        ctypes.memmove(inner, (0xC86F).to_bytes(4, "little") * 4, 16)
        return 0

    guest.driver.responders[0x2A] = driver
    assert shim535.handle_ioctl(guest, FD_CTL, ioc(0x2A, 32), a) == 0
    assert bufs.read(lst, 16) == (0xC86F).to_bytes(4, "little") * 4
    assert play.get(bufs.read(p, play.size), "classList") == lst


def test_alloc_nvos21_and_nvos64(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers) -> None:
    abi = shim580.abi
    assert abi is not None
    dev = shim580.layouts("NV0080_ALLOC_PARAMETERS")
    p = bufs.alloc(dev.encode({"deviceId": 0, "hClientShare": 0xC1D00001}))
    for type_name in ("NVOS21_PARAMETERS", "NVOS64_PARAMETERS"):
        lay = shim580.layouts(type_name)
        a = bufs.alloc(lay.encode({"hRoot": 0xC1D00001, "hObjectParent": 0xC1D00001, "hObjectNew": 0x5C000001,
                                   "hClass": abi.class_by_name["NV01_DEVICE_0"], "pAllocParms": p}))
        seen: dict[str, int] = {}

        def driver(rec: Rec, lay=lay) -> int:  # noqa: ANN001
            seen["p"] = int(lay.get(rec.data, "pAllocParms"))
            assert ctypes.string_at(seen["p"], dev.size) == bufs.read(p, dev.size)
            return 0

        guest.driver.responders[0x2B] = driver
        assert shim580.handle_ioctl(guest, FD_CTL, ioc(0x2B, lay.size), a) == 0
        assert seen["p"] not in (0, p)
        assert lay.get(bufs.read(a, lay.size), "pAllocParms") == p


def test_os_event_fd_shared_by_alloc_os_event_and_event_class(shim580: NvidiaShim, guest: FakeGuest,
                                                              bufs: GuestBuffers) -> None:
    abi = shim580.abi
    assert abi is not None
    ev = shim580.layouts("nv_ioctl_alloc_os_event_t")
    a = bufs.alloc(ev.encode({"hClient": 0xC1D00001, "hDevice": 0x5C000001, "fd": FD_GPU0}))
    assert shim580.handle_ioctl(guest, FD_GPU0, ioc(206, 16), a) == 0
    host_fd = int(ev.get(guest.driver.calls[-1].data, "fd"))
    n5 = shim580.layouts("NV0005_ALLOC_PARAMETERS")
    p = bufs.alloc(n5.encode({"hParentClient": 0xC1D00001, "hClass": 0x79, "data": FD_GPU0}))
    lay = shim580.layouts("NVOS21_PARAMETERS")
    a2 = bufs.alloc(lay.encode({"hRoot": 0xC1D00001, "hObjectParent": 0x5C000001, "hObjectNew": 0xE0000001,
                                "hClass": abi.class_by_name["NV01_EVENT_OS_EVENT"], "pAllocParms": p}))
    got: dict[str, int] = {}

    def driver(rec: Rec) -> int:
        got["data"] = int(n5.get(ctypes.string_at(int(lay.get(rec.data, "pAllocParms")), n5.size), "data"))
        return 0

    guest.driver.responders[0x2B] = driver
    # Event classes may be allocated on any NVIDIA fd, not just nvidiactl.
    assert shim580.handle_ioctl(guest, FD_GPU0, ioc(0x2B, 32), a2) == 0
    assert got["data"] == host_fd  # the same translator fd number the driver keyed the event by
    assert n5.get(bufs.read(p, n5.size), "data") == FD_GPU0
    free = bufs.alloc(ev.encode({"hClient": 0xC1D00001, "hDevice": 0x5C000001, "fd": FD_GPU0}))
    assert shim580.handle_ioctl(guest, FD_GPU0, ioc(207, 16), free) == 0
    assert int(ev.get(guest.driver.calls[-1].data, "fd")) == host_fd
    assert len(shim580.os_events) == 0


def test_map_memory_fd_translated(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers) -> None:
    lay = shim580.layouts("nv_ioctl_nvos33_parameters_with_fd")
    raw = lay.encode({"params.hClient": 1, "params.hDevice": 2, "params.hMemory": 3, "params.length": 4096,
                      "fd": FD_GPU0})
    a = bufs.alloc(raw)
    assert shim580.handle_ioctl(guest, FD_CTL, ioc(0x4E, 56), a) == 0
    rec = guest.driver.calls[-1]
    assert int(lay.get(rec.data, "fd")) != FD_GPU0
    assert bufs.read(a, 56) == raw


def test_export_dmabuf_out_fd_installed_in_guest(shim580: NvidiaShim, guest: FakeGuest,
                                                 bufs: GuestBuffers) -> None:
    import os

    lay = shim580.layouts("nv_ioctl_export_to_dma_buf_fd_t")
    a = bufs.alloc(lay.encode({"fd": 77, "hClient": 1, "totalObjects": 1, "numObjects": 1}))

    def driver(rec: Rec) -> int:
        ctypes.memmove(rec.addr, os.memfd_create("nv-dmabuf").to_bytes(4, "little"), 4)
        return 0

    guest.driver.responders[0xD9] = driver
    assert shim580.handle_ioctl(guest, FD_GPU0, ioc(0xD9, lay.size), a) == 0
    assert lay.get(bufs.read(a, lay.size), "fd") == 100  # the number the guest got
    assert os.readlink(f"/proc/self/fd/{guest.installed[0]}").startswith("/memfd:nv-dmabuf")


def test_unknown_control_not_supported(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers,
                                       audit_log: AuditLog) -> None:
    lay = shim580.layouts("NVOS54_PARAMETERS")
    a = bufs.alloc(lay.encode({"hClient": 1, "hObject": 2, "cmd": 0x20DEAD01, "params": 0, "paramsSize": 0}))
    assert shim580.handle_ioctl(guest, FD_CTL, ioc(0x2A, 32), a) == 0
    assert guest.driver.calls == []
    assert shim580.abi is not None
    assert lay.get(bufs.read(a, 32), "status") == shim580.abi.status("NV_ERR_NOT_SUPPORTED")
    d = denials(audit_log)[-1]
    assert d["kind"] == "nvidia" and d["status"] == "NV_ERR_NOT_SUPPORTED" and d["cmd"] == 0x20DEAD01
    assert d["op"].startswith("NV_ESC_RM_CONTROL")
