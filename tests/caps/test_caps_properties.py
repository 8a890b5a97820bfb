"""Property tests: random derivation trees never widen, and revocation removes exactly the
revoked subtree, wherever its nodes went."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from caps.cspace import CSpace
from caps.model import Capability, CapabilityDenied
from caps.objects import FsSubtree, NetEndpoint, path_under
from caps.rights import ALL, Rights

# A small path universe, so that every generated path is both a candidate and a witness.
COMPONENTS = [b"a", b"b", b"ab"]
UNIVERSE = [b"/"] + [b"/" + b"/".join(p) for n in (1, 2, 3) for p in itertools.product(COMPONENTS, repeat=n)]

paths = st.sampled_from(UNIVERSE)
rights = st.builds(Rights, st.integers(0, ALL.value))


@st.composite
def subtrees(draw: st.DrawFn) -> FsSubtree:
    root = draw(paths)
    inside = [p for p in UNIVERSE if p != root and path_under(p, root)]
    holes = draw(st.sets(st.sampled_from(inside), max_size=3)) if inside else set()
    return FsSubtree("guest", root, frozenset(holes))


def covered(obj: FsSubtree) -> set[bytes]:
    return {p for p in UNIVERSE if obj.covers(p)}


@given(subtrees(), subtrees())
def test_within_is_subset_of_covered_paths(child: FsSubtree, parent: FsSubtree) -> None:
    assert child.within(parent) == (covered(child) <= covered(parent))


@given(st.lists(st.tuples(st.integers(0, 1000), rights, subtrees(), st.sampled_from(["derive", "grant"])),
                max_size=40), rights)
@settings(max_examples=200)
def test_derivations_never_widen(steps: list[tuple[int, Rights, FsSubtree, str]], root_rights: Rights) -> None:
    spaces = [CSpace("a"), CSpace("b"), CSpace("c")]
    spaces[0].insert(FsSubtree("guest", b"/"), root_rights)
    for i, (pick, want, obj, how) in enumerate(steps):
        held = [(cs, slot, cap) for cs in spaces for slot, cap in cs]
        cs, slot, parent = held[pick % len(held)]
        legal = not (want & ~parent.rights) and obj.within(parent.obj)
        if how == "grant":
            legal = legal and bool(parent.rights & Rights.GRANT)
        try:
            if how == "derive":
                new = cs.lookup(cs.derive(slot, rights=want, obj=obj))
            else:
                target = spaces[i % 3]
                new = target.lookup(cs.grant(slot, target, rights=want, obj=obj))
        except CapabilityDenied:
            assert not legal
            continue
        assert legal
        assert new.parent is parent and new.rights == want
        # Transitively, nothing below the root has more than the root.
        node: Capability | None = new
        while node is not None and node.parent is not None:
            assert not (node.rights & ~node.parent.rights)
            assert covered(node.obj) <= covered(node.parent.obj)  # type: ignore[arg-type]
            node = node.parent


@given(st.data())
@settings(max_examples=200)
def test_revoke_removes_exactly_the_subtree(data: st.DataObject) -> None:
    spaces = [CSpace(f"s{i}") for i in range(3)]
    spaces[0].insert(FsSubtree("guest", b"/"), ALL)
    everyone: list[Capability] = [spaces[0].lookup(0)]
    for _ in range(data.draw(st.integers(1, 25))):
        held = [(cs, slot) for cs in spaces for slot, _ in cs]
        cs, slot = data.draw(st.sampled_from(held))
        op = data.draw(st.sampled_from(["derive", "grant", "transfer"]))
        target = data.draw(st.sampled_from(spaces))
        if op == "derive":
            everyone.append(cs.lookup(cs.derive(slot)))
        elif op == "grant":
            everyone.append(target.lookup(cs.grant(slot, target)))
        else:
            cs.transfer(slot, target)
    held = [(cs, slot, cap) for cs in spaces for slot, cap in cs]
    cs, slot, victim = data.draw(st.sampled_from(held))

    def in_subtree(c: Capability) -> bool:
        node: Capability | None = c
        while node is not None:
            if node is victim:
                return True
            node = node.parent
        return False

    expected = {c for c in everyone if in_subtree(c)}
    assert cs.revoke(slot) == len(expected)
    for c in everyone:
        assert c.valid == (c not in expected)
        assert (c.holder is None) == (c in expected)
    remaining = {id(c) for s in spaces for _, c in s}
    assert remaining == {id(c) for c in everyone if c not in expected}


@given(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535),
       st.integers(8, 32), st.integers(8, 32))
def test_endpoint_within_matches_brute_force(a: int, b: int, c: int, d: int, pa: int, pb: int) -> None:
    lo1, hi1 = sorted((a, b))
    lo2, hi2 = sorted((c, d))
    n1 = NetEndpoint.parse(f"tcp:10.0.0.0/{pa}:{lo1}-{hi1}")
    n2 = NetEndpoint.parse(f"tcp:10.0.0.0/{pb}:{lo2}-{hi2}")
    expect = lo2 <= lo1 and hi1 <= hi2 and pa >= pb
    assert n1.within(n2) == expect
