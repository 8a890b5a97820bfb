"""devfs: the character devices a program expects, each the host's own device."""
from __future__ import annotations

import os
import stat

from vfsharness import World, errno_of

EXPECT = {b"null": (1, 3), b"zero": (1, 5), b"full": (1, 7), b"random": (1, 8), b"urandom": (1, 9), b"tty": (5, 0)}


def test_device_nodes(world: World) -> None:
    for name, (major, minor) in EXPECT.items():
        s = world.stat(b"/dev/" + name)
        assert s.mode == stat.S_IFCHR | 0o666, name
        assert (os.major(s.rdev), os.minor(s.rdev)) == (major, minor), name
    assert set(EXPECT) <= set(world.names(b"/dev"))


def test_devices_open_the_host_device(world: World) -> None:
    fd = world.open(b"/dev/null", os.O_WRONLY)
    assert os.write(fd, b"gone") == 4
    assert os.major(os.fstat(fd).st_rdev) == 1 and os.minor(os.fstat(fd).st_rdev) == 3
    assert world.vfs.location_of_host_fd(fd) == world.at(b"/dev/null")
    os.close(fd)
    assert world.read(b"/dev/null") == b""
    fd = world.open(b"/dev/zero")
    assert os.read(fd, 8) == bytes(8)
    os.close(fd)
    fd = world.open(b"/dev/full", os.O_WRONLY)
    assert errno_of(lambda: os.write(fd, b"x")) == "ENOSPC"
    os.close(fd)
    fd = world.open(b"/dev/urandom")
    assert len(os.read(fd, 16)) == 16
    os.close(fd)
    try:  # the host may or may not have a controlling terminal: ENXIO when it has none
        os.close(world.open(b"/dev/tty", os.O_RDWR))
    except OSError as e:
        assert e.errno == 6  # ENXIO


def test_links_and_directories(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    assert v.readlink(ctx, ctx.root, b"/dev/fd") == b"/proc/self/fd"
    for i, name in enumerate((b"stdin", b"stdout", b"stderr")):
        assert v.readlink(ctx, ctx.root, b"/dev/" + name) == b"/proc/self/fd/%d" % i
    assert stat.S_ISDIR(world.stat(b"/dev/pts").mode)
    assert stat.S_IMODE(world.stat(b"/dev/shm").mode) == 0o1777
    world.write(b"/dev/shm/sem.x", b"shared")
    assert world.read(b"/dev/shm/sem.x") == b"shared"
    assert errno_of(lambda: v.mknod(ctx, ctx.root, b"/dev/sda", stat.S_IFBLK | 0o600, os.makedev(8, 0))) == "EPERM"


def test_image_device_nodes_are_never_opened(tmp_path) -> None:  # noqa: ANN001
    """An image may contain device nodes; opening one must not reach the host device."""
    from vfsharness import make_vfs

    img = tmp_path / "img"
    img.mkdir()
    os.mknod(img / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for kind in ("image", "overlay"):
        v = make_vfs(kind, img)
        ctx = v.new_context()
        assert os.major(v.stat(ctx, ctx.root, b"/null").rdev) == 1
        assert errno_of(lambda: v.open(ctx, ctx.root, b"/null", os.O_RDONLY, 0)) == "EACCES"
        v.close()
