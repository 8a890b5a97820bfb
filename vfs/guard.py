"""The hook through which the VFS asks "may this be done?" of whoever holds the sandbox's
authority (the capability layer), once each operation has resolved its objects.

The VFS calls a ``Guard`` after the walk has resolved ``..``, symlinks, mounts and magic
links, and after Linux's own permission checks (so a guest sees Linux's errno order), but
before anything changes. The guard raises an OSError (EACCES) to refuse. Objects are passed
as (mount, dentry) pairs rather than Locations: building a Location per call costs more than
the check itself on the hot path.

The guard names objects by ``Vfs.canonical_path`` (the path from the namespace root, which a
chroot does not change): walking up the dentry tree is the structural answer to "where does
this object live", whatever path the guest used to reach it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .inode import Dentry
    from .mount import Mount


class Guard(Protocol):
    def see(self, m: "Mount", d: "Dentry") -> None:
        """stat, readlink, O_PATH, statfs: the object must be visible (some capability covers it)."""

    def access(self, m: "Mount", d: "Dentry", mode: int) -> None:
        """access(2) with R_OK/W_OK/X_OK bits ``mode`` (0: visibility only)."""

    def open(self, m: "Mount", d: "Dentry", flags: int) -> None:
        """Open an existing object with open(2) ``flags`` (access mode, O_TRUNC)."""

    def create(self, m: "Mount", d: "Dentry", name: bytes | None, flags: int | None) -> None:
        """A new name ``name`` in directory (m, d) (None: an unnamed O_TMPFILE there); ``flags``
        are the open(2) flags of a creating open (None for mkdir, mknod, symlink)."""

    def delete(self, m: "Mount", parent: "Dentry", victim: "Dentry") -> None:
        """unlink/rmdir of ``victim`` in ``parent``."""

    def link(self, om: "Mount", old: "Dentry", m: "Mount", d: "Dentry", name: bytes) -> None:
        """A new name ``name`` in (m, d) for the object at (om, old)."""

    def rename(self, m: "Mount", old: "Dentry", d2: "Dentry", name2: bytes, new: "Dentry | None",
               exchange: bool) -> None:
        """Move ``old`` to ``name2`` in directory ``d2`` (replacing ``new`` if not None)."""

    def setattr(self, m: "Mount", d: "Dentry") -> None:
        """chmod, chown, utimens, truncate."""
