"""getdents64/getdents records, packed once per directory listing and sliced per call.

Packing ~1000 records in Python costs ~1 ms, and programs read the same directories over
and over (ls, find, shells completing, a tar of a tree). The VFS keeps a directory's listing
as one list object until the directory changes, so the packed form is kept beside that very
object: a listing that is not the same object (the directory changed, or a synthetic
directory built it afresh) is packed again.
"""
from __future__ import annotations

import bisect
import struct
from typing import Sequence

from vfs.inode import DT_BY_TYPE, S_IFMT, Dentry, Inode

DIRENT64 = struct.Struct("=QqHB")  # d_ino, d_off, d_reclen, d_type; then the name
DIRENT = struct.Struct("=QqH")  # legacy: d_ino, d_off, d_reclen; name; pad; d_type last
_PAD = bytes(8)
MAX_CACHED = 64  # directories


def _record(ino: int, next_cookie: int, dtype: int, name: bytes, legacy: bool) -> bytes:
    if legacy:  # the name, its NUL, padding, and the type in the record's last byte
        reclen = (DIRENT.size + len(name) + 2 + 7) & ~7
        return b"".join((DIRENT.pack(ino, next_cookie, reclen), name,
                         _PAD[: reclen - DIRENT.size - len(name) - 1], bytes((dtype,))))
    reclen = (DIRENT64.size + len(name) + 1 + 7) & ~7
    return b"".join((DIRENT64.pack(ino, next_cookie, reclen, dtype), name, _PAD[: reclen - DIRENT64.size - len(name)]))


class PackedListing:
    """Every record of one listing: "." (position 0), ".." (1), then each entry at its cookie."""

    __slots__ = ("entries", "parent_ino", "blob", "ends", "cookies", "next_cookies")

    def __init__(self, dir_ino: int, parent_ino: int, entries: Sequence[Dentry], legacy: bool) -> None:
        self.entries = entries
        self.parent_ino = parent_ino
        records = [_record(dir_ino, 1, 4, b".", legacy), _record(parent_ino, 2, 4, b"..", legacy)]
        cookies = []
        for d in entries:
            records.append(_record(d.inode.ino, d.cookie + 1, DT_BY_TYPE.get(d.inode.mode & S_IFMT, 0), d.name, legacy))
            cookies.append(d.cookie)
        self.blob = b"".join(records)
        ends, end = [], 0
        for r in records:
            end += len(r)
            ends.append(end)
        self.ends = ends
        self.cookies = cookies
        self.next_cookies = [1, 2] + [c + 1 for c in cookies]

    def take(self, cookie: int, count: int) -> tuple[memoryview, int] | None:
        """The records from position ``cookie`` on that fit in ``count`` bytes, and the
        position after them; None when even the first does not fit (EINVAL)."""
        if cookie <= 1:
            first = max(cookie, 0)
        else:
            first = 2 + bisect.bisect_left(self.cookies, cookie)
        if first >= len(self.ends):
            return memoryview(b""), cookie
        start = self.ends[first - 1] if first else 0
        last = bisect.bisect_right(self.ends, start + count, lo=first) - 1
        if last < first:
            return None
        return memoryview(self.blob)[start:self.ends[last]], self.next_cookies[last]


_CACHE: dict[tuple[Inode, bool], PackedListing] = {}


def packed(inode: Inode, parent_ino: int, entries: Sequence[Dentry], legacy: bool) -> PackedListing:
    key = (inode, legacy)
    hit = _CACHE.get(key)
    if hit is not None and hit.entries is entries and hit.parent_ino == parent_ino:
        return hit
    listing = PackedListing(inode.ino, parent_ino, entries, legacy)
    _CACHE.pop(key, None)
    if len(_CACHE) >= MAX_CACHED:
        del _CACHE[next(iter(_CACHE))]  # the least recently packed
    _CACHE[key] = listing
    return listing
