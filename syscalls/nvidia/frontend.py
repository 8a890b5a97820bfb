"""/dev/nvidiactl and /dev/nvidiaN: decoding an escape, the common copy-in / re-issue / copy-out
path, NV_ESC_IOCTL_XFER_CMD, and the frontend escapes (nv.c's own cases).

Every escape goes through ``run_escape``: the request is decoded (only _IOC_NR and _IOC_SIZE
matter to the driver), looked up in this driver's tables, its size checked as the driver
checks it, the argument copied in from the guest once, re-encoded from its decoded fields,
handed to the escape's handler (which checks and translates pointers and fds), and issued on
the translator's own fd with a pointer into translator memory. The driver's output goes back
to the guest with every translated field restored to the guest's own value.
"""
from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass
from typing import Callable

from .abi import Escape, version_from_handshake
from .core import CTL, GPU, Call, Refused, ioc

# What a handler hands back: the bytes the driver gets and a fix-up of the driver's output
# (restore guest pointers and fds, translate out-fds) run before it is copied to the guest.
After = Callable[[bytearray, int], None]


@dataclass
class Prepared:
    buf: bytearray
    after: After | None = None


Handler = Callable[[Call, Escape, bytes], Prepared]

STATUS_PATHS = ("status", "Status", "params.status")


def decode_request(request: int) -> tuple[int, int, int, int]:
    """(dir, type, nr, size) of an _IOC request."""
    return (request >> 30) & 3, (request >> 8) & 0xFF, request & 0xFF, (request >> 16) & 0x3FFF


def canonical(call: Call, type_name: str | None, raw: bytes) -> bytearray:
    """The struct re-encoded from its decoded fields (no padding or stray bytes pass)."""
    if type_name and type_name in call.shim.layouts:
        lay = call.layout(type_name)
        if lay.size == len(raw):
            return bytearray(lay.encode(lay.decode(raw)))
    return bytearray(raw)


def status_leaf(call: Call, type_name: str | None) -> str | None:
    if not type_name or type_name not in call.shim.layouts:
        return None
    lay = call.layout(type_name)
    return next((p for p in STATUS_PATHS if lay.has(p)), None)


def _size_ok(esc: Escape, size: int) -> bool:
    if esc.size_check == "exact":
        return size == esc.params_size or (esc.params_size_alt is not None and size == esc.params_size_alt)
    if esc.size_check == "array":
        return size > 0 and esc.elem_size is not None and size % esc.elem_size == 0
    if esc.size_check == "min":
        return esc.params_size is not None and size >= esc.params_size
    return False  # "none": the driver trusts _IOC_SIZE; the shim never does


def _check_device(call: Call, esc: Escape) -> None:
    if esc.device.startswith("ctl_only") and esc.name != "NV_ESC_RM_ALLOC" and call.dev.kind != CTL:
        raise Refused(f"{esc.name} is only valid on /dev/nvidiactl", errno=E.EINVAL)
    if esc.device.startswith("actual_only") and call.dev.kind != GPU:
        raise Refused(f"{esc.name} is only valid on /dev/nvidiaN", errno=E.EINVAL)


def run_escape(call: Call, handlers: dict[str, Handler]) -> int:
    """One frontend/RM ioctl, start to finish (refusals raise Refused)."""
    direction, magic, nr, size = decode_request(call.request)
    if magic != call.abi.magic or direction != 3:
        raise Refused(f"request 0x{call.request:x} is not an NVIDIA escape (_IOWR('F', ...))", errno=E.EINVAL)
    argp, via_xfer = call.argp, False
    esc = call.abi.escapes.get(nr)
    call.name = esc.name if esc else f"NV_ESC_0x{nr:02x}"
    if esc is not None and esc.name == "NV_ESC_IOCTL_XFER_CMD":
        if size != esc.params_size:
            raise Refused(f"xfer size {size} != {esc.params_size}", errno=E.EINVAL)
        xfer = call.read_guest(argp, size, write_back=False, what="nv_ioctl_xfer_t")
        lay = call.layout("nv_ioctl_xfer_t")
        nr, size, argp = int(lay.get(xfer, "cmd")), int(lay.get(xfer, "size")), int(lay.get(xfer, "ptr"))
        via_xfer = True
        esc = call.abi.escapes.get(nr) if nr <= 0xFF else None
        call.name = f"NV_ESC_IOCTL_XFER_CMD/{esc.name if esc else f'0x{nr:x}'}"
        if size > call.abi.max_ioctl_size:
            raise Refused(f"xfer size {size} exceeds {call.abi.max_ioctl_size}", errno=E.EINVAL)
        if esc is not None and esc.name == "NV_ESC_IOCTL_XFER_CMD":
            raise Refused("nested NV_ESC_IOCTL_XFER_CMD", errno=E.EINVAL)
    if esc is None:
        raise Refused(f"unknown escape nr 0x{nr:x}", errno=E.EINVAL)
    if not esc.handled:
        raise Refused(f"{esc.name} has no case in driver {call.abi.table_version}", errno=E.EINVAL)
    handler = handlers.get(esc.name)
    if handler is None:
        raise Refused(f"{esc.name} is not allowed", errno=E.EINVAL)
    if not _size_ok(esc, size):
        raise Refused(f"{esc.name}: size {size} fails the driver's {esc.size_check} check "
                      f"({esc.params_size if esc.params_size is not None else esc.elem_size})", errno=E.EINVAL)
    _check_device(call, esc)
    raw = call.read_guest(argp, size, write_back=True, what=esc.name)
    type_name = esc.params_type_alt if (esc.params_size_alt is not None and size == esc.params_size_alt) \
        else esc.params_type
    try:
        prep = handler(call, esc, raw)
    except Refused as r:
        if r.status is None:
            raise
        # The driver answers this one through the params' status field, the ioctl succeeding.
        path = status_leaf(call, type_name)
        if path is None:
            raise Refused(r.reason, errno=E.EINVAL, **r.details) from None
        out = canonical(call, type_name, raw)
        call.layout(str(type_name)).set(out, path, call.status_value(r.status))
        call.write_guest(argp, bytes(out))
        raise  # audited by the shim, which returns 0 for a status refusal
    addr = call.arena.put(bytes(prep.buf))
    if via_xfer:
        xlay = call.layout("nv_ioctl_xfer_t")
        x = bytearray(xlay.size)
        xlay.set(x, "cmd", nr)
        xlay.set(x, "size", len(prep.buf))
        xlay.set(x, "ptr", addr)
        ret = call.issue(ioc(call.abi.xfer_nr, xlay.size), call.arena.put(bytes(x)))
    else:
        ret = call.issue(ioc(nr, len(prep.buf)), addr)
    out = bytearray(call.arena.get(addr, len(prep.buf)))
    if prep.after is not None:
        prep.after(out, ret)
    if ret != -E.EFAULT:  # as nv.c: results go back unless the copy itself faulted
        call.write_guest(argp, bytes(out))
    return ret


# ---- frontend escapes ----------------------------------------------------------------------


def plain(call: Call, esc: Escape, raw: bytes) -> Prepared:
    """No pointers, no fds: the re-encoded struct as it is."""
    return Prepared(canonical(call, esc.params_type, raw))


def card_info(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    buf = bytearray()
    for i in range(0, len(raw), lay.size):
        buf += lay.encode(lay.decode(raw[i:i + lay.size]))
    return Prepared(buf)


def check_version(call: Call, esc: Escape, raw: bytes) -> Prepared:
    def after(out: bytearray, ret: int) -> None:
        seen = version_from_handshake(bytes(out))
        if seen:
            call.shim.note_handshake(seen)

    return Prepared(canonical(call, esc.params_type, raw), after)


def register_fd(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    buf = canonical(call, esc.params_type, raw)
    guest = int(lay.get(buf, "ctl_fd"))
    lay.set(buf, "ctl_fd", call.translate_fd(guest, "ctl_fd", (CTL,)))
    return Prepared(buf, lambda out, ret: lay.set(out, "ctl_fd", guest))


def alloc_os_event(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    buf = canonical(call, esc.params_type, raw)
    guest, client = int(lay.get(buf, "fd")), int(lay.get(buf, "hClient"))
    try:
        call.nvidia_fd(guest, "fd")
    except Refused as r:
        raise Refused(r.reason, status="NV_ERR_INVALID_ARGUMENT", fd=guest) from None
    # The driver keeps the fd number as the event's key (matched again by NV01_EVENT_OS_EVENT
    # allocations), so the translator's fd must stay open and keep its number until freed.
    host = call.shim.os_events.acquire(call, client, guest)
    lay.set(buf, "fd", host)

    def after(out: bytearray, ret: int) -> None:
        if ret != 0 or int(lay.get(out, "Status")) != 0:
            call.shim.os_events.release(call.ctx.pid, client, guest)
        lay.set(out, "fd", guest)

    return Prepared(buf, after)


def free_os_event(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    buf = canonical(call, esc.params_type, raw)
    guest, client = int(lay.get(buf, "fd")), int(lay.get(buf, "hClient"))
    host = call.shim.os_events.lookup(call.ctx.pid, client, guest)
    if host is None:
        try:
            host = call.translate_fd(guest, "fd")
        except Refused as r:
            raise Refused(r.reason, status="NV_ERR_INVALID_ARGUMENT", fd=guest) from None
    lay.set(buf, "fd", host)

    def after(out: bytearray, ret: int) -> None:
        if ret == 0 and int(lay.get(out, "Status")) == 0:
            call.shim.os_events.release(call.ctx.pid, client, guest)
        lay.set(out, "fd", guest)

    return Prepared(buf, after)


def export_dmabuf(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    buf = canonical(call, esc.params_type, raw)
    guest_in = int(lay.get(buf, "fd"))
    lay.set(buf, "fd", -1)  # an OUT field: nothing of the guest's goes in

    def after(out: bytearray, ret: int) -> None:
        fd = int(lay.get(out, "fd"))
        if ret == 0 and int(lay.get(out, "status")) == 0 and fd >= 0:
            # The kernel made a dma-buf fd in the translator: move it to the guest.
            try:
                lay.set(out, "fd", call.ctx.install_fd(fd, True))
            finally:
                os.close(fd)
        else:
            lay.set(out, "fd", guest_in)

    return Prepared(buf, after)


HANDLERS: dict[str, Handler] = {
    "NV_ESC_CARD_INFO": card_info,
    "NV_ESC_CHECK_VERSION_STR": check_version,
    "NV_ESC_REGISTER_FD": register_fd,
    "NV_ESC_ALLOC_OS_EVENT": alloc_os_event,
    "NV_ESC_FREE_OS_EVENT": free_os_event,
    "NV_ESC_ATTACH_GPUS_TO_FD": plain,
    "NV_ESC_SYS_PARAMS": plain,
    "NV_ESC_STATUS_CODE": plain,
    "NV_ESC_NUMA_INFO": plain,
    "NV_ESC_EXPORT_TO_DMABUF_FD": export_dmabuf,
    "NV_ESC_WAIT_OPEN_COMPLETE": plain,
}
