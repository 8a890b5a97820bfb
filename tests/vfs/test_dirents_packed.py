"""getdents records packed once per listing (syscalls.dirents) read exactly like records packed
afresh from the VFS's own entry iterator, across buffer sizes, positions and changes to the
directory between calls."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from syscalls import dirents
from vfsharness import World

_HEAD64 = struct.Struct("=QqHB")
_HEAD = struct.Struct("=QqH")


def _decode(blob: bytes, legacy: bool) -> list[tuple[int, int, int, bytes]]:
    """(d_ino, d_off, d_type, name) of each record, as a guest's readdir would see them."""
    out, off = [], 0
    while off < len(blob):
        if legacy:
            ino, nxt, reclen = _HEAD.unpack_from(blob, off)
            name = blob[off + _HEAD.size: off + reclen - 1].split(b"\0", 1)[0]
            dtype = blob[off + reclen - 1]
        else:
            ino, nxt, reclen, dtype = _HEAD64.unpack_from(blob, off)
            name = blob[off + _HEAD64.size: off + reclen].split(b"\0", 1)[0]
        assert reclen % 8 == 0 and reclen > 0
        out.append((ino, nxt, dtype, name))
        off += reclen
    return out


def _read(world: World, path: bytes, cookie: int, count: int, legacy: bool):  # noqa: ANN202
    loc = world.at(path)
    entries, parent_ino = world.vfs.listing(loc)
    return dirents.packed(loc.inode, parent_ino, entries, legacy).take(cookie, count)


def _expected(world: World, path: bytes, cookie: int, count: int, legacy: bool) -> tuple[list, int] | None:
    got, used = [], 0
    for e in world.vfs.getdents(world.at(path), cookie):
        fixed = _HEAD.size + 2 if legacy else _HEAD64.size + 1
        reclen = (fixed + len(e.name) + 7) & ~7
        if used + reclen > count:
            if not got:
                return None
            break
        got.append((e.ino, e.next_cookie, e.dtype, e.name))
        used += reclen
        cookie = e.next_cookie
    return got, cookie


ops = hs.lists(hs.one_of(
    hs.tuples(hs.just("read"), hs.integers(16, 600), hs.booleans()),
    hs.tuples(hs.just("create"), hs.integers(0, 40), hs.booleans()),
    hs.tuples(hs.just("unlink"), hs.integers(0, 40), hs.booleans()),
    hs.tuples(hs.just("rename"), hs.integers(0, 40), hs.booleans()),
    hs.tuples(hs.just("rewind"), hs.integers(0, 0), hs.booleans()),
), max_size=40)


@pytest.mark.parametrize("where", [b"/tmp/d", b"/srv/d"], ids=["tmpfs", "overlay"])
@settings(max_examples=60, deadline=None)
@given(steps=ops)
def test_packed_records_match_the_entry_iterator(tmp_path_factory: pytest.TempPathFactory, where: bytes,
                                                 steps: list[tuple[str, int, bool]]) -> None:
    world = World(tmp_path_factory.mktemp("w"))
    try:
        v, ctx = world.vfs, world.ctx
        v.mkdir(ctx, ctx.root, where, 0o755)
        for i in range(0, 40, 3):
            world.write(where + b"/f%02d" % i, b"")
        v.mkdir(ctx, ctx.root, where + b"/sub", 0o755)
        cookies = {False: 0, True: 0}
        for op, n, flag in steps:
            name = where + b"/f%02d" % n
            if op == "read":
                legacy = flag
                want = _expected(world, where, cookies[legacy], n, legacy)
                got = _read(world, where, cookies[legacy], n, legacy)
                if want is None:
                    assert got is None
                    continue
                assert got is not None
                records, cookie = got
                assert (_decode(bytes(records), legacy), cookie) == want
                cookies[legacy] = cookie
            elif op == "create":
                world.write(name, b"")
            elif op == "unlink":
                try:
                    v.unlink(ctx, ctx.root, name)
                except FileNotFoundError:
                    pass
            elif op == "rename":
                try:
                    v.rename(ctx, ctx.root, name, ctx.root, name + (b"-dir" if flag else b"-x"))
                except FileNotFoundError:
                    pass
            else:
                cookies = {False: 0, True: 0}
    finally:
        world.close()


def test_a_moved_directory_reports_its_new_parent(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    for p in (b"/tmp/a", b"/tmp/b", b"/tmp/a/d"):
        v.mkdir(ctx, ctx.root, p, 0o755)
    before = _decode(bytes(_read(world, b"/tmp/a/d", 0, 4096, False)[0]), False)
    assert before[1][0] == world.stat(b"/tmp/a").ino
    v.rename(ctx, ctx.root, b"/tmp/a/d", ctx.root, b"/tmp/b/d")
    after = _decode(bytes(_read(world, b"/tmp/b/d", 0, 4096, False)[0]), False)
    assert after[1][0] == world.stat(b"/tmp/b").ino != world.stat(b"/tmp/a").ino
