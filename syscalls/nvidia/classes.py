"""Which RM object classes a guest may allocate (NV_ESC_RM_ALLOC, NV_ESC_RM_ALLOC_MEMORY).

A class is allowed when all of these hold:
- it is in ALLOWED_NAMES (what CUDA, nvidia-smi and the NVML need), by name, so a class id
  that a new driver reuses for something else is not allowed by accident;
- this driver's resource list lets clients allocate it, and without privilege
  (RS_FLAGS_ALLOC_NON_PRIVILEGED; the root client classes are the exception every client
  needs). The translator issues the allocation, and the RM derives a client's privilege from
  the credentials of the process that allocated it: a class the RM keeps for administrators
  would otherwise be reachable whenever the translator runs as root;
- every pointer or fd in its allocation parameters is one this module knows how to handle
  (``PARAM_RULES``): a pointer the RM would dereference refers to the translator's address
  space once the translator re-issues the call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .abi import Abi

ROOT_CLASSES = frozenset({"NV01_ROOT", "NV01_ROOT_NON_PRIV", "NV01_ROOT_CLIENT"})

ALLOWED_NAMES = frozenset({
    *ROOT_CLASSES,
    "NV01_DEVICE_0", "NV20_SUBDEVICE_0", "NV01_EVENT_OS_EVENT",
    "NV01_MEMORY_SYSTEM", "NV01_MEMORY_LOCAL_USER", "NV01_MEMORY_VIRTUAL", "NV50_MEMORY_VIRTUAL",
    "NV01_MEMORY_SYSTEM_DYNAMIC", "NV_MEMORY_EXTENDED_USER", "NV_MEMORY_FABRIC", "NV_MEMORY_MAPPER",
    "NV01_CONTEXT_DMA", "FERMI_VASPACE_A", "KEPLER_CHANNEL_GROUP_A", "FERMI_CONTEXT_SHARE_A",
    "NV50_P2P", "NV50_THIRD_PARTY_P2P", "GT200_DEBUGGER", "NV0060_SYNC_GPU_BOOST",
    "NV_SEMAPHORE_SURFACE", "NV_CONFIDENTIAL_COMPUTE", "RM_USER_SHARED_DATA",
    "AMPERE_SMC_PARTITION_REF", "AMPERE_SMC_EXEC_PARTITION_REF", "ACCESS_COUNTER_NOTIFY_BUFFER",
})
# Channel, compute, copy-engine and usermode classes of every architecture.
ALLOWED_PATTERNS = (
    re.compile(r"[A-Z0-9]+_CHANNEL_GPFIFO(_[A-Z])?"),
    re.compile(r"[A-Z0-9]+_COMPUTE_[A-Z]"),
    re.compile(r"[A-Z0-9]+_DMA_COPY_[A-Z]"),
    re.compile(r"[A-Z0-9]+_USERMODE_[A-Z]"),
)

# How the pointer/fd fields of allocation parameters are handled:
# "opaque": an NvP64 the RM never dereferences (a GPU virtual address, an output cookie);
# "os_event_fd": NV0005 ``data`` carries the fd of an NV01_EVENT_OS_EVENT (translated).
PARAM_RULES: dict[tuple[str, str], str] = {
    ("NV_MEMORY_ALLOCATION_PARAMS", "address"): "opaque",
    ("NV0005_ALLOC_PARAMETERS", "data"): "os_event_fd",
}

# NVOS64.pRightsRequested points to an RS_ACCESS_MASK: one 32-bit limb (SDK_RS_ACCESS_MAX_LIMBS).
RS_ACCESS_MASK_SIZE = 4


@dataclass(frozen=True)
class ClassVerdict:
    allowed: bool
    name: str
    reason: str
    params_type: str | None = None
    params_size: int = 0


def _named_ok(name: str) -> bool:
    return name in ALLOWED_NAMES or any(p.fullmatch(name) for p in ALLOWED_PATTERNS)


def check_class(abi: Abi, hclass: int) -> ClassVerdict:
    entry = abi.classes.get(hclass)
    if entry is None:
        return ClassVerdict(False, f"0x{hclass:x}", "unknown class")
    names = entry.get("names") or [f"0x{hclass:x}"]
    name = names[0]
    if not any(_named_ok(n) for n in names):
        return ClassVerdict(False, name, "class not on the allowlist")
    rs = entry.get("rs_entries") or []
    if not rs:
        return ClassVerdict(False, name, "not allocatable by clients in this driver")
    e = rs[0]
    flags = set(e.get("rs_flags") or ())
    # NV01_ROOT shares id 0 with NV01_NULL_OBJECT; the kernel turns every root class into
    # NV01_ROOT_CLIENT, which any client may allocate.
    is_root = any(n in ROOT_CLASSES for n in names)
    if not (is_root or "RS_FLAGS_ALLOC_NON_PRIVILEGED" in flags) or \
            flags & {"RS_FLAGS_ALLOC_KERNEL_PRIVILEGED", "RS_FLAGS_INTERNAL_ONLY"}:
        return ClassVerdict(False, name, "allocation needs privilege")
    ptype = e.get("alloc_params_type")
    size = int(e.get("alloc_params_size") or 0)
    spec = abi.structs.get(ptype) if ptype else None
    if spec is not None:
        for f in (*spec.get("pointer_fields", ()), *spec.get("fd_fields", ())):
            if (ptype, f["path"]) not in PARAM_RULES:
                return ClassVerdict(False, name, f"unhandled pointer/fd field {ptype}.{f['path']}")
    # A params type that is not a struct (NvHandle for the root classes) is copied as raw bytes.
    return ClassVerdict(True, name, "", ptype if spec is not None else None, size)
