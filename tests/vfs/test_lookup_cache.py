"""The lookup cache (Vfs.resolve, vfs/epoch.py): a remembered lookup never outlives a change
that would make the walk end elsewhere or fail differently."""
from __future__ import annotations

from pathlib import Path

import pytest
from vfsharness import GID, UID, World, ctx_for, errno_of

from vfs import TmpFs


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    w = World(tmp_path)
    yield w
    w.close()


def test_names_that_change_are_looked_up_again(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    assert errno_of(lambda: world.stat(b"/tmp/f")) == "ENOENT"  # a failure is remembered...
    world.write(b"/tmp/f", b"x")
    assert world.stat(b"/tmp/f").size == 1  # ...until the name appears
    ino = world.stat(b"/tmp/f").ino
    v.rename(ctx, ctx.root, b"/tmp/f", ctx.root, b"/tmp/g")
    assert errno_of(lambda: world.stat(b"/tmp/f")) == "ENOENT"
    assert world.stat(b"/tmp/g").ino == ino
    v.unlink(ctx, ctx.root, b"/tmp/g")
    assert errno_of(lambda: world.stat(b"/tmp/g")) == "ENOENT"
    # an image name, deleted in the overlay and made again as something else
    assert world.read(b"/etc/passwd").startswith(b"root:")
    v.unlink(ctx, ctx.root, b"/etc/passwd")
    assert errno_of(lambda: world.read(b"/etc/passwd")) == "ENOENT"
    v.symlink(ctx, b"/etc/shadow", ctx.root, b"/etc/passwd")
    assert world.read(b"/etc/passwd") == world.read(b"/etc/shadow")
    assert world.stat(b"/etc/passwd", follow=False).mode & 0o170000 == 0o120000


def test_directory_permissions_and_credentials(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/tmp/d", 0o755)
    world.write(b"/tmp/d/f", b"data")
    user = ctx_for(v, UID, GID)
    assert v.stat(user, user.root, b"/tmp/d/f").size == 4  # remembered for this user
    v.chmod(ctx, ctx.root, b"/tmp/d", 0o700)  # search permission taken away
    assert errno_of(lambda: v.stat(user, user.root, b"/tmp/d/f")) == "EACCES"
    assert v.stat(ctx, ctx.root, b"/tmp/d/f").size == 4  # root still passes
    v.chown(ctx, ctx.root, b"/tmp/d", UID, GID)  # the user owns it now
    assert v.stat(user, user.root, b"/tmp/d/f").size == 4
    other = ctx_for(v, UID + 1, GID + 1)  # same path, other credentials: not the user's entry
    assert errno_of(lambda: v.stat(other, other.root, b"/tmp/d/f")) == "EACCES"


def test_a_mount_covers_a_remembered_path(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/srv/m", 0o755)
    world.write(b"/srv/m/below", b"1")
    assert world.stat(b"/srv/m/below").size == 1
    v.mount(b"/srv/m", TmpFs())
    assert errno_of(lambda: world.stat(b"/srv/m/below")) == "ENOENT"


def test_relative_lookups_depend_on_their_start(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/tmp/a", 0o755)
    v.mkdir(ctx, ctx.root, b"/tmp/b", 0o755)
    world.write(b"/tmp/a/f", b"a")
    world.write(b"/tmp/b/f", b"bb")
    a, b = v.lookup(ctx, ctx.root, b"/tmp/a"), v.lookup(ctx, ctx.root, b"/tmp/b")
    assert v.stat(ctx, a, b"f").size == 1
    assert v.stat(ctx, b, b"f").size == 2


def test_procfs_names_are_never_remembered(world: World) -> None:
    """A filesystem whose names come and go by themselves (here: a directory whose entries the
    test changes behind the VFS's back) is walked every time."""
    from vfs.synthetic import DynamicDir, SyntheticFile, SyntheticFs

    names: dict[bytes, object] = {}

    class Dir(DynamicDir):
        def generate(self, name: bytes):  # noqa: ANN201
            return names.get(name)

        def names(self):  # noqa: ANN201
            return list(names)

    class Fs(SyntheticFs):
        def make_root(self):  # noqa: ANN201
            return Dir(self, self.new_ino())

    fs = Fs()
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/dyn", 0o755)
    v.mount(b"/dyn", fs)
    assert errno_of(lambda: world.stat(b"/dyn/x")) == "ENOENT"
    names[b"x"] = SyntheticFile(fs, fs.new_ino(), lambda: b"hello")
    assert world.stat(b"/dyn/x").ino == names[b"x"].ino  # type: ignore[attr-defined]
    del names[b"x"]
    assert errno_of(lambda: world.stat(b"/dyn/x")) == "ENOENT"


def test_a_long_run_of_distinct_paths_stays_bounded(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    for i in range(5000):
        errno_of(lambda: world.stat(b"/tmp/none-%d" % i))
    assert len(v._lookups) <= 4096
    assert errno_of(lambda: world.stat(b"/tmp/none-1")) == "ENOENT"


def test_a_remembered_parent_walks_only_the_last_name_and_stays_exact(world: World) -> None:
    """A path whose parent part resolved before starts from that directory (a listing's stats
    of one directory walk its path once): with the same answers as a whole walk, the same
    search permission, and the symlinks the parent part followed counted against the 40."""
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/tmp/d", 0o755)
    for name in (b"a", b"b"):
        world.write(b"/tmp/d/" + name, name * 3)
    assert world.stat(b"/tmp/d/a").size == 3
    assert world.stat(b"/tmp/d/b").size == 3  # (from the remembered /tmp/d)
    assert errno_of(lambda: world.stat(b"/tmp/d/c")) == "ENOENT"
    assert errno_of(lambda: world.stat(b"/tmp/d/a/x")) == "ENOTDIR"
    user = ctx_for(v, UID, GID)
    assert v.stat(user, user.root, b"/tmp/d/a").size == 3
    v.chmod(ctx, ctx.root, b"/tmp/d", 0o700)
    assert errno_of(lambda: v.stat(user, user.root, b"/tmp/d/b")) == "EACCES"
    # Symlinks: 30 in the parent part, 15 in the last name: 45 > 40 is ELOOP, remembered or not.
    v.mkdir(ctx, ctx.root, b"/tmp/l", 0o755)
    v.symlink(ctx, b"/tmp/d", ctx.root, b"/tmp/l/p30")
    for i in range(29, 0, -1):
        v.symlink(ctx, b"/tmp/l/p%d" % (i + 1), ctx.root, b"/tmp/l/p%d" % i)
    v.chmod(ctx, ctx.root, b"/tmp/d", 0o755)
    v.symlink(ctx, b"/tmp/d/a", ctx.root, b"/tmp/d/q15")
    for i in range(14, 0, -1):
        v.symlink(ctx, b"/tmp/d/q%d" % (i + 1), ctx.root, b"/tmp/d/q%d" % i)
    assert world.stat(b"/tmp/l/p1/b").size == 3  # 30 links: the parent part is remembered
    assert world.stat(b"/tmp/d/q1").size == 3  # 15 links alone
    assert errno_of(lambda: world.stat(b"/tmp/l/p1/q1")) == "ELOOP"
    v.rename(ctx, ctx.root, b"/tmp/d", ctx.root, b"/tmp/e")  # the remembered parent is gone
    assert errno_of(lambda: world.stat(b"/tmp/d/b")) == "ENOENT"
    assert world.stat(b"/tmp/e/b").size == 3
