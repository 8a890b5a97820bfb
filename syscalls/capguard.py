"""CapGuard: the sandbox's CSpace as the VFS's guard (vfs.guard.Guard).

Every check names the object by its canonical path: the VFS walked there (``..``, symlinks,
mounts, /proc magic links all resolved), and the path is read back from the dentry tree, so
no spelling of a path can reach an object under another name. What each operation asks for:

- stat, readlink, O_PATH, statfs, fstat: visibility (some capability covers the object);
- open: READ and/or WRITE by access mode, WRITE for O_TRUNC; device nodes ask
  authorize_device instead; a creating open asks CREATE (plus the access) on the new path;
- mkdir, mknod, symlink: CREATE on the new path; unlink, rmdir: DELETE on the victim;
- rename: DELETE on the old path, CREATE on the new one (DELETE too if it replaces a name);
  link: CREATE on the new path. Neither may give the object a right at its new place that
  its old place does not grant (no hard link out of a read-only subtree), and a directory
  with a capability boundary inside it does not move (the boundary would move with it);
- chmod, chown, utimens, truncate: WRITE; exec: EXEC; chdir (and access(X_OK) on a
  directory): EXEC or READ, since a subtree one may read is one a shell may cd into.

Canonical paths are cached per dentry and dropped when the VFS generation moves (a rename
or mount may change the path of dentries already cached); the CSpace caches its decisions
per path itself. Together a check costs two dict hits on the hot path.
"""
from __future__ import annotations

import stat as st
from typing import TYPE_CHECKING

from caps import Capability, CSpace, Rights

if TYPE_CHECKING:
    from vfs import Vfs
    from vfs.inode import Dentry
    from vfs.mount import Mount

R, W, X, C, D = Rights.READ, Rights.WRITE, Rights.EXEC, Rights.CREATE, Rights.DELETE
NONE = Rights(0)
RWX = R | W | X
_O_TRUNC = 0o1000
# open(2) access mode (+ O_TRUNC) -> rights; index: (flags & 3) | (4 if O_TRUNC)
_OPEN = (R, W, R | W, R | W, R | W, W, R | W, R | W)
_ACCESS = tuple(Rights((R.value if m & 4 else 0) | (W.value if m & 2 else 0) | (X.value if m & 1 else 0))
                for m in range(8))
_DEVICE = st.S_IFCHR
_PATHS_MAX = 16384


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + name if parent == b"/" else parent + b"/" + name


class CapGuard:
    def __init__(self, cspace: CSpace, vfs: "Vfs") -> None:
        self.cspace = cspace
        self.vfs = vfs
        self._paths: dict["Dentry", tuple["Mount", bytes]] = {}
        self._gen = vfs.generation
        # At the audit log's verbose level every open is recorded too.
        self._audit_opens = cspace.audit is not None and cspace.audit.enabled("open")

    @property
    def records_opens(self) -> bool:
        """Whether every open is an audit record (the log's verbose level)."""
        return self._audit_opens

    def path(self, m: "Mount", d: "Dentry") -> bytes:
        """The canonical guest path of (m, d)."""
        if self.vfs.generation != self._gen:
            self._paths.clear()
            self._gen = self.vfs.generation
        hit = self._paths.get(d)
        if hit is not None and hit[0] is m:
            return hit[1]
        p = self.vfs.canonical_path(m, d)
        if len(self._paths) >= _PATHS_MAX:
            self._paths.clear()
        self._paths[d] = (m, p)
        return p

    # ---- vfs.guard.Guard --------------------------------------------------------------------

    def see(self, m: "Mount", d: "Dentry") -> None:
        self.see_path(self.path(m, d))

    def see_path(self, path: bytes) -> None:
        """see() of the object at canonical guest path ``path``."""
        self.cspace.authorize_path(path, NONE, op="stat")

    def sees_path(self, path: bytes) -> bool:
        """Whether see_path(``path``) would pass (no audit record: the translator asks, not a guest)."""
        return self.cspace.allows_path(path, NONE) is not None

    def access(self, m: "Mount", d: "Dentry", mode: int) -> None:
        if mode & 1 and st.S_ISDIR(d.inode.mode):  # X_OK on a directory: may it be searched
            self.search(m, d, "access", _ACCESS[mode & 6])
            return
        self.cspace.authorize_path(self.path(m, d), _ACCESS[mode & 7], op="access")

    def open(self, m: "Mount", d: "Dentry", flags: int) -> None:
        rights = _OPEN[(flags & 3) | (4 if flags & _O_TRUNC else 0)]
        p = self.path(m, d)
        if d.inode.mode & 0o170000 in (st.S_IFCHR, st.S_IFBLK):
            cap = self._device(p, rights & (R | W))
        else:
            cap = self.cspace.authorize_path(p, rights, op="open")
        if self._audit_opens:
            self._record_open(p, rights, cap.id)

    def create(self, m: "Mount", d: "Dentry", name: bytes | None, flags: int | None) -> None:
        rights = C if flags is None else C | _OPEN[flags & 3]
        p = self.path(m, d)
        if name is not None:
            p = _join(p, name)
        cap = self.cspace.authorize_path(p, rights, op="create")
        if self._audit_opens and flags is not None:
            self._record_open(p, rights, cap.id)

    def delete(self, m: "Mount", parent: "Dentry", victim: "Dentry") -> None:
        self.cspace.authorize_path(self.path(m, victim), D, op="delete")

    def link(self, om: "Mount", old: "Dentry", m: "Mount", d: "Dentry", name: bytes) -> None:
        new = _join(self.path(m, d), name)
        self.cspace.authorize_path(new, C, op="link")
        self._no_gain(self.path(om, old), new, "link")

    def rename(self, m: "Mount", old: "Dentry", d2: "Dentry", name2: bytes, new: "Dentry | None",
               exchange: bool) -> None:
        cs = self.cspace
        p_old = self.path(m, old)
        p_new = _join(self.path(m, d2), name2)
        cs.authorize_path(p_old, D | C if exchange else D, op="rename")
        cs.authorize_path(p_new, D | C if new is not None else C, op="rename")
        self._no_gain(p_old, p_new, "rename")
        self._no_boundary(old, p_old)
        if exchange and new is not None:
            self._no_gain(p_new, p_old, "rename")
            self._no_boundary(new, p_new)

    def setattr(self, m: "Mount", d: "Dentry") -> None:
        self.cspace.authorize_path(self.path(m, d), W, op="setattr")

    # ---- beyond the VFS: exec, chdir, fd-based calls ------------------------------------------

    def exec(self, m: "Mount", d: "Dentry") -> None:
        self.cspace.authorize_exec(self.path(m, d))

    def search(self, m: "Mount", d: "Dentry", op: str, also: Rights = NONE) -> None:
        """chdir into a directory (or access(X_OK) on it): EXEC or READ will do. A subtree one
        may read is one a shell may cd into, as with a read-only mount."""
        p = self.path(m, d)
        if self.cspace.allows_path(p, also | X) is None:
            self.cspace.authorize_path(p, also | R, op=op)

    def require(self, m: "Mount", d: "Dentry", rights: Rights, op: str) -> None:
        self.cspace.authorize_path(self.path(m, d), rights, op=op)

    def allows(self, m: "Mount", d: "Dentry", rights: Rights) -> bool:
        """Whether the object may still be used with ``rights`` (no audit record)."""
        p = self.path(m, d)
        if d.inode.mode & 0o170000 in (st.S_IFCHR, st.S_IFBLK):
            try:
                self._device(p, rights & (R | W))  # records only refusals
            except OSError:
                return False
            return True
        return self.cspace.allows_path(p, rights) is not None

    # ---- helpers ----------------------------------------------------------------------------------

    def _device(self, path: bytes, rights: Rights) -> Capability:
        # The sandbox's own terminal (its pty) is the policy's tty right, not a device rule.
        if path.startswith(b"/dev/pts/"):
            return self.cspace.authorize_tty(rights)
        return self.cspace.authorize_device(path, rights)

    def _record_open(self, path: bytes, rights: Rights, cap: int) -> None:
        cs = self.cspace
        assert cs.audit is not None
        pid = cs.actor() if cs.actor is not None else None
        cs.audit.record("open", cspace=cs.name, path=path, rights=str(rights), cap=cap, pid=pid)

    def _no_gain(self, src: bytes, dst: bytes, op: str) -> None:
        """The object at ``src`` may not get, at ``dst``, a right that ``src`` does not grant."""
        gained = self.cspace.rights_at(dst) & RWX & ~self.cspace.rights_at(src)
        if gained:
            self.cspace.authorize_path(src, gained, op=op)  # refuses, with its audit record

    def _no_boundary(self, dentry: "Dentry", path: bytes) -> None:
        if st.S_ISDIR(dentry.inode.mode) and self.cspace.boundary_inside(path):
            raise self.cspace.refuse_path(path, "rename", "a capability boundary lies inside this directory")
