"""RM escapes (rm_ioctl/RmIoctl): allocation, controls, free/dup/share, memory and mappings.

Pointers: every NvP64 that the RM dereferences (NVOS21/64.pAllocParms and pRightsRequested,
NVOS54.params and the buffers listed in controls.EMBEDDED) is replaced by a copy in translator
memory, and restored to the guest's value in what goes back. NvP64 fields the RM only stores
or returns (NVOS33/34.pLinearAddress, NVOS56's CPU addresses, NVOS02.pMemory of the allowed
classes, NV_MEMORY_ALLOCATION_PARAMS.address) are passed as they are: they name no memory the
RM reads or writes. Classes whose parameters hold a user address the RM would pin or map
(NV01_MEMORY_SYSTEM_OS_DESCRIPTOR) are not on the allowlist: from the translator they would
name the translator's memory.
"""
from __future__ import annotations

import errno as E

from .abi import Escape
from .classes import RS_ACCESS_MASK_SIZE, check_class
from .controls import MAX_EMBEDDED, check_control
from .core import CTL, Call, Refused
from .frontend import Handler, Prepared, canonical, plain

_EVENT_CLASSES = frozenset({"NV01_EVENT", "NV01_EVENT_OS_EVENT", "NV01_EVENT_KERNEL_CALLBACK",
                            "NV01_EVENT_KERNEL_CALLBACK_EX"})
# NVOS32 functions with no pointer the RM dereferences in their union member (nvos.h values).
NVOS32_FUNCTIONS = {2: "ALLOC_SIZE", 3: "FREE", 5: "INFO"}
_INVALID_ADDRESS = "NV_ERR_INVALID_ADDRESS"


def _class_refusal(call: Call, hclass: int) -> tuple[str, str] | None:
    v = check_class(call.abi, hclass)
    if v.allowed:
        return None
    status = {"unknown class": "NV_ERR_INVALID_CLASS",
              "not allocatable by clients in this driver": "NV_ERR_INVALID_CLASS",
              "allocation needs privilege": "NV_ERR_INSUFFICIENT_PERMISSIONS"}.get(v.reason, "NV_ERR_NOT_SUPPORTED")
    return status, f"class {v.name}: {v.reason}"


def rm_alloc(call: Call, esc: Escape, raw: bytes) -> Prepared:
    type_name = esc.params_type_alt if len(raw) == esc.params_size_alt else esc.params_type
    lay = call.layout(str(type_name))
    buf = canonical(call, type_name, raw)
    hclass, client = int(lay.get(buf, "hClass")), int(lay.get(buf, "hRoot"))
    cname = call.abi.class_name(hclass)
    call.name = f"{esc.name}({cname})"
    if call.dev.kind != CTL and cname not in _EVENT_CLASSES:
        raise Refused(f"{esc.name} of {cname} is only valid on /dev/nvidiactl", errno=E.EINVAL, hclass=hclass)
    bad = _class_refusal(call, hclass)
    if bad:
        raise Refused(bad[1], status=bad[0], hclass=hclass)
    verdict = check_class(call.abi, hclass)
    restores: list[tuple[str, int]] = []
    copies: list[tuple[int, int, int]] = []  # (guest addr, arena addr, size) to copy back
    p_guest = int(lay.get(buf, "pAllocParms"))
    restores.append(("pAllocParms", p_guest))
    ev_fd: int | None = None
    if verdict.params_size and p_guest:
        praw = call.read_guest(p_guest, verdict.params_size, write_back=True, what="pAllocParms",
                               status=_INVALID_ADDRESS)
        pbuf = canonical(call, verdict.params_type, praw)
        if verdict.name == "NV01_EVENT_OS_EVENT":
            play = call.layout("NV0005_ALLOC_PARAMETERS")
            ev_fd = int(play.get(pbuf, "data")) & 0xFFFFFFFF
            ev_fd = ev_fd - (1 << 32) if ev_fd >= 1 << 31 else ev_fd
            host = call.shim.os_events.lookup(call.ctx.pid, client, ev_fd)
            if host is None:
                try:
                    host = call.translate_fd(ev_fd, "event fd")
                except Refused as r:
                    raise Refused(r.reason, status="NV_ERR_INVALID_ARGUMENT", fd=ev_fd) from None
            play.set(pbuf, "data", host)
        a = call.arena.put(bytes(pbuf))
        lay.set(buf, "pAllocParms", a)
        copies.append((p_guest, a, verdict.params_size))
    else:
        lay.set(buf, "pAllocParms", 0)  # no params for this class: never hand the RM a guest address
    if lay.has("pRightsRequested"):
        r_guest = int(lay.get(buf, "pRightsRequested"))
        restores.append(("pRightsRequested", r_guest))
        if r_guest:
            rraw = call.read_guest(r_guest, RS_ACCESS_MASK_SIZE, write_back=False, what="pRightsRequested",
                                   status=_INVALID_ADDRESS)
            lay.set(buf, "pRightsRequested", call.arena.put(rraw))

    def after(out: bytearray, ret: int) -> None:
        for path, value in restores:
            lay.set(out, path, value)
        if ret == 0:
            for g, a, n in copies:
                data = bytearray(call.arena.get(a, n))
                if ev_fd is not None:
                    call.layout("NV0005_ALLOC_PARAMETERS").set(data, "data", ev_fd & 0xFFFFFFFFFFFFFFFF)
                call.write_guest(g, bytes(data))

    return Prepared(buf, after)


def rm_control(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    buf = canonical(call, esc.params_type, raw)
    cmd = int(lay.get(buf, "cmd"))
    v = check_control(call.abi, cmd)
    call.name = f"{esc.name}({v.name})"
    if not v.allowed:
        raise Refused(f"control {v.name}: {v.reason}", status=v.status, cmd=cmd)
    p_guest, p_size = int(lay.get(buf, "params")), int(lay.get(buf, "paramsSize"))
    if v.params_size == 0:
        if p_guest or p_size:
            raise Refused(f"{v.name} takes no params", status="NV_ERR_INVALID_ARGUMENT", cmd=cmd)
        return Prepared(buf)
    if p_size != v.params_size or not p_guest:
        raise Refused(f"{v.name}: paramsSize {p_size} (params 0x{p_guest:x}), the driver wants {v.params_size}",
                      status="NV_ERR_INVALID_ARGUMENT", cmd=cmd)
    praw = call.read_guest(p_guest, p_size, write_back=True, what=f"{v.name} params", status=_INVALID_ADDRESS)
    pbuf = canonical(call, v.params_type, praw)
    play = call.layout(v.params_type) if v.params_type and v.params_type in call.shim.layouts else None
    restores: list[tuple[str, int]] = []
    embedded: list[tuple[int, int, int]] = []
    for e in v.embedded:
        assert play is not None
        ptr, count = int(play.get(pbuf, e.pointer)), int(play.get(pbuf, e.count))
        restores.append((e.pointer, ptr))
        if ptr == 0:
            continue
        n = count * e.elem_size
        if n > MAX_EMBEDDED:
            raise Refused(f"{v.name}.{e.count} = {count} is too large", status="NV_ERR_INVALID_ARGUMENT", cmd=cmd)
        eraw = call.read_guest(ptr, n, write_back=True, what=f"{v.name}.{e.pointer}", status=_INVALID_ADDRESS)
        a = call.arena.put(eraw, n)
        play.set(pbuf, e.pointer, a)
        embedded.append((ptr, a, n))
    for path in v.fd_fields:
        assert play is not None
        guest = int(play.get(pbuf, path))
        restores.append((path, guest))
        if guest != -1:
            try:
                play.set(pbuf, path, call.translate_fd(guest, f"{v.name}.{path}"))
            except Refused as r:
                raise Refused(r.reason, status="NV_ERR_INVALID_ARGUMENT", cmd=cmd, fd=guest) from None
    pa = call.arena.put(bytes(pbuf))
    lay.set(buf, "params", pa)

    def after(out: bytearray, ret: int) -> None:
        lay.set(out, "params", p_guest)
        if ret != 0:
            return
        # The RM copies params out even when the control failed (status in NVOS54.status).
        pout = bytearray(call.arena.get(pa, p_size))
        for path, value in restores:
            assert play is not None
            play.set(pout, path, value)
        for g, a, n in embedded:
            call.write_guest(g, call.arena.get(a, n))
        call.write_guest(p_guest, bytes(pout))

    return Prepared(buf, after)


def _with_fd(call: Call, esc: Escape, raw: bytes, kinds: tuple[str, ...]) -> tuple[bytearray, int]:
    lay = call.layout(str(esc.params_type))
    buf = canonical(call, esc.params_type, raw)
    guest = int(lay.get(buf, "fd"))
    if guest != -1:
        try:
            lay.set(buf, "fd", call.translate_fd(guest, "fd", kinds))
        except Refused as r:
            raise Refused(r.reason, status="NV_ERR_INVALID_ARGUMENT", fd=guest) from None
    return buf, guest


def rm_map_memory(call: Call, esc: Escape, raw: bytes) -> Prepared:
    # The fd names the file the guest will mmap; the RM hangs the mapping context on its
    # open file description, which the guest's own fd shares.
    buf, guest = _with_fd(call, esc, raw, ("ctl", "gpu"))
    lay = call.layout(str(esc.params_type))
    return Prepared(buf, lambda out, ret: lay.set(out, "fd", guest))


def rm_alloc_memory(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    hclass = int(lay.get(raw, "params.hClass"))
    call.name = f"{esc.name}({call.abi.class_name(hclass)})"
    bad = _class_refusal(call, hclass)
    if bad:
        raise Refused(bad[1], status=bad[0], hclass=hclass)
    buf, guest = _with_fd(call, esc, raw, ("ctl", "gpu"))
    return Prepared(buf, lambda out, ret: lay.set(out, "fd", guest))


def rm_vid_heap(call: Call, esc: Escape, raw: bytes) -> Prepared:
    lay = call.layout(str(esc.params_type))
    fn = int(lay.get(raw, "function"))
    if fn not in NVOS32_FUNCTIONS:
        raise Refused(f"NVOS32 function {fn} is not allowed", status="NV_ERR_NOT_SUPPORTED", function=fn)
    call.name = f"{esc.name}({NVOS32_FUNCTIONS[fn]})"
    return plain(call, esc, raw)


HANDLERS: dict[str, Handler] = {
    "NV_ESC_RM_ALLOC": rm_alloc,
    "NV_ESC_RM_CONTROL": rm_control,
    "NV_ESC_RM_FREE": plain,
    "NV_ESC_RM_DUP_OBJECT": plain,
    "NV_ESC_RM_SHARE": plain,
    "NV_ESC_RM_ALLOC_MEMORY": rm_alloc_memory,
    "NV_ESC_RM_MAP_MEMORY": rm_map_memory,
    "NV_ESC_RM_UNMAP_MEMORY": plain,
    "NV_ESC_RM_MAP_MEMORY_DMA": plain,
    "NV_ESC_RM_UNMAP_MEMORY_DMA": plain,
    "NV_ESC_RM_ALLOC_CONTEXT_DMA2": plain,
    "NV_ESC_RM_BIND_CONTEXT_DMA": plain,
    "NV_ESC_RM_VID_HEAP_CONTROL": rm_vid_heap,
    "NV_ESC_RM_UPDATE_DEVICE_MAPPING_INFO": plain,
}
