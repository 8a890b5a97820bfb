"""The NVIDIA driver's ioctl ABI, loaded from the generated tables for the host's driver version.

The tables (``<version>.json`` in the nvidia-abi data directory) are facts about one driver
release: frontend escapes, RM escapes, struct layouts, UVM commands, RM controls, allocation
classes and status codes. Which table a host may use is decided here, once:

- the exact version has a table: use it;
- only another release of the same branch (same major number) has one: the ABI of a branch
  usually stays put between point releases but that is not guaranteed, so this is accepted
  only when the caller allows it (``accept_branch``), and ``Abi.match`` says ``"branch"`` so
  the caller can record it;
- otherwise the version is unknown: ``UnknownDriverVersion``, and the shim refuses every ioctl.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC_VERSION = "/proc/driver/nvidia/version"

# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  <date>" (proprietary) or
# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.261.03  Release Build ..." (open).
_VERSION_RX = re.compile(r"^NVRM version:.*?Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)\b", re.M)
_VERSION_STR_RX = re.compile(r"^\d+\.\d+(?:\.\d+)?$")


class UnknownDriverVersion(Exception):
    """No table describes this driver: every ioctl must be refused."""

    def __init__(self, version: str | None, reason: str) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason


def data_dir() -> Path:
    """Where the generated tables live: $LINUXABI_NVIDIA_ABI, else the copy shipped with the
    package (``tables/``, generated from the driver's headers; tables/README.md says how)."""
    env = os.environ.get("LINUXABI_NVIDIA_ABI")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "tables"


def available_versions(directory: Path | None = None) -> list[str]:
    d = directory or data_dir()
    try:
        names = os.listdir(d)
    except OSError:
        return []
    out = [n[:-5] for n in names if n.endswith(".json") and _VERSION_STR_RX.match(n[:-5])]
    return sorted(out, key=_vkey)


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def parse_proc_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version's text, or None."""
    m = _VERSION_RX.search(text)
    return m.group(1) if m else None


def host_driver_version(path: str = PROC_VERSION) -> str | None:
    """The running driver's version (None when no NVIDIA driver is loaded)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return parse_proc_version(f.read())
    except OSError:
        return None


def version_from_handshake(reply: bytes) -> str | None:
    """The version string the kernel writes into nv_ioctl_rm_api_version_t.versionString
    (offset 8, 64 bytes) for NV_RM_API_VERSION_CMD_QUERY."""
    s = reply[8:72].split(b"\0", 1)[0].decode("ascii", "replace")
    return s if _VERSION_STR_RX.match(s) else None


@functools.lru_cache(maxsize=4)
def _load_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class Escape:
    """One frontend or RM escape as the tables describe it."""

    name: str
    nr: int
    rm: bool  # an RM escape (rm_ioctl) rather than a frontend one (nv.c)
    handled: bool  # False: the number exists but this driver has no case for it
    params_type: str | None
    params_size: int | None
    size_check: str  # exact | min | array | none
    device: str  # ctl_only | actual_only | any | a sentence (RM_ALLOC)
    elem_size: int | None = None
    params_type_alt: str | None = None
    params_size_alt: int | None = None
    requires_admin: bool = False


@dataclass
class Abi:
    """The tables for one driver version, indexed for the shim."""

    version: str  # the host driver's version
    table_version: str  # the version the table was generated for
    match: str  # "exact" or "branch"
    raw: dict[str, Any] = field(repr=False)
    escapes: dict[int, Escape] = field(default_factory=dict, repr=False)
    uvm: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    controls: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    classes: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    status_by_name: dict[str, int] = field(default_factory=dict, repr=False)
    status_by_value: dict[int, str] = field(default_factory=dict, repr=False)
    class_by_name: dict[str, int] = field(default_factory=dict, repr=False)
    control_by_name: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def structs(self) -> dict[str, Any]:
        return self.raw["structs"]

    @property
    def magic(self) -> int:
        return int(self.raw["frontend"]["ioctl_magic"])

    @property
    def max_ioctl_size(self) -> int:
        return int(self.raw["frontend"]["NV_ABSOLUTE_MAX_IOCTL_SIZE"])

    @property
    def xfer_nr(self) -> int:
        return int(self.raw["frontend"]["commands"]["NV_ESC_IOCTL_XFER_CMD"]["nr"])

    def escape_by_name(self, name: str) -> Escape | None:
        for e in self.escapes.values():
            if e.name == name:
                return e
        return None

    def uvm_by_name(self, name: str) -> dict[str, Any] | None:
        return self.raw["uvm"]["commands"].get(name)

    def status(self, name: str) -> int:
        return self.status_by_name[name]

    def status_name(self, value: int) -> str:
        return self.status_by_value.get(value, f"0x{value:08x}")

    def control_name(self, value: int) -> str:
        c = self.controls.get(value)
        names = c.get("names") if c else None
        return names[0] if names else f"0x{value:08x}"

    def class_name(self, value: int) -> str:
        c = self.classes.get(value)
        return c["names"][0] if c and c.get("names") else f"0x{value:x}"


def _index(abi: Abi) -> Abi:
    raw = abi.raw
    for name, c in raw["frontend"]["commands"].items():
        abi.escapes[int(c["nr"])] = Escape(
            name=name, nr=int(c["nr"]), rm=False, handled=True, params_type=c.get("params_type"),
            params_size=c.get("params_size"), size_check=c.get("size_check", "exact"),
            device=c.get("device", "any"), elem_size=c.get("elem_size"))
    for name, c in raw["rm_escapes"]["commands"].items():
        check = str(c.get("size_check") or "none")
        abi.escapes[int(c["nr"])] = Escape(
            name=name, nr=int(c["nr"]), rm=True, handled=bool(c.get("handled")),
            params_type=c.get("params_type"), params_size=c.get("params_size"),
            size_check="exact" if check.startswith("exact") else ("none" if check.startswith("none") else check),
            device=str(c.get("device", "any")), params_type_alt=c.get("params_type_alt"),
            params_size_alt=c.get("params_size_alt"), requires_admin=bool(c.get("requires_admin")))
    for c in raw["uvm"]["commands"].values():
        abi.uvm[int(c["value"])] = c
    for c in raw["controls"]["by_value"].values():
        abi.controls[int(c["value"])] = c
        for n in c.get("names") or ():
            abi.control_by_name[n] = int(c["value"])
    for c in raw["classes"]["by_value"].values():
        abi.classes[int(c["value"])] = c
        for n in c.get("names") or ():
            abi.class_by_name[n] = int(c["value"])
    for n, s in raw["status_codes"].items():
        abi.status_by_name[n] = int(s["value"])
        abi.status_by_value.setdefault(int(s["value"]), n)
    return abi


@functools.lru_cache(maxsize=8)
def _load_indexed(path: str, version: str, table_version: str, match: str) -> Abi:
    return _index(Abi(version=version, table_version=table_version, match=match, raw=_load_json(path)))


def load_abi(version: str | None, *, accept_branch: bool = True, directory: Path | None = None) -> Abi:
    """The tables for driver ``version`` (see the module docstring for the rule)."""
    if not version or not _VERSION_STR_RX.match(version):
        raise UnknownDriverVersion(version, f"no NVIDIA driver version could be read ({version!r})")
    d = directory or data_dir()
    have = available_versions(d)
    if version in have:
        return _load_indexed(str(d / f"{version}.json"), version, version, "exact")
    branch = [v for v in have if v.split(".")[0] == version.split(".")[0]]
    if branch and accept_branch:
        # The newest table of the branch is the closest description of a later point release.
        best = branch[-1]
        return _load_indexed(str(d / f"{best}.json"), version, best, "branch")
    why = (f"driver {version} has no ABI table" + (f" (branch tables: {', '.join(branch)}; branch match not allowed)"
                                                   if branch else f" (tables: {', '.join(have) or 'none'})"))
    raise UnknownDriverVersion(version, why)
