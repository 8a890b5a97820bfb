"""Mounts and the mount table: which filesystem root covers which dentry."""
from __future__ import annotations

import itertools

from .epoch import EPOCH
from .filesystem import FileSystem
from .inode import Dentry


class Mount:
    """One mounted filesystem. Compared by identity (a Location holds it)."""

    __slots__ = ("id", "fs", "root", "parent", "mountpoint", "readonly")

    def __init__(self, mnt_id: int, fs: FileSystem, parent: "Mount | None", mountpoint: Dentry | None,
                 readonly: bool) -> None:
        self.id = mnt_id
        self.fs = fs
        self.root = fs.root
        self.parent = parent
        self.mountpoint = mountpoint
        self.readonly = readonly

    def __repr__(self) -> str:
        return f"<Mount {self.id} {type(self.fs).__name__}{' ro' if self.readonly else ''}>"


class MountTable:
    def __init__(self) -> None:
        self._on: dict[tuple[Mount, Dentry], Mount] = {}
        self._ids = itertools.count(21)  # Linux's first mount ids are in the twenties
        self.mounts: list[Mount] = []

    def add(self, fs: FileSystem, parent: Mount | None, mountpoint: Dentry | None, readonly: bool) -> Mount:
        m = Mount(next(self._ids), fs, parent, mountpoint, readonly)
        EPOCH.bump()
        if parent is not None and mountpoint is not None:
            self._on[(parent, mountpoint)] = m  # a later mount on the same place covers the earlier
            mountpoint.mounted += 1
        self.mounts.append(m)
        return m

    def down(self, m: Mount, d: Dentry) -> tuple[Mount, Dentry]:
        """Cross into whatever is mounted on (m, d), repeatedly (stacked mounts)."""
        while d.mounted:
            child = self._on.get((m, d))
            if child is None:
                break
            m, d = child, child.root
        return m, d

    def is_mountpoint(self, m: Mount, d: Dentry) -> bool:
        return bool(d.mounted) and (m, d) in self._on
