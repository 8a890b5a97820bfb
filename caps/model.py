"""Capabilities: unforgeable references to a kernel object with rights, linked into a
derivation tree so that revoking one revokes everything derived from it.

Only a CSpace mints, derives or grants capabilities (it passes the module-private ``_MINT``
token); there is no public constructor path, no copy and no pickle. Revocation is propagated
eagerly down the tree (O(descendants)), so ``valid`` is a single attribute read on the hot path.
"""
from __future__ import annotations

import errno as _errno
import itertools
import weakref
from typing import TYPE_CHECKING, Iterator

from .objects import KernelObject
from .rights import Rights, format_rights

if TYPE_CHECKING:
    from .cspace import CSpace

_MINT = object()          # the only key to Capability.__init__; never exported
_ids = itertools.count(1)  # ids are unique per process, so audit records can name a capability


class CapabilityError(Exception):
    """Misuse of the capability API (bad slot, wrong kind of object...)."""


class NoSuchSlot(CapabilityError, LookupError):
    pass


class CapabilityDenied(CapabilityError, PermissionError):
    """An operation the caller holds no capability for. ``errno`` is what Linux would return;
    being an OSError, it reaches the dispatcher's ``except OSError`` as ``-errno`` unchanged."""

    def __init__(self, errno: int, reason: str) -> None:
        PermissionError.__init__(self, errno, reason)
        self.reason = reason

    def __str__(self) -> str:
        code = self.errno or 0
        return f"[{_errno.errorcode.get(code, code)}] {self.reason}"


class Capability:
    __slots__ = ("obj", "rights", "id", "parent", "_bits", "_revoked", "_children", "_holder", "_slot",
                 "__weakref__")

    obj: KernelObject
    rights: Rights
    id: int
    parent: "Capability | None"
    _bits: int
    _revoked: bool
    _children: "weakref.WeakSet[Capability]"
    _holder: "CSpace | None"
    _slot: int

    def __init__(self, token: object, obj: KernelObject, rights: Rights, parent: "Capability | None") -> None:
        if token is not _MINT:
            raise TypeError("capabilities are created by a CSpace (insert/derive/grant), not constructed")
        s = object.__setattr__
        s(self, "obj", obj)
        s(self, "rights", rights)
        s(self, "id", next(_ids))
        s(self, "parent", parent)
        s(self, "_bits", rights.value)           # int: Flag arithmetic is slow on the hot path
        s(self, "_revoked", False)
        # Weak: a child nobody holds or uses any more vanishes by itself, while one that an open
        # file still references stays reachable, so revoking an ancestor still reaches it.
        s(self, "_children", weakref.WeakSet())
        s(self, "_holder", None)                # the CSpace holding it, or None (deleted)
        s(self, "_slot", -1)
        if parent is not None:
            parent._children.add(self)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("capabilities are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("capabilities are immutable")

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("capabilities cannot be copied or pickled")

    def __copy__(self) -> "Capability":
        raise TypeError("capabilities cannot be copied")

    def __deepcopy__(self, memo: object) -> "Capability":
        raise TypeError("capabilities cannot be copied")

    @property
    def valid(self) -> bool:
        """False once this capability or any ancestor has been revoked. Operations that keep a
        capability (an open file description) re-check this before acting."""
        return not self._revoked

    @property
    def holder(self) -> "CSpace | None":
        return self._holder

    def has(self, rights: Rights) -> bool:
        return not self._revoked and (self._bits & rights.value) == rights.value

    def descendants(self) -> Iterator["Capability"]:
        """This capability's strict descendants, depth first."""
        stack = list(self._children)
        while stack:
            c = stack.pop()
            yield c
            stack.extend(c._children)

    def __repr__(self) -> str:
        state = "" if not self._revoked else " revoked"
        return f"<Capability #{self.id} {type(self.obj).__name__} {self.obj} {format_rights(self.rights) or '-'}{state}>"


# Internal mutation helpers for cspace.py (the only other module that changes capability state).

def _set(cap: Capability, name: str, value: object) -> None:
    object.__setattr__(cap, name, value)


def _mint(obj: KernelObject, rights: Rights, parent: Capability | None) -> Capability:
    return Capability(_MINT, obj, rights, parent)

