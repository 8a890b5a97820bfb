"""OverlayFs: copy-up, whiteouts, opaque directories, renames, hard links; the image
directory is never written (every World checks its hash on close)."""
from __future__ import annotations

import os
import stat
import time

from vfsharness import World, errno_of

from vfs.filesystem import OVERLAYFS_SUPER_MAGIC
from vfs.imagefs import ImageDir


def test_o_trunc_copies_up_then_truncates(world: World) -> None:
    before = world.stat(b"/srv/file")
    fd = world.open(b"/srv/file", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"new")
    os.close(fd)
    assert world.read(b"/srv/file") == b"new"
    after = world.stat(b"/srv/file")
    assert after.ino == before.ino and after.mode == before.mode and after.size == 3
    assert (world.image / "srv/file").read_bytes() == b"0123456789"


def test_open_for_write_copies_data_and_metadata(world: World) -> None:
    before = world.stat(b"/data/big")
    old = world.open(b"/data/big")  # opened before the copy-up: the image file, read-only
    fd = world.open(b"/data/big", os.O_RDWR)
    after = world.stat(b"/data/big")
    assert (after.size, after.mtime_ns, after.mode, after.uid) == (before.size, before.mtime_ns, before.mode, before.uid)
    os.pwrite(fd, b"PATCH", 1000)
    data = world.read(b"/data/big")
    image = (world.image / "data/big").read_bytes()
    assert data[:1000] == image[:1000] and data[1000:1005] == b"PATCH" and data[1005:] == image[1005:]
    assert os.pread(old, 5, 1000) == image[1000:1005]  # as overlayfs: old fds keep the lower file
    with __import__("pytest").raises(OSError):
        os.write(old, b"x")  # and they can never write the image
    os.close(old)
    os.close(fd)


def test_reads_do_not_copy_up(world: World) -> None:
    fd = world.open(b"/etc/passwd")
    assert os.fstat(fd).st_ino == os.stat(world.image / "etc/passwd").st_ino  # the image file itself
    os.close(fd)
    loc = world.at(b"/etc/passwd")
    assert getattr(loc.inode, "memfd") is None


def test_metadata_changes_stay_in_the_overlay(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.chmod(ctx, ctx.root, b"/etc/passwd", 0o600)
    v.chown(ctx, ctx.root, b"/etc/passwd", 12, 34)
    v.utimens(ctx, ctx.root, b"/etc/passwd", 111, 222)
    s = world.stat(b"/etc/passwd")
    assert (stat.S_IMODE(s.mode), s.uid, s.gid, s.atime_ns, s.mtime_ns) == (0o600, 12, 34, 111, 222)
    assert world.read(b"/etc/passwd").startswith(b"root:")
    fd = world.open(b"/etc/passwd", os.O_RDWR)  # copy-up keeps the changed times
    assert world.stat(b"/etc/passwd").mtime_ns == 222
    os.close(fd)
    v.chmod(ctx, ctx.root, b"/srv", 0o700)
    assert stat.S_IMODE(world.stat(b"/srv").mode) == 0o700


def test_whiteouts(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.unlink(ctx, ctx.root, b"/etc/passwd")
    assert b"passwd" not in world.names(b"/etc")
    assert errno_of(lambda: world.stat(b"/etc/passwd")) == "ENOENT"
    world.write(b"/etc/passwd", b"reborn\n", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert world.read(b"/etc/passwd") == b"reborn\n"
    assert b"passwd" in world.names(b"/etc")
    v.unlink(ctx, ctx.root, b"/bin/sh")  # a symlink
    v.symlink(ctx, b"/etc/passwd", ctx.root, b"/bin/sh")
    assert world.read(b"/bin/sh") == b"reborn\n"
    assert (world.image / "etc/passwd").read_bytes().startswith(b"root:")


def test_opaque_directories(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    assert errno_of(lambda: v.rmdir(ctx, ctx.root, b"/srv/deep/er")) == "ENOTEMPTY"
    v.unlink(ctx, ctx.root, b"/srv/deep/er/est/leaf")
    v.rmdir(ctx, ctx.root, b"/srv/deep/er/est")
    v.rmdir(ctx, ctx.root, b"/srv/deep/er")
    v.mkdir(ctx, ctx.root, b"/srv/deep/er", 0o700)
    assert world.names(b"/srv/deep/er") == []
    assert stat.S_IMODE(world.stat(b"/srv/deep/er").mode) == 0o700
    assert errno_of(lambda: world.stat(b"/srv/deep/er/est")) == "ENOENT"


def test_renaming_image_directories(world: World) -> None:
    """Linux's overlayfs says EXDEV without redirect_dir; our namespace is in RAM, so a
    directory from the image renames like any (busybox mv copes either way)."""
    v, ctx = world.vfs, world.ctx
    v.rename(ctx, ctx.root, b"/srv", ctx.root, b"/home/srv")
    assert world.read(b"/home/srv/deep/er/est/leaf") == b"leaf\n"
    assert errno_of(lambda: world.stat(b"/srv")) == "ENOENT"
    v.rename(ctx, ctx.root, b"/home/srv/deep", ctx.root, b"/deep")
    assert world.names(b"/deep") == [b"er"]
    v.rename(ctx, ctx.root, b"/etc", ctx.root, b"/deep", 2)  # RENAME_EXCHANGE of two image dirs
    assert b"passwd" in world.names(b"/deep") and world.names(b"/etc") == [b"er"]
    fd = world.open(b"/deep", os.O_RDONLY | os.O_DIRECTORY)
    loc = world.vfs.location_of_host_fd(fd)
    assert loc is not None and loc.inode is world.at(b"/deep").inode
    os.close(fd)


def test_image_hard_links_stay_one_inode(world: World) -> None:
    a, b = world.stat(b"/data/a"), world.stat(b"/data/b")
    assert a.ino == b.ino and a.nlink == 2
    world.write(b"/data/a", b"via a", os.O_WRONLY | os.O_TRUNC)
    assert world.read(b"/data/b") == b"via a"
    world.vfs.unlink(world.ctx, world.ctx.root, b"/data/a")
    assert world.stat(b"/data/b").nlink == 1


def test_inode_numbers_are_unique(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    for i in range(50):
        world.write(b"/f%d" % i, b"")
        v.mkdir(ctx, ctx.root, b"/d%d" % i, 0o755)
    seen: dict[int, bytes] = {}

    def walk(path: bytes) -> None:
        for e in v.getdents(world.at(path), 0):
            if e.name in (b".", b".."):
                continue
            p = path.rstrip(b"/") + b"/" + e.name
            s = v.stat(ctx, ctx.root, p, follow=False)
            if s.dev != world.stat(b"/").dev:
                continue
            if stat.S_ISDIR(s.mode):
                assert s.ino not in seen, (p, seen.get(s.ino))
                walk(p)
            elif s.nlink == 1:
                assert s.ino not in seen, (p, seen.get(s.ino))
            seen[s.ino] = p

    walk(b"/")


def test_directories_load_lazily(world: World) -> None:
    lower = world.vfs.root().mount.fs.lower  # type: ignore[attr-defined]
    world.stat(b"/etc/passwd")
    etc = lower.root.inode.lookup(b"etc").inode
    srv = lower.root.inode.lookup(b"srv").inode
    assert isinstance(etc, ImageDir) and etc._children is not None
    assert isinstance(srv, ImageDir) and srv._children is None  # never looked into


def test_statfs_says_overlay(world: World) -> None:
    assert world.vfs.statfs(world.at(b"/etc"))["f_type"] == OVERLAYFS_SUPER_MAGIC


def test_many_operations_leave_the_image_alone(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    for path in (b"/etc/passwd", b"/data/big", b"/bin/busybox", b"/home/user/notes", b"/ro/file"):
        fd = world.open(path, os.O_RDWR | os.O_APPEND)
        os.write(fd, b"appended")
        os.close(fd)
        v.chmod(ctx, ctx.root, path, 0o777)
        v.utimens(ctx, ctx.root, path, time.time_ns(), time.time_ns())
        v.truncate(ctx, ctx.root, path, 1)
        v.chown(ctx, ctx.root, path, 3, 3)
    v.rename(ctx, ctx.root, b"/ro", ctx.root, b"/ro2")
    v.unlink(ctx, ctx.root, b"/run/fifo")
    v.mknod(ctx, ctx.root, b"/run/fifo", stat.S_IFIFO | 0o600, 0)
    v.link(ctx, ctx.root, b"/etc/shadow", ctx.root, b"/shadow2")
    # World.close (the fixture) compares the image tree hash with the one taken at the start


def test_an_open_fd_leads_back_to_its_file_before_and_after_copy_up(world: World) -> None:
    # The VFS knows an image file's and a memfd's host identity without an fstat per open:
    # what it registers must be what the fd really is.
    for flags in (os.O_RDONLY, os.O_RDWR, os.O_RDONLY):  # the image file, then the memfd twice
        fd = world.open(b"/etc/passwd", flags)
        s = os.fstat(fd)
        assert world.at(b"/etc/passwd").inode.host_key() == (s.st_dev, s.st_ino)
        assert world.vfs.location_of_host_fd(fd).inode is world.at(b"/etc/passwd").inode
        os.close(fd)
    fd = world.open(b"/tmp/new", os.O_CREAT | os.O_WRONLY)
    assert world.vfs.location_of_host_fd(fd).inode is world.at(b"/tmp/new").inode
    os.close(fd)


def test_an_image_read_ahead_is_used_once_and_only_while_the_directory_is_the_same(tmp_path) -> None:  # noqa: ANN001
    """keep_loaded (a warm server's) reads every directory of the image; ImageFs.open takes it
    once, and not once the image directory has been replaced or changed."""
    from vfs import imagefs

    image = tmp_path / "image"
    (image / "bin").mkdir(parents=True)
    (image / "bin" / "true").write_bytes(b"x")
    imagefs.keep_loaded(image)
    kept = imagefs._KEPT[str(image)][1]
    assert all(isinstance(d.inode, ImageDir) and d.inode._children is not None
               for d in kept.root.inode.listing() if isinstance(d.inode, ImageDir))  # read ahead
    assert imagefs.ImageFs.open(image) is kept
    second = imagefs.ImageFs.open(image)
    assert second is not kept  # taken once
    second.close()
    kept.close()
    imagefs.keep_loaded(image)
    (image / "etc").mkdir()  # the image changed since: its root's mtime moved
    os.utime(image, ns=(0, os.stat(image).st_mtime_ns + 1_000_000_000))  # (past a coarse clock's tick)
    fresh = imagefs.ImageFs.open(image)
    assert str(image) not in imagefs._KEPT and fresh.root.inode.lookup(b"etc") is not None
    fresh.close()


def test_a_lookup_in_an_unchanged_image_directory_adopts_that_entry_only(tmp_path) -> None:  # noqa: ANN001
    """One name looked up in a lower directory is adopted alone; the full view built later
    keeps that very dentry and inode, and gives every entry the cookie a view built at once
    gives it."""
    from vfsharness import make_vfs

    built = World(tmp_path / "a")
    lazy = make_vfs("overlay", built.image)
    ctx = lazy.new_context()
    bin_dir = lazy.lookup(ctx, ctx.root, b"/bin").dentry.inode
    sh = lazy.lookup(ctx, ctx.root, b"/bin/sh", follow=False).dentry
    assert bin_dir._children is None and list(bin_dir._looked_up) == [b"sh"]  # the one entry
    assert lazy.lookup(ctx, ctx.root, b"/bin/sh", follow=False).dentry is sh
    at_once = make_vfs("overlay", built.image)
    octx = at_once.new_context()
    expected = [(d.name, d.cookie) for d in at_once.lookup(octx, octx.root, b"/bin").dentry.inode.listing()]
    listing = bin_dir.listing()
    assert [(d.name, d.cookie) for d in listing] == expected
    assert next(d for d in listing if d.name == b"sh") is sh and bin_dir._looked_up is None
    assert stat.S_ISLNK(lazy.stat(ctx, ctx.root, b"/bin/sh", follow=False).mode)
    lazy.close()
    at_once.close()
    built.close()
