"""The built-in default image: a small rootfs from Debian's busybox-static.

(Images built from any Debian packages are in :mod:`linuxabi.images`; this one needs no
dependency resolution, busybox-static being a single static binary.)

Built on first use into a cache directory (``$XDG_CACHE_HOME/linuxabi/images/default``):
the .deb is fetched with ``apt-get download`` and unpacked with ``dpkg -x``; busybox's applet
links and the few files a system needs (/etc/passwd, /etc/group, /tmp, /root) are added.
"""
from __future__ import annotations

import os
from pathlib import Path

# One error type and one cache for every image (named images live in linuxabi.images).
from .images.errors import ImageError
from .images.store import cache_dir

__all__ = ["ImageError", "build_default_image", "cache_dir", "default_image"]

PACKAGE = "busybox-static"
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def default_image() -> Path:
    """The default image's root directory, building it if needed."""
    root = cache_dir() / "images" / "default"
    if _marker(root).exists():
        return root
    build_default_image(root)
    return root


def _fetch_deb(workdir: Path) -> Path:
    import subprocess

    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    r = subprocess.run(["apt-get", "download", PACKAGE], cwd=debs, capture_output=True, text=True)
    found = sorted(debs.glob(f"{PACKAGE}_*.deb"))
    if r.returncode != 0 or not found:
        raise ImageError(f"apt-get download {PACKAGE} failed: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
    return found[-1]


def _marker(root: Path) -> Path:
    """Written last, beside (not inside) the image: the guest must not see it."""
    return root.parent / (root.name + ".complete")


def build_default_image(root: Path) -> None:
    import shutil  # (here, not at the top: every `linuxabi run` imports this module)
    import subprocess
    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".default-", dir=root.parent))
    try:
        deb = _fetch_deb(tmp)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
        busybox = tmp / "bin" / "busybox"
        if not busybox.exists():
            raise ImageError(f"{deb.name} has no /bin/busybox")
        listing = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True)
        for rel in listing.stdout.split():
            link = tmp / rel
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
        for d, mode in (("tmp", 0o1777), ("root", 0o700), ("home", 0o755), ("proc", 0o555),
                        ("dev", 0o755), ("etc", 0o755), ("var", 0o755), ("usr/bin", 0o755),
                        ("usr/sbin", 0o755), ("sbin", 0o755)):
            (tmp / d).mkdir(parents=True, exist_ok=True)
            os.chmod(tmp / d, mode)
        for name, text in (("passwd", _PASSWD), ("group", _GROUP), ("hosts", _HOSTS),
                           ("hostname", "linuxabi\n")):
            (tmp / "etc" / name).write_text(text)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
        _marker(root).write_text(deb.name + "\n")
    except subprocess.CalledProcessError as e:
        raise ImageError(f"building the default image failed: {e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
