"""The same operations natively (chroot of a twin tree) and on the Vfs: same errno, same
result, same tree afterwards. Linux is the specification."""
from __future__ import annotations

import os

import pytest
from vfsharness import CHAIN, GID, UID, Twin

O = os
NAME_255 = "n" * 255
NAME_256 = "n" * 256

WALK = [
    ("stat", "bin/sh", True), ("stat", "bin/sh", False), ("stat", "bin/ls", True), ("stat", "usr/bin/env", True),
    ("stat", "/usr/bin/../../bin/ls", True), ("stat", "..", True), ("stat", "/../../..", True),
    ("stat", "escape_abs/passwd", True), ("stat", "escape_rel", True), ("read", "escape_rel"),
    ("read", "escape_abs/passwd"), ("stat", "dangling", True), ("stat", "dangling", False),
    ("stat", "loop1", True), ("stat", "loop1", False), ("stat", "selfloop/x", True),
    ("stat", "chain/l0", True), ("stat", "chain/l1", True), ("stat", "chain/l0", False),
    ("stat", "etc/passwd/", True), ("stat", "etc/passwd/.", True), ("stat", "etc/passwd/..", True),
    ("stat", "bin/sh/", True), ("stat", "bin/sh/", False), ("stat", "deeplink/", False),
    ("stat", "deeplink", False), ("stat", "deeplink/er/est/leaf", True), ("stat", "slashlink", True),
    ("stat", "dangling/", False), ("stat", "", True), ("stat", "/", True), ("stat", "//etc//passwd", True),
    ("stat", "nope/x", True), ("stat", "etc/nope", True), ("stat", NAME_255, True), ("stat", NAME_256, True),
    ("stat", "etc/" + NAME_256 + "/x", True), ("stat", "./" * 2047 + "e", True), ("stat", "./" * 2047 + "et", True),
    ("stat", "run/fifo", True), ("stat", "data/a", True), ("stat", "private/secret", True),
    ("stat", "noexec/file", True), ("readlink", "bin/ls"), ("readlink", "etc/passwd"), ("readlink", "bin/sh/"),
    ("readlink", "nope"), ("readlink", "deeplink"), ("listdir", "srv"), ("listdir", "deeplink"),
    ("listdir", "etc/passwd"), ("listdir", "private"), ("access", "etc/shadow", 4), ("access", "etc/passwd", 2),
    ("access", "bin/busybox", 1), ("access", "etc/passwd", 1), ("access", "srv", 1), ("access", "noexec/file", 0),
    ("access", "dangling", 0), ("access", "etc", 8),
    ("chdir", "srv/deep"), ("getcwd",), ("stat", "../file", True), ("chdir", "../../deeplink"), ("getcwd",),
    ("chdir", "/../.."), ("getcwd",), ("chdir", "etc/passwd"), ("chdir", "private"), ("getcwd",),
]

OPEN = [
    ("open", "etc/passwd", O.O_RDONLY, 0), ("open", "etc/passwd", O.O_WRONLY, 0), ("open", "etc/passwd", O.O_RDWR, 0),
    ("open", "etc/passwd/", O.O_RDONLY, 0), ("open", "etc", O.O_RDONLY, 0), ("open", "etc", O.O_WRONLY, 0),
    ("open", "etc", O.O_RDONLY | O.O_TRUNC, 0), ("open", "etc/passwd", O.O_RDONLY | O.O_DIRECTORY, 0),
    ("open", "bin/sh", O.O_RDONLY | O.O_NOFOLLOW, 0), ("open", "bin/sh/", O.O_RDONLY | O.O_NOFOLLOW, 0),
    ("open", "deeplink", O.O_RDONLY | O.O_NOFOLLOW | O.O_DIRECTORY, 0),
    ("open", "deeplink", O.O_RDONLY | O.O_DIRECTORY, 0),
    ("open", "new", O.O_CREAT | O.O_WRONLY, 0o640), ("open", "new", O.O_CREAT | O.O_EXCL | O.O_WRONLY, 0o640),
    ("open", "new", O.O_RDONLY, 0), ("open", "new2/", O.O_CREAT | O.O_WRONLY, 0o640),
    ("open", "etc/passwd/", O.O_CREAT | O.O_WRONLY, 0o640), ("open", ".", O.O_CREAT | O.O_RDONLY, 0),
    ("open", ".", O.O_CREAT | O.O_EXCL | O.O_RDONLY, 0), ("open", "/", O.O_CREAT | O.O_RDONLY, 0),
    ("open", "etc", O.O_CREAT | O.O_RDONLY, 0), ("open", "etc", O.O_CREAT | O.O_DIRECTORY | O.O_RDONLY, 0),
    ("open", "dangling", O.O_CREAT | O.O_EXCL | O.O_WRONLY, 0o600),
    ("open", "dangling", O.O_CREAT | O.O_WRONLY, 0o600), ("stat", "missing", True),
    ("open", "nope/x", O.O_CREAT | O.O_WRONLY, 0o600), ("open", "etc/passwd/x", O.O_CREAT | O.O_WRONLY, 0o600),
    ("open", "data/a", O.O_WRONLY | O.O_TRUNC, 0), ("read", "data/b"), ("stat", "data/b", True),
    ("open", "srv/file", O.O_RDONLY | O.O_TRUNC, 0), ("stat", "srv/file", True),
    ("open", "private/secret", O.O_RDWR | O.O_APPEND, 0), ("read", "private/secret"),
    ("open", "run/fifo", O.O_RDONLY | O.O_NONBLOCK, 0), ("open", "run/fifo", O.O_RDONLY | O.O_TRUNC | O.O_NONBLOCK, 0),
    ("open", NAME_256, O.O_CREAT | O.O_WRONLY, 0o600), ("open", "chain/l0", O.O_RDONLY, 0),
    ("open", "chain/l1", O.O_RDONLY, 0), ("open", "loop1", O.O_CREAT | O.O_WRONLY, 0o600),
    ("open", "etc/shadow", O.O_RDONLY, 0), ("open", "ro/file", O.O_WRONLY, 0), ("open", "tmp/t", O.O_CREAT | O.O_RDWR, 0),
    ("open", "tmp/t", O.O_RDWR, 0), ("open", "bin/busybox", O.O_RDONLY | O.O_NOATIME, 0),
]

NAMESPACE = [
    ("mkdir", ".", 0o755), ("mkdir", "..", 0o755), ("mkdir", "/", 0o755), ("mkdir", "dangling", 0o755),
    ("mkdir", "new/", 0o750), ("stat", "new", True), ("mkdir", "etc/passwd/x", 0o755), ("mkdir", NAME_256, 0o755),
    ("mkdir", "nope/x", 0o755), ("mkdir", "empty/sub", 0o7777), ("stat", "empty/sub", True), ("stat", "empty", True),
    ("mknod", "m1/", 0o644), ("mknod", "etc/passwd/", 0o644), ("mknod", "fifo2", 0o10644), ("stat", "fifo2", True),
    ("mknod", "d", 0o40755), ("mknod", "w", 0o170755), ("mknod", "etc", 0o20644, 0x103),
    ("mknod", "reg", 0o644), ("stat", "reg", True), ("mknod", "reg0", 0), ("stat", "reg0", True),
    ("symlink", "x", "new3/"), ("symlink", "x", ".."), ("symlink", "x", "etc/passwd"), ("symlink", "t" * 4096, "lt"),
    ("symlink", "t" * 4095, "lt"), ("stat", "lt", False), ("symlink", "", "le"),
    ("unlink", "."), ("unlink", "etc/.."), ("unlink", "etc"), ("unlink", "etc/"), ("unlink", "etc/passwd/"),
    ("unlink", "nope/"), ("unlink", "bin/sh/"), ("unlink", "nope"), ("unlink", "bin/sh"), ("stat", "bin/busybox", True),
    ("unlink", "data/a"), ("stat", "data/b", True), ("read", "data/b"), ("unlink", "run/fifo"), ("unlink", "srv/deep"),
    ("rmdir", "."), ("rmdir", "etc/.."), ("rmdir", "/"), ("rmdir", "etc"), ("rmdir", "etc/passwd"), ("rmdir", "deeplink"),
    ("rmdir", "nope"), ("rmdir", "srv/deep/er/est/"), ("rmdir", "srv/deep/er/est/."), ("rmdir", "empty"), ("stat", "srv/deep/er", True),
    ("link", "etc", "x", False), ("link", "etc/passwd", "new/", False), ("link", "etc/passwd", "bin/sh", False),
    ("link", "nope", "x", False), ("link", "etc/passwd/", "x", False), ("link", "etc/passwd", ".", False),
    ("link", "etc/passwd", "pw", False), ("stat", "etc/passwd", True), ("stat", "pw", True),
    ("link", "bin/sh", "shl", False), ("stat", "shl", False), ("link", "bin/ls", "lsl", True), ("stat", "lsl", False),
    ("link", "dangling", "dl", True), ("unlink", "pw"), ("stat", "etc/passwd", True),
]

RENAME = [
    ("rename", ".", "x", 0), ("rename", "srv/deep/.", "x", 0), ("rename", "srv", "srv/deep/x", 0),
    ("rename", "srv", "srv", 0), ("rename", "srv/deep", "srv", 0), ("rename", "srv/file", "srv/deep", 0),
    ("rename", "srv/deep", "srv/file", 0), ("rename", "srv/file", "srv/g/", 0), ("rename", "srv/file/", "srv/g", 0),
    ("rename", "srv/deep", "srv/deep2/", 0), ("rename", "srv/deep2/", "srv/deep", 0), ("rename", "nope", "x", 0),
    ("rename", "srv/file", ".", 0), ("rename", "srv/file", "srv/..", 0), ("rename", "srv/file", "etc/passwd", 0),
    ("read", "etc/passwd"), ("stat", "srv/file", True), ("rename", "data/a", "data/b", 0), ("stat", "data/a", True),
    ("rename", "srv", "empty", 0), ("listdir", "empty"), ("rename", "empty", "etc", 0), ("rename", "bin", "tmp/bin", 0),
    ("stat", "tmp/bin/ls", True), ("stat", "tmp/bin/sh", True), ("rename", "tmp/bin", "bin", 2),
    ("rename", "etc", "nope", 2), ("rename", "etc/passwd", "etc/shadow", 2), ("read", "etc/passwd"),
    ("rename", "etc/passwd/", "data", 2), ("rename", "data", "etc/passwd/", 2), ("rename", "data", "etc/passwd", 2),
    ("stat", "data", True), ("rename", "etc", "etc/x", 2), ("rename", "etc/x", "etc", 2),
    ("rename", "usr", "usr/bin", 2), ("rename", "run", "chain", 1), ("rename", "run", ".", 1), ("rename", "run", "..", 0),
    ("rename", "run", "run", 1), ("rename", "run", "run2", 1), ("rename", "run", "x", 3), ("rename", "run", "x", 8),
    ("rename", "loop1", "l/", 0), ("rename", "deeplink", "dl/", 0), ("rename", "deeplink/", "dl", 0),
    ("rename", "bin/sh", "usr/bin/env", 0), ("readlink", "usr/bin/env"), ("rename", "home", "home/user", 0),
]

METADATA = [
    ("chmod", "etc/passwd", 0o4755), ("stat", "etc/passwd", True), ("chown", "etc/passwd", -1, -1, True),
    ("stat", "etc/passwd", True), ("chmod", "etc/passwd", 0o6755), ("chown", "etc/passwd", 0, 0, True),
    ("stat", "etc/passwd", True), ("chmod", "etc/passwd", 0o6745), ("chown", "etc/passwd", 0, 0, True),
    ("stat", "etc/passwd", True), ("chmod", "srv", 0o6755), ("chown", "srv", 0, 0, True), ("stat", "srv", True),
    ("chmod", "bin/sh", 0o700), ("stat", "bin/busybox", True), ("chown", "bin/sh", 5, 6, False),
    ("stat", "bin/sh", False), ("stat", "bin/busybox", True), ("chown", "bin/ls", 5, 6, True), ("stat", "bin/busybox", True),
    ("chmod", "nope", 0o644), ("truncate", "etc", 0), ("truncate", "run/fifo", 0), ("truncate", "data/a", 3),
    ("read", "data/b"), ("truncate", "data/big", 100000), ("stat", "data/big", True), ("truncate", "srv/file", 20),
    ("read", "srv/file"), ("utime", "srv/file", 10**18, 2 * 10**18, True), ("utime", "nope", None, None, True),
    ("mkdir", "g", 0o2775), ("chown", "g", 0, 7, True), ("mkdir", "g/sub", 0o755), ("stat", "g/sub", True),
    ("open", "g/f", O.O_CREAT | O.O_WRONLY, 0o2755), ("stat", "g/f", True),
]

# As an unprivileged user (uid 1000): permission checks, sticky dirs, ownership rules.
USER = [
    ("stat", "private/secret", True), ("read", "etc/shadow"), ("access", "etc/shadow", 4), ("access", "etc/passwd", 2),
    ("access", "etc/passwd", 4), ("open", "etc/passwd", O.O_WRONLY, 0), ("open", "etc/new", O.O_CREAT | O.O_WRONLY, 0o600),
    ("mkdir", "etc/new", 0o755), ("mkdir", "etc/passwd", 0o755), ("unlink", "etc/passwd"), ("rmdir", "srv/deep"),
    ("stat", "noexec/file", True), ("listdir", "noexec"), ("listdir", "private"), ("chdir", "private"),
    ("unlink", "sticky/theirs"), ("unlink", "sticky/mine"), ("rename", "sticky/theirs", "sticky/x", 0),
    ("open", "sticky/theirs", O.O_WRONLY, 0), ("open", "tmp/mine", O.O_CREAT | O.O_WRONLY, 0o600),
    ("chmod", "etc/passwd", 0o777), ("chmod", "home/user/notes", 0o2600), ("stat", "home/user/notes", True),
    ("chown", "home/user/notes", UID, GID, True), ("chown", "home/user/notes", 0, -1, True),
    ("chown", "home/user/notes", -1, 0, True), ("chown", "home/user/notes", -1, 5, True),
    ("chown", "etc/passwd", -1, -1, True), ("utime", "etc/passwd", 10**18, 10**18, True),
    ("utime", "home/user/notes", 10**18, 10**18, True), ("truncate", "etc/passwd", 0),
    ("truncate", "home/user/notes", 2), ("read", "home/user/notes"), ("link", "etc/passwd", "home/user/pw", False),
    ("link", "home/user/notes", "home/user/n2", False), ("link", "etc/shadow", "tmp/sh", False),
    ("mkdir", "home/user/d", 0o755), ("rename", "home/user/d", "tmp/d", 0), ("chmod", "tmp/d", 0o555),
    ("rename", "tmp/d", "home/user/d", 0), ("open", "ro/file", O.O_RDWR, 0), ("mkdir", "ro/x", 0o755),
    ("open", "bin/busybox", O.O_RDONLY | O.O_NOATIME, 0), ("access", "bin/busybox", 1), ("access", "etc/passwd", 1),
]


@pytest.mark.parametrize("ops", [WALK, OPEN, NAMESPACE, RENAME, METADATA], ids=["walk", "open", "namespace", "rename", "metadata"])
def test_as_root(twin: Twin, ops: list) -> None:
    twin.check(ops)
    twin.check_trees()


@pytest.mark.parametrize("ops", [WALK, OPEN, NAMESPACE, RENAME, METADATA, USER],
                         ids=["walk", "open", "namespace", "rename", "metadata", "user"])
def test_as_user(twin: Twin, ops: list) -> None:
    twin.check(ops, uid=UID, gid=GID)
    twin.check_trees()


@pytest.mark.parametrize("ops", [WALK, OPEN, NAMESPACE, RENAME, METADATA], ids=["walk", "open", "namespace", "rename", "metadata"])
def test_readonly_image(ro_twin: Twin, ops: list) -> None:
    """ImageFs mounted alone behaves as a read-only mount of the same tree."""
    ro_twin.check(ops)
    ro_twin.check_trees()


def test_symlink_budget_is_exactly_40(twin: Twin) -> None:
    r = twin.check([("stat", "chain/l0", True), ("stat", "chain/l1", True)])
    assert r[0] == ("err", "ELOOP") and r[1][0] == "ok"
    assert CHAIN == 40
