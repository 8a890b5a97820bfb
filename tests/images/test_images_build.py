"""Building images from Debian packages: closure, layout, a native chroot run, caching."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from linuxabi.images import (BadImageName, BuildResult, ImageNotFound, Store, UnknownPackage, build_image,
                             image_root, validate_name)
from linuxabi.images.fetch import sha256_file
from linuxabi.images.progress import Quiet
from linuxabi.images.rootpath import resolve_in_root

SMALL = ["coreutils", "grep", "sed"]  # the session's "small" image (conftest)
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env=ENV, timeout=60)


def names(built: BuildResult) -> list[str]:
    return [p.name for p in built.manifest.packages]


def test_closure_has_libc_and_the_packages_and_stays_minimal(small: BuildResult) -> None:
    got = names(small)
    assert {"libc6", *SMALL} <= set(got)
    assert {"libacl1", "libpcre2-8-0", "libgcc-s1"} <= set(got)  # Pre-Depends and libc6's own Depends
    # Not a Debian base system: nothing that only the Essential set would have brought.
    assert not {"bash", "dash", "base-files", "util-linux", "perl-base"} & set(got)
    assert len(got) == len(set(got))


def test_usr_is_merged_and_ls_has_a_resolvable_interpreter(small: BuildResult) -> None:
    root = small.root
    for d in ("bin", "sbin", "lib", "lib64"):
        assert (root / d).is_symlink() and os.readlink(root / d) == f"usr/{d}"
    ls = resolve_in_root(root, "/usr/bin/ls")
    assert resolve_in_root(root, "/bin/ls") == ls
    with open(ls, "rb") as f:
        elf = ELFFile(f)
        interp = next(seg.get_interp_name() for seg in elf.iter_segments() if seg["p_type"] == "PT_INTERP")
    assert interp == "/lib64/ld-linux-x86-64.so.2"
    ld = resolve_in_root(root, interp)  # /lib64 -> usr/lib64, then an absolute link into /lib
    assert ld.is_file() and str(ld).startswith(str(root) + os.sep)
    assert ld.read_bytes()[:4] == b"\x7fELF"


def test_ld_so_cache_and_system_files(small: BuildResult) -> None:
    root = small.root
    cache = (root / "etc/ld.so.cache").read_bytes()
    assert b"glibc-ld.so.cache" in cache[:32] and b"libc.so.6" in cache and b"libpcre2-8.so.0" in cache
    assert "root:x:0:0:" in (root / "etc/passwd").read_text()
    assert "nogroup" in (root / "etc/group").read_text()
    assert "localhost" in (root / "etc/hosts").read_text()
    assert "passwd:" in (root / "etc/nsswitch.conf").read_text() and "files" in (root / "etc/nsswitch.conf").read_text()
    assert (root / "etc/hostname").read_text().strip()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    for d in ("root", "home", "proc", "dev"):
        assert (root / d).is_dir()
    assert not (root / "usr/share/locale").exists()  # documentation and translations are dropped
    assert "ii  coreutils" in chroot(root, "/usr/bin/dpkg-query", "-l", "coreutils").stdout


def test_chroot_runs_the_images_programs_natively(small: BuildResult) -> None:
    r = chroot(small.root, "/usr/bin/ls", "/")
    assert r.returncode == 0, r.stderr
    assert {"usr", "etc", "tmp", "bin"} <= set(r.stdout.split())
    r = chroot(small.root, "/bin/grep", "-c", "root", "/etc/passwd")
    assert r.returncode == 0 and r.stdout.strip() == "1"
    r = chroot(small.root, "/usr/bin/sed", "-n", "s/^root:x:\\([0-9]*\\).*/uid=\\1/p", "/etc/passwd")
    assert r.stdout.strip() == "uid=0"


def test_marker_and_manifest_beside_the_image(small: BuildResult, store: Store) -> None:
    assert store.marker("small").exists() and store.manifest_path("small").exists()
    assert not list(small.root.glob("*.complete")) and not list(small.root.glob("*.json"))
    assert not [p for p in store.images.iterdir() if p.name.startswith(".")]  # no temporary trees left
    data = json.loads(store.manifest_path("small").read_text())
    assert data["requested"] == SMALL
    entries = {p["name"]: p for p in data["packages"]}
    coreutils = entries["coreutils"]
    policy = subprocess.run(["apt-cache", "policy", "coreutils"], capture_output=True, text=True).stdout
    assert f"Candidate: {coreutils['version']}" in policy
    assert sha256_file(store.debs / coreutils["deb"]) == coreutils["sha256"]
    assert all(p["version"] and len(p["sha256"]) == 64 for p in data["packages"])


def test_same_package_set_is_a_cache_hit(small: BuildResult, store: Store) -> None:
    inode = small.root.stat().st_ino
    t0 = time.monotonic()
    again = build_image("small", list(reversed(SMALL)), store=store, progress=Quiet())
    took = time.monotonic() - t0
    assert again.cached and took < 1.0
    assert small.root.stat().st_ino == inode


def test_a_different_package_set_rebuilds(store: Store) -> None:
    first = build_image("variant", ["sed"], store=store, progress=Quiet())
    assert not first.cached and "mawk" not in [p.name for p in first.manifest.packages]
    second = build_image("variant", ["sed", "mawk"], store=store, progress=Quiet())
    assert not second.cached and "mawk" in [p.name for p in second.manifest.packages]
    root = second.root
    # mawk's postinst would have made /usr/bin/awk with update-alternatives.
    assert os.readlink(root / "usr/bin/awk") == "/etc/alternatives/awk"
    assert resolve_in_root(root, "/usr/bin/awk") == resolve_in_root(root, "/usr/bin/mawk")
    r = chroot(root, "/usr/bin/awk", "-F:", "$1 == \"root\" { print $7 }", "/etc/passwd")
    assert r.returncode == 0 and r.stdout.strip() == "/bin/sh"
    assert not [p for p in store.images.iterdir() if p.name.startswith(".")]  # the old tree is gone


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", ".hidden", "-x", "x" * 65, "a..b", "x.complete",
                                  "x.manifest.json", "sp ace"])
def test_bad_names_are_refused(name: str, store: Store) -> None:
    with pytest.raises(BadImageName, match="bad image name"):
        build_image(name, ["sed"], store=store, progress=Quiet())
    with pytest.raises(BadImageName):
        image_root(name, store)


def test_good_names() -> None:
    for name in ("tools", "py3.11", "a_b-c+d", "X1"):
        assert validate_name(name) == name


def test_default_is_reserved(store: Store) -> None:
    with pytest.raises(BadImageName, match="built-in"):
        build_image("default", ["sed"], store=store, progress=Quiet())


def test_unknown_package_is_one_clear_line(store: Store) -> None:
    with pytest.raises(UnknownPackage) as e:
        build_image("nope", ["sed", "no-such-package-xyzzy"], store=store, progress=Quiet())
    assert "no-such-package-xyzzy" in str(e.value) and "\n" not in str(e.value)
    assert not (store.images / "nope").exists() and not store.marker("nope").exists()
    with pytest.raises(UnknownPackage, match="not a Debian package name"):
        build_image("nope", ["-o=evil"], store=store, progress=Quiet())


def test_image_root(small: BuildResult, store: Store) -> None:
    assert image_root("small", store) == small.root
    with pytest.raises(ImageNotFound, match="linuxabi image build missing --packages"):
        image_root("missing", store)
