"""Build what a benchmark run needs: the microbench guest binary and the benchmark image."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from linuxabi.image import cache_dir

GUEST_SOURCE = Path(__file__).resolve().parent / "guest" / "microbench.c"
CFLAGS = ("-O2", "-static", "-Wall")
GUEST_BINARY = "/bench/microbench"  # where the guest finds it inside every image copy

# The "large image" tree: 3 subtrees of 1000 files (~100 directories in all), so that
# `ls -lR /usr` has real work and `tar` has a 1000-file tree (/usr/share/bench/a).
TREE_ROOT = "usr/share/bench"
TREE_PARTS = ("a", "b", "c")
FILES_PER_PART = 1000
DIRS_PER_PART = 33
TAR_TREE = "/usr/share/bench/a"


class BuildError(Exception):
    """The guest could not be built or the image not prepared (a one-line reason)."""


def bench_cache() -> Path:
    return cache_dir() / "bench"


def microbench_binary() -> Path:
    """The compiled guest, cached by a hash of its source and flags (rebuilt when either changes)."""
    source = GUEST_SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = bench_cache() / f"microbench-{key}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("gcc") is None:
        raise BuildError("gcc not found (apt-get install gcc libc6-dev)")
    # Compile beside the target and rename: concurrent runs never see a half-written binary.
    fd, tmp = tempfile.mkstemp(prefix=".microbench-", dir=out.parent)
    os.close(fd)
    try:
        r = subprocess.run(["gcc", *CFLAGS, "-o", tmp, str(GUEST_SOURCE)], capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"gcc failed: {r.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _write_tree(root: Path) -> None:
    """A deterministic tree of small files of varied sizes (the same bytes on every run)."""
    for part in TREE_PARTS:
        for i in range(FILES_PER_PART):
            d = root / TREE_ROOT / part / f"d{i % DIRS_PER_PART:02d}"
            if i < DIRS_PER_PART:
                d.mkdir(parents=True)
            size = (i * 397) % 4000 + 16
            (d / f"f{i:04d}.txt").write_bytes((f"{part}{i} ".encode() * (size // 4 + 1))[:size])


def _make_dev_nodes(root: Path) -> None:
    """/dev/null in the copy: a chroot sees only the copy's /dev (linuxabi mounts its own)."""
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    node = dev / "null"
    if node.exists() or node.is_symlink():
        node.unlink()
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(node, 0o666)
    except PermissionError:
        raise BuildError("mknod /dev/null in the image copy needs root") from None


DYNAMIC_PACKAGES = ("coreutils", "python3")
DYNAMIC_TRUE = "/usr/bin/true"  # coreutils' true, dynamically linked (busybox's is /bin/true)
PYTHON3 = "/usr/bin/python3"


def add_dynamic_programs(dst: Path) -> None:
    """Debian's coreutils `true` and python3 with their libraries, from an image built from the
    packages (linuxabi.images, cached): the rows for dynamically linked programs."""
    from linuxabi.images import build_image
    from linuxabi.images.progress import Quiet

    src = build_image("bench-dynamic", DYNAMIC_PACKAGES, progress=Quiet()).root
    for rel in ("usr/lib/x86_64-linux-gnu", "usr/lib/python3.11", "usr/lib64", "etc/ld.so.cache"):
        s, d = src / rel, dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir() and not s.is_symlink():
            shutil.copytree(s, d, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(s, d, follow_symlinks=False)
    for link in ("lib", "lib64"):  # merged /usr, as the packages' own paths assume
        if not (dst / link).exists() and not (dst / link).is_symlink():
            (dst / link).symlink_to(f"usr/{link}")
    for rel in ("usr/bin/true", "usr/bin/python3.11"):
        shutil.copy2(src / rel, dst / rel)
    (dst / PYTHON3.lstrip("/")).symlink_to("python3.11")


def prepare_image(base: Path, dst: Path, microbench: Path, *, dev_nodes: bool) -> Path:
    """A scratch copy of `base` plus the benchmark tree and the guest at /bench/microbench."""
    if not (base / "bin" / "busybox").exists():
        raise BuildError(f"{base} is not an image (no /bin/busybox)")
    shutil.copytree(base, dst, symlinks=True)
    _write_tree(dst)
    (dst / "bench").mkdir(exist_ok=True)
    shutil.copy2(microbench, dst / GUEST_BINARY.lstrip("/"))
    add_dynamic_programs(dst)
    if dev_nodes:
        _make_dev_nodes(dst)
    return dst
