"""openat2's RESOLVE_* restrictions on a path walk (Linux's LOOKUP_BENEATH, LOOKUP_IN_ROOT,
LOOKUP_NO_XDEV, LOOKUP_NO_SYMLINKS and LOOKUP_NO_MAGICLINKS in fs/namei.c).

``ScopedWalk`` is a ``Walk`` with the checks added at the steps Linux checks them, so the
unrestricted walk (the hot path of every translated call) pays nothing for them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import E, fail
from .inode import Dentry
from .mount import Mount
from .types import FsContext, Location
from .walk import Walk

if TYPE_CHECKING:
    from .mount import MountTable

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20
RESOLVE_ALL = 0x3F


class _NoCrossing:
    """The mount table as a RESOLVE_NO_XDEV walk sees it: stepping onto a mount fails."""

    def __init__(self, table: "MountTable") -> None:
        self._table = table

    def down(self, m: Mount, d: Dentry) -> tuple[Mount, Dentry]:
        fail(E.EXDEV)

    def __getattr__(self, name: str) -> object:
        return getattr(self._table, name)


class ScopedWalk(Walk):
    __slots__ = ("resolve", "scoped")

    def __init__(self, table: "MountTable", ctx: FsContext, base: Location, resolve: int) -> None:
        super().__init__(_NoCrossing(table) if resolve & RESOLVE_NO_XDEV else table, ctx)  # type: ignore[arg-type]
        self.resolve = resolve
        # BENEATH and IN_ROOT make the starting directory the walk's root: "/" and ".." stop
        # there (IN_ROOT) or may not go there at all (BENEATH: EXDEV).
        self.scoped = bool(resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT))
        if self.scoped:
            self.root_m, self.root_d = base.mount, base.dentry

    def parent(self, m: Mount, d: Dentry, path: bytes) -> tuple[Mount, Dentry, bytes | None, bool]:
        if path[:1] == b"/":
            if self.resolve & RESOLVE_BENEATH:
                fail(E.EXDEV)
            if self.resolve & RESOLVE_NO_XDEV and m is not self.root_m:
                fail(E.EXDEV)  # a jump to the root lands on another mount
        return super().parent(m, d, path)

    def dotdot(self, m: Mount, d: Dentry) -> tuple[Mount, Dentry]:
        if d is self.root_d and m is self.root_m:
            if self.resolve & RESOLVE_BENEATH:
                fail(E.EXDEV)
            return m, d
        if self.resolve & RESOLVE_NO_XDEV and d is m.root:
            fail(E.EXDEV)
        return super().dotdot(m, d)

    def follow_link(self, m: Mount, d: Dentry, link: Dentry, want_dir: bool) -> tuple[Mount, Dentry]:
        self.check_symlink(link)
        if getattr(link.inode, "jump", None) is not None:  # a magic link (procfs)
            if self.resolve & RESOLVE_NO_MAGICLINKS:
                fail(E.ELOOP)
            if self.scoped:
                fail(E.EXDEV)
            tm, td = super().follow_link(m, d, link, want_dir)
            if self.resolve & RESOLVE_NO_XDEV and tm is not m:
                fail(E.EXDEV)
            return tm, td
        return super().follow_link(m, d, link, want_dir)

    def check_symlink(self, link: Dentry) -> None:
        if self.resolve & RESOLVE_NO_SYMLINKS:
            fail(E.ELOOP)
