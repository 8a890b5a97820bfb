"""The extension point for generated filesystems, exercised with a toy procfs."""
from __future__ import annotations

import os
import stat
from typing import Iterable

from vfsharness import World, errno_of

from vfs import DynamicDir, DynamicSymlink, Inode, Location, MagicLink, SyntheticFile, SyntheticFs
from vfs.filesystem import PROC_SUPER_MAGIC


class ToyProc(SyntheticFs):
    """/proc with: version (a generated file), self -> 42, 42/{cwd, pipe, status}."""

    def __init__(self, cwd: Location) -> None:
        super().__init__()
        self.cwd = cwd
        self.counter = 0
        self.pipe_r, self.pipe_w = os.pipe()

    def make_root(self) -> Inode:
        return Root(self)

    def close(self) -> None:
        super().close()
        os.close(self.pipe_r)
        os.close(self.pipe_w)


class Root(DynamicDir):
    __slots__ = ("kids",)

    def __init__(self, fs: ToyProc) -> None:
        super().__init__(fs, 1)
        self.kids: dict[bytes, Inode] = {
            b"version": SyntheticFile(fs, fs.new_ino(), self._version),
            b"self": DynamicSymlink(fs, fs.new_ino(), lambda: b"42"),
            b"42": Pid(fs),
        }

    def _version(self) -> bytes:
        fs: ToyProc = self.fs  # type: ignore[assignment]
        fs.counter += 1
        return b"Linux version toy #%d\n" % fs.counter

    def generate(self, name: bytes) -> Inode | None:
        return self.kids.get(name)

    def names(self) -> Iterable[bytes]:
        return list(self.kids)


class Pid(DynamicDir):
    __slots__ = ("kids",)

    def __init__(self, fs: ToyProc) -> None:
        super().__init__(fs, fs.new_ino())
        self.kids = {
            b"cwd": MagicLink(fs, fs.new_ino(), lambda: b"/srv", lambda: fs.cwd, self._no_open),
            b"pipe": MagicLink(fs, fs.new_ino(), lambda: b"pipe:[1234]", lambda: None,
                               lambda flags: os.open(f"/proc/self/fd/{fs.pipe_r}", flags | os.O_CLOEXEC)),
            b"status": SyntheticFile(fs, fs.new_ino(), lambda: b"Name:\ttoy\n"),
        }

    @staticmethod
    def _no_open(flags: int) -> int:
        raise OSError(2, "no")

    def generate(self, name: bytes) -> Inode | None:
        return self.kids.get(name)

    def names(self) -> Iterable[bytes]:
        return list(self.kids)


def _proc(world: World) -> ToyProc:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/proc", 0o555)
    fs = ToyProc(world.at(b"/srv"))
    v.mount(b"/proc", fs)
    return fs


def test_generated_files(world: World) -> None:
    _proc(world)
    assert world.read(b"/proc/version") == b"Linux version toy #1\n"
    assert world.read(b"/proc/version") == b"Linux version toy #2\n"  # made at each open
    s = world.stat(b"/proc/version")
    assert stat.S_ISREG(s.mode) and s.size == 0 and stat.S_IMODE(s.mode) == 0o444
    fd = world.open(b"/proc/self/status")
    assert os.read(fd, 100) == b"Name:\ttoy\n"
    assert errno_of(lambda: os.write(fd, b"x")) == "EBADF"
    loc = world.vfs.location_of_host_fd(fd)
    assert loc is not None and loc.inode is world.at(b"/proc/42/status").inode
    os.close(fd)
    assert errno_of(lambda: world.open(b"/proc/version", os.O_WRONLY)) == "EROFS"


def test_generated_namespace_is_read_only(world: World) -> None:
    _proc(world)
    v, ctx = world.vfs, world.ctx
    assert errno_of(lambda: v.mkdir(ctx, ctx.root, b"/proc/x", 0o755)) == "EROFS"
    assert errno_of(lambda: v.unlink(ctx, ctx.root, b"/proc/version")) == "EROFS"
    assert errno_of(lambda: v.chmod(ctx, ctx.root, b"/proc/version", 0o777)) == "EROFS"
    assert errno_of(lambda: world.write(b"/proc/new", b"")) == "EROFS"
    assert v.statfs(world.at(b"/proc"))["f_type"] == PROC_SUPER_MAGIC


def test_dynamic_symlink_and_listing(world: World) -> None:
    _proc(world)
    v, ctx = world.vfs, world.ctx
    assert v.readlink(ctx, ctx.root, b"/proc/self") == b"42"
    assert world.names(b"/proc") == sorted([b"version", b"self", b"42"])
    assert world.names(b"/proc/self") == sorted([b"cwd", b"pipe", b"status"])
    ents = list(v.getdents(world.at(b"/proc"), 0))
    resumed = list(v.getdents(world.at(b"/proc"), ents[3].next_cookie))
    assert [e.name for e in resumed] == [e.name for e in ents[4:]]
    cwd = v.new_context(b"/proc/self")
    assert v.getcwd(cwd) == b"/proc/42"


def test_magic_links_jump_to_objects(world: World) -> None:
    fs = _proc(world)
    v, ctx = world.vfs, world.ctx
    assert v.readlink(ctx, ctx.root, b"/proc/self/cwd") == b"/srv"
    assert world.read(b"/proc/self/cwd/file") == b"0123456789"  # walked through, not as text
    assert world.stat(b"/proc/42/cwd").ino == world.stat(b"/srv").ino
    assert stat.S_ISLNK(world.stat(b"/proc/42/cwd", follow=False).mode)
    assert errno_of(lambda: world.open(b"/proc/self/cwd", os.O_RDONLY | os.O_DIRECTORY)) == "ENOENT"  # open_magic says
    # an object outside the VFS: stat and open go through open_magic
    assert stat.S_ISFIFO(world.stat(b"/proc/self/pipe").mode)
    os.write(fs.pipe_w, b"piped")
    fd = world.open(b"/proc/self/pipe")
    assert os.read(fd, 10) == b"piped"
    os.close(fd)
    assert errno_of(lambda: world.stat(b"/proc/self/pipe/x")) == "ENOTDIR"
    assert errno_of(lambda: world.open(b"/proc/self/pipe", os.O_RDONLY | os.O_NOFOLLOW)) == "ELOOP"
    o = v.open(ctx, ctx.root, b"/proc/self/pipe", os.O_PATH | os.O_NOFOLLOW, 0)
    assert v.location_of_host_fd(o.host_fd) == world.vfs.lookup(ctx, ctx.root, b"/proc/42/pipe", follow=False)
    os.close(o.host_fd)


def test_open_location_reopens(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    world.write(b"/tmp/f", b"data")
    fd = world.open(b"/tmp/f", os.O_RDWR)
    v.unlink(ctx, ctx.root, b"/tmp/f")
    loc = v.location_of_host_fd(fd)
    assert loc is not None
    # a deleted file cannot be reopened by the VFS (procfs reopens the guest's own fd then)
    assert errno_of(lambda: v.open_location(ctx, loc, os.O_RDONLY)) == "ENOENT"
    os.close(fd)
    o = v.open_location(ctx, world.at(b"/etc/passwd"), os.O_RDONLY)
    assert os.read(o.host_fd, 5) == b"root:"
    os.close(o.host_fd)
    user = v.new_context()
    user.uid = 1000
    assert errno_of(lambda: v.open_location(user, world.at(b"/etc/shadow"), os.O_RDONLY)) == "EACCES"
