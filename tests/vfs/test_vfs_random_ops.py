"""Random operation sequences, natively and on the overlay: same results, same final tree,
and the host image directory byte-for-byte unchanged."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vfsharness import GID, UID, Twin

PATHS = ["a", "b", "a/b", "a/b/c", "b/a", "etc", "etc/passwd", "etc/x", "bin/sh", "bin/ls", "bin",
         "data/a", "data/b", "data/big", "srv/deep", "srv/deep/er", "srv/file", "dangling", "missing",
         "deeplink", "deeplink/er", "empty", "empty/x", "run/fifo", "tmp/t", "home/user/n", "a/", "etc/",
         "sticky/mine", "sticky/theirs", "loop1", ".", "..", "srv/../a", "/etc/../b"]
path = st.sampled_from(PATHS)
mode = st.sampled_from([0o755, 0o700, 0o644, 0o600, 0o1777, 0o4755, 0o000])
O = os
open_flags = st.sampled_from([
    O.O_RDONLY, O.O_WRONLY, O.O_RDWR, O.O_WRONLY | O.O_CREAT, O.O_RDWR | O.O_CREAT | O.O_EXCL,
    O.O_WRONLY | O.O_TRUNC, O.O_RDWR | O.O_APPEND, O.O_RDONLY | O.O_DIRECTORY, O.O_RDONLY | O.O_NOFOLLOW,
    O.O_WRONLY | O.O_CREAT | O.O_TRUNC, O.O_RDONLY | O.O_NONBLOCK,
])
op = st.one_of(
    st.tuples(st.just("stat"), path, st.booleans()),
    st.tuples(st.just("open"), path, open_flags, mode),
    st.tuples(st.just("read"), path),
    st.tuples(st.just("append"), path, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("mkdir"), path, mode),
    st.tuples(st.just("rmdir"), path),
    st.tuples(st.just("unlink"), path),
    st.tuples(st.just("rename"), path, path, st.sampled_from([0, 0, 1, 2])),
    st.tuples(st.just("link"), path, path, st.booleans()),
    st.tuples(st.just("symlink"), st.sampled_from(["a", "../etc", "/bin/busybox", "missing", "a/b"]), path),
    st.tuples(st.just("readlink"), path),
    st.tuples(st.just("chmod"), path, mode),
    st.tuples(st.just("chown"), path, st.sampled_from([-1, 0, UID]), st.sampled_from([-1, 0, GID]), st.booleans()),
    st.tuples(st.just("truncate"), path, st.sampled_from([0, 3, 5000])),
    st.tuples(st.just("access"), path, st.sampled_from([0, 1, 2, 4, 6])),
    st.tuples(st.just("listdir"), path),
    st.tuples(st.just("mknod"), path, st.sampled_from([0o10644, 0o100600])),
    st.tuples(st.just("utime"), path, st.sampled_from([None, 10**18]), st.sampled_from([None, 2 * 10**18]), st.booleans()),
    st.tuples(st.just("chdir"), path),
    st.tuples(st.just("getcwd")),
)


@settings(max_examples=int(os.environ.get("VFS_RANDOM_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=40), user=st.sampled_from([False, False, True]))
def test_random_sequences_match_linux_and_leave_the_image_alone(ops: list, user: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        twin = Twin(Path(tmp))
        try:
            creds = {"uid": UID, "gid": GID} if user else {}
            twin.check(ops, **creds)
            twin.check_trees()
        finally:
            twin.close()  # asserts the image tree hash is unchanged
