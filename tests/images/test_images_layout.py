"""Merged /usr on a synthetic tree: contents moved, relative links kept pointing where they did."""
from __future__ import annotations

import os
from pathlib import Path

from linuxabi.images.extract import merge_usr, slim
from linuxabi.images.rootpath import resolve_in_root


def test_merge_usr(tmp_path: Path) -> None:
    root = tmp_path
    for d in ("bin", "usr/bin", "lib/x/sub", "usr/lib/x"):
        (root / d).mkdir(parents=True)
    (root / "bin/a").write_text("a")
    (root / "usr/bin/a").symlink_to("/bin/a")  # would be a loop once /bin is /usr/bin
    (root / "usr/bin/b").write_text("b")
    (root / "bin/rel").symlink_to("../lib/x/libfoo.so.1")
    (root / "lib/x/libfoo.so.1").write_text("foo")
    (root / "lib/x/sub/up").symlink_to("../libfoo.so.1")
    (root / "usr/lib/x/libbar.so.1").write_text("bar")
    merge_usr(root)
    for d in ("bin", "sbin", "lib", "lib64"):
        assert os.readlink(root / d) == f"usr/{d}"
    assert not (root / "usr/bin/a").is_symlink() and (root / "usr/bin/a").read_text() == "a"
    assert (root / "usr/bin/b").read_text() == "b"
    assert resolve_in_root(root, "/bin/rel").read_text() == "foo"
    assert resolve_in_root(root, "/usr/bin/rel").read_text() == "foo"
    assert resolve_in_root(root, "/lib/x/sub/up").read_text() == "foo"
    assert resolve_in_root(root, "/lib/x/libbar.so.1").read_text() == "bar"
    assert not (root / "lib32").exists()  # only the ones with contents, beyond the usual four


def test_slim_keeps_copyright(tmp_path: Path) -> None:
    for rel in ("usr/share/doc/p/copyright", "usr/share/doc/p/changelog.gz", "usr/share/man/man1/p.1.gz",
                "usr/share/locale/de/LC_MESSAGES/p.mo", "usr/share/p/data"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    slim(tmp_path)
    assert (tmp_path / "usr/share/doc/p/copyright").exists()
    assert not (tmp_path / "usr/share/doc/p/changelog.gz").exists()
    assert not (tmp_path / "usr/share/man").exists() and not (tmp_path / "usr/share/locale").exists()
    assert (tmp_path / "usr/share/p/data").exists()


def test_resolve_in_root_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("image")
    (tmp_path / "link").symlink_to("/etc/passwd")  # absolute: the image's /etc, not the host's
    (tmp_path / "up").symlink_to("../../../../etc/passwd")
    assert resolve_in_root(tmp_path, "/link").read_text() == "image"
    assert resolve_in_root(tmp_path, "/up").read_text() == "image"
