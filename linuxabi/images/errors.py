"""Image errors: each carries the one line the CLI prints (no traceback)."""
from __future__ import annotations


class ImageError(Exception):
    """An image could not be built, found or removed."""


class BadImageName(ImageError):
    pass


class ImageNotFound(ImageError):
    pass


class UnknownPackage(ImageError):
    pass


class FetchError(ImageError):
    """apt-get download failed (no network, mirror trouble, a hash mismatch)."""


class DiskFull(ImageError):
    pass


class ImageBusy(ImageError):
    """Another process is building or removing the same image."""
