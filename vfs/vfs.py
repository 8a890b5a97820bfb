"""Vfs: the guest's filesystem namespace and every path operation the syscall handlers call.

Each operation follows fs/namei.c's order of checks, so the errno a guest sees is the one
Linux would give. Every open returns a NEW host fd the caller owns (see inode.py); the
(st_dev, st_ino) of every host object handed out is remembered, so that an fd the guest
passes back (fstat, fchmod, getdents, fchdir...) maps to its Location again.
"""
from __future__ import annotations

import bisect
import fcntl
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .epoch import EPOCH
from .errors import E, fail
from .filesystem import ST_RDONLY, FileSystem
from .inode import (
    DT_BY_TYPE, PASS_FLAGS, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG,
    S_IFSOCK, S_ISGID, S_ISUID, S_ISVTX, S_IXGRP, Dentry, DirInode, Inode,
)
from .mount import Mount, MountTable
from .scoped import RESOLVE_CACHED, ScopedWalk
from .perm import MAY_EXEC, MAY_READ, MAY_WRITE, in_group, is_owner, permitted
from .scratch import HostScratch
from .tmpfs import MemDir, MemFile, TmpFs
from .types import DirEntry, FsContext, Location, Opened, StatResult
from .walk import PATH_MAX, Walk

if TYPE_CHECKING:
    from .guard import Guard

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
_EPHEMERAL_KEEP = 4096  # fd identities remembered for one-off host objects (synthetic files)
_LOOKUPS_KEEP = 4096  # remembered path lookups (cleared whole when full, or when the epoch moves)
_PARENT = object()  # a remembered lookup's key: the directory a path's parent part resolved to
_NOW_SLACK_NS = 1_000_000_000  # utimens: times this close to "now" count as UTIME_NOW

_ACC_MASK = {0: MAY_READ, 1: MAY_WRITE, 2: MAY_READ | MAY_WRITE, 3: MAY_READ | MAY_WRITE}
_O_PATH_KEEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _is_dir(inode: Inode) -> bool:
    return inode.mode & S_IFMT == S_IFDIR


def _ancestor_or_self(a: Dentry, d: Dentry | None) -> bool:
    while d is not None:
        if d is a:
            return True
        d = d.parent
    return False


class Vfs:
    def __init__(self, root_fs: FileSystem) -> None:
        self.scratch = HostScratch()
        self.table = MountTable()
        self._filesystems: list[FileSystem] = []
        self._by_host: dict[tuple[int, int], Location] = {}
        self._ephemeral: OrderedDict[tuple[int, int], Location] = OrderedDict()
        self._stand_ins: OrderedDict[tuple[int, int], None] = OrderedDict()
        # Who authorises operations (the sandbox's capabilities); None: Linux's checks only.
        self.guard: "Guard | None" = None
        # Bumped whenever an existing dentry may change its canonical path (rename, mount),
        # so that caches keyed by dentry know to forget.
        self.generation = 0
        # Path lookups remembered for the current namespace epoch (vfs/epoch.py): key (path,
        # follow, where it starts, credentials) to (mount, dentry), or the errno it failed with.
        self._lookups: dict[tuple, "tuple[Mount, Dentry] | int"] = {}
        self._lookups_epoch = -1
        self._attach(root_fs)
        self._root_mount = self.table.add(root_fs, None, None, False)

    # ---- namespace set-up -----------------------------------------------------------------------

    def _attach(self, fs: FileSystem) -> None:
        if fs not in self._filesystems:
            fs.attach(self.scratch)
            self._filesystems.append(fs)

    def mount(self, path: bytes, fs: FileSystem, *, readonly: bool = False) -> None:
        """Mount ``fs`` on ``path`` (an existing directory), covering what is there."""
        ctx = self.new_context()
        loc = self.lookup(ctx, ctx.root, path, directory=True)
        self._attach(fs)
        self.table.add(fs, loc.mount, loc.dentry, readonly)
        self.generation += 1

    def root(self) -> Location:
        m, d = self.table.down(self._root_mount, self._root_mount.root)
        return Location(m, d)

    def new_context(self, cwd: bytes = b"/") -> FsContext:
        root = self.root()
        ctx = FsContext(root=root, cwd=root)
        if cwd != b"/":
            ctx.cwd = self.lookup(ctx, root, cwd, directory=True)
        return ctx

    def close(self) -> None:
        """Close every backing fd and remove the scratch directory (fds the guest holds live on)."""
        for fs in self._filesystems:
            fs.close()
        self._filesystems.clear()
        self.scratch.close()

    # ---- lookup and stat ------------------------------------------------------------------------

    def _walk(self, ctx: FsContext) -> Walk:
        return Walk(self.table, ctx)

    def _walk_for(self, ctx: FsContext, base: Location, resolve: int) -> Walk:
        return ScopedWalk(self.table, ctx, base, resolve) if resolve & ~RESOLVE_CACHED else Walk(self.table, ctx)

    def resolve(self, ctx: FsContext, base: Location, path: bytes, follow: bool) -> tuple[Mount, Dentry, Inode | None]:
        """Walk.resolve: (mount, dentry, the magic link it went through or None)."""
        m, d, magic, _kept = self._resolve(ctx, base, path, follow)
        return m, d, magic

    def _resolve(self, ctx: FsContext, base: Location, path: bytes,
                 follow: bool) -> tuple[Mount, Dentry, Inode | None, bool]:
        """resolve, and whether its outcome is remembered (the last item).

        Outcomes reached through stable filesystems only are remembered until the namespace
        epoch moves, so that a repeated lookup (nginx's open and stat of each request, a
        shell's PATH search) is one dict hit. Failures are remembered too: they depend on the
        same names and permissions.
        """
        root = ctx.root
        key: tuple | None = None  # None: a start in a volatile filesystem, never remembered
        if path[:1] == b"/":
            key = (path, follow, root.mount, root.dentry, ctx.uid, ctx.gid, ctx.groups)
        elif base.mount.fs.stable_names:
            key = (path, follow, base.mount, base.dentry, root.mount, root.dentry, ctx.uid, ctx.gid, ctx.groups)
        if key is not None:
            if self._lookups_epoch != EPOCH.value:
                self._lookups.clear()
                self._lookups_epoch = EPOCH.value
            hit = self._lookups.get(key)
            if hit is not None:
                if type(hit) is int:
                    fail(hit)
                return hit[0], hit[1], None, True  # type: ignore[index]
        w = Walk(self.table, ctx)
        try:
            m, d = self._walk_via_parent(w, key, base, path, follow)
        except OSError as e:
            if key is not None and not w.volatile and e.errno:
                self._remember(key, e.errno)
            raise
        kept = key is not None and not w.volatile
        if kept:
            self._remember(key, (m, d))
        return m, d, w.magic, kept

    def _walk_via_parent(self, w: Walk, key: "tuple | None", base: Location, path: bytes,
                         follow: bool) -> tuple[Mount, Dentry]:
        """w.resolve, starting from the directory its parent path resolved to last time if
        that is remembered (a listing's stats of one directory's names walk the directory's
        path once), and remembering it otherwise. Exact: the same search permission checked,
        the symlinks the parent walk followed counted against the 40 of the whole path."""
        cut = path.rfind(b"/")
        if key is None or cut <= 0 or cut == len(path) - 1 or len(path) >= PATH_MAX:
            return w.resolve(base, path, follow=follow)
        pkey = (_PARENT, path[:cut], *key[2:])
        hit = self._lookups.get(pkey)
        if hit is not None:
            m, d, w.links = hit
            if w.uid:
                w.may_lookup(d)
        else:
            m, d, last, _slash = w.parent(base.mount, base.dentry, path)
            if not w.volatile:
                self._remember(pkey, (m, d, w.links))
        return w.last(m, d, path[cut + 1:], follow, False)

    def _remember(self, key: tuple, outcome: "tuple[Mount, Dentry] | int") -> None:
        if len(self._lookups) >= _LOOKUPS_KEEP:
            self._lookups.clear()
        self._lookups[key] = outcome

    def lookup(self, ctx: FsContext, base: Location, path: bytes, *, follow: bool = True,
               directory: bool = False) -> Location:
        m, d, _magic = self.resolve(ctx, base, path, follow)
        if directory and d.inode.mode & S_IFMT != S_IFDIR:
            fail(E.ENOTDIR)
        return Location(m, d)

    def stat(self, ctx: FsContext, base: Location, path: bytes, *, follow: bool = True) -> StatResult:
        m, d, magic = self.resolve(ctx, base, path, follow)
        if self.guard is not None:
            self.guard.see(m, d)
        if magic is not None and d.inode is magic:
            return self._stat_magic(magic, m.id)
        return d.inode.stat(m.id)

    def failure_kept(self, ctx: FsContext, path: bytes, *, follow: bool = True) -> int:
        """The errno a lookup of absolute ``path`` failed with, if that failure is remembered
        (it holds until the namespace epoch moves, as a found object's lookup does); else 0."""
        root = ctx.root
        if path[:1] != b"/" or self._lookups_epoch != EPOCH.value:
            return 0
        # (_resolve's key for an absolute path, built inline there: it is the hot path)
        hit = self._lookups.get((path, follow, root.mount, root.dentry, ctx.uid, ctx.gid, ctx.groups))
        return hit if type(hit) is int else 0

    def stat_held(self, ctx: FsContext, path: bytes, *, follow: bool = True) -> tuple[StatResult, bool]:
        """stat of absolute ``path``, and whether its answer holds until a call changes the VFS
        (or the caller's credentials, root or capabilities): its lookup is remembered, and the
        inode's metadata is all the VFS's own (``Inode.stat_held``)."""
        m, d, magic, kept = self._resolve(ctx, ctx.cwd, path, follow)
        if self.guard is not None:
            self.guard.see(m, d)
        inode = d.inode
        if magic is not None and inode is magic:
            return self._stat_magic(magic, m.id), False
        return inode.stat(m.id), kept and inode.stat_held

    def stat_location(self, loc: Location) -> StatResult:
        return loc.dentry.inode.stat(loc.mount.id)

    def _stat_magic(self, link: Inode, mnt_id: int) -> StatResult:
        """stat through a magic link to an object outside the VFS (a pipe, a socket)."""
        fd = link.open_host(os.O_PATH)
        try:
            loc = self.location_of_host_fd(fd)
            if loc is not None:
                return self.stat_location(loc)
            s = os.fstat(fd)
        finally:
            os.close(fd)
        return StatResult(s.st_dev, s.st_ino, s.st_mode, s.st_nlink, s.st_uid, s.st_gid, s.st_rdev,
                          s.st_size, s.st_blksize, s.st_blocks, s.st_atime_ns, s.st_mtime_ns,
                          s.st_ctime_ns, 0, 0)

    def access(self, ctx: FsContext, base: Location, path: bytes, mode: int, *, follow: bool = True) -> None:
        if mode & ~7:
            fail(E.EINVAL)
        loc = self.lookup(ctx, base, path, follow=follow)
        if not mode:
            if self.guard is not None:
                self.guard.access(loc.mount, loc.dentry, 0)
            return
        inode = loc.inode
        if mode & MAY_WRITE and inode.mode & S_IFMT in (S_IFREG, S_IFDIR, S_IFLNK) and self._readonly(loc.mount, inode):
            fail(E.EROFS)
        if not permitted(ctx, inode, mode):
            fail(E.EACCES)
        if self.guard is not None:
            self.guard.access(loc.mount, loc.dentry, mode)

    def readlink(self, ctx: FsContext, base: Location, path: bytes) -> bytes:
        loc = self.lookup(ctx, base, path, follow=False)
        if loc.inode.mode & S_IFMT != S_IFLNK:
            fail(E.EINVAL)
        if self.guard is not None:
            self.guard.see(loc.mount, loc.dentry)
        return loc.inode.readlink()

    # ---- open -----------------------------------------------------------------------------------

    def open(self, ctx: FsContext, base: Location, path: bytes, flags: int, mode: int,
             resolve: int = 0) -> Opened:
        """open(2); ``resolve``: openat2's RESOLVE_* restrictions on the walk (vfs/scoped.py)."""
        if resolve & RESOLVE_CACHED and flags & (os.O_CREAT | os.O_TRUNC | os.O_TMPFILE):
            fail(E.EAGAIN)  # a cached-only lookup cannot promise what these need
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            return self._open_tmpfile(ctx, base, path, flags, mode, resolve)
        if flags & os.O_PATH:
            flags &= _O_PATH_KEEP
        elif flags & os.O_CREAT and flags & os.O_DIRECTORY:
            fail(E.EINVAL)
        creat = bool(flags & os.O_CREAT)
        follow = not (flags & os.O_NOFOLLOW or (creat and flags & os.O_EXCL))
        created = kept = False
        if not creat and not resolve:  # a plain lookup: the cached walk (same outcome)
            m, d, magic, kept = self._resolve(ctx, base, path, follow)
            slash = path[-1:] == b"/"
        else:
            w = self._walk_for(ctx, base, resolve)
            m, d, last, slash = w.parent(base.mount, base.dentry, path)
            while True:  # the last component; loops while following symlinks (open_last_lookups)
                if last is None or last == b"." or last == b"..":
                    m, d = w.last(m, d, last, True, False)
                    break
                if creat and slash:
                    fail(E.EISDIR)
                w.magic = None
                child = w.child(m, d, last)
                if child is None:
                    if not creat or self._procfs(m):  # (procfs: its lookup fails first)
                        fail(E.ENOENT)
                    self._want_write(m)
                    self._may_create(ctx, d.inode)
                    if self.guard is not None:
                        self.guard.create(m, d, last, flags)
                    dir_ = d.inode
                    assert isinstance(dir_, MemDir)
                    fmode, uid, gid = self._owner(ctx, dir_, S_IFREG | (mode & 0o7777 & ~ctx.umask))
                    d = dir_.insert(last, dir_.fs.new_file(fmode, uid, gid), time.time_ns())  # type: ignore[attr-defined]
                    created = True
                    break
                if child.mounted:
                    m, d = w.down(m, child)
                    break
                if child.inode.mode & S_IFMT == S_IFLNK and (follow or slash):
                    w.check_symlink(child)
                    if getattr(child.inode, "jump", None) is not None:
                        m, d = w.follow_link(m, d, child, slash)
                        break
                    w.links += 1
                    if w.links > 40:
                        fail(E.ELOOP)
                    m, d, last, slash2 = w.parent(m, d, child.inode.readlink())
                    slash = slash or slash2
                    continue
                d = child
                break
            magic = w.magic

        inode = d.inode
        kind = inode.mode & S_IFMT
        if creat:
            if flags & os.O_EXCL and not created:
                fail(E.EEXIST)
            if kind == S_IFDIR:
                fail(E.EISDIR)
        if (slash or flags & os.O_DIRECTORY) and kind != S_IFDIR:
            fail(E.ENOTDIR)
        loc = Location(m, d)
        if flags & os.O_PATH:
            if self.guard is not None:
                self.guard.see(m, d)
            fd = magic.open_host(os.O_PATH) if magic is not None else inode.open_path()
            return Opened(self._register(fd, loc), fd)
        if not created and inode is not magic:  # an object outside the VFS: open_magic decides
            self._may_open(ctx, m, inode, flags)
        if not created and inode is not magic and self.guard is not None:
            self.guard.open(m, d, flags)  # (a reopened pipe or socket is the guest's already)
        if magic is not None:
            fd = magic.open_host(flags & ~os.O_CREAT)
            return Opened(self._register(fd, loc), fd)
        if flags & os.O_TRUNC and kind == S_IFREG and not created:
            inode.truncate(0)
        fd = inode.open_host(flags & ~os.O_TRUNC)
        opened = Opened(self._register(fd, loc), fd)
        # One name only: a reopen does not register the name it was opened by (procfs's fd
        # links would show another name of a hard-linked file).
        if kept and kind == S_IFREG and inode.nlink == 1:
            opened.reopen = inode.reopen(flags)
        return opened

    def open_location(self, ctx: FsContext, loc: Location, flags: int) -> Opened:
        """Reopen what ``loc`` names with ``flags`` (no creation): for procfs's magic links."""
        inode = loc.inode
        if flags & os.O_PATH:
            if self.guard is not None:
                self.guard.see(loc.mount, loc.dentry)
            fd = inode.open_path()
        else:
            if flags & os.O_DIRECTORY and not _is_dir(inode):
                fail(E.ENOTDIR)
            self._may_open(ctx, loc.mount, inode, flags)
            if self.guard is not None:
                self.guard.open(loc.mount, loc.dentry, flags)
            if flags & os.O_TRUNC and inode.mode & S_IFMT == S_IFREG:
                inode.truncate(0)
            fd = inode.open_host(flags & ~(os.O_TRUNC | os.O_CREAT | os.O_EXCL))
        return Opened(self._register(fd, loc), fd)

    def _may_open(self, ctx: FsContext, m: Mount, inode: Inode, flags: int) -> None:
        kind = inode.mode & S_IFMT
        if kind == S_IFLNK:
            fail(E.ELOOP)
        want = _ACC_MASK[flags & os.O_ACCMODE] | (MAY_WRITE if flags & os.O_TRUNC else 0)
        if kind == S_IFDIR and want & MAY_WRITE:
            fail(E.EISDIR)
        if want & MAY_WRITE and kind in (S_IFREG, S_IFDIR) and self._readonly(m, inode):
            fail(E.EROFS)
        if not permitted(ctx, inode, want):
            fail(E.EACCES)
        if flags & os.O_NOATIME and not is_owner(ctx, inode):
            fail(E.EPERM)

    def _open_tmpfile(self, ctx: FsContext, base: Location, path: bytes, flags: int, mode: int,
                      resolve: int = 0) -> Opened:
        if flags & os.O_ACCMODE == os.O_RDONLY:
            fail(E.EINVAL)
        m, d = self._walk_for(ctx, base, resolve).resolve(base, path, directory=True)
        loc = Location(m, d)
        self._want_write(loc.mount)
        dir_ = loc.inode
        if not isinstance(dir_, MemDir):
            fail(E.EOPNOTSUPP)
        self._may_create(ctx, dir_)
        if self.guard is not None:
            self.guard.create(loc.mount, loc.dentry, None, flags)
        fmode, uid, gid = self._owner(ctx, dir_, S_IFREG | (mode & 0o7777 & ~ctx.umask))
        inode = dir_.fs.new_file(fmode, uid, gid)  # type: ignore[attr-defined]
        dentry = Dentry(b"#%d" % inode.ino, loc.dentry, inode)
        dentry.dead = True  # unnamed: path_of says "/dir/#ino (deleted)" as Linux does
        fd = inode.open_host(flags & PASS_FLAGS)
        if flags & os.O_EXCL:
            inode.released()  # can never be linked: the guest's fd alone keeps it
        else:
            inode.linkable = True
        return Opened(self._register(fd, Location(loc.mount, dentry)), fd)

    # ---- fd identity ----------------------------------------------------------------------------

    def _register(self, fd: int, loc: Location) -> Location:
        key = loc.inode.host_key()  # (an image file's or a memfd's identity, known already)
        if key is None:
            try:
                s = os.fstat(fd)
            except OSError:
                os.close(fd)
                raise
            key = (s.st_dev, s.st_ino)
        if loc.inode.ephemeral_host:
            self._ephemeral[key] = loc
            self._ephemeral.move_to_end(key)
            if len(self._ephemeral) > _EPHEMERAL_KEEP:
                self._ephemeral.popitem(last=False)
        else:
            self._by_host[key] = loc
        return loc

    def location_of_host_fd(self, fd: int) -> Location | None:
        """The Location behind a host fd the VFS handed out; None for anything else."""
        s = os.fstat(fd)
        key = (s.st_dev, s.st_ino)
        loc = self._by_host.get(key) or self._ephemeral.get(key)
        if loc is not None:
            inode = loc.inode
            if isinstance(inode, MemFile) and inode.memfd is None and inode.detached is not None:
                inode.detached = s  # an unlinked file: only the guest's fd knows its size now
        return loc

    def stand_in_fd(self, loc: Location) -> int:
        """A host fd that names ``loc`` but carries none of its data: for O_PATH opens.

        The kernel will not hand an O_PATH file to another process (SECCOMP_IOCTL_NOTIF_ADDFD
        refuses it, as pidfd_getfd does), so the guest gets an empty sealed memfd whose identity
        maps to ``loc``: fstat, fchdir, *at() and execveat through it work; it reads as empty.
        """
        fd = os.memfd_create("linuxabi-opath", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
            s = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        key = (s.st_dev, s.st_ino)
        self._ephemeral[key] = loc
        self._ephemeral.move_to_end(key)
        if len(self._ephemeral) > _EPHEMERAL_KEEP:
            self._ephemeral.popitem(last=False)
        self._stand_ins[key] = None
        if len(self._stand_ins) > _EPHEMERAL_KEEP:
            self._stand_ins.popitem(last=False)
        return fd

    def is_stand_in(self, fd: int) -> bool:
        """Whether host fd ``fd`` is an O_PATH stand-in (calls that need a real open: EBADF)."""
        s = os.fstat(fd)
        return (s.st_dev, s.st_ino) in self._stand_ins

    def location_of_host_key(self, dev: int, ino: int) -> Location | None:
        """The same, from a (st_dev, st_ino) pair (e.g. a /proc/PID/maps line)."""
        return self._by_host.get((dev, ino)) or self._ephemeral.get((dev, ino))

    @staticmethod
    def wants_host_stat(loc: Location) -> bool:
        """Whether ``loc`` is an unlinked file whose size only the host object knows now: found
        from a key, it should be found again with ``location_of_host_fd`` (which refreshes it)."""
        inode = loc.inode
        return isinstance(inode, MemFile) and inode.memfd is None and inode.detached is not None

    # ---- creation -------------------------------------------------------------------------------

    @staticmethod
    def _readonly(m: Mount, inode: Inode | None = None) -> bool:
        """Whether writes to ``inode``'s contents (or, with None, any change) on ``m`` fail with EROFS."""
        return m.readonly or (m.fs.readonly and not (inode is not None and inode.writable_on_readonly_fs))

    @staticmethod
    def _procfs(m: Mount) -> bool:
        """Whether changes on ``m`` are refused as Linux's procfs refuses them (not with EROFS)."""
        return m.fs.refuses_like_procfs and not m.readonly

    def _want_write(self, m: Mount) -> None:
        if m.readonly or m.fs.readonly:
            fail(E.EROFS)

    def _filename_create(self, ctx: FsContext, base: Location, path: bytes, *,
                         is_dir: bool) -> tuple[Mount, Dentry, bytes]:
        """filename_create: the parent of a name that must not exist yet."""
        w = Walk(self.table, ctx)
        m, d, last, slash = w.parent(base.mount, base.dentry, path)
        if last is None or last == b"." or last == b"..":
            fail(E.EEXIST)
        if w.child(m, d, last) is not None:
            fail(E.EEXIST)
        if slash and not is_dir or self._procfs(m):  # (procfs: its lookup fails first)
            fail(E.ENOENT)
        self._want_write(m)
        return m, d, last

    @staticmethod
    def _may_create(ctx: FsContext, dir_: Inode) -> None:
        if isinstance(dir_, DirInode) and dir_.removed:
            fail(E.ENOENT)
        if not permitted(ctx, dir_, MAY_WRITE | MAY_EXEC):
            fail(E.EACCES)
        if not isinstance(dir_, MemDir):
            fail(E.EPERM)

    @staticmethod
    def _owner(ctx: FsContext, dir_: Inode, mode: int) -> tuple[int, int, int]:
        """inode_init_owner: fsuid, and fsgid unless the directory is setgid."""
        if dir_.mode & S_ISGID:
            gid = dir_.gid
            if mode & S_IFMT == S_IFDIR:
                mode |= S_ISGID
            elif mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP and ctx.uid != 0 and not in_group(ctx, gid):
                mode &= ~S_ISGID
        else:
            gid = ctx.gid
        return mode, ctx.uid, gid

    def _create_in(self, ctx: FsContext, base: Location, path: bytes, *,
                   is_dir: bool) -> "tuple[Mount, Dentry, bytes, MemDir, TmpFs]":
        """Where a new name goes, once the parent may take it (permission, capability)."""
        m, d, name = self._filename_create(ctx, base, path, is_dir=is_dir)
        dir_ = d.inode
        self._may_create(ctx, dir_)
        if self.guard is not None:
            self.guard.create(m, d, name, None)
        assert isinstance(dir_, MemDir)
        return m, d, name, dir_, dir_.fs  # type: ignore[return-value]

    def mkdir(self, ctx: FsContext, base: Location, path: bytes, mode: int) -> None:
        m, d, name, dir_, fs = self._create_in(ctx, base, path, is_dir=True)
        dmode, uid, gid = self._owner(ctx, dir_, S_IFDIR | (mode & ~ctx.umask & 0o1777))
        dir_.insert(name, fs.new_dir(dmode, uid, gid), time.time_ns())

    def mknod(self, ctx: FsContext, base: Location, path: bytes, mode: int, dev: int) -> None:
        kind = mode & S_IFMT or S_IFREG
        if kind == S_IFDIR:
            fail(E.EPERM)
        if kind not in (S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
            fail(E.EINVAL)
        m, d, name = self._filename_create(ctx, base, path, is_dir=False)
        dir_ = d.inode
        self._may_create(ctx, dir_)
        if kind in (S_IFCHR, S_IFBLK):
            fail(E.EPERM)  # no CAP_MKNOD in the guest's user namespace
        if self.guard is not None:
            self.guard.create(m, d, name, None)
        assert isinstance(dir_, MemDir)
        fs: TmpFs = dir_.fs  # type: ignore[assignment]
        fmode, uid, gid = self._owner(ctx, dir_, kind | (mode & 0o7777 & ~ctx.umask))
        inode = fs.new_file(fmode, uid, gid) if kind == S_IFREG else fs.new_special(fmode, 0, uid, gid)
        dir_.insert(name, inode, time.time_ns())

    def bind_socket(self, ctx: FsContext, base: Location, path: bytes, make_host: Callable[[], str]) -> Location:
        """bind(2) of an AF_UNIX socket to ``path`` (unix_bind_bsd): a socket inode made where
        and as mknod makes one (errno order included; EEXIST is the caller's EADDRINUSE), mode
        0777 & ~umask. ``make_host`` is called last, once every check passed: it binds the host
        socket and returns its shadow name in the scratch; if it raises, nothing is created."""
        m, d, name, dir_, fs = self._create_in(ctx, base, path, is_dir=False)
        fmode, uid, gid = self._owner(ctx, dir_, S_IFSOCK | (0o777 & ~ctx.umask))
        inode = fs.new_socket(fmode, uid, gid, make_host())
        return Location(m, dir_.insert(name, inode, time.time_ns()))

    def socket_location(self, ctx: FsContext, base: Location, path: bytes) -> Location:
        """What connect(2) or sendto(2) to an AF_UNIX ``path`` reaches (unix_find_bsd): the path
        followed, and write permission on what it names (a capability to write it, too)."""
        loc = self.lookup(ctx, base, path)
        if not permitted(ctx, loc.inode, MAY_WRITE):
            fail(E.EACCES)
        if self.guard is not None:
            self.guard.open(loc.mount, loc.dentry, os.O_WRONLY)
        return loc

    def symlink(self, ctx: FsContext, target: bytes, base: Location, path: bytes) -> None:
        if not target:
            fail(E.ENOENT)
        if len(target) >= PATH_MAX:
            fail(E.ENAMETOOLONG)
        m, d, name, dir_, fs = self._create_in(ctx, base, path, is_dir=False)
        _, uid, gid = self._owner(ctx, dir_, S_IFLNK | 0o777)
        dir_.insert(name, fs.new_symlink(target, uid, gid), time.time_ns())

    def link(self, ctx: FsContext, base1: Location, path1: bytes, base2: Location, path2: bytes, *,
             follow: bool = False) -> None:
        self.link_location(ctx, self.lookup(ctx, base1, path1, follow=follow), base2, path2)

    def link_location(self, ctx: FsContext, old: Location, base2: Location, path2: bytes) -> None:
        """linkat(fd, "", ..., AT_EMPTY_PATH): a new name for what ``old`` names."""
        m, d, name = self._filename_create(ctx, base2, path2, is_dir=False)
        if old.mount is not m:
            fail(E.EXDEV)
        inode = old.inode
        if ctx.uid != 0 and ctx.uid != inode.uid:  # fs.protected_hardlinks
            mode = inode.mode
            if (mode & S_IFMT != S_IFREG or mode & S_ISUID or mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP
                    or not permitted(ctx, inode, MAY_READ | MAY_WRITE)):
                fail(E.EPERM)
        dir_ = d.inode
        self._may_create(ctx, dir_)
        if _is_dir(inode):
            fail(E.EPERM)
        if inode.nlink <= 0 and not getattr(inode, "linkable", False):
            fail(E.ENOENT)
        if self.guard is not None:
            self.guard.link(old.mount, old.dentry, m, d, name)
        assert isinstance(dir_, MemDir)
        dir_.insert(name, inode, time.time_ns())
        if isinstance(inode, MemFile):
            inode.linkable = False

    # ---- removal and rename ---------------------------------------------------------------------

    @staticmethod
    def _may_delete(ctx: FsContext, dir_: Inode, victim: Dentry, isdir: bool) -> None:
        if not permitted(ctx, dir_, MAY_WRITE | MAY_EXEC):
            fail(E.EACCES)
        inode = victim.inode
        if dir_.mode & S_ISVTX and ctx.uid != 0 and ctx.uid != inode.uid and ctx.uid != dir_.uid:
            fail(E.EPERM)
        if isdir:
            if not _is_dir(inode):
                fail(E.ENOTDIR)
        elif _is_dir(inode):
            fail(E.EISDIR)
        if isinstance(dir_, DirInode) and dir_.removed:
            fail(E.ENOENT)
        if not isinstance(dir_, MemDir):
            fail(E.EPERM)

    def unlink(self, ctx: FsContext, base: Location, path: bytes) -> None:
        w = Walk(self.table, ctx)
        m, d, last, slash = w.parent(base.mount, base.dentry, path)
        if last is None or last == b"." or last == b"..":
            fail(E.EISDIR)
        procfs = self._procfs(m)
        if not procfs:
            self._want_write(m)
        victim = w.child(m, d, last)
        if victim is None:
            fail(E.ENOENT)
        if procfs:
            fail(E.EPERM)  # (before Linux's checks of the kind of file: procfs has no unlink)
        if slash:
            fail(E.EISDIR if _is_dir(victim.inode) else E.ENOTDIR)
        self._may_delete(ctx, d.inode, victim, False)
        if self.table.is_mountpoint(m, victim):
            fail(E.EBUSY)
        if self.guard is not None:
            self.guard.delete(m, d, victim)
        d.inode.remove(victim, time.time_ns())  # type: ignore[attr-defined]

    def rmdir(self, ctx: FsContext, base: Location, path: bytes) -> None:
        w = Walk(self.table, ctx)
        m, d, last, _ = w.parent(base.mount, base.dentry, path)
        if last is None:
            fail(E.EBUSY)
        if last == b".":
            fail(E.EINVAL)
        if last == b"..":
            fail(E.ENOTEMPTY)
        procfs = self._procfs(m)
        if not procfs:
            self._want_write(m)
        victim = w.child(m, d, last)
        if victim is None:
            fail(E.ENOENT)
        if procfs:
            fail(E.EPERM)  # (before Linux's checks of the kind of file: procfs has no unlink)
        self._may_delete(ctx, d.inode, victim, True)
        if self.table.is_mountpoint(m, victim):
            fail(E.EBUSY)
        if not victim.inode.is_empty():  # type: ignore[attr-defined]
            fail(E.ENOTEMPTY)
        if self.guard is not None:
            self.guard.delete(m, d, victim)
        d.inode.remove(victim, time.time_ns())  # type: ignore[attr-defined]

    def rename(self, ctx: FsContext, base1: Location, path1: bytes, base2: Location, path2: bytes,
               flags: int = 0) -> None:
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT):
            fail(E.EINVAL)
        exchange = bool(flags & RENAME_EXCHANGE)
        if exchange and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT):
            fail(E.EINVAL)
        if flags & RENAME_WHITEOUT:
            fail(E.EPERM)  # needs CAP_MKNOD in the initial namespace
        w1, w2 = Walk(self.table, ctx), Walk(self.table, ctx)
        m1, d1, last1, slash1 = w1.parent(base1.mount, base1.dentry, path1)
        m2, d2, last2, slash2 = w2.parent(base2.mount, base2.dentry, path2)
        if m1 is not m2:
            fail(E.EXDEV)
        if last1 is None or last1 == b"." or last1 == b"..":
            fail(E.EBUSY)
        if last2 is None or last2 == b"." or last2 == b"..":
            fail(E.EEXIST if flags & RENAME_NOREPLACE else E.EBUSY)
        procfs = self._procfs(m1)
        if not procfs:
            self._want_write(m1)
        old = w1.child(m1, d1, last1)
        if old is None:
            fail(E.ENOENT)
        new = w2.child(m2, d2, last2)
        if procfs:
            fail(E.ENOENT if new is None else E.EPERM)
        if flags & RENAME_NOREPLACE and new is not None:
            fail(E.EEXIST)
        if exchange:
            if new is None:
                fail(E.ENOENT)
            if slash2 and not _is_dir(new.inode):
                fail(E.ENOTDIR)
        if not _is_dir(old.inode) and (slash1 or (slash2 and not exchange)):
            fail(E.ENOTDIR)
        if d1 is not d2:
            if _ancestor_or_self(old, d2):
                fail(E.EINVAL)  # a directory into its own subtree
            if new is not None and _ancestor_or_self(new, d1):
                fail(E.EINVAL if exchange else E.ENOTEMPTY)
        # vfs_rename
        if new is not None and old.inode is new.inode:
            return  # two names of one inode: nothing to do, as Linux
        is_dir = _is_dir(old.inode)
        self._may_delete(ctx, d1.inode, old, is_dir)
        if new is None:
            self._may_create(ctx, d2.inode)
        else:
            self._may_delete(ctx, d2.inode, new, _is_dir(new.inode) if exchange else is_dir)
        if d1.inode is not d2.inode:  # '..' changes: the moved directory must be writable
            if is_dir and not permitted(ctx, old.inode, MAY_WRITE):
                fail(E.EACCES)
            if exchange and new is not None and _is_dir(new.inode) and not permitted(ctx, new.inode, MAY_WRITE):
                fail(E.EACCES)
        if self.table.is_mountpoint(m1, old) or (new is not None and self.table.is_mountpoint(m2, new)):
            fail(E.EBUSY)
        if self.guard is not None:
            self.guard.rename(m1, old, d2, last2, new, exchange)
        src, dst = d1.inode, d2.inode
        assert isinstance(src, MemDir) and isinstance(dst, MemDir)
        now = time.time_ns()
        self.generation += 1  # the moved dentries (and all below them) get new paths
        if exchange:
            assert new is not None
            src.exchange(old, dst, new, now)
            return
        if new is not None:
            if _is_dir(new.inode) and not new.inode.is_empty():  # type: ignore[attr-defined]
                fail(E.ENOTEMPTY)
            dst.remove(new, now)
        src.move(old, dst, last2, now)

    # ---- metadata -------------------------------------------------------------------------------

    def chmod(self, ctx: FsContext, base: Location, path: bytes, mode: int, *, follow: bool = True) -> None:
        self.chmod_location(ctx, self.lookup(ctx, base, path, follow=follow), mode)

    def chmod_location(self, ctx: FsContext, loc: Location, mode: int) -> None:
        inode = loc.inode
        if inode.mode & S_IFMT == S_IFLNK:
            fail(E.EOPNOTSUPP)
        if self._procfs(loc.mount):
            fail(E.EPERM)
        self._want_write(loc.mount)
        if not is_owner(ctx, inode):
            fail(E.EPERM)
        if self.guard is not None:
            self.guard.setattr(loc.mount, loc.dentry)
        mode &= 0o7777
        if ctx.uid != 0 and not in_group(ctx, inode.gid):
            mode &= ~S_ISGID
        inode.mode = (inode.mode & S_IFMT) | mode
        inode.ctime_ns = time.time_ns()
        if _is_dir(inode):
            EPOCH.bump()  # search permission: cached lookups through it may now fail
        if isinstance(inode, MemFile):
            inode.sync_mode()

    def chown(self, ctx: FsContext, base: Location, path: bytes, uid: int, gid: int, *,
              follow: bool = True) -> None:
        self.chown_location(ctx, self.lookup(ctx, base, path, follow=follow), uid, gid)

    def chown_location(self, ctx: FsContext, loc: Location, uid: int, gid: int) -> None:
        procfs = self._procfs(loc.mount)
        if not procfs:
            self._want_write(loc.mount)
        inode = loc.inode
        owner = ctx.uid == inode.uid
        if ctx.uid != 0:
            if uid != -1 and not (owner and uid == inode.uid):
                fail(E.EPERM)
            if gid != -1 and not (owner and (gid == inode.gid or in_group(ctx, gid))):
                fail(E.EPERM)
        mode = inode.mode
        if not _is_dir(inode):  # chown kills setuid, and setgid where it means "executable"
            mode &= ~S_ISUID
            if mode & S_IXGRP:
                mode &= ~S_ISGID
        if mode != inode.mode and not is_owner(ctx, inode):
            fail(E.EPERM)
        if self.guard is not None:
            self.guard.setattr(loc.mount, loc.dentry)
        if procfs:
            return  # accepted, and nothing kept (see FileSystem.refuses_like_procfs)
        inode.mode = mode
        if uid != -1:
            inode.uid = uid
        if gid != -1:
            inode.gid = gid
        inode.ctime_ns = time.time_ns()
        if _is_dir(inode):
            EPOCH.bump()
        if isinstance(inode, MemFile):
            inode.sync_mode()

    def utimens(self, ctx: FsContext, base: Location, path: bytes, atime_ns: int | None, mtime_ns: int | None,
                *, follow: bool = True) -> None:
        if atime_ns is None and mtime_ns is None:
            return  # Linux answers 0 before even looking the path up
        self.utimens_location(ctx, self.lookup(ctx, base, path, follow=follow), atime_ns, mtime_ns)

    def utimens_location(self, ctx: FsContext, loc: Location, atime_ns: int | None, mtime_ns: int | None) -> None:
        if atime_ns is None and mtime_ns is None:
            return
        procfs = self._procfs(loc.mount)
        if not procfs:
            self._want_write(loc.mount)
        inode = loc.inode
        now = time.time_ns()
        if not is_owner(ctx, inode):
            # The caller turned UTIME_NOW into the current time: (now, now) is a "touch", which
            # write permission allows; explicit times need ownership.
            touch = (atime_ns is not None and atime_ns == mtime_ns and abs(now - atime_ns) < _NOW_SLACK_NS)
            if not touch:
                fail(E.EPERM)
            if not permitted(ctx, inode, MAY_WRITE):
                fail(E.EACCES)
        if self.guard is not None:
            self.guard.setattr(loc.mount, loc.dentry)
        if procfs:
            return  # accepted, and nothing kept
        inode.set_times(atime_ns, mtime_ns, now)

    def truncate(self, ctx: FsContext, base: Location, path: bytes, length: int) -> None:
        if length < 0:
            fail(E.EINVAL)
        loc = self.lookup(ctx, base, path)
        inode = loc.inode
        kind = inode.mode & S_IFMT
        if kind == S_IFDIR:
            fail(E.EISDIR)
        if kind != S_IFREG:
            fail(E.EINVAL)
        procfs = self._procfs(loc.mount)
        if not procfs:
            self._want_write(loc.mount)
        if not permitted(ctx, inode, MAY_WRITE):
            fail(E.EACCES)
        if procfs:
            return  # accepted, and nothing kept (see FileSystem.refuses_like_procfs)
        if self.guard is not None:
            self.guard.setattr(loc.mount, loc.dentry)
        inode.truncate(length)

    # ---- directories and paths ------------------------------------------------------------------

    def getdents(self, loc: Location, cookie: int) -> Iterator[DirEntry]:
        """Entries from position ``cookie`` on: "." (cookie 0), ".." (1), then each entry at
        its own cookie (a per-directory sequence number, stable while others come and go)."""
        entries, parent_ino = self.listing(loc)
        return self._dirents(loc.inode, parent_ino, entries, cookie)

    @staticmethod
    def listing(loc: Location) -> tuple[Sequence[Dentry], int]:
        """A directory's entries in cookie order, and the inode number of its "..". The
        sequence is the same object until the directory changes (callers may cache by it)."""
        inode = loc.inode
        if not _is_dir(inode):
            fail(E.ENOTDIR)
        if isinstance(inode, DirInode) and inode.removed:
            fail(E.ENOENT)
        parent = loc.dentry.parent
        return inode.listing(), (parent.inode.ino if parent is not None else inode.ino)

    @staticmethod
    def _dirents(inode: Inode, parent_ino: int, entries: Sequence[Dentry], cookie: int) -> Iterator[DirEntry]:
        if cookie <= 0:
            yield DirEntry(inode.ino, 1, 4, b".")
        if cookie <= 1:
            yield DirEntry(parent_ino, 2, 4, b"..")
        start = bisect.bisect_left(entries, max(cookie, 2), key=lambda d: d.cookie)
        for d in entries[start:]:
            child = d.inode
            yield DirEntry(child.ino, d.cookie + 1, DT_BY_TYPE.get(child.mode & S_IFMT, 0), d.name)

    def _path(self, loc: Location, root: Location) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        m, d = loc.mount, loc.dentry
        reachable = True
        while not (d is root.dentry and m is root.mount):
            if d is m.root:
                parent_m, mp = m.parent, m.mountpoint
                if parent_m is None or mp is None:
                    reachable = False
                    break
                m, d = parent_m, mp
                continue
            up = d.parent
            if up is None:
                reachable = False
                break
            parts.append(d.name)
            d = up
        parts.reverse()
        return b"/" + b"/".join(parts), reachable

    def canonical_path(self, m: Mount, d: Dentry) -> bytes:
        """Where (m, d) lives, from the namespace root (no chroot applies): what capabilities
        name. A removed object keeps the path it was last reachable at."""
        parts: list[bytes] = []
        while True:
            if d is m.root:
                mp = m.mountpoint
                if mp is None or m.parent is None:
                    break
                m, d = m.parent, mp
                continue
            up = d.parent
            if up is None:
                break
            parts.append(d.name)
            d = up
        if not parts:
            return b"/"
        parts.reverse()
        return b"/" + b"/".join(parts)

    def is_stand_in_key(self, dev: int, ino: int) -> bool:
        return (dev, ino) in self._stand_ins

    def getcwd(self, ctx: FsContext) -> bytes:
        cwd = ctx.cwd
        if cwd.dentry.dead:
            fail(E.ENOENT)
        path, reachable = self._path(cwd, ctx.root)
        return path if reachable else b"(unreachable)" + path

    def path_of(self, loc: Location, root: Location) -> bytes:
        """The path /proc shows for ``loc`` (cwd, fd links), " (deleted)" once it is gone."""
        path, _ = self._path(loc, root)
        return path + b" (deleted)" if loc.dentry.dead else path

    def statfs(self, loc: Location) -> dict[str, int]:
        d = loc.mount.fs.statfs()
        if loc.mount.readonly:
            d["f_flags"] = d.get("f_flags", 0) | ST_RDONLY
        return d
