"""The shim's entry point: one NvidiaShim per sandbox; ``handle_ioctl`` for every ioctl a guest
makes on an NVIDIA device fd.

Fail-closed rules, in order: no table for the host driver -> every ioctl refused; the device
capability's IOCTL right is checked; then the escape/UVM command must be known, allowed, of the
driver's size, on the right device, with every pointer inside the guest's mapped memory and
every fd the guest's own NVIDIA fd. A refusal answers as the driver would (an errno, or an
NV_ERR_* status in the params with the ioctl succeeding) and writes one ``deny`` audit record
naming the decoded ioctl.
"""
from __future__ import annotations

import errno as E
import logging
import os
from typing import TYPE_CHECKING, Any, Callable

from .abi import Abi, UnknownDriverVersion, host_driver_version, load_abi
from .codec import Layouts
from .core import CTL, GPU, UVM, Call, IoctlContext, Refused
from .decode import render
from .frontend import HANDLERS as FRONTEND_HANDLERS
from .frontend import decode_request, run_escape
from .rm import HANDLERS as RM_HANDLERS
from .uvm import run_uvm

if TYPE_CHECKING:
    from caps.audit import AuditLog

log = logging.getLogger(__name__)
HANDLERS = {**FRONTEND_HANDLERS, **RM_HANDLERS}


class OsEvents:
    """Translator fds that back the guest's OS events (NV_ESC_ALLOC_OS_EVENT): the driver keys
    an event by (client, fd number), so the translator's fd must live as long as the event."""

    def __init__(self) -> None:
        self._fds: dict[tuple[int, int, int], int] = {}

    def acquire(self, call: Call, client: int, guest_fd: int) -> int:
        key = (call.ctx.pid, client, guest_fd)
        fd = self._fds.get(key)
        if fd is None:
            fd = self._fds[key] = call.ctx.host_fd(guest_fd)
        return fd

    def lookup(self, pid: int, client: int, guest_fd: int) -> int | None:
        return self._fds.get((pid, client, guest_fd))

    def release(self, pid: int, client: int, guest_fd: int) -> None:
        fd = self._fds.pop((pid, client, guest_fd), None)
        if fd is not None:
            os.close(fd)

    def forget_process(self, pid: int) -> None:
        """The guest process exited: its events died with its fds."""
        for key in [k for k in self._fds if k[0] == pid]:
            os.close(self._fds.pop(key))

    def __len__(self) -> int:
        return len(self._fds)


class NvidiaShim:
    def __init__(self, abi: Abi | None, *, audit: "AuditLog | None" = None, cspace_name: str = "sandbox",
                 unknown_reason: str = "", authorize: Callable[[bytes], None] | None = None) -> None:
        self.abi = abi
        self.layouts = Layouts(abi.structs) if abi is not None else Layouts({})
        self.audit = audit
        self.cspace_name = cspace_name
        self.unknown_reason = unknown_reason or ("" if abi else "no NVIDIA driver ABI table")
        self.authorize = authorize  # raises (EACCES, audited by the CSpace) without the IOCTL right
        self.os_events = OsEvents()
        self.handshake_version: str | None = None
        self.refusals = 0

    @classmethod
    def for_host(cls, *, version: str | None = None, accept_branch: bool = True, **kw: Any) -> "NvidiaShim":
        """The shim for the running driver (``version``: override /proc/driver/nvidia/version)."""
        v = version if version is not None else host_driver_version()
        try:
            abi = load_abi(v, accept_branch=accept_branch)
        except UnknownDriverVersion as e:
            shim = cls(None, unknown_reason=e.reason, **kw)
            shim._deny(None, "-", "driver", e.reason, errno=E.EINVAL, version=v)
            return shim
        if abi.match != "exact":
            log.warning("NVIDIA driver %s: using the ABI table of %s (same branch)", abi.version, abi.table_version)
        return cls(abi, **kw)

    # -- the entry point ---------------------------------------------------------------------

    def handle_ioctl(self, ctx: IoctlContext, guest_fd: int, request: int, argp: int) -> int:
        """ioctl(guest_fd, request, argp) on an NVIDIA device: the result for the guest
        (>= 0, or -errno)."""
        request &= 0xFFFFFFFF
        dev = ctx.device_of(guest_fd)
        if dev is None:
            return -E.ENOTTY  # not an NVIDIA fd: the caller routed it here by mistake
        if self.abi is None:
            self._deny(ctx, dev.path.decode(errors="replace"), f"0x{request:x}",
                       f"every NVIDIA ioctl is refused: {self.unknown_reason}", errno=E.EINVAL)
            return -E.EINVAL
        if self.authorize is not None:
            try:
                self.authorize(dev.path)
            except OSError as e:
                return -(e.errno or E.EACCES)
        call = Call(self, ctx, dev, guest_fd, request, argp)
        try:
            if dev.kind == UVM:
                return run_uvm(call)
            if dev.kind in (CTL, GPU):
                return run_escape(call, HANDLERS)
            raise Refused(f"no ioctls are allowed on {dev.path.decode(errors='replace')}", errno=E.EINVAL)
        except Refused as r:
            self._deny(ctx, dev.path.decode(errors="replace"), call.name, r.reason, errno=r.errno,
                       status=r.status, request=f"0x{request:x}", **r.details)
            return 0 if r.status is not None else -(r.errno or E.EINVAL)
        finally:
            call.close()

    def describe(self, ctx: IoctlContext, guest_fd: int, request: int, argp: int) -> str:
        """The ioctl by name with its key fields, for the tracer (reads the params best-effort)."""
        dev = ctx.device_of(guest_fd)
        kind = dev.kind if dev else CTL
        raw = None
        if self.abi is not None:
            size = self._params_size(kind, request & 0xFFFFFFFF)
            if size and ctx.mem.mapped(argp, size, False):
                try:
                    raw = ctx.mem.read(argp, size)
                except OSError:
                    raw = None
        return render(self.abi, self.layouts, kind, request & 0xFFFFFFFF, raw)

    def _params_size(self, kind: str, request: int) -> int:
        assert self.abi is not None
        if kind == UVM:
            cmd = self.abi.uvm.get(request)
            return int(cmd.get("params_size") or 0) if cmd else 0
        return decode_request(request)[3]

    # -- version, audit ----------------------------------------------------------------------

    def note_handshake(self, version: str) -> None:
        """The driver named its version (NV_ESC_CHECK_VERSION_STR): if it is not the one the
        tables were chosen for, stop trusting the tables."""
        self.handshake_version = version
        if self.abi is not None and version != self.abi.version:
            reason = f"driver reports {version}, tables were loaded for {self.abi.version}"
            self._deny(None, "/dev/nvidiactl", "NV_ESC_CHECK_VERSION_STR", reason, errno=E.EINVAL)
            try:
                abi = load_abi(version)
            except UnknownDriverVersion as e:
                self.abi, self.unknown_reason = None, e.reason
                self.layouts = Layouts({})
                return
            self.abi, self.layouts = abi, Layouts(abi.structs)

    def _deny(self, ctx: IoctlContext | None, device: str, op: str, reason: str, *,
              errno: int | None = None, status: str | None = None, **details: Any) -> None:
        self.refusals += 1
        log.info("nvidia: refused %s on %s: %s", op, device, reason)
        if self.audit is None:
            return
        rec: dict[str, Any] = {"cspace": self.cspace_name, "kind": "nvidia", "op": op, "device": device,
                               "reason": reason}
        if errno is not None:
            rec["errno"] = E.errorcode.get(errno, str(errno))
        if status is not None:
            rec["status"] = status
        if ctx is not None:
            rec["pid"] = ctx.pid
        if self.abi is not None:
            rec["driver"] = self.abi.version
        for k, v in details.items():
            if k != "written":
                rec.setdefault(k, v)
        self.audit.record("deny", **rec)
