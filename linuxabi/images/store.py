"""Where images live: ``$XDG_CACHE_HOME/linuxabi/images/NAME``, with NAME.complete (the marker,
written last) and NAME.manifest.json beside it, never inside where the guest would see them.
The .deb cache (``.../linuxabi/debs``) is shared by every image."""
from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import BadImageName, ImageBusy, ImageNotFound
from .manifest import Manifest

DEFAULT = "default"  # the built-in busybox image (linuxabi.image)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_SUFFIXES = (".complete", ".manifest.json", ".lock")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "linuxabi"


def validate_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name or name.endswith(_SUFFIXES):
        raise BadImageName(f"bad image name {name!r}: use letters, digits, '.', '_', '+' and '-' "
                           f"(no '/', no '..', at most 64 characters, not starting with '.' or '-')")
    return name


@dataclass(frozen=True)
class Store:
    images: Path
    debs: Path

    @classmethod
    def default(cls) -> "Store":
        base = cache_dir()
        return cls(base / "images", base / "debs")

    def root(self, name: str) -> Path:
        return self.images / validate_name(name)

    def marker(self, name: str) -> Path:
        return self.images / f"{validate_name(name)}.complete"

    def manifest_path(self, name: str) -> Path:
        return self.images / f"{validate_name(name)}.manifest.json"

    def is_built(self, name: str) -> bool:
        return self.marker(name).exists() and self.root(name).is_dir()

    def names(self) -> list[str]:
        if not self.images.is_dir():
            return []
        return sorted(p.name[:-len(".complete")] for p in self.images.glob("*.complete")
                      if (self.images / p.name[:-len(".complete")]).is_dir())

    def manifest(self, name: str) -> Manifest | None:
        try:
            return Manifest.load(self.manifest_path(name))
        except (OSError, ValueError, TypeError):
            return None

    @contextmanager
    def locked(self, name: str, *, wait: bool = True) -> Iterator[None]:
        """One builder (or remover) of an image at a time, across processes."""
        self.images.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.images / f"{validate_name(name)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise ImageBusy(f"image {name} is being built or removed by another process") from None
            yield
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        with self.locked(name):
            root, marker = self.root(name), self.marker(name)
            if not (marker.exists() or root.exists()):
                raise ImageNotFound(f"no image named {name}")
            marker.unlink(missing_ok=True)  # first: a half-removed image must not look complete
            if root.exists():
                import shutil  # (imported here: `linuxabi run` loads this module on every start)

                shutil.rmtree(root)
            self.manifest_path(name).unlink(missing_ok=True)
        # The lock file stays: unlinking it would let a waiting builder lock an orphaned inode.

    def usage(self, name: str) -> int:
        return tree_bytes(self.root(name))


def tree_bytes(root: Path) -> int:
    """Disk use of a tree (blocks, each hard-linked file once), as du counts it."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for base, dirs, files in os.walk(root):
        for n in dirs + files:
            try:
                s = os.lstat(os.path.join(base, n))
            except OSError:
                continue
            if (s.st_dev, s.st_ino) in seen:
                continue
            seen.add((s.st_dev, s.st_ino))
            total += s.st_blocks * 512
    return total


def image_root(name: str, store: Store | None = None) -> Path:
    """The root directory of image ``name``, for ``linuxabi run --image NAME``.

    ``default`` is the built-in busybox image (built on first use); any other name must have
    been built with ``linuxabi image build``.
    """
    validate_name(name)
    if name == DEFAULT and store is None:
        from ..image import default_image

        return default_image()
    store = store or Store.default()
    if not store.is_built(name):
        raise ImageNotFound(f"no image named {name}; build it with: "
                            f"linuxabi image build {name} --packages PKG[,PKG...]")
    return store.root(name)
