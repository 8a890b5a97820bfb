"""Permission checks against a context's fs credentials, as Linux's generic_permission.

uid 0 has CAP_DAC_OVERRIDE: read and write are always granted, search on a directory too,
but executing a non-directory needs at least one x bit.
"""
from __future__ import annotations

from .inode import S_IFDIR, S_IFMT, Inode
from .types import FsContext

MAY_READ = 4
MAY_WRITE = 2
MAY_EXEC = 1


def in_group(ctx: FsContext, gid: int) -> bool:
    return gid == ctx.gid or gid in ctx.groups


def permitted(ctx: FsContext, inode: Inode, mask: int) -> bool:
    mode = inode.mode
    if ctx.uid == 0:
        return not (mask & MAY_EXEC and mode & S_IFMT != S_IFDIR and not mode & 0o111)
    if ctx.uid == inode.uid:
        bits = mode >> 6
    elif in_group(ctx, inode.gid):
        bits = mode >> 3
    else:
        bits = mode
    return bits & mask == mask


def is_owner(ctx: FsContext, inode: Inode) -> bool:
    """inode_owner_or_capable: the owner, or CAP_FOWNER (uid 0)."""
    return ctx.uid == 0 or ctx.uid == inode.uid
