"""tmpfs: memfd-backed files handed out as host fds, link counts, times, getdents cookies,
fd identity, unnamed and unlinked files, fifos."""
from __future__ import annotations

import os
import stat
import time

import pytest
from vfsharness import World, errno_of

from vfs import Location, TmpFs, Vfs
from vfs.filesystem import TMPFS_MAGIC


def test_writes_through_a_host_fd_are_seen_by_later_opens(world: World) -> None:
    fd = world.open(b"/tmp/f", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"hello world")
    assert world.read(b"/tmp/f") == b"hello world"
    assert world.stat(b"/tmp/f").size == 11
    os.ftruncate(fd, 5)  # native ftruncate on the guest's fd
    assert world.read(b"/tmp/f") == b"hello"
    os.close(fd)


def test_access_modes_appends_and_offsets_are_per_open(world: World) -> None:
    world.write(b"/tmp/f", b"abc")
    ro = world.open(b"/tmp/f", os.O_RDONLY)
    with pytest.raises(OSError) as e:
        os.write(ro, b"x")
    assert e.value.errno == 9  # EBADF: an O_RDONLY fd cannot write
    wo = world.open(b"/tmp/f", os.O_WRONLY)
    with pytest.raises(OSError):
        os.read(wo, 1)
    ap = world.open(b"/tmp/f", os.O_WRONLY | os.O_APPEND)
    os.write(ap, b"DEF")
    os.write(wo, b"X")  # offset 0 of its own description
    assert os.read(ro, 100) == b"XbcDEF"
    for fd in (ro, wo, ap):
        os.close(fd)


def test_size_and_mtime_follow_native_writes(world: World) -> None:
    fd = world.open(b"/tmp/f", os.O_WRONLY | os.O_CREAT, 0o644)
    before = world.stat(b"/tmp/f")
    time.sleep(0.01)
    os.write(fd, b"x" * 10000)
    after = world.stat(b"/tmp/f")
    assert after.size == 10000 and after.blocks > 0
    assert after.mtime_ns > before.mtime_ns and after.ctime_ns >= after.mtime_ns
    os.close(fd)


def test_link_counts(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/tmp/d", 0o755)
    assert world.stat(b"/tmp/d").nlink == 2
    root_links = world.stat(b"/tmp").nlink
    v.mkdir(ctx, ctx.root, b"/tmp/d/sub", 0o755)
    assert world.stat(b"/tmp/d").nlink == 3
    assert world.stat(b"/tmp").nlink == root_links
    world.write(b"/tmp/d/f", b"1")
    v.link(ctx, ctx.root, b"/tmp/d/f", ctx.root, b"/tmp/d/g")
    assert world.stat(b"/tmp/d/f").nlink == 2 and world.stat(b"/tmp/d/f").ino == world.stat(b"/tmp/d/g").ino
    v.unlink(ctx, ctx.root, b"/tmp/d/f")
    assert world.stat(b"/tmp/d/g").nlink == 1
    v.rename(ctx, ctx.root, b"/tmp/d/sub", ctx.root, b"/tmp/sub")
    assert world.stat(b"/tmp/d").nlink == 2 and world.stat(b"/tmp").nlink == root_links + 1
    v.rmdir(ctx, ctx.root, b"/tmp/sub")
    assert world.stat(b"/tmp").nlink == root_links


def test_times(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, b"/tmp/d", 0o755)
    d0 = world.stat(b"/tmp/d")
    time.sleep(0.01)
    world.write(b"/tmp/d/f", b"x")
    d1 = world.stat(b"/tmp/d")
    assert d1.mtime_ns > d0.mtime_ns and d1.ctime_ns > d0.ctime_ns
    f0 = world.stat(b"/tmp/d/f")
    time.sleep(0.01)
    v.chmod(ctx, ctx.root, b"/tmp/d/f", 0o600)
    f1 = world.stat(b"/tmp/d/f")
    assert f1.mtime_ns == f0.mtime_ns and f1.ctime_ns > f0.ctime_ns and f1.mode == stat.S_IFREG | 0o600
    v.utimens(ctx, ctx.root, b"/tmp/d/f", 1_000_000_000_123, None)
    f2 = world.stat(b"/tmp/d/f")
    assert f2.atime_ns == 1_000_000_000_123 and f2.mtime_ns == f0.mtime_ns
    v.utimens(ctx, ctx.root, b"/tmp/d/f", None, 2_000_000_000_456)
    f3 = world.stat(b"/tmp/d/f")
    assert f3.atime_ns == 1_000_000_000_123 and f3.mtime_ns == 2_000_000_000_456
    v.utimens(ctx, ctx.root, b"/tmp/d", 5, 6)  # directories keep their own times
    assert (world.stat(b"/tmp/d").atime_ns, world.stat(b"/tmp/d").mtime_ns) == (5, 6)
    assert f3.btime_ns and f3.btime_ns <= f0.ctime_ns


def _take(v: Vfs, loc: Location, cookie: int, n: int) -> tuple[list[bytes], int]:
    names: list[bytes] = []
    for e in v.getdents(loc, cookie):
        if len(names) == n:
            break
        names.append(e.name)
        cookie = e.next_cookie
    return names, cookie


@pytest.mark.parametrize("where", [b"/tmp/many", b"/srv/many"], ids=["tmpfs", "overlay"])
def test_getdents_cookies_stay_valid_while_entries_come_and_go(world: World, where: bytes) -> None:
    v, ctx = world.vfs, world.ctx
    v.mkdir(ctx, ctx.root, where, 0o755)
    all_names = [b"f%03d" % i for i in range(100)]
    for n in all_names:
        world.write(where + b"/" + n, b"")
    loc = world.at(where)
    seen, cookie = _take(v, loc, 0, 30)
    assert seen[:2] == [b".", b".."]
    # delete some already seen, some not yet seen; add new ones
    for n in all_names[10:20] + all_names[50:60]:
        v.unlink(ctx, ctx.root, where + b"/" + n)
    world.write(where + b"/new", b"")
    rest, cookie = _take(v, loc, cookie, 1000)
    got = seen + rest
    assert len(got) == len(set(got)), "an entry came twice"
    survivors = set(all_names) - set(all_names[10:20] + all_names[50:60])
    assert survivors <= set(got)
    assert not set(all_names[50:60]) & set(rest)
    assert b"new" in rest
    assert list(v.getdents(loc, cookie)) == []  # at the end


def test_getdents_position_is_the_host_fd_offset(world: World) -> None:
    """The syscall layer keeps the cookie in the guest's own fd (lseek): it must round-trip
    on every kind of directory fd (scratch shadows on tmpfs, image directories)."""
    for path in (b"/tmp", b"/srv/deep", b"/dev", b"/"):
        fd = world.open(path, os.O_RDONLY | os.O_DIRECTORY)
        loc = world.vfs.location_of_host_fd(fd)
        assert loc is not None and loc.inode is world.at(path).inode
        for cookie in (0, 1, 2, 3, 12345, 1 << 40):
            assert os.lseek(fd, cookie, os.SEEK_SET) == cookie
            assert os.lseek(fd, 0, os.SEEK_CUR) == cookie
        with pytest.raises(IsADirectoryError):
            os.read(fd, 10)
        os.close(fd)


def test_getcwd_after_rmdir_of_cwd(world: World) -> None:
    v = world.vfs
    ctx = v.new_context()
    v.mkdir(ctx, ctx.root, b"/tmp/gone", 0o755)
    ctx.cwd = v.lookup(ctx, ctx.root, b"/tmp/gone")
    assert v.getcwd(ctx) == b"/tmp/gone"
    v.rmdir(ctx, ctx.root, b"/tmp/gone")
    assert errno_of(lambda: v.getcwd(ctx)) == "ENOENT"
    assert v.path_of(ctx.cwd, ctx.root) == b"/tmp/gone (deleted)"
    assert errno_of(lambda: v.mkdir(ctx, ctx.cwd, b"x", 0o755)) == "ENOENT"
    assert errno_of(lambda: v.open(ctx, ctx.cwd, b"x", os.O_CREAT | os.O_WRONLY, 0o644)) == "ENOENT"
    assert errno_of(lambda: list(v.getdents(ctx.cwd, 0))) == "ENOENT"
    assert v.stat(ctx, ctx.cwd, b".").nlink == 0
    assert v.stat(ctx, ctx.cwd, b"..").ino == world.stat(b"/tmp").ino


def test_getcwd_follows_renames(world: World) -> None:
    v = world.vfs
    ctx = v.new_context()
    v.mkdir(ctx, ctx.root, b"/tmp/a", 0o755)
    v.mkdir(ctx, ctx.root, b"/tmp/a/b", 0o755)
    ctx.cwd = v.lookup(ctx, ctx.root, b"/tmp/a/b")
    v.rename(ctx, ctx.root, b"/tmp/a", ctx.root, b"/tmp/z")
    assert v.getcwd(ctx) == b"/tmp/z/b"
    v.rename(ctx, ctx.root, b"/srv", ctx.root, b"/srv2")  # an overlay directory
    ctx.cwd = v.lookup(ctx, ctx.root, b"/srv2/deep/er")
    assert v.getcwd(ctx) == b"/srv2/deep/er"


def test_location_of_host_fd_round_trips(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    world.write(b"/tmp/f", b"x")
    v.symlink(ctx, b"f", ctx.root, b"/tmp/l")
    cases = [
        (b"/tmp/f", os.O_RDONLY), (b"/tmp/f", os.O_RDWR), (b"/tmp", os.O_RDONLY), (b"/", os.O_RDONLY),
        (b"/etc/passwd", os.O_RDONLY), (b"/srv/deep", os.O_RDONLY), (b"/dev/null", os.O_WRONLY),
        (b"/dev/zero", os.O_RDONLY), (b"/dev", os.O_RDONLY), (b"/tmp/f", os.O_PATH),
        (b"/tmp/l", os.O_PATH | os.O_NOFOLLOW), (b"/bin/sh", os.O_PATH | os.O_NOFOLLOW),
        (b"/etc/passwd", os.O_PATH), (b"/run/fifo", os.O_RDONLY | os.O_NONBLOCK),
        (b"/run/fifo", os.O_PATH), (b"/dev/shm", os.O_PATH),
    ]
    for path, flags in cases:
        o = v.open(ctx, ctx.root, path, flags, 0)
        dup = os.dup(o.host_fd)  # the translator passes a dup of the guest's fd
        try:
            loc = v.location_of_host_fd(dup)
            assert loc == o.location, path
            expect = v.lookup(ctx, ctx.root, path, follow=not flags & os.O_NOFOLLOW)
            assert loc.inode is expect.inode, path
            assert v.stat_location(loc) == v.stat(ctx, ctx.root, path, follow=not flags & os.O_NOFOLLOW)
        finally:
            os.close(dup)
            os.close(o.host_fd)
    r, w = os.pipe()
    assert v.location_of_host_fd(r) is None
    os.close(r)
    os.close(w)


def test_unlinked_open_file_keeps_working(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    fd = world.open(b"/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"abc")
    v.unlink(ctx, ctx.root, b"/tmp/f")
    os.write(fd, b"defgh")
    loc = v.location_of_host_fd(fd)
    assert loc is not None
    s = v.stat_location(loc)
    assert s.nlink == 0 and s.size == 8 and stat.S_ISREG(s.mode)
    assert v.path_of(loc, ctx.root) == b"/tmp/f (deleted)"
    assert os.pread(fd, 10, 0) == b"abcdefgh"
    assert errno_of(lambda: v.stat(ctx, ctx.root, b"/tmp/f")) == "ENOENT"
    os.close(fd)


def test_o_tmpfile(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    o = v.open(ctx, ctx.root, b"/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
    os.write(o.host_fd, b"anon")
    s = v.stat_location(o.location)
    assert s.nlink == 0 and stat.S_IMODE(s.mode) == 0o600 and s.size == 4
    assert v.path_of(o.location, ctx.root).endswith(b" (deleted)")
    assert world.names(b"/tmp") == []
    named = v.location_of_host_fd(o.host_fd)
    assert named is not None
    v.link_location(ctx, named, ctx.root, b"/tmp/named")
    assert world.read(b"/tmp/named") == b"anon" and world.stat(b"/tmp/named").nlink == 1
    os.close(o.host_fd)
    ex = v.open(ctx, ctx.root, b"/tmp", os.O_TMPFILE | os.O_WRONLY | os.O_EXCL, 0o600)
    assert errno_of(lambda: v.link_location(ctx, ex.location, ctx.root, b"/tmp/x")) == "ENOENT"
    os.write(ex.host_fd, b"still writable")
    os.close(ex.host_fd)
    assert errno_of(lambda: v.open(ctx, ctx.root, b"/tmp/named", os.O_TMPFILE | os.O_RDWR, 0)) == "ENOTDIR"
    assert errno_of(lambda: v.open(ctx, ctx.root, b"/etc", os.O_TMPFILE | os.O_RDWR, 0)) is None
    assert errno_of(lambda: v.open(ctx, ctx.root, b"/tmp", os.O_TMPFILE | os.O_RDONLY, 0)) == "EINVAL"


def test_fifo_reader_first_then_writer(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mknod(ctx, ctx.root, b"/tmp/p", stat.S_IFIFO | 0o644, 0)
    r = world.open(b"/tmp/p", os.O_RDONLY)  # must not block the translator
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        os.read(r, 10)  # no EOF before a writer came (it would block, as Linux)
    w = world.open(b"/tmp/p", os.O_WRONLY)
    os.write(w, b"through the pipe")
    os.close(w)
    assert os.read(r, 100) == b"through the pipe"
    assert os.read(r, 100) == b""  # EOF once the writer is gone
    os.close(r)


def test_fifo_writer_first_then_reader(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    v.mknod(ctx, ctx.root, b"/tmp/p", stat.S_IFIFO | 0o644, 0)
    w = world.open(b"/tmp/p", os.O_WRONLY)  # no reader yet: Linux would block, we must not
    os.write(w, b"early")
    os.close(w)
    r = world.open(b"/tmp/p", os.O_RDONLY)
    assert os.read(r, 100) == b"early"
    assert os.read(r, 100) == b""
    os.close(r)
    assert errno_of(lambda: world.open(b"/tmp/p", os.O_WRONLY | os.O_NONBLOCK)) == "ENXIO"


def test_devices_cannot_be_made(world: World) -> None:
    v, ctx = world.vfs, world.ctx
    assert errno_of(lambda: v.mknod(ctx, ctx.root, b"/tmp/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))) == "EPERM"
    assert errno_of(lambda: v.mknod(ctx, ctx.root, b"/tmp/blk", stat.S_IFBLK | 0o666, os.makedev(8, 0))) == "EPERM"
    v.mknod(ctx, ctx.root, b"/tmp/sock", stat.S_IFSOCK | 0o755, 0)
    assert stat.S_ISSOCK(world.stat(b"/tmp/sock").mode)
    assert errno_of(lambda: world.open(b"/tmp/sock")) == "ENXIO"


def test_statfs_and_umask(world: World) -> None:
    assert world.vfs.statfs(world.at(b"/tmp"))["f_type"] == TMPFS_MAGIC
    ctx = world.vfs.new_context()
    ctx.umask = 0o077
    world.vfs.mkdir(ctx, ctx.root, b"/tmp/d", 0o777)
    world.vfs.open(ctx, ctx.root, b"/tmp/f", os.O_CREAT | os.O_WRONLY, 0o666)
    assert stat.S_IMODE(world.stat(b"/tmp/d").mode) == 0o700
    assert stat.S_IMODE(world.stat(b"/tmp/f").mode) == 0o600


def test_close_releases_everything_but_guest_fds_live_on(tmp_path) -> None:  # noqa: ANN001
    v = Vfs(TmpFs())
    ctx = v.new_context()
    o = v.open(ctx, ctx.root, b"/f", os.O_RDWR | os.O_CREAT, 0o644)
    v.mkdir(ctx, ctx.root, b"/d", 0o755)
    d = v.open(ctx, ctx.root, b"/d", os.O_RDONLY, 0)
    scratch = v.scratch.path
    assert os.path.isdir(scratch)
    v.close()
    assert not os.path.exists(scratch)
    os.write(o.host_fd, b"still mine")
    assert os.pread(o.host_fd, 100, 0) == b"still mine"
    os.close(o.host_fd)
    os.close(d.host_fd)


def test_stat_is_fast(world: World) -> None:
    """The hot path: a cached lookup costs no host syscall (a generous bound, not a benchmark)."""
    v, ctx = world.vfs, world.ctx
    v.stat(ctx, ctx.root, b"/usr/bin/env")
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        v.stat(ctx, ctx.root, b"/srv/deep/er/est/leaf")
    per = (time.perf_counter() - t) / n
    assert per < 100e-6, f"{per * 1e6:.1f} us per stat"


def test_unprivileged_native_write_clears_setuid(world: World) -> None:
    """Writes are native, so the host kernel must see the mode to clear setuid as Linux does."""
    v, ctx = world.vfs, world.ctx
    world.write(b"/tmp/f", b"x")
    v.chmod(ctx, ctx.root, b"/tmp/f", 0o6777)
    fd = world.open(b"/tmp/f", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"root writes keep it")
    assert stat.S_IMODE(world.stat(b"/tmp/f").mode) == 0o6777
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: an unprivileged writer on the same fd
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.write(fd, b"y")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(fd)
    assert stat.S_IMODE(world.stat(b"/tmp/f").mode) == 0o777


def test_fifo_reader_blocked_in_read_sees_the_writer_not_eof(world: World) -> None:
    """The placeholder writer may only go once the real writer is open: a reader already
    blocked in read() must get the data, never a spurious EOF."""
    import threading

    v, ctx = world.vfs, world.ctx
    v.mknod(ctx, ctx.root, b"/tmp/p", stat.S_IFIFO | 0o644, 0)
    r = world.open(b"/tmp/p", os.O_RDONLY)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(os.read(r, 100)))
    t.start()
    time.sleep(0.05)  # the reader is now blocked in read()
    w = world.open(b"/tmp/p", os.O_WRONLY)
    os.write(w, b"rendezvous")
    t.join(5)
    assert got == [b"rendezvous"]
    os.close(w)
    os.close(r)
