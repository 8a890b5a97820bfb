"""Shared pieces of the VFS tests.

- ``build_image``: a small image tree with every kind of entry a walk must handle;
- ``make_vfs``: a Vfs over it (overlay, read-only image, or tmpfs);
- ``run_native`` / ``run_vfs``: the same list of operations run natively, in a forked child
  chrooted into a twin tree with the given credentials (Linux is the oracle), and on the
  Vfs with the same credentials; results are normalised to comparable tuples
  ("ok", value) / ("err", "ENOENT");
- ``snapshot_native`` / ``snapshot_vfs``: the whole tree as comparable data;
- ``tree_hash``: everything about a host tree a write could change.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import pickle
import random
import stat
from pathlib import Path
from typing import Any, Callable

from vfs import FsContext, ImageFs, OverlayFs, TmpFs, Vfs

UID = 1000
GID = 1000
CHAIN = 40  # chain/l0 -> l1 -> ... -> l40 -> /etc/passwd: l0 needs 41 links, l1 needs 40

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
SYS_renameat2 = 316

Op = tuple[Any, ...]
Result = tuple[str, Any]


def build_image(root: Path) -> None:
    """The test image. Built twice from scratch for differential runs (copytree would lose
    the hard link)."""
    root.mkdir(parents=True, exist_ok=True)
    for d in ("etc", "bin", "usr/bin", "srv/deep/er/est", "data", "run", "chain", "empty",
              "home/user", "sticky", "private", "noexec", "ro", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/shadow").write_bytes(b"root:*:1::::::\n")
    os.chmod(root / "etc/shadow", 0o600)
    (root / "bin/busybox").write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    os.chmod(root / "bin/busybox", 0o755)
    os.symlink("busybox", root / "bin/sh")  # relative
    os.symlink("/bin/busybox", root / "bin/ls")  # absolute
    os.symlink("../../bin/busybox", root / "usr/bin/env")
    os.symlink("/../../../../etc", root / "escape_abs")  # tries to leave the root
    os.symlink("../../../../../etc/passwd", root / "escape_rel")
    os.symlink("missing", root / "dangling")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("selfloop", root / "selfloop")
    os.symlink("srv/deep", root / "deeplink")
    os.symlink("etc/passwd/", root / "slashlink")
    for i in range(CHAIN):
        os.symlink(f"l{i + 1}", root / f"chain/l{i}")
    os.symlink("/etc/passwd", root / f"chain/l{CHAIN}")
    (root / "data/a").write_bytes(b"shared contents\n")
    os.link(root / "data/a", root / "data/b")
    (root / "data/big").write_bytes(random.Random(7).randbytes(3 << 20))
    (root / "srv/deep/er/est/leaf").write_bytes(b"leaf\n")
    (root / "srv/file").write_bytes(b"0123456789")
    os.mkfifo(root / "run/fifo")
    os.chmod(root / "sticky", 0o1777)
    (root / "sticky/theirs").write_bytes(b"theirs\n")
    (root / "sticky/mine").write_bytes(b"mine\n")
    os.chown(root / "sticky/mine", UID, GID)
    os.chmod(root / "sticky/theirs", 0o666)
    os.chmod(root / "private", 0o700)
    (root / "private/secret").write_bytes(b"secret\n")
    os.chmod(root / "noexec", 0o666)
    (root / "noexec/file").write_bytes(b"x\n")
    os.chown(root / "home/user", UID, GID)
    (root / "home/user/notes").write_bytes(b"notes\n")
    os.chown(root / "home/user/notes", UID, GID)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "ro", 0o555)
    (root / "ro/file").write_bytes(b"ro\n")
    os.chmod(root / "ro/file", 0o444)


def tree_hash(root: Path) -> str:
    """Contents, modes, owners, sizes, link counts, mtimes and ctimes of every entry: any
    write to the tree (even one that restores mtime) changes it."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {s.st_mode} {s.st_uid} {s.st_gid} {s.st_size} "
                     f"{s.st_nlink} {s.st_mtime_ns} {s.st_ctime_ns}\n".encode())
            if stat.S_ISLNK(s.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(s.st_mode):
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    s = os.lstat(root)
    h.update(f". {s.st_mode} {s.st_mtime_ns} {s.st_ctime_ns}".encode())
    return h.hexdigest()


def make_vfs(kind: str, image: Path) -> Vfs:
    if kind == "overlay":
        return Vfs(OverlayFs(ImageFs(str(image))))
    if kind == "image":
        return Vfs(ImageFs(str(image)))
    if kind == "tmpfs":
        return Vfs(TmpFs())
    raise ValueError(kind)


def ctx_for(v: Vfs, uid: int = 0, gid: int = 0, groups: tuple[int, ...] = ()) -> FsContext:
    ctx = v.new_context()
    ctx.uid, ctx.gid, ctx.groups = uid, gid, groups
    return ctx


def errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def _norm_stat(mode: int, nlink: int, size: int, uid: int, gid: int) -> tuple[Any, ...]:
    fmt = stat.S_IFMT(mode)
    return (fmt, stat.S_IMODE(mode), nlink if fmt != stat.S_IFDIR else None,
            size if fmt in (stat.S_IFREG, stat.S_IFLNK) else None, uid, gid)


def _io_after_open(fd: int, flags: int, fmt: int) -> tuple[Any, ...]:
    """What a guest would see using the fd natively: data read, whether a write works."""
    out: list[Any] = [fmt]
    if fmt == stat.S_IFREG:
        acc = flags & os.O_ACCMODE
        try:
            out.append(os.pread(fd, 32, 0))
        except OSError as e:
            out.append(errname(e))
        try:
            out.append(os.write(fd, b"W"))
        except OSError as e:
            out.append(errname(e))
        out.append(acc)
    return tuple(out)


def _fifo_nonblock(mode_of: Callable[[], int]) -> int:
    """A blocking open of a fifo would wait for a partner forever: make it O_NONBLOCK (on
    both sides alike)."""
    try:
        return os.O_NONBLOCK if stat.S_ISFIFO(mode_of()) else 0
    except OSError:
        return 0


# ---- the native side ---------------------------------------------------------------------------


def _native_op(op: Op) -> Any:
    name, *a = op
    if name == "stat":
        s = os.stat(a[0], follow_symlinks=a[1])
        return _norm_stat(s.st_mode, s.st_nlink, s.st_size, s.st_uid, s.st_gid)
    if name == "open":
        fd = os.open(a[0], a[1] | _fifo_nonblock(lambda: os.stat(a[0]).st_mode), a[2])
        try:
            return _io_after_open(fd, a[1], stat.S_IFMT(os.fstat(fd).st_mode))
        finally:
            os.close(fd)
    if name == "read":
        fd = os.open(a[0], os.O_RDONLY | _fifo_nonblock(lambda: os.stat(a[0]).st_mode))
        try:
            return os.read(fd, 1 << 16)
        finally:
            os.close(fd)
    if name == "append":
        fd = os.open(a[0], os.O_WRONLY | os.O_APPEND | _fifo_nonblock(lambda: os.stat(a[0]).st_mode))
        try:
            return os.write(fd, a[1])
        finally:
            os.close(fd)
    if name == "mkdir":
        return os.mkdir(a[0], a[1])
    if name == "rmdir":
        return os.rmdir(a[0])
    if name == "unlink":
        return os.unlink(a[0])
    if name == "rename":
        if libc.syscall(SYS_renameat2, AT_FDCWD, os.fsencode(a[0]), AT_FDCWD, os.fsencode(a[1]), a[2]):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return None
    if name == "link":  # os.link() calls link(2), which never follows: use linkat
        if libc.linkat(AT_FDCWD, os.fsencode(a[0]), AT_FDCWD, os.fsencode(a[1]), 0x400 if a[2] else 0):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return None
    if name == "symlink":
        return os.symlink(a[0], a[1])
    if name == "readlink":
        return os.fsencode(os.readlink(os.fsencode(a[0])))
    if name == "chmod":
        return os.chmod(a[0], a[1])
    if name == "chown":
        return os.chown(a[0], a[1], a[2], follow_symlinks=a[3])
    if name == "truncate":
        return os.truncate(a[0], a[1])
    if name == "access":
        if libc.faccessat(AT_FDCWD, os.fsencode(a[0]), a[1], 0):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return None
    if name == "listdir":
        return sorted(os.listdir(os.fsencode(a[0])))
    if name == "mknod":
        return os.mknod(a[0], a[1], a[2] if len(a) > 2 else 0)
    if name == "utime":  # None is UTIME_OMIT
        ts = (ctypes.c_long * 4)(*[x for t in (a[1], a[2]) for x in
                                   ((0, (1 << 30) - 2) if t is None else divmod(t, 10**9))])
        if libc.utimensat(AT_FDCWD, os.fsencode(a[0]), ts, 0 if a[3] else 0x100):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return None
    if name == "chdir":
        return os.chdir(a[0])
    if name == "getcwd":
        return os.getcwdb()
    raise ValueError(name)


def _drop_to(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _readonly_bind(root: Path) -> None:
    MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
    p = os.fsencode(root)
    if libc.unshare(0x20000) or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) \
            or libc.mount(p, p, None, MS_BIND, None) \
            or libc.mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None):
        raise OSError(ctypes.get_errno(), "read-only bind mount")


def run_native(root: Path, ops: list[Op], *, uid: int = 0, gid: int = 0, groups: tuple[int, ...] = (),
               readonly: bool = False) -> list[Result]:
    """Run ``ops`` natively in a child chrooted into ``root`` with the given credentials."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            if readonly:
                _readonly_bind(root)
            os.chroot(root)
            os.chdir("/")
            os.umask(0o022)
            _drop_to(uid, gid, groups)
            results: list[Result] = []
            for op in ops:
                try:
                    results.append(("ok", _native_op(op)))
                except OSError as e:
                    results.append(("err", errname(e)))
            data = pickle.dumps(results)
            while data:
                data = data[os.write(w, data):]
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "native child failed"
    return pickle.loads(b"".join(chunks))


# ---- the VFS side ------------------------------------------------------------------------------


def _b(p: str | bytes) -> bytes:
    return os.fsencode(p)


def _vfs_op(v: Vfs, ctx: FsContext, op: Op) -> Any:
    name, *a = op
    cwd = ctx.cwd
    if name == "stat":
        s = v.stat(ctx, cwd, _b(a[0]), follow=a[1])
        return _norm_stat(s.mode, s.nlink, s.size, s.uid, s.gid)
    if name == "open":
        flags = a[1] | _fifo_nonblock(lambda: v.stat(ctx, cwd, _b(a[0])).mode)
        o = v.open(ctx, cwd, _b(a[0]), flags & ~os.O_CLOEXEC, a[2])
        try:
            assert v.location_of_host_fd(o.host_fd) is not None
            s = v.stat_location(o.location)
            return _io_after_open(o.host_fd, a[1], stat.S_IFMT(s.mode))
        finally:
            os.close(o.host_fd)
    if name == "read":
        o = v.open(ctx, cwd, _b(a[0]), os.O_RDONLY | _fifo_nonblock(lambda: v.stat(ctx, cwd, _b(a[0])).mode), 0)
        try:
            return os.read(o.host_fd, 1 << 16)
        finally:
            os.close(o.host_fd)
    if name == "append":
        o = v.open(ctx, cwd, _b(a[0]), os.O_WRONLY | os.O_APPEND
                   | _fifo_nonblock(lambda: v.stat(ctx, cwd, _b(a[0])).mode), 0)
        try:
            return os.write(o.host_fd, a[1])
        finally:
            os.close(o.host_fd)
    if name == "mkdir":
        return v.mkdir(ctx, cwd, _b(a[0]), a[1])
    if name == "rmdir":
        return v.rmdir(ctx, cwd, _b(a[0]))
    if name == "unlink":
        return v.unlink(ctx, cwd, _b(a[0]))
    if name == "rename":
        return v.rename(ctx, cwd, _b(a[0]), cwd, _b(a[1]), a[2])
    if name == "link":
        return v.link(ctx, cwd, _b(a[0]), cwd, _b(a[1]), follow=a[2])
    if name == "symlink":
        return v.symlink(ctx, _b(a[0]), cwd, _b(a[1]))
    if name == "readlink":
        return v.readlink(ctx, cwd, _b(a[0]))
    if name == "chmod":
        return v.chmod(ctx, cwd, _b(a[0]), a[1])
    if name == "chown":
        return v.chown(ctx, cwd, _b(a[0]), a[1], a[2], follow=a[3])
    if name == "truncate":
        return v.truncate(ctx, cwd, _b(a[0]), a[1])
    if name == "access":
        return v.access(ctx, cwd, _b(a[0]), a[1])
    if name == "listdir":
        o = v.open(ctx, cwd, _b(a[0]), os.O_RDONLY | os.O_DIRECTORY, 0)
        try:
            loc = v.location_of_host_fd(o.host_fd)
            assert loc is not None
            return sorted(e.name for e in v.getdents(loc, 0) if e.name not in (b".", b".."))
        finally:
            os.close(o.host_fd)
    if name == "mknod":
        return v.mknod(ctx, cwd, _b(a[0]), a[1], a[2] if len(a) > 2 else 0)
    if name == "utime":
        return v.utimens(ctx, cwd, _b(a[0]), a[1], a[2], follow=a[3])
    if name == "chdir":
        loc = v.lookup(ctx, cwd, _b(a[0]), directory=True)
        v.access(ctx, loc, b".", 1)
        ctx.cwd = loc
        return None
    if name == "getcwd":
        return v.getcwd(ctx)
    raise ValueError(name)


def run_vfs(v: Vfs, ops: list[Op], *, uid: int = 0, gid: int = 0, groups: tuple[int, ...] = ()) -> list[Result]:
    ctx = ctx_for(v, uid, gid, groups)
    results: list[Result] = []
    for op in ops:
        try:
            results.append(("ok", _vfs_op(v, ctx, op)))
        except OSError as e:
            results.append(("err", errname(e)))
    return results


# ---- whole-tree snapshots ----------------------------------------------------------------------


def _entry(fmt: int, mode: int, nlink: int, size: int, uid: int, gid: int, extra: Any) -> tuple[Any, ...]:
    return (fmt, stat.S_IMODE(mode), nlink, size if fmt == stat.S_IFREG else None, uid, gid, extra)


def snapshot_native(root: Path) -> dict[bytes, tuple[Any, ...]]:
    out: dict[bytes, tuple[Any, ...]] = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            extra: Any = None
            if stat.S_ISLNK(s.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(s.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, broot)] = _entry(stat.S_IFMT(s.st_mode), s.st_mode, s.st_nlink, s.st_size,
                                                     s.st_uid, s.st_gid, extra)
    return out


def snapshot_vfs(v: Vfs) -> dict[bytes, tuple[Any, ...]]:
    ctx = v.new_context()
    out: dict[bytes, tuple[Any, ...]] = {}

    def walk(rel: bytes) -> None:
        loc = v.lookup(ctx, ctx.root, b"/" + rel if rel else b"/")
        for e in v.getdents(loc, 0):
            if e.name in (b".", b".."):
                continue
            p = rel + b"/" + e.name if rel else e.name
            s = v.stat(ctx, ctx.root, b"/" + p, follow=False)
            extra: Any = None
            fmt = stat.S_IFMT(s.mode)
            assert e.dtype == {stat.S_IFDIR: 4, stat.S_IFREG: 8, stat.S_IFLNK: 10, stat.S_IFIFO: 1,
                               stat.S_IFSOCK: 12, stat.S_IFCHR: 2}[fmt]
            assert e.ino == s.ino
            if fmt == stat.S_IFLNK:
                extra = v.readlink(ctx, ctx.root, b"/" + p)
            elif fmt == stat.S_IFREG:
                o = v.open(ctx, ctx.root, b"/" + p, os.O_RDONLY, 0)
                with os.fdopen(o.host_fd, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            out[p] = _entry(fmt, s.mode, s.nlink, s.size, s.uid, s.gid, extra)
            if fmt == stat.S_IFDIR:
                walk(p)

    walk(b"")
    return out


class Twin:
    """A native tree and a Vfs over a twin of it, kept in step by running every op on both."""

    def __init__(self, tmp: Path, kind: str = "overlay", build: Callable[[Path], None] = build_image) -> None:
        self.native_root = tmp / "native"
        self.image = tmp / "image"
        build(self.native_root)
        build(self.image)
        self.kind = kind
        self.image_hash = tree_hash(self.image)
        self.vfs = make_vfs(kind, self.image)

    def run(self, ops: list[Op], *, uid: int = 0, gid: int = 0, groups: tuple[int, ...] = ()) -> tuple[list[Result], list[Result]]:
        native = run_native(self.native_root, ops, uid=uid, gid=gid, groups=groups, readonly=self.kind == "image")
        mine = run_vfs(self.vfs, ops, uid=uid, gid=gid, groups=groups)
        return native, mine

    def check(self, ops: list[Op], **creds: Any) -> list[Result]:
        native, mine = self.run(ops, **creds)
        for op, n, m in zip(ops, native, mine):
            assert n == m, f"{op}: Linux {n}, vfs {m}"
        return mine

    def check_trees(self) -> None:
        assert snapshot_vfs(self.vfs) == snapshot_native(self.native_root)

    def close(self) -> None:
        self.vfs.close()
        assert tree_hash(self.image) == self.image_hash, "the image directory was written"


class World:
    """The translator's usual namespace over the test image: overlay root, tmpfs on /tmp,
    devfs on /dev. Checks on close that the image directory was never written."""

    def __init__(self, tmp: Path) -> None:
        from vfs import DevFs

        self.image = tmp / "image"
        build_image(self.image)
        self.image_hash = tree_hash(self.image)
        self.vfs = make_vfs("overlay", self.image)
        ctx = self.vfs.new_context()
        self.vfs.mkdir(ctx, ctx.root, b"/dev", 0o755)
        self.vfs.mount(b"/tmp", TmpFs())
        self.vfs.mount(b"/dev", DevFs())
        self.ctx = self.vfs.new_context()

    def at(self, path: bytes):  # noqa: ANN201 - a Location
        return self.vfs.lookup(self.ctx, self.ctx.root, path)

    def open(self, path: bytes, flags: int = os.O_RDONLY, mode: int = 0o644, ctx: FsContext | None = None) -> int:
        ctx = ctx or self.ctx
        return self.vfs.open(ctx, ctx.cwd, path, flags, mode).host_fd

    def read(self, path: bytes) -> bytes:
        fd = self.open(path)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, path: bytes, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> None:
        fd = self.open(path, flags)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def stat(self, path: bytes, follow: bool = True):  # noqa: ANN201 - a StatResult
        return self.vfs.stat(self.ctx, self.ctx.cwd, path, follow=follow)

    def names(self, path: bytes) -> list[bytes]:
        return sorted(e.name for e in self.vfs.getdents(self.at(path), 0) if e.name not in (b".", b".."))

    def close(self) -> None:
        self.vfs.close()
        assert tree_hash(self.image) == self.image_hash, "the image directory was written"


def errno_of(fn: Callable[[], Any]) -> str | None:
    try:
        fn()
    except OSError as e:
        return errname(e)
    return None
