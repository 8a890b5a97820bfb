"""Path resolution with Linux's rules (fs/namei.c): one ``Walk`` per resolution.

- absolute paths and absolute symlink targets start at ``ctx.root``; ``..`` at ctx.root
  stays there, so a walk never leaves the context's root;
- ``..`` at a mount's root continues in the parent mount; a mounted-on dentry is crossed
  into the mounted filesystem;
- at most 40 symlinks per resolution (ELOOP after that); ENAMETOOLONG for a component over
  255 bytes or a path of 4096 bytes or more; ENOTDIR for a non-directory in the middle;
- search (x) permission on every directory walked through, the last parent included;
- a trailing slash makes the last component followed and requires a directory.

Cached lookups make no host system call: this is the hot path of every translated call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import E, fail
from .inode import S_IFDIR, S_IFLNK, S_IFMT, Dentry, Inode
from .mount import Mount
from .perm import MAY_EXEC, permitted
from .types import FsContext, Location

if TYPE_CHECKING:
    from .mount import MountTable

MAXSYMLINKS = 40
PATH_MAX = 4096
NAME_MAX = 255


class Walk:
    """State of one resolution: the context, the symlink budget, how the last step went."""

    __slots__ = ("ctx", "uid", "table", "root_m", "root_d", "links", "magic", "volatile")

    def __init__(self, table: "MountTable", ctx: FsContext) -> None:
        self.ctx = ctx
        self.uid = ctx.uid
        self.table = table
        self.root_m: Mount = ctx.root.mount
        self.root_d: Dentry = ctx.root.dentry
        self.links = 0
        # The magic link (procfs) the final step went through, if any: the caller opens or
        # stats through it rather than through the dentry it resolved to.
        self.magic: "Inode | None" = None
        # Whether the walk entered a filesystem whose names change by themselves (procfs):
        # its outcome then may not be cached (Vfs's lookup cache).
        self.volatile = not self.root_m.fs.stable_names

    # ---- whole paths --------------------------------------------------------------------------

    def resolve(self, base: Location, path: bytes, *, follow: bool = True,
                directory: bool = False) -> tuple[Mount, Dentry]:
        m, d, last, slash = self.parent(base.mount, base.dentry, path)
        return self.last(m, d, last, follow or slash, directory or slash)

    def parent(self, m: Mount, d: Dentry, path: bytes) -> tuple[Mount, Dentry, bytes | None, bool]:
        """Walk all but the last component: (mount, dir, last name or None for "/", trailing slash)."""
        if not path:
            fail(E.ENOENT)
        if len(path) >= PATH_MAX:
            fail(E.ENAMETOOLONG)
        if path[0] == 47:  # b"/"
            m, d = self.root_m, self.root_d
        names = [c for c in path.split(b"/") if c]
        if not names:
            return m, d, None, False
        last = names.pop()
        for name in names:
            m, d = self.component(m, d, name)
            if d.inode.mode & S_IFMT != S_IFDIR:
                fail(E.ENOTDIR)
        if self.uid:
            self.may_lookup(d)
        return m, d, last, path[-1] == 47

    def last(self, m: Mount, d: Dentry, name: bytes | None, follow: bool, want_dir: bool) -> tuple[Mount, Dentry]:
        """Resolve the last component ``name`` in directory (m, d) (search permission checked)."""
        self.magic = None
        if name is None:
            pass
        elif name == b".":
            pass
        elif name == b"..":
            m, d = self.dotdot(m, d)
        else:
            child = self.child(m, d, name)
            if child is None:
                fail(E.ENOENT)
            if child.mounted:
                return self._checked_dir(*self.down(m, child), want_dir)
            if follow and child.inode.mode & S_IFMT == S_IFLNK:
                return self.follow_link(m, d, child, want_dir)
            d = child
        return self._checked_dir(m, d, want_dir)

    @staticmethod
    def _checked_dir(m: Mount, d: Dentry, want_dir: bool) -> tuple[Mount, Dentry]:
        if want_dir and d.inode.mode & S_IFMT != S_IFDIR:
            fail(E.ENOTDIR)
        return m, d

    # ---- single steps -------------------------------------------------------------------------

    def may_lookup(self, d: Dentry) -> None:
        if self.uid and not permitted(self.ctx, d.inode, MAY_EXEC):
            fail(E.EACCES)

    @staticmethod
    def child(m: Mount, d: Dentry, name: bytes) -> Dentry | None:
        """The dentry ``name`` in directory d (no mount crossing, no symlink following)."""
        if len(name) > NAME_MAX:
            fail(E.ENAMETOOLONG)
        return d.inode.lookup(name)

    def component(self, m: Mount, d: Dentry, name: bytes) -> tuple[Mount, Dentry]:
        """One intermediate step: search permission, lookup, mounts, symlinks followed."""
        if self.uid:
            self.may_lookup(d)
        if name == b".":
            return m, d
        if name == b"..":
            return self.dotdot(m, d)
        if len(name) > NAME_MAX:
            fail(E.ENAMETOOLONG)
        child = d.inode.lookup(name)
        if child is None:
            fail(E.ENOENT)
        if child.mounted:
            return self.down(m, child)
        if child.inode.mode & S_IFMT == S_IFLNK:
            return self.follow_link(m, d, child, True)
        return m, child

    def down(self, m: Mount, d: Dentry) -> tuple[Mount, Dentry]:
        """Cross into whatever is mounted on (m, d) (MountTable.down), noting volatile mounts."""
        m, d = self.table.down(m, d)
        if not m.fs.stable_names:
            self.volatile = True
        return m, d

    def dotdot(self, m: Mount, d: Dentry) -> tuple[Mount, Dentry]:
        root_m, root_d = self.root_m, self.root_d
        while True:
            if d is root_d and m is root_m:
                return m, d
            if d is not m.root:
                break
            parent_m, mp = m.parent, m.mountpoint
            if parent_m is None or mp is None:
                return m, d  # the namespace root
            m, d = parent_m, mp
            if not m.fs.stable_names:
                self.volatile = True
        up = d.parent
        if up is None:
            return m, d
        parent: Dentry = up
        if parent.mounted:
            return self.down(m, parent)
        return m, parent

    def check_symlink(self, link: Dentry) -> None:
        """Whether this walk may follow ``link`` (openat2's RESOLVE_NO_SYMLINKS says no)."""

    def follow_link(self, m: Mount, d: Dentry, link: Dentry, want_dir: bool) -> tuple[Mount, Dentry]:
        """Continue the walk at ``link``'s target (relative to its directory d)."""
        self.links += 1
        if self.links > MAXSYMLINKS:
            fail(E.ELOOP)
        inode = link.inode
        jump = getattr(inode, "jump", None)
        if jump is not None:  # a magic link: go straight to the object it stands for
            self.volatile = True
            loc = jump()
            self.magic = inode
            if loc is None:
                if want_dir:
                    fail(E.ENOTDIR)
                return m, link
            return self._checked_dir(loc.mount, loc.dentry, want_dir)
        target = inode.readlink()
        pm, pd, last, slash = self.parent(m, d, target)
        return self.last(pm, pd, last, True, want_dir or slash)
