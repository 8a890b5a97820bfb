"""The derivation tree (derive, grant, transfer, revoke, delete), unforgeability, and the
authorisation queries handlers call."""
from __future__ import annotations

import copy
import errno
import gc
import pickle

import pytest

from caps.cspace import CSpace
from caps.model import Capability, CapabilityDenied, NoSuchSlot
from caps.objects import DeviceClass, FsSubtree, NetEndpoint, SpawnRight, TtyRight
from caps.rights import Rights

R, W, X, C, D, G = Rights.READ, Rights.WRITE, Rights.EXEC, Rights.CREATE, Rights.DELETE, Rights.GRANT
RWX = R | W | X


def fs(path: bytes, *holes: bytes) -> FsSubtree:
    return FsSubtree("guest", path, frozenset(holes))


# -- unforgeability ----------------------------------------------------------------------------

def test_capability_cannot_be_constructed() -> None:
    with pytest.raises(TypeError):
        Capability(object(), fs(b"/"), R, None)
    with pytest.raises(TypeError):
        Capability(None, fs(b"/"), R, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Capability()  # type: ignore[call-arg]


def test_capability_is_immutable_and_uncopyable() -> None:
    cs = CSpace()
    cap = cs.lookup(cs.insert(fs(b"/data"), R))
    with pytest.raises(AttributeError):
        cap.rights = Rights.WRITE  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cap._bits = 0xFFFF  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cap.extra = 1  # type: ignore[attr-defined]
    for dup in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            dup(cap)


def test_an_unminted_object_authorises_nothing() -> None:
    """A bare object made with __new__ is not in any CSpace, so no query can return it."""
    fake = Capability.__new__(Capability)
    cs = CSpace()
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/x", R)
    assert all(c is not fake for _, c in cs)


# -- slots and derivation ----------------------------------------------------------------------

def test_lookup_empty_slot() -> None:
    with pytest.raises(NoSuchSlot):
        CSpace().lookup(0)


def test_derive_narrows_and_needs_no_grant() -> None:
    cs = CSpace()
    root = cs.insert(fs(b"/data"), RWX)
    child = cs.derive(root, rights=R, obj=fs(b"/data/pub"))
    cap = cs.lookup(child)
    assert cap.rights == R and cap.obj == fs(b"/data/pub") and cap.parent is cs.lookup(root)
    same = cs.lookup(cs.derive(root))
    assert same.rights == RWX and same.obj == fs(b"/data") and same.id != cs.lookup(root).id


@pytest.mark.parametrize("rights,obj", [
    (RWX | D, None), (G, None), (None, fs(b"/")), (None, fs(b"/database")), (None, fs(b"/other")),
    (None, DeviceClass("/dev/null")), (None, FsSubtree("elsewhere", b"/data")),
])
def test_derive_cannot_widen(rights: Rights | None, obj: FsSubtree | None) -> None:
    cs = CSpace()
    root = cs.insert(fs(b"/data"), RWX)
    with pytest.raises(CapabilityDenied) as e:
        cs.derive(root, rights=rights, obj=obj)
    assert e.value.errno == errno.EPERM
    assert len(cs) == 1


def test_derive_cannot_fill_a_hole() -> None:
    cs = CSpace()
    root = cs.insert(fs(b"/", b"/data"), RWX)
    for obj in (fs(b"/"), fs(b"/data"), fs(b"/data/x")):
        with pytest.raises(CapabilityDenied):
            cs.derive(root, obj=obj)
    cs.derive(root, obj=fs(b"/etc"))


def test_grant_requires_grant_right_and_makes_a_child() -> None:
    a, b = CSpace("a"), CSpace("b")
    plain = a.insert(fs(b"/data"), RWX)
    with pytest.raises(CapabilityDenied):
        a.grant(plain, b)
    with pytest.raises(CapabilityDenied):
        a.transfer(plain, b)
    src = a.insert(fs(b"/data"), RWX | G)
    slot = a.grant(src, b, rights=R)
    got = b.lookup(slot)
    assert got.parent is a.lookup(src) and got.rights == R and got.holder is b
    assert a.lookup(src).holder is a  # a copy: the source keeps it
    with pytest.raises(CapabilityDenied):
        b.grant(slot, a)  # the child was granted without GRANT
    with pytest.raises(CapabilityDenied):
        a.grant(src, b, rights=RWX | D)


def test_transfer_moves_the_same_node() -> None:
    a, b = CSpace("a"), CSpace("b")
    src = a.insert(fs(b"/data"), R | G)
    cap = a.lookup(src)
    kid = a.lookup(a.derive(src, rights=R))
    slot = a.transfer(src, b)
    assert b.lookup(slot) is cap and cap.holder is b
    with pytest.raises(NoSuchSlot):
        a.lookup(src)
    a.authorize_path(b"/data/f", R)  # via the derived capability a still holds
    b.authorize_path(b"/data/f", R)
    b.revoke(slot)  # the tree moved with it: revoking in b reaches a's child
    assert not kid.valid
    with pytest.raises(CapabilityDenied):
        a.authorize_path(b"/data/f", R)


def test_revoke_parent_revokes_all_descendants_across_cspaces() -> None:
    a, b, c = CSpace("a"), CSpace("b"), CSpace("c")
    root = a.insert(fs(b"/"), RWX | G)
    other = a.insert(fs(b"/tmp"), RWX)
    d1 = a.derive(root, rights=R | X | G, obj=fs(b"/usr"))
    g1 = a.grant(d1, b, rights=R | G)
    g2 = b.grant(g1, c, rights=R, obj=fs(b"/usr/lib"))
    g3 = a.grant(root, c, obj=fs(b"/srv"))
    caps = [a.lookup(s) for s in (root, d1)] + [b.lookup(g1), c.lookup(g2), c.lookup(g3)]
    c.authorize_path(b"/usr/lib/libc.so", R)
    assert a.revoke(root) == 5
    assert not any(cap.valid for cap in caps)
    assert a.lookup(other).valid
    assert [s for s, _ in a] == [other] and len(b) == 0 and len(c) == 0
    for cs, path in ((a, b"/usr/bin/ls"), (b, b"/usr/bin/ls"), (c, b"/usr/lib/libc.so"), (c, b"/srv/x")):
        with pytest.raises(CapabilityDenied):
            cs.authorize_path(path, R)
    a.authorize_path(b"/tmp/x", W)


def test_revoke_middle_leaves_ancestors() -> None:
    a, b = CSpace("a"), CSpace("b")
    root = a.insert(fs(b"/data"), RWX | G)
    mid = a.grant(root, b, rights=R | G)
    leaf = b.derive(mid, obj=fs(b"/data/x"))
    leaf_cap = b.lookup(leaf)
    assert b.revoke(mid) == 2
    assert a.lookup(root).valid and not leaf_cap.valid
    a.authorize_path(b"/data/x", W)


def test_revoke_children_only() -> None:
    a, b = CSpace("a"), CSpace("b")
    root = a.insert(fs(b"/data"), RWX | G)
    kid = b.lookup(a.grant(root, b))
    assert a.revoke(root, include_self=False) == 1
    assert a.lookup(root).valid and not kid.valid and len(b) == 0
    # Nothing derived before the revoke survives; new derivations work.
    b.lookup(a.grant(root, b))


def test_revoked_capability_leaves_its_slot() -> None:
    a = CSpace("a")
    root = a.insert(fs(b"/data"), RWX | G)
    kid = a.derive(root)
    kid_cap = a.lookup(kid)
    a.revoke(root)
    assert not kid_cap.valid and not kid_cap.has(R)
    with pytest.raises(NoSuchSlot):
        a.derive(kid)


def test_delete_does_not_revoke_what_was_derived() -> None:
    a, b = CSpace("a"), CSpace("b")
    root = a.insert(fs(b"/data"), RWX | G)
    mid = a.derive(root)
    mid_cap = a.lookup(mid)
    kid = b.lookup(a.grant(mid, b))
    a.delete(mid)
    assert mid_cap.valid and mid_cap.holder is None and kid.valid
    a.revoke(root)  # still reaches the deleted node's descendants, and the deleted node itself
    assert not kid.valid and not mid_cap.valid


def test_deleted_capability_still_in_use_is_still_revocable() -> None:
    """An open file keeps the capability that authorised it; a revoke must still reach it."""
    a = CSpace()
    root = a.insert(fs(b"/data"), RWX)
    slot = a.derive(root, rights=R)
    kept = a.lookup(slot)
    a.delete(slot)
    gc.collect()
    a.revoke(root)
    assert not kept.valid


def test_unreferenced_deleted_children_are_collected() -> None:
    a = CSpace()
    root = a.insert(fs(b"/data"), RWX)
    for _ in range(100):
        a.delete(a.derive(root))
    gc.collect()
    assert len(a.lookup(root)._children) == 0


# -- authorisation queries ---------------------------------------------------------------------

def test_authorize_path_component_boundaries() -> None:
    cs = CSpace()
    cs.insert(fs(b"/data"), R)
    cs.authorize_path(b"/data", R)
    cs.authorize_path(b"/data/x/y", R)
    for path in (b"/database", b"/database/x", b"/dat", b"/", b"/etc/passwd"):
        with pytest.raises(CapabilityDenied) as e:
            cs.authorize_path(path, R)
        assert e.value.errno == errno.EACCES
        assert isinstance(e.value, OSError)  # the dispatcher turns it into -EACCES as it is


def test_authorize_path_most_specific_with_holes() -> None:
    cs = CSpace()
    cs.insert(fs(b"/", b"/data"), RWX | C | D)
    data = cs.insert(fs(b"/data", b"/data/pub"), R)
    pub = cs.insert(fs(b"/data/pub"), R | W)
    assert cs.authorize_path(b"/etc/x", W).obj == fs(b"/", b"/data")
    assert cs.authorize_path(b"/database", W).obj == fs(b"/", b"/data")
    assert cs.authorize_path(b"/data/x", R) is cs.lookup(data)
    assert cs.authorize_path(b"/data/pub/y", W) is cs.lookup(pub)
    with pytest.raises(CapabilityDenied, match="needs w"):
        cs.authorize_path(b"/data/x", W)
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/data/pub/y", X)
    # Revoking the narrow capability takes /data away; it does not expose the wider rule.
    cs.revoke(data)
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/data/x", R)
    cs.authorize_path(b"/data/pub/y", R)


def test_authorize_path_union_of_capabilities() -> None:
    """A later, wider capability adds access; one capability must carry all requested rights."""
    cs = CSpace()
    cs.insert(fs(b"/data"), R)
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/data/x", W)
    w = cs.insert(fs(b"/"), W)
    assert cs.authorize_path(b"/data/x", W) is cs.lookup(w)
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/data/x", R | W)  # no single capability has both


@pytest.mark.parametrize("path", [b"/data/../etc", b"/data/./x", b"/data/", b"//data", b"data", b"",
                                  b"/data/x/..", b"/a\0"])
def test_authorize_path_rejects_unnormalised(path: bytes) -> None:
    cs = CSpace()
    cs.insert(fs(b"/"), R)
    with pytest.raises(ValueError):
        cs.authorize_path(path, R)


def test_authorize_path_cache_sees_changes() -> None:
    cs = CSpace()
    s = cs.insert(fs(b"/data"), R)
    cs.authorize_path(b"/data/x", R)
    cs.authorize_path(b"/data/x", R)  # cached
    other = CSpace("other")
    cs.revoke(s)
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/data/x", R)
    g = cs.insert(fs(b"/data"), R | G)
    got = other.lookup(cs.grant(g, other))
    assert other.authorize_path(b"/data/x", R) is got
    cs.revoke(g)  # revoked from cs: other's cached decision must go too
    with pytest.raises(CapabilityDenied):
        other.authorize_path(b"/data/x", R)


def test_authorize_path_other_namespace() -> None:
    cs = CSpace()
    cs.insert(FsSubtree("img2", b"/data"), R)
    cs.authorize_path(b"/data/x", R, ns="img2")
    with pytest.raises(CapabilityDenied):
        cs.authorize_path(b"/data/x", R)


def test_authorize_exec() -> None:
    cs = CSpace()
    cs.insert(fs(b"/bin"), R | X)
    cs.authorize_exec(b"/bin/sh")
    with pytest.raises(CapabilityDenied):
        cs.authorize_exec(b"/tmp/evil")


def test_authorize_bind_connect_listen() -> None:
    cs = CSpace()
    cs.insert(NetEndpoint.parse("tcp:0.0.0.0:8080"), Rights.BIND | Rights.LISTEN)
    cs.insert(NetEndpoint.parse("tcp:10.0.2.0/24:*"), Rights.CONNECT)
    cs.authorize_bind("tcp", "0.0.0.0", 8080)
    cs.authorize_bind("tcp", "127.0.0.1", 8080)
    cs.authorize_listen("tcp", "0.0.0.0", 8080)
    cs.authorize_connect("tcp", "10.0.2.2", 443)
    cs.authorize_connect("tcp", "::ffff:10.0.2.2", 443)  # v4-mapped counts as v4
    for call, args, err in [(cs.authorize_bind, ("tcp", "0.0.0.0", 80), errno.EACCES),
                            (cs.authorize_bind, ("udp", "0.0.0.0", 8080), errno.EACCES),
                            (cs.authorize_bind, ("tcp", "::", 8080), errno.EACCES),
                            (cs.authorize_connect, ("tcp", "10.0.3.1", 443), errno.EPERM),
                            (cs.authorize_connect, ("tcp", "::ffff:10.0.3.1", 443), errno.EPERM),
                            (cs.authorize_connect, ("tcp", "127.0.0.1", 8080), errno.EPERM)]:
        with pytest.raises(CapabilityDenied) as e:
            call(*args)
        assert e.value.errno == err


def test_authorize_device() -> None:
    cs = CSpace()
    cs.insert(DeviceClass("/dev/null"), R | W)
    cs.insert(DeviceClass("/dev/nvidia*"), R | W | Rights.IOCTL)
    cs.authorize_device(b"/dev/null", W)
    cs.authorize_device(b"/dev/nvidia0", Rights.IOCTL)
    for path, rights in ((b"/dev/null", Rights.IOCTL), (b"/dev/sda", R), (b"/dev/nul", R)):
        with pytest.raises(CapabilityDenied) as e:
            cs.authorize_device(path, rights)
        assert e.value.errno == errno.EACCES


def test_authorize_spawn_and_tty() -> None:
    cs = CSpace()
    with pytest.raises(CapabilityDenied) as e:
        cs.authorize_spawn()
    assert e.value.errno == errno.EPERM
    with pytest.raises(CapabilityDenied):
        cs.authorize_tty(R)
    s = cs.insert(SpawnRight(), Rights(0))
    cs.insert(TtyRight(), R | W)
    assert cs.authorize_spawn() is cs.lookup(s)
    cs.authorize_tty(R | W)
    with pytest.raises(CapabilityDenied):
        cs.authorize_tty(Rights.IOCTL)
    cs.revoke(s)
    with pytest.raises(CapabilityDenied):
        cs.authorize_spawn()
