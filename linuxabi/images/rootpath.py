"""Paths inside an image as the guest sees them: absolute symlink targets are relative to the
image root, not the host's /."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


def resolve_in_root(root: Path, path: str, *, max_links: int = 40) -> Path:
    """The host path of ``path`` in the image, every symlink followed within the root.

    Raises FileNotFoundError if a component is missing, OSError(ELOOP) on a symlink loop.
    """
    parts = list(PurePosixPath("/", path).parts[1:])
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()  # ".." at the root stays at the root, as in a chroot
            continue
        host = root.joinpath(*done, part)
        if host.is_symlink():
            links += 1
            if links > max_links:
                raise OSError(40, "too many levels of symbolic links", str(path))
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = list(PurePosixPath(target).parts[1 if target.startswith("/") else 0:]) + parts
            continue
        if not host.exists():
            raise FileNotFoundError(2, "no such file in the image", str(path))
        done.append(part)
    return root.joinpath(*done)


def exists_in_root(root: Path, path: str) -> bool:
    try:
        resolve_in_root(root, path)
    except OSError:
        return False
    return True
