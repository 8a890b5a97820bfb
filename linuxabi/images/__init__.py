"""Named images: root filesystems assembled from Debian packages.

``linuxabi image build NAME --packages coreutils,python3`` resolves the packages' dependency
closure from the host's apt lists, fetches the .debs into a shared cache, unpacks them and adds
what a system needs; ``linuxabi run --image NAME`` runs in it (see :func:`image_root`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BadImageName, DiskFull, FetchError, ImageBusy, ImageError, ImageNotFound, UnknownPackage
from .store import Store, cache_dir, image_root, validate_name

if TYPE_CHECKING:
    from .build import BuildResult, build_image

__all__ = ["BadImageName", "BuildResult", "DiskFull", "FetchError", "ImageBusy", "ImageError", "ImageNotFound",
           "Store", "UnknownPackage", "build_image", "cache_dir", "image_root", "validate_name"]


def __getattr__(name: str) -> object:
    # The builder (and what it imports) loads only when an image is built: `linuxabi run` on an
    # existing image needs just the store.
    if name in ("BuildResult", "build_image"):
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
