"""The namespace epoch: a counter that moves whenever a path may resolve differently.

Every change to a directory's entries (tmpfs and overlay directories: create, unlink, rename,
link), to an inode's mode or owner (search permission), and every mount bumps it. Caches of
path lookups (Vfs's) are valid for one epoch only, which makes their invalidation exact
without tracking which entry depends on which directory. One counter for the process: a
sandbox's change also empties another's cache, which costs lookups, never correctness.
"""
from __future__ import annotations


class NamespaceEpoch:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


EPOCH = NamespaceEpoch()
