"""Capabilities: typed, unforgeable, derivable, revocable and audited authority over the
translator's kernel objects. Handlers ask the sandbox's CSpace (authorize_*) and pass the
returned Capability to the vfs/net/device operation it authorises."""
from .audit import AuditLog, VerifyResult, show, verify
from .cspace import CSpace, Limits
from .model import Capability, CapabilityDenied, CapabilityError, NoSuchSlot
from .objects import GUEST_NS, DeviceClass, FsSubtree, NetEndpoint, SpawnRight, TtyRight, within
from .policy import (Policy, PolicyError, PolicyInvalid, check_policy, default_policy, load_policy,
                     parse_policy)
from .rights import Rights, format_rights, parse_rights

__all__ = [
    "AuditLog", "VerifyResult", "show", "verify", "CSpace", "Limits", "Capability", "CapabilityDenied",
    "CapabilityError", "NoSuchSlot", "GUEST_NS", "DeviceClass", "FsSubtree", "NetEndpoint", "SpawnRight",
    "TtyRight", "within", "Policy", "PolicyError", "PolicyInvalid", "check_policy", "default_policy",
    "load_policy", "parse_policy", "Rights", "format_rights", "parse_rights",
]
