"""NVIDIA ioctls rendered by name for the tracer and for audit records:
``NV_ESC_RM_CONTROL{hClient=0xc1d00001 hObject=0x5c000003 cmd=NV2080_CTRL_CMD_GPU_GET_NAME_STRING
paramsSize=132 status=NV_OK}``."""
from __future__ import annotations

import re

from .abi import Abi
from .codec import Layouts
from .core import UVM
from .frontend import decode_request

# Key fields shown per params type (all scalar fields are shown for types not listed).
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "NVOS21_PARAMETERS": ("hRoot", "hObjectParent", "hObjectNew", "hClass", "status"),
    "NVOS64_PARAMETERS": ("hRoot", "hObjectParent", "hObjectNew", "hClass", "flags", "status"),
    "NVOS54_PARAMETERS": ("hClient", "hObject", "cmd", "paramsSize", "status"),
    "NVOS00_PARAMETERS": ("hRoot", "hObjectParent", "hObjectOld", "status"),
    "nv_ioctl_rm_api_version_t": ("cmd", "reply", "versionString"),
    "nv_ioctl_nvos02_parameters_with_fd": ("params.hRoot", "params.hObjectNew", "params.hClass", "fd",
                                           "params.status"),
    "nv_ioctl_nvos33_parameters_with_fd": ("params.hClient", "params.hMemory", "params.length", "fd",
                                           "params.status"),
}
_HANDLE_RX = re.compile(r"h[A-Z].*|p[A-Z].*|params|ptr")  # handles and pointers: shown in hex


def _fmt(abi: Abi, path: str, value: int | bytes) -> str:
    leaf = path.rsplit(".", 1)[-1]
    if isinstance(value, bytes):
        if leaf == "versionString":
            return repr(value.split(b"\0", 1)[0].decode("ascii", "replace"))
        return f"<{len(value)}B>"
    if leaf == "hClass":
        return abi.class_name(value)
    if leaf == "cmd" and value > 0xFF:
        return abi.control_name(value)
    if leaf.lower() in ("status", "rmstatus"):
        return abi.status_name(value)
    if _HANDLE_RX.fullmatch(leaf):
        return f"0x{value:x}"
    return str(value)


def render_params(abi: Abi, layouts: Layouts, type_name: str | None, raw: bytes | None) -> str:
    if raw is None or not type_name or type_name not in layouts:
        return ""
    lay = layouts(type_name)
    if len(raw) < lay.size:
        return f"<{len(raw)}B>"
    vals = lay.decode(raw)
    keys = KEY_FIELDS.get(type_name) or tuple(p for p, v in vals.items() if isinstance(v, int))[:8]
    return "{" + " ".join(f"{k}={_fmt(abi, k, vals[k])}" for k in keys if k in vals) + "}"


def render(abi: Abi | None, layouts: Layouts | None, device_kind: str, request: int,
           raw: bytes | None = None) -> str:
    """The ioctl by name with its key fields (``raw``: the params, when the caller has them)."""
    if abi is None or layouts is None:
        return f"NVIDIA_IOCTL(0x{request:x})"
    if device_kind == UVM:
        cmd = abi.uvm.get(request)
        if cmd is None:
            return f"UVM_0x{request:x}"
        return cmd["name"] + render_params(abi, layouts, cmd.get("params_type"), raw)
    _, _, nr, size = decode_request(request)
    esc = abi.escapes.get(nr)
    if esc is None:
        return f"NV_ESC_0x{nr:02x}(size={size})"
    ptype = esc.params_type_alt if esc.params_size_alt is not None and size == esc.params_size_alt else esc.params_type
    if esc.name == "NV_ESC_IOCTL_XFER_CMD" and raw is not None and len(raw) >= 16:
        inner_nr = int.from_bytes(raw[0:4], "little")
        inner = abi.escapes.get(inner_nr)
        return (f"NV_ESC_IOCTL_XFER_CMD{{cmd={inner.name if inner else hex(inner_nr)} "
                f"size={int.from_bytes(raw[4:8], 'little')}}}")
    return esc.name + render_params(abi, layouts, ptype, raw)
