"""/dev/nvidia-uvm: the UVM commands a CUDA program uses.

Design decision. UVM binds its state to the address space of the process that calls it: the
va_space of an fd is tied to current->mm at UVM_INITIALIZE / UVM_MM_INITIALIZE, and every
later command (MIGRATE, MAP_EXTERNAL_ALLOCATION, PAGEABLE_MEM_ACCESS, ...) acts on current->mm
at the addresses its params name. Re-issued from the translator these calls would act on the
translator's address space. So UVM commands are NOT re-issued by the translator: after the
shim has decoded and checked them, they run in the guest's own context through
``IoctlContext.guest_ioctl``, which the platform implements by

1. stopping every thread of the guest process (ptrace interrupt; the calling thread is already
   held by its seccomp notification),
2. writing the checked params into a translator-owned scratch page mapped in the guest,
3. injecting ioctl(fd, cmd, scratch) into the calling thread and reading the params back,
4. resuming the threads.

While the call runs no guest thread can run, so none can change the params, dup2() another
file over an fd the shim checked, or remap the scratch page: check and use see the same values.
fd fields (rmCtrlFd, uvmFd) keep the guest's own numbers (the kernel resolves them in the
guest's fd table), which the shim checked to be the guest's NVIDIA fds.

Residual risk, written down where it lives:
- the guest's threads are stopped only for the duration of the call; anything the driver
  keeps after it returns (registered GPUs, ranges, channels) stays bound to the guest's mm and
  the guest can later unmap or remap those ranges, exactly as a native process can;
- the addresses in UVM params (base/length) are not checked by the shim: they name the guest's
  own address space and the driver checks them against it, so they can reach nothing else;
- the scratch page is visible to the guest between calls (it holds the last params, never
  anything of the translator's);
- a platform without ``guest_ioctl`` cannot run UVM: every UVM command is then refused.
"""
from __future__ import annotations

import errno as E

from .core import CTL, UVM, Call, Refused

# Commands allowed on /dev/nvidia-uvm (all that CUDA's runtime issues, per the driver's table).
ALLOWED = frozenset({
    "UVM_INITIALIZE", "UVM_DEINITIALIZE", "UVM_MM_INITIALIZE", "UVM_PAGEABLE_MEM_ACCESS",
    "UVM_PAGEABLE_MEM_ACCESS_ON_GPU", "UVM_REGISTER_GPU", "UVM_UNREGISTER_GPU",
    "UVM_REGISTER_GPU_VASPACE", "UVM_UNREGISTER_GPU_VASPACE", "UVM_REGISTER_CHANNEL",
    "UVM_UNREGISTER_CHANNEL", "UVM_CREATE_RANGE_GROUP", "UVM_DESTROY_RANGE_GROUP",
    "UVM_SET_RANGE_GROUP", "UVM_PREVENT_MIGRATION_RANGE_GROUPS", "UVM_ALLOW_MIGRATION_RANGE_GROUPS",
    "UVM_MIGRATE_RANGE_GROUP", "UVM_CREATE_EXTERNAL_RANGE", "UVM_MAP_EXTERNAL_ALLOCATION",
    "UVM_MAP_EXTERNAL_SPARSE", "UVM_UNMAP_EXTERNAL", "UVM_FREE", "UVM_MIGRATE",
    "UVM_ALLOC_SEMAPHORE_POOL", "UVM_MAP_DYNAMIC_PARALLELISM_REGION", "UVM_ENABLE_PEER_ACCESS",
    "UVM_DISABLE_PEER_ACCESS", "UVM_SET_PREFERRED_LOCATION", "UVM_UNSET_PREFERRED_LOCATION",
    "UVM_SET_ACCESSED_BY", "UVM_UNSET_ACCESSED_BY", "UVM_ENABLE_READ_DUPLICATION",
    "UVM_DISABLE_READ_DUPLICATION", "UVM_ENABLE_SYSTEM_WIDE_ATOMICS", "UVM_DISABLE_SYSTEM_WIDE_ATOMICS",
    "UVM_VALIDATE_VA_RANGE", "UVM_POPULATE_PAGEABLE", "UVM_CLEAN_UP_ZOMBIE_RESOURCES",
    "UVM_ALLOC_DEVICE_P2P", "UVM_DISCARD",
})
# Which device each fd field must be: the RM control fd, or another UVM fd.
FD_KINDS = {"rmCtrlFd": (CTL,), "uvmFd": (UVM,)}
STATUS_FIELD = "rmStatus"


def run_uvm(call: Call) -> int:
    cmd = call.abi.uvm.get(call.request)
    call.name = cmd["name"] if cmd else f"UVM_0x{call.request:x}"
    if cmd is None:
        raise Refused(f"unknown UVM command 0x{call.request:x}", errno=E.EINVAL)
    routed = cmd.get("routed")
    if not routed or routed.get("fd") != "/dev/nvidia-uvm":
        raise Refused(f"{cmd['name']} is not dispatched on /dev/nvidia-uvm by driver {call.abi.table_version}",
                      errno=E.EINVAL)
    if cmd["name"] not in ALLOWED:
        raise Refused(f"{cmd['name']} is not allowed", errno=E.EINVAL)
    guest_ioctl = getattr(call.ctx, "guest_ioctl", None)
    if guest_ioctl is None:
        raise Refused("this platform cannot run UVM commands in the guest's context", errno=E.ENOTTY)
    size = cmd.get("params_size")
    if size is None:  # UVM_DEINITIALIZE: no params, nothing to check
        try:
            ret, _ = guest_ioctl(call.guest_fd, call.request, b"")
        except OSError as e:
            raise Refused(f"{cmd['name']}: in-guest execution failed: {e}", errno=e.errno or E.ENOTTY) from None
        return int(ret)
    raw = call.read_guest(call.argp, int(size), write_back=True, what=cmd["name"])
    lay = call.layout(cmd["params_type"])
    buf = bytearray(lay.encode(lay.decode(raw)))
    for f in cmd.get("fd_fields") or ():
        path = f["path"]
        v = int(lay.get(buf, path))
        v = v - (1 << 32) if v >= 1 << 31 else v  # uvmFd is NvU32 in some versions
        try:
            call.nvidia_fd(v, path, FD_KINDS.get(path.rsplit(".", 1)[-1], (CTL,)))
        except Refused as r:
            if lay.has(STATUS_FIELD):
                lay.set(buf, STATUS_FIELD, call.status_value("NV_ERR_INVALID_ARGUMENT"))
                call.write_guest(call.argp, bytes(buf))
                raise Refused(r.reason, status="NV_ERR_INVALID_ARGUMENT", fd=v, written=True) from None
            raise
    try:
        ret, out = guest_ioctl(call.guest_fd, call.request, bytes(buf))
    except OSError as e:  # the platform could not run it in the guest: nothing was done
        raise Refused(f"{cmd['name']}: in-guest execution failed: {e}", errno=e.errno or E.ENOTTY) from None
    if ret != -E.EFAULT and len(out) == len(buf):
        call.write_guest(call.argp, out)
    return int(ret)
