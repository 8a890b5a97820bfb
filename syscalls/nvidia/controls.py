"""Which RM controls (NV_ESC_RM_CONTROL commands) a guest may issue, and how their embedded
buffers are copied.

A command is allowed when this driver exports it (an RM class's method table has it) with the
NON_PRIVILEGED flag and neither PRIVILEGED nor INTERNAL: the translator issues the control, and
the RM decides privilege from the client, which the translator allocated. Its params buffer is
copied by the size the table gives (the RM itself rejects any other paramsSize). Params that
hold pointers are allowed only when ``EMBEDDED`` says how large each pointed-to buffer is; params
that hold fds only when every fd field is in ``FD_FIELDS``. Anything else is answered as the
driver answers a command it does not know: NV_ERR_NOT_SUPPORTED.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .abi import Abi


@dataclass(frozen=True)
class Embedded:
    """A buffer a control's params point to: ``pointer`` holds its address and it has
    ``count`` (a params field) elements of ``elem_size`` bytes."""

    pointer: str
    count: str
    elem_size: int


# The legacy (pre-_V2) query controls that pass their lists by pointer. The RM copies these
# buffers itself (rmapi/embedded_param_copy.c); the shim copies them into translator memory.
EMBEDDED: dict[str, tuple[Embedded, ...]] = {
    "NV0080_CTRL_CMD_GPU_GET_CLASSLIST": (Embedded("classList", "numClasses", 4),),
    "NV2080_CTRL_CMD_GPU_GET_ENGINES": (Embedded("engineList", "engineCount", 4),),
    "NV2080_CTRL_CMD_GPU_GET_ENGINE_CLASSLIST": (Embedded("classList", "numClasses", 4),),
    "NV0080_CTRL_CMD_GR_GET_INFO": (Embedded("grInfoList", "grInfoListSize", 8),),
    "NV2080_CTRL_CMD_GR_GET_INFO": (Embedded("grInfoList", "grInfoListSize", 8),),
    "NV2080_CTRL_CMD_FB_GET_INFO": (Embedded("fbInfoList", "fbInfoListSize", 8),),
    "NV2080_CTRL_CMD_BUS_GET_INFO": (Embedded("busInfoList", "busInfoListSize", 8),),
    "NV0041_CTRL_CMD_GET_SURFACE_INFO": (Embedded("surfaceInfoList", "surfaceInfoListSize", 8),),
    "NV0080_CTRL_CMD_GR_GET_CAPS": (Embedded("capsTbl", "capsTblSize", 1),),
    "NV0080_CTRL_CMD_FB_GET_CAPS": (Embedded("capsTbl", "capsTblSize", 1),),
    "NV0080_CTRL_CMD_HOST_GET_CAPS": (Embedded("capsTbl", "capsTblSize", 1),),
    "NV0080_CTRL_CMD_FIFO_GET_CAPS": (Embedded("capsTbl", "capsTblSize", 1),),
    "NV0080_CTRL_CMD_MSENC_GET_CAPS": (Embedded("capsTbl", "capsTblSize", 1),),
    "NV2080_CTRL_CMD_CE_GET_CAPS": (Embedded("capsTbl", "capsTblSize", 1),),
    "NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST": (Embedded("pChannelHandleList", "numChannels", 4),
                                             Embedded("pChannelList", "numChannels", 4)),
}
# Largest embedded buffer accepted (the RM's own lists are far smaller).
MAX_EMBEDDED = 1 << 16

# Controls whose params carry fds of NVIDIA device files; each is translated to the
# translator's own fd on the same open file description for the duration of the call.
FD_FIELDS: dict[str, tuple[str, ...]] = {
    "NV0000_CTRL_CMD_OS_UNIX_EXPORT_OBJECT_TO_FD": ("fd",),
    "NV0000_CTRL_CMD_OS_UNIX_IMPORT_OBJECT_FROM_FD": ("fd",),
    "NV0000_CTRL_CMD_OS_UNIX_GET_EXPORT_OBJECT_INFO": ("fd",),
    "NV0000_CTRL_CMD_OS_UNIX_CREATE_EXPORT_OBJECT_FD": ("fd",),
    "NV0000_CTRL_CMD_OS_UNIX_EXPORT_OBJECTS_TO_FD": ("fd",),
    "NV0000_CTRL_CMD_OS_UNIX_IMPORT_OBJECTS_FROM_FD": ("fd",),
}


@dataclass(frozen=True)
class ControlVerdict:
    allowed: bool
    name: str
    status: str  # the NV status to answer with when refused
    reason: str
    params_type: str | None = None
    params_size: int = 0
    embedded: tuple[Embedded, ...] = ()
    fd_fields: tuple[str, ...] = ()


def _unprivileged(entry: dict[str, Any]) -> bool:
    for e in entry.get("exported_by") or ():
        flags = set(e.get("flags_decoded") or ())
        if "NON_PRIVILEGED" in flags and not flags & {"PRIVILEGED", "INTERNAL"}:
            return True
    return False


def check_control(abi: Abi, cmd: int) -> ControlVerdict:
    entry = abi.controls.get(cmd)
    if entry is None:
        return ControlVerdict(False, f"0x{cmd:08x}", "NV_ERR_NOT_SUPPORTED", "unknown control")
    names = entry.get("names") or []
    name = names[0] if names else f"0x{cmd:08x}"
    if not entry.get("exported"):
        return ControlVerdict(False, name, "NV_ERR_NOT_SUPPORTED", "not exported by this driver")
    if not _unprivileged(entry):
        return ControlVerdict(False, name, "NV_ERR_INSUFFICIENT_PERMISSIONS", "privileged or internal control")
    size = entry.get("params_size")
    if size is None:
        return ControlVerdict(False, name, "NV_ERR_NOT_SUPPORTED", "params size unknown")
    ptrs = [p["path"] for p in entry.get("pointer_fields") or ()]
    fds = [p["path"] for p in entry.get("fd_fields") or ()]
    emb = next((EMBEDDED[n] for n in names if n in EMBEDDED), ())
    fd_ok = next((FD_FIELDS[n] for n in names if n in FD_FIELDS), ())
    if sorted(ptrs) != sorted(e.pointer for e in emb):
        return ControlVerdict(False, name, "NV_ERR_NOT_SUPPORTED", f"unhandled embedded pointers {ptrs}")
    if sorted(fds) != sorted(fd_ok):
        return ControlVerdict(False, name, "NV_ERR_NOT_SUPPORTED", f"unhandled fd fields {fds}")
    return ControlVerdict(True, name, "NV_OK", "", entry.get("params_type"), int(size), emb, fd_ok)
