"""Named images: root filesystems assembled from Debian packages.

``linuxabi image build NAME --packages coreutils,python3`` resolves the packages' dependency
closure from the host's apt lists, fetches the .debs into a shared cache, unpacks them and adds
what a system needs; ``linuxabi run --image NAME`` runs in it (see :func:`image_root`).
"""
from __future__ import annotations

from .build import BuildResult, build_image
from .errors import BadImageName, DiskFull, FetchError, ImageBusy, ImageError, ImageNotFound, UnknownPackage
from .store import Store, cache_dir, image_root, validate_name

__all__ = ["BadImageName", "BuildResult", "DiskFull", "FetchError", "ImageBusy", "ImageError", "ImageNotFound",
           "Store", "UnknownPackage", "build_image", "cache_dir", "image_root", "validate_name"]
