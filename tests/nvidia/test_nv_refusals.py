"""Every refusal fails closed: nothing reaches the driver, the guest gets the driver's own
answer (an errno, or an NV_ERR_* status with the ioctl succeeding), and one audit record names
the decoded ioctl."""
from __future__ import annotations

import errno as E
import mmap

from caps.audit import AuditLog, verify
from nvharness import FD_CTL, FD_GPU0, FD_PIPE, FD_UVM, FakeGuest, GuestBuffers, denials
from syscalls.nvidia.abi import load_abi
from syscalls.nvidia.core import ioc
from syscalls.nvidia.shim import NvidiaShim


def _refused(shim: NvidiaShim, guest: FakeGuest, log: AuditLog, fd: int, request: int, addr: int,
             want: int) -> dict:
    before = len(denials(log))
    assert shim.handle_ioctl(guest, fd, request, addr) == want
    assert guest.driver.calls == [] and guest.guest_calls == []
    recs = denials(log)
    assert len(recs) == before + 1
    assert verify(log.path).ok
    return recs[-1]


def test_wrong_size(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers, audit_log: AuditLog) -> None:
    a = bufs.alloc(b"\0" * 64)
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 36), a, -E.EINVAL)  # NVOS54 is 32 bytes
    assert d["op"] == "NV_ESC_RM_CONTROL" and d["errno"] == "EINVAL" and "size 36" in d["reason"]
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(200, 73), a, -E.EINVAL)  # CARD_INFO: N x 72
    assert d["op"] == "NV_ESC_CARD_INFO"


def test_unknown_escape(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers, audit_log: AuditLog) -> None:
    a = bufs.alloc(b"\0" * 64)
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0xFE, 16), a, -E.EINVAL)
    assert d["op"] == "NV_ESC_0xfe" and "unknown escape" in d["reason"]
    # Defined, but this driver has no case for it: the driver's answer too.
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x5C, 16), a, -E.EINVAL)
    assert d["op"] == "NV_ESC_RM_EXPORT_OBJECT_TO_FD"
    # Known to the driver, not allowed (admin-only NVLOG/lockless diagnostics, SET_NUMA_STATUS).
    d = _refused(shim580, guest, audit_log, FD_GPU0, ioc(216, 4), a, -E.EINVAL)
    assert d["op"] == "NV_ESC_SET_NUMA_STATUS"
    # Not an 'F' _IOWR request at all.
    _refused(shim580, guest, audit_log, FD_CTL, 0x5401, a, -E.EINVAL)
    # 580's WAIT_OPEN_COMPLETE does not exist in 535.
    d = _refused(NvidiaShim(load_abi("535.261.03"), audit=audit_log), guest, audit_log, FD_CTL, ioc(218, 8), a,
                 -E.EINVAL)
    assert "unknown escape" in d["reason"]


def test_unknown_uvm_command(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers,
                             audit_log: AuditLog) -> None:
    a = bufs.alloc(b"\0" * 64)
    d = _refused(shim580, guest, audit_log, FD_UVM, 0x7777, a, -E.EINVAL)
    assert d["op"] == "UVM_0x7777"
    d = _refused(shim580, guest, audit_log, FD_UVM, 9, a, -E.EINVAL)  # UVM_RUN_TEST: not dispatched
    assert d["op"] == "UVM_RUN_TEST"


def test_unknown_class(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers, audit_log: AuditLog) -> None:
    abi = shim580.abi
    assert abi is not None
    lay = shim580.layouts("NVOS21_PARAMETERS")
    for hclass, status in ((0xBEEF, "NV_ERR_INVALID_CLASS"),
                           (abi.class_by_name["NV01_MEMORY_SYSTEM_OS_DESCRIPTOR"], "NV_ERR_NOT_SUPPORTED"),
                           (abi.class_by_name["NV01_MEMORY_LIST_SYSTEM"], "NV_ERR_NOT_SUPPORTED")):
        a = bufs.alloc(lay.encode({"hRoot": 1, "hObjectParent": 1, "hObjectNew": 2, "hClass": hclass}))
        d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2B, 32), a, 0)
        assert lay.get(bufs.read(a, 32), "status") == abi.status(status)
        assert d["status"] == status and d["hclass"] == hclass


def test_unknown_and_privileged_commands(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers,
                                         audit_log: AuditLog) -> None:
    abi = shim580.abi
    assert abi is not None
    lay = shim580.layouts("NVOS54_PARAMETERS")
    priv = next(c for c, e in abi.controls.items() if e.get("exported") and all(
        "PRIVILEGED" in x["flags_decoded"] for x in e["exported_by"]))
    for cmd, status in ((0x20DEAD01, "NV_ERR_NOT_SUPPORTED"), (priv, "NV_ERR_INSUFFICIENT_PERMISSIONS")):
        a = bufs.alloc(lay.encode({"hClient": 1, "hObject": 2, "cmd": cmd}))
        d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 32), a, 0)
        assert lay.get(bufs.read(a, 32), "status") == abi.status(status)
        assert d["status"] == status
    # A known control with the wrong paramsSize: what the RM itself answers.
    cmd = abi.control_by_name["NV2080_CTRL_CMD_GPU_GET_NAME_STRING"]
    p = bufs.alloc(b"\0" * 4096)
    a = bufs.alloc(lay.encode({"hClient": 1, "hObject": 2, "cmd": cmd, "params": p, "paramsSize": 8}))
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 32), a, 0)
    assert d["status"] == "NV_ERR_INVALID_ARGUMENT"


def test_pointer_outside_guest_memory(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers,
                                      audit_log: AuditLog) -> None:
    abi = shim580.abi
    assert abi is not None
    hole = bufs.unmapped()
    # The ioctl argument itself: EFAULT, as copy_from_user in nv.c.
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 32), hole, -E.EFAULT)
    assert d["errno"] == "EFAULT"
    # Results must go back: a read-only argument is refused before the driver is reached.
    ro = bufs.alloc(b"\0" * 32, prot=mmap.PROT_READ)
    _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 32), ro, -E.EFAULT)
    # An embedded pointer (NVOS54.params): the RM's NV_ERR_INVALID_ADDRESS in the status.
    lay = shim580.layouts("NVOS54_PARAMETERS")
    cmd = abi.control_by_name["NV2080_CTRL_CMD_GPU_GET_NAME_STRING"]
    size = abi.controls[cmd]["params_size"]
    a = bufs.alloc(lay.encode({"hClient": 1, "hObject": 2, "cmd": cmd, "params": hole, "paramsSize": size}))
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 32), a, 0)
    assert d["status"] == "NV_ERR_INVALID_ADDRESS"
    assert lay.get(bufs.read(a, 32), "status") == abi.status("NV_ERR_INVALID_ADDRESS")
    # A deep-copied list pointing outside, and pAllocParms pointing outside.
    play = shim580.layouts("NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS")
    p = bufs.alloc(play.encode({"numClasses": 4, "classList": hole}))
    a = bufs.alloc(lay.encode({"hClient": 1, "hObject": 2, "cmd": abi.control_by_name["NV0080_CTRL_CMD_GPU_GET_CLASSLIST"],
                               "params": p, "paramsSize": play.size}))
    assert _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2A, 32), a, 0)["status"] == "NV_ERR_INVALID_ADDRESS"
    alay = shim580.layouts("NVOS21_PARAMETERS")
    a = bufs.alloc(alay.encode({"hRoot": 1, "hObjectParent": 1, "hObjectNew": 2,
                                "hClass": abi.class_by_name["NV01_DEVICE_0"], "pAllocParms": hole}))
    assert _refused(shim580, guest, audit_log, FD_CTL, ioc(0x2B, 32), a, 0)["status"] == "NV_ERR_INVALID_ADDRESS"
    # NV_ESC_IOCTL_XFER_CMD's inner pointer.
    xlay = shim580.layouts("nv_ioctl_xfer_t")
    x = bufs.alloc(xlay.encode({"cmd": 200, "size": 72 * 32, "ptr": hole}))
    d = _refused(shim580, guest, audit_log, FD_CTL, ioc(0xD3, 16), x, -E.EFAULT)
    assert d["op"] == "NV_ESC_IOCTL_XFER_CMD/NV_ESC_CARD_INFO"


def test_fd_that_is_not_an_nvidia_device(shim580: NvidiaShim, guest: FakeGuest, bufs: GuestBuffers,
                                         audit_log: AuditLog) -> None:
    abi = shim580.abi
    assert abi is not None
    for bad in (FD_PIPE, 999):  # the guest's pipe; a number the guest does not have
        reg = bufs.alloc(bad.to_bytes(4, "little"))
        d = _refused(shim580, guest, audit_log, FD_GPU0, ioc(201, 4), reg, -E.EINVAL)
        assert d["op"] == "NV_ESC_REGISTER_FD" and d["fd"] == bad
    # REGISTER_FD wants nvidiactl itself, not another NVIDIA device.
    reg = bufs.alloc(FD_GPU0.to_bytes(4, "little"))
    _refused(shim580, guest, audit_log, FD_GPU0, ioc(201, 4), reg, -E.EINVAL)
    ev = shim580.layouts("nv_ioctl_alloc_os_event_t")
    a = bufs.alloc(ev.encode({"hClient": 1, "hDevice": 2, "fd": FD_PIPE}))
    d = _refused(shim580, guest, audit_log, FD_GPU0, ioc(206, 16), a, 0)
    assert ev.get(bufs.read(a, 16), "Status") == abi.status("NV_ERR_INVALID_ARGUMENT")
    m = shim580.layouts("nv_ioctl_nvos33_parameters_with_fd")
    a = bufs.alloc(m.encode({"params.hClient": 1, "fd": FD_PIPE}))
    assert _refused(shim580, guest, audit_log, FD_CTL, ioc(0x4E, 56), a, 0)["status"] == "NV_ERR_INVALID_ARGUMENT"
    # UVM: rmCtrlFd must be the guest's nvidiactl fd; the status goes in rmStatus.
    u = shim580.layouts("UVM_REGISTER_GPU_PARAMS")
    a = bufs.alloc(u.encode({"rmCtrlFd": FD_PIPE, "hClient": 1}))
    d = _refused(shim580, guest, audit_log, FD_UVM, abi.raw["uvm"]["commands"]["UVM_REGISTER_GPU"]["value"], a, 0)
    assert u.get(bufs.read(a, u.size), "rmStatus") == abi.status("NV_ERR_INVALID_ARGUMENT")
    assert d["op"] == "UVM_REGISTER_GPU"


def test_unknown_driver_version_refuses_everything(guest: FakeGuest, bufs: GuestBuffers,
                                                   audit_log: AuditLog) -> None:
    shim = NvidiaShim.for_host(version="550.54.14", audit=audit_log, cspace_name="t")
    assert shim.abi is None
    first = denials(audit_log)
    assert len(first) == 1 and "550.54.14" in first[0]["reason"] and first[0]["op"] == "driver"
    a = bufs.alloc(b"\0" * 72)
    for fd, req in ((FD_CTL, ioc(210, 72)), (FD_GPU0, ioc(201, 4)), (FD_UVM, 0x30000001)):
        d = _refused(shim, guest, audit_log, fd, req, a, -E.EINVAL)
        assert "every NVIDIA ioctl is refused" in d["reason"] and "550.54.14" in d["reason"]
    # Same branch as a table, but branch matching turned off: also unknown.
    strict = NvidiaShim.for_host(version="580.159.04", accept_branch=False, audit=audit_log)
    assert strict.abi is None
    _refused(strict, guest, audit_log, FD_CTL, ioc(210, 72), a, -E.EINVAL)


def test_handshake_reporting_another_version_stops_trust(guest: FakeGuest, bufs: GuestBuffers,
                                                         audit_log: AuditLog) -> None:
    import ctypes

    shim = NvidiaShim.for_host(version="580.159.04", audit=audit_log)
    assert shim.abi is not None and shim.abi.match == "branch" and shim.abi.table_version == "580.142"

    def driver(rec) -> int:  # noqa: ANN001
        ctypes.memmove(rec.addr + 8, b"560.35.03\0", 10)
        return 0

    guest.driver.responders[210] = driver
    a = bufs.alloc((0x32).to_bytes(4, "little") + b"\0" * 68)
    assert shim.handle_ioctl(guest, FD_CTL, ioc(210, 72), a) == 0
    assert shim.abi is None and shim.handshake_version == "560.35.03"
    assert any("560.35.03" in d["reason"] for d in denials(audit_log))
    guest.driver.calls.clear()
    _refused(shim, guest, audit_log, FD_CTL, ioc(210, 72), a, -E.EINVAL)
