"""CSpace: a sandbox's capabilities, by slot, and the authorisation queries that handlers call
at the kernel-object boundary.

Semantics of the queries: a request is allowed when ONE held capability names an object that
covers the request and carries every requested right (the operation then takes that
capability). Holding more capabilities never reduces access; the policy's "most specific rule
wins" is expressed with holes in the wider subtree (see objects.FsSubtree), not by shadowing.

Speed: authorize_path is on the path of every translated open. The filesystem capabilities are
compiled per namespace into a table keyed by "boundary" paths (every capability path and hole):
the decision for any path equals the decision for its longest boundary prefix (component-wise).
One regex, alternatives longest first, finds that prefix AND checks that the path is normalised
in a single C-level fullmatch. Results are cached per path; any change to the CSpace (insert,
derive, a revoke anywhere that reaches a capability held here...) drops index and cache.

Not thread-safe: the supervisor is one event loop.
"""
from __future__ import annotations

import errno as E
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from . import model
from .model import Capability, CapabilityDenied, NoSuchSlot
from .objects import (GUEST_NS, DeviceClass, FsSubtree, IPAddress, KernelObject, NetEndpoint,
                      SpawnRight, TtyRight, check_path, normalise_ip, path_under)
from .rights import Rights, format_rights

if TYPE_CHECKING:
    from .audit import AuditLog

_Entry = tuple[tuple[int, Capability], ...]   # (rights bits, capability), most specific first
_CACHE_MAX = 8192


@dataclass(frozen=True)
class Limits:
    """Resource limits from the policy; enforced by the handlers that count the resources."""

    processes: int | None = None
    open_files: int | None = None


class CSpace:
    def __init__(self, name: str = "sandbox", *, audit: "AuditLog | None" = None,
                 limits: Limits | None = None) -> None:
        self.name = name
        self.audit = audit
        self.limits = limits or Limits()
        self._slots: dict[int, Capability] = {}
        self._next_slot = 0
        self._dirty = True
        # Compiled indexes (rebuilt lazily after a change).
        self._fs: dict[str, _FsIndex] = {}
        self._fs_guest = _FsIndex([])
        self._cache: dict[bytes, _Entry] = {}
        self._net: list[tuple[NetEndpoint, int, Capability]] = []
        self._dev_exact: dict[bytes, _Entry] = {}
        self._dev_glob: list[tuple[re.Pattern[bytes], int, Capability]] = []
        self._spawn: list[Capability] = []
        self._tty: list[Capability] = []
        self._bounds: dict[str, tuple[bytes, ...]] = {}
        # Who is asking (a guest pid, say), named in refusal records; set by the translator.
        self.actor: Callable[[], object] | None = None
        # Bumped on every change of the held capabilities (for caches outside the CSpace).
        self.generation = 0

    # -- slots -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[tuple[int, Capability]]:
        return iter(sorted(self._slots.items()))

    def __repr__(self) -> str:
        return f"<CSpace {self.name!r} {len(self._slots)} capabilities>"

    def lookup(self, slot: int) -> Capability:
        try:
            return self._slots[slot]
        except KeyError:
            raise NoSuchSlot(f"{self.name}: slot {slot} is empty") from None

    def insert(self, obj: KernelObject, rights: Rights, *, source: str = "policy") -> int:
        """Mint a new root capability here (the policy loader and the lead's setup code use
        this; nothing a guest does reaches it)."""
        cap = model._mint(obj, rights, None)
        slot = self._place(cap)
        self._log("grant", cap, slot=slot, source=source)
        return slot

    def derive(self, slot: int, rights: Rights | None = None, obj: KernelObject | None = None) -> int:
        """A child of the capability in *slot*, kept here, with at most its rights and object.
        Deriving for oneself needs no GRANT right: it only narrows what is already held."""
        parent = self.lookup(slot)
        child = self._child(parent, rights, obj)
        new = self._place(child)
        self._log("derive", child, slot=new, parent=parent.id)
        return new

    def grant(self, slot: int, other: "CSpace", rights: Rights | None = None,
              obj: KernelObject | None = None) -> int:
        """Copy (a child in the derivation tree, possibly narrowed) into *other*. Needs GRANT."""
        parent = self.lookup(slot)
        self._need_grant(parent, "grant")
        child = self._child(parent, rights, obj)
        new = other._place(child)
        self._log("grant", child, slot=new, parent=parent.id, to=other.name)
        return new

    def transfer(self, slot: int, other: "CSpace") -> int:
        """Move the capability itself (same node, same descendants) to *other*. Needs GRANT:
        handing authority to another principal is delegation whether copied or moved."""
        cap = self.lookup(slot)
        self._need_grant(cap, "transfer")
        self._remove(slot)
        new = other._place(cap)
        self._log("transfer", cap, slot=new, to=other.name)
        return new

    def revoke(self, slot: int, *, include_self: bool = True) -> int:
        """Revoke the capability in *slot* (unless include_self=False) and everything derived
        from it, in every CSpace that holds them; returns how many were revoked. Takes effect
        at once: they leave their slots and ``valid`` turns False for anyone still holding one."""
        cap = self.lookup(slot)
        victims = list(cap.descendants())
        if include_self:
            victims.append(cap)
        for c in victims:
            model._set(c, "_revoked", True)
            holder = c._holder
            if holder is not None:
                holder._remove(c._slot)
        # Cut the revoked subtree out of the tree: nothing can be derived from it any more.
        if include_self:
            if cap.parent is not None:
                cap.parent._children.discard(cap)
        else:
            cap._children.clear()
        self._log("revoke", cap, slot=slot, count=len(victims), include_self=include_self)
        return len(victims)

    def delete(self, slot: int) -> None:
        """Drop the capability from this CSpace. It is not revoked: what was derived from it,
        and anything that still uses it (an open file), keep working until a revoke."""
        self._remove(slot)

    def _place(self, cap: Capability) -> int:
        if cap._revoked:
            raise CapabilityDenied(E.EPERM, f"capability #{cap.id} has been revoked")
        slot = self._next_slot
        self._next_slot += 1
        self._slots[slot] = cap
        model._set(cap, "_holder", self)
        model._set(cap, "_slot", slot)
        self._dirty = True
        self.generation += 1
        return slot

    def _remove(self, slot: int) -> Capability:
        cap = self.lookup(slot)
        del self._slots[slot]
        model._set(cap, "_holder", None)
        model._set(cap, "_slot", -1)
        self._dirty = True
        self.generation += 1
        return cap

    def _child(self, parent: Capability, rights: Rights | None, obj: KernelObject | None) -> Capability:
        if parent._revoked:
            raise CapabilityDenied(E.EPERM, f"capability #{parent.id} has been revoked")
        rights = parent.rights if rights is None else rights
        obj = parent.obj if obj is None else obj
        if rights & ~parent.rights:
            raise CapabilityDenied(E.EPERM, f"cannot widen rights: #{parent.id} has "
                                   f"{format_rights(parent.rights) or '-'}, asked {format_rights(rights)}")
        if not obj.within(parent.obj):
            raise CapabilityDenied(E.EPERM, f"cannot widen object: {obj} is not within {parent.obj}")
        return model._mint(obj, rights, parent)

    def _need_grant(self, cap: Capability, what: str) -> None:
        if not cap._bits & Rights.GRANT.value:
            self._log("deny", cap, op=what, reason="no GRANT right", errno="EPERM")
            raise CapabilityDenied(E.EPERM, f"{what}: capability #{cap.id} lacks the GRANT right")

    # -- authorisation queries (the hot path) ------------------------------------------------

    def authorize_path(self, path: bytes, rights: Rights, ns: str = GUEST_NS, op: str = "") -> Capability:
        """The capability that lets the caller use *path* with *rights*, else CapabilityDenied
        (EACCES). *path* is a resolved absolute guest path (ValueError if not normalised).

        What to ask for: READ/WRITE/EXEC on the file opened or executed; EXEC on a directory to
        search it; CREATE on the path of a new name; DELETE on the path of a removed name;
        rename = DELETE on the old path + CREATE on the new one."""
        if self._dirty:
            self._rebuild()
        want = rights._value_
        if ns is GUEST_NS:
            entry = self._cache.get(path)
            if entry is None:
                entry = self._fs_guest.entry(path)
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[path] = entry
        else:
            entry = self._fs.get(ns, _EMPTY_FS).entry(path)
        for bits, cap in entry:
            if bits & want == want:
                return cap
        if op:
            raise self._deny(E.EACCES, "path", entry, rights, path=path, op=op)
        raise self._deny(E.EACCES, "path", entry, rights, path=path)

    def allows_path(self, path: bytes, rights: Rights, ns: str = GUEST_NS) -> Capability | None:
        """authorize_path without the refusal: None instead of CapabilityDenied, no audit record
        (for re-checks the translator makes on its own, such as after a revoke)."""
        if self._dirty:
            self._rebuild()
        want = rights._value_
        for bits, cap in (self._fs_guest if ns is GUEST_NS else self._fs.get(ns, _EMPTY_FS)).entry(path):
            if bits & want == want:
                return cap
        return None

    def rights_at(self, path: bytes, ns: str = GUEST_NS) -> Rights:
        """The union of the rights every capability covering *path* grants."""
        if self._dirty:
            self._rebuild()
        bits = 0
        for b, _ in (self._fs_guest if ns is GUEST_NS else self._fs.get(ns, _EMPTY_FS)).entry(path):
            bits |= b
        return Rights(bits)

    def boundary_inside(self, path: bytes, ns: str = GUEST_NS) -> bool:
        """Whether a capability's subtree or hole starts strictly inside *path*: moving the
        directory at *path* would carry that boundary's contents to where other rules apply."""
        if self._dirty:
            self._rebuild()
        return any(b != path and path_under(b, path) for b in self._bounds.get(ns, ()))

    def refuse_path(self, path: bytes, op: str, reason: str) -> CapabilityDenied:
        """A refusal the caller decided on a rule beyond one path's rights (a move that would
        carry a capability boundary along, say): recorded like any other; raise the result."""
        details: dict[str, object] = {"path": path, "op": op}
        if self.actor is not None:
            details["pid"] = self.actor()
        text = f"{op} {path.decode('utf-8', 'backslashreplace')}: {reason}"
        if self.audit is not None:
            self.audit.record("deny", cspace=self.name, kind="path", rights="-", errno="EACCES",
                              reason=text, **details)
        return CapabilityDenied(E.EACCES, text)

    def fs_slots(self, path: bytes, ns: str = GUEST_NS) -> list[int]:
        """Slots of the filesystem capabilities whose subtree is exactly *path*."""
        return [slot for slot, c in sorted(self._slots.items())
                if isinstance(c.obj, FsSubtree) and c.obj.mount_id == ns and c.obj.path == path]

    def authorize_exec(self, path: bytes) -> Capability:
        """authorize_path(path, EXEC) plus an ``exec`` audit record (exec is rare and worth one)."""
        cap = self.authorize_path(path, Rights.EXEC, op="exec")
        if self.audit is not None:
            self.audit.record("exec", cspace=self.name, path=path, cap=cap.id)
        return cap

    def authorize_bind(self, proto: str, ip: "str | IPAddress", port: int) -> Capability:
        """Bind *proto* on ip:port (port as the stack will bind it). Denied: EACCES, as Linux
        says for a bind it does not permit."""
        return self._net_check("bind", Rights.BIND, E.EACCES, proto, ip, port)

    def authorize_listen(self, proto: str, ip: "str | IPAddress", port: int) -> Capability:
        return self._net_check("listen", Rights.LISTEN, E.EACCES, proto, ip, port)

    def authorize_connect(self, proto: str, ip: "str | IPAddress", port: int) -> Capability:
        """Connect (or sendto) to ip:port. Denied: EPERM, as a netfilter-rejected connect."""
        return self._net_check("connect", Rights.CONNECT, E.EPERM, proto, ip, port)

    def authorize_device(self, path: bytes, rights: Rights) -> Capability:
        """Open (READ/WRITE) or ioctl (IOCTL) the device node at guest *path*. A device node's
        open is decided by this check, not authorize_path. Denied: EACCES."""
        if self._dirty:
            self._rebuild()
        want = rights._value_
        entry = self._dev_exact.get(path, ())
        for bits, cap in entry:
            if bits & want == want:
                return cap
        for rx, bits, cap in self._dev_glob:
            if bits & want == want and rx.match(path):
                return cap
        raise self._deny(E.EACCES, "device", (), rights, path=path)

    def authorize_spawn(self) -> Capability:
        """Create a process. Holding a SpawnRight capability is the right (its rights bits only
        matter for GRANT). Denied: EPERM."""
        if self._dirty:
            self._rebuild()
        if self._spawn:
            return self._spawn[0]
        raise self._deny(E.EPERM, "spawn", (), Rights(0))

    def authorize_tty(self, rights: Rights) -> Capability:
        if self._dirty:
            self._rebuild()
        for cap in self._tty:
            if cap._bits & rights._value_ == rights._value_:
                return cap
        raise self._deny(E.EACCES, "tty", (), rights)

    def allows_net(self, op: str, proto: str, ip: "str | IPAddress", port: int) -> bool:
        """Whether a bind/listen/connect would pass, without recording anything (for sweeping
        what a revoke took away)."""
        if self._dirty:
            self._rebuild()
        right = {"bind": Rights.BIND, "listen": Rights.LISTEN, "connect": Rights.CONNECT}[op]
        addr = normalise_ip(ip)
        return any(bits & right._value_ == right._value_ and ep.matches(proto, addr, port)
                   for ep, bits, _ in self._net)

    def _net_check(self, op: str, right: Rights, err: int, proto: str, ip: "str | IPAddress",
                   port: int) -> Capability:
        if self._dirty:
            self._rebuild()
        addr = normalise_ip(ip)
        want = right._value_
        for ep, bits, cap in self._net:
            if bits & want == want and ep.matches(proto, addr, port):
                if self.audit is not None:
                    event = "connect-loopback" if op == "connect" and addr.is_loopback else op
                    if self.audit.enabled(event):  # (not at the normal level: a loopback connect)
                        self.audit.record(event, cspace=self.name, proto=proto, ip=str(addr), port=port, cap=cap.id)
                return cap
        raise self._deny(err, op, (), right, proto=proto, ip=str(addr), port=port)

    def _deny(self, err: int, kind: str, entry: _Entry, rights: Rights, **details: object) -> CapabilityDenied:
        need = format_rights(rights) or "-"
        what = details.get("path", f"{details.get('proto', '')}:{details.get('ip', '')}:{details.get('port', '')}")
        if isinstance(what, bytes):
            what = what.decode("utf-8", "backslashreplace")
        if entry:
            held = ",".join(f"#{c.id}:{format_rights(c.rights) or '-'}" for _, c in entry)
            reason = f"{kind} {what}: needs {need}, capabilities covering it grant {held}"
        elif kind == "spawn":
            reason = "spawn: no capability to create processes"
        else:
            reason = f"{kind} {what}: no capability covers it (needs {need})"
        if self.actor is not None:
            details.setdefault("pid", self.actor())
        if self.audit is not None:
            self.audit.record("deny", cspace=self.name, kind=kind, rights=need,
                              errno=E.errorcode.get(err, str(err)), reason=reason, **details)
        return CapabilityDenied(err, reason)

    def _log(self, event: str, cap: Capability, **details: object) -> None:
        if self.audit is not None:
            self.audit.record(event, cspace=self.name, cap=cap.id, kind=type(cap.obj).__name__,
                              obj=str(cap.obj), rights=format_rights(cap.rights), **details)

    # -- compiled indexes ---------------------------------------------------------------------

    def _rebuild(self) -> None:
        fs: dict[str, list[tuple[FsSubtree, Capability]]] = {}
        self._net, self._dev_exact, self._dev_glob, self._spawn, self._tty = [], {}, [], [], []
        for c in sorted(self._slots.values(), key=lambda c: c.id):
            o = c.obj
            if isinstance(o, FsSubtree):
                fs.setdefault(o.mount_id, []).append((o, c))
            elif isinstance(o, NetEndpoint):
                self._net.append((o, c._bits, c))
            elif isinstance(o, DeviceClass):
                if o.literal:
                    key = o.pattern.encode("latin-1")
                    self._dev_exact[key] = self._dev_exact.get(key, ()) + ((c._bits, c),)
                else:
                    self._dev_glob.append((o.regex(), c._bits, c))
            elif isinstance(o, SpawnRight):
                self._spawn.append(c)
            elif isinstance(o, TtyRight):
                self._tty.append(c)
        self._fs = {ns: _FsIndex(group) for ns, group in fs.items()}
        self._bounds = {ns: tuple({b for o, _ in group for b in (o.path, *o.excludes)}) for ns, group in fs.items()}
        self._fs_guest = self._fs.get(GUEST_NS, _EMPTY_FS)
        self._cache = {}
        self._dirty = False


class _FsIndex:
    """The filesystem capabilities of one namespace, compiled for lookup by path."""

    def __init__(self, caps: list[tuple[FsSubtree, Capability]]) -> None:
        caps = sorted(caps, key=lambda oc: (-len(oc[0].path), oc[1].id))  # most specific first
        bounds: set[bytes] = {b"/"}
        for o, _ in caps:
            bounds.add(o.path)
            bounds.update(o.excludes)
        # Group 1 is the boundary prefix; b"" stands for "/" (its remainder starts with "/"),
        # None for the path "/" itself. The remainder must be components that are neither
        # empty, "." nor "..", so a non-normalised path does not match at all.
        inner = sorted(bounds - {b"/"}, key=len, reverse=True)
        alts = b"|".join(re.escape(b) for b in inner)
        self._rx = re.compile(rb"(?=/)(" + alts + rb"|)(?:/(?!\.\.?(?:/|\Z))[^/\x00]++)*+|/")
        self._table: dict[bytes | None, _Entry] = {
            b: tuple((c._bits, c) for o, c in caps if o.covers(b)) for b in bounds}
        self._table[b""] = self._table[None] = self._table[b"/"]

    def entry(self, path: bytes) -> _Entry:
        m = self._rx.fullmatch(path)
        if m is None:
            check_path(path)  # raises the precise error
            raise AssertionError(f"path index rejected a normalised path: {path!r}")
        return self._table[m[1]]


_EMPTY_FS = _FsIndex([])
