"""The path walk: roots (chroot), mounts both ways, the symlink budget, name limits."""
from __future__ import annotations

import os
import stat

import pytest
from vfsharness import World, errno_of

from vfs import ImageFs, TmpFs


def test_dotdot_at_the_root_stays_at_the_root(world: World) -> None:
    root = world.stat(b"/")
    for p in (b"/..", b"/../..", b"..", b"/../../../../etc/..", b"/srv/../../.."):
        assert world.stat(p).ino == root.ino, p


def test_a_chrooted_context_never_walks_out(world: World) -> None:
    v = world.vfs
    ctx = v.new_context()
    jail = v.lookup(ctx, ctx.root, b"/srv")
    v.symlink(ctx, b"/file", ctx.root, b"/srv/abs")  # absolute: means /srv/file inside the jail
    v.symlink(ctx, b"../../../../../../file", ctx.root, b"/srv/deep/rel")
    v.symlink(ctx, b"/../../etc/passwd", ctx.root, b"/srv/esc")
    ctx.root = ctx.cwd = jail
    assert v.getcwd(ctx) == b"/"
    assert v.stat(ctx, jail, b"..").ino == jail.inode.ino
    assert v.stat(ctx, jail, b"/../../../").ino == jail.inode.ino
    for p in (b"abs", b"deep/rel", b"/abs", b"/deep/../../deep/rel"):
        o = v.open(ctx, ctx.cwd, p, os.O_RDONLY, 0)
        assert os.read(o.host_fd, 100) == b"0123456789", p
        os.close(o.host_fd)
    assert errno_of(lambda: v.stat(ctx, jail, b"esc")) == "ENOENT"
    assert errno_of(lambda: v.stat(ctx, jail, b"/etc/passwd")) == "ENOENT"
    assert v.path_of(v.lookup(ctx, jail, b"deep/er"), ctx.root) == b"/deep/er"
    outside = world.at(b"/etc")
    ctx.cwd = outside  # a cwd outside the root (chroot without chdir)
    assert v.getcwd(ctx) == b"(unreachable)/etc"


def test_mount_crossings_both_ways(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    tmp, root = world.stat(b"/tmp"), world.stat(b"/")
    assert tmp.dev != root.dev and tmp.mnt_id != root.mnt_id
    assert world.stat(b"/tmp/..").ino == root.ino and world.stat(b"/tmp/..").dev == root.dev
    v.mkdir(ctx, ctx.root, b"/tmp/inner", 0o755)
    v.mount(b"/tmp/inner", TmpFs())
    v.mkdir(ctx, ctx.root, b"/tmp/inner/x", 0o755)
    assert world.stat(b"/tmp/inner/x/../..").ino == tmp.ino
    assert world.stat(b"/tmp/inner/../inner/x").dev == world.stat(b"/tmp/inner").dev != tmp.dev
    cwd = v.new_context(b"/tmp/inner/x")
    assert v.getcwd(cwd) == b"/tmp/inner/x"
    assert v.stat(cwd, cwd.cwd, b"../../../etc/passwd").size == world.stat(b"/etc/passwd").size
    # a symlink on one filesystem pointing into another
    v.symlink(ctx, b"../etc/passwd", ctx.root, b"/tmp/pw")
    assert world.read(b"/tmp/pw").startswith(b"root:")


def test_mountpoint_rules(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    world.write(b"/tmp/f", b"x")
    assert errno_of(lambda: v.rename(ctx, ctx.root, b"/tmp/f", ctx.root, b"/f")) == "EXDEV"
    assert errno_of(lambda: v.link(ctx, ctx.root, b"/tmp/f", ctx.root, b"/f")) == "EXDEV"
    assert errno_of(lambda: v.rename(ctx, ctx.root, b"/etc/passwd", ctx.root, b"/tmp/passwd")) == "EXDEV"
    assert errno_of(lambda: v.rmdir(ctx, ctx.root, b"/tmp")) == "EBUSY"
    assert errno_of(lambda: v.rmdir(ctx, ctx.root, b"/")) == "EBUSY"
    assert errno_of(lambda: v.rename(ctx, ctx.root, b"/tmp", ctx.root, b"/tmp2")) == "EBUSY"
    v.mkdir(ctx, ctx.root, b"/empty2", 0o755)
    assert errno_of(lambda: v.rename(ctx, ctx.root, b"/empty2", ctx.root, b"/tmp")) == "EBUSY"
    assert errno_of(lambda: v.unlink(ctx, ctx.root, b"/tmp")) == "EISDIR"


def test_readonly_mount(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/mnt", 0o755)
    v.mount(b"/mnt", ImageFs(str(world.image / "srv")))
    assert world.read(b"/mnt/file") == b"0123456789"
    assert errno_of(lambda: v.mkdir(ctx, ctx.root, b"/mnt/x", 0o755)) == "EROFS"
    assert errno_of(lambda: v.mkdir(ctx, ctx.root, b"/mnt/deep", 0o755)) == "EEXIST"
    assert errno_of(lambda: world.open(b"/mnt/file", os.O_WRONLY)) == "EROFS"
    assert errno_of(lambda: v.chmod(ctx, ctx.root, b"/mnt/file", 0o777)) == "EROFS"
    assert v.statfs(world.at(b"/mnt"))["f_flags"] & 1
    v.mkdir(ctx, ctx.root, b"/ro_tmp", 0o755)
    v.mount(b"/ro_tmp", TmpFs(), readonly=True)
    assert errno_of(lambda: world.write(b"/ro_tmp/f", b"")) == "EROFS"
    assert v.statfs(world.at(b"/ro_tmp"))["f_flags"] & 1


def test_symlink_budget_and_loops(world: World) -> None:
    assert errno_of(lambda: world.stat(b"/chain/l0")) == "ELOOP"
    assert world.stat(b"/chain/l1").size == world.stat(b"/etc/passwd").size
    assert errno_of(lambda: world.stat(b"/loop1")) == "ELOOP"
    assert errno_of(lambda: world.open(b"/loop1", os.O_CREAT | os.O_WRONLY)) == "ELOOP"
    assert stat.S_ISLNK(world.stat(b"/loop1", follow=False).mode)
    # 40 links through intermediate components are fine too: chain/l1 then ../etc
    v, ctx = world.vfs, world.ctx
    v.symlink(ctx, b"/chain/l1", ctx.root, b"/tmp/via")
    assert errno_of(lambda: world.stat(b"/tmp/via")) == "ELOOP"  # 41 in one walk


def test_name_limits(world: World) -> None:
    assert errno_of(lambda: world.stat(b"a" * 256)) == "ENAMETOOLONG"
    assert errno_of(lambda: world.stat(b"a" * 255)) == "ENOENT"
    assert errno_of(lambda: world.stat(b"/" + b"x/" * 2048)) == "ENAMETOOLONG"
    assert errno_of(lambda: world.stat(b"./" * 2047 + b"e")) == "ENOENT"
    assert errno_of(lambda: world.vfs.symlink(world.ctx, b"t" * 4096, world.ctx.root, b"/tmp/l")) == "ENAMETOOLONG"
    assert errno_of(lambda: world.stat(b"")) == "ENOENT"


def test_search_permission_on_every_directory(world: World) -> None:
    v = world.vfs
    user = v.new_context()
    user.uid = user.gid = 1000
    assert errno_of(lambda: v.stat(user, user.root, b"/private/secret")) == "EACCES"
    assert errno_of(lambda: v.stat(user, user.root, b"/private/../etc")) == "EACCES"
    assert errno_of(lambda: v.stat(user, user.root, b"/private")) is None
    user.groups = (0,)
    assert errno_of(lambda: v.stat(user, user.root, b"/private/secret")) == "EACCES"  # 0700: group has nothing
    user.uid = 0
    assert errno_of(lambda: v.stat(user, user.root, b"/private/secret")) is None


@pytest.mark.parametrize("trailing", [b"/", b"//", b"/."])
def test_trailing_slashes(world: World, trailing: bytes) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/tmp/d" + trailing.rstrip(b"."), 0o755)
    assert stat.S_ISDIR(world.stat(b"/tmp/d" + trailing).mode)
    assert stat.S_ISDIR(world.stat(b"/deeplink" + trailing, follow=False).mode)  # followed
    assert errno_of(lambda: world.stat(b"/etc/passwd" + trailing)) == "ENOTDIR"
