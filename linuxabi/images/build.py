"""Building a named image: resolve, fetch, unpack, configure, then swap it into place.

The tree is assembled in a temporary directory beside the target and renamed into place; the
manifest is written next and the marker last, so an interrupted build never looks complete.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import extract, fetch, resolver, skeleton
from .errors import BadImageName, DiskFull, ImageError
from .manifest import Manifest, PackageEntry, request_key
from .progress import Progress, human
from .store import DEFAULT, Store, tree_bytes, validate_name


@dataclass(frozen=True)
class BuildResult:
    name: str
    root: Path
    manifest: Manifest
    cached: bool  # True: the image was already built from the same request; nothing was done


def split_packages(values: Iterable[str]) -> list[str]:
    """``--packages a,b --packages c`` (and spaces) as a list, in order, without repeats."""
    return list(dict.fromkeys(p for v in values for p in v.replace(",", " ").split()))


@dataclass(frozen=True)
class Request:
    packages: list[str]
    exclude: list[str]
    with_recommends: bool
    keep_docs: bool

    @property
    def key(self) -> str:
        return request_key(self.packages, self.with_recommends, self.exclude, self.keep_docs)


def build_image(name: str, packages: Iterable[str], *, with_recommends: bool = False,
                exclude: Iterable[str] = (), keep_docs: bool = False, force: bool = False,
                store: Store | None = None, progress: Progress | None = None, jobs: int = 4) -> BuildResult:
    """Build image ``name`` from ``packages`` and their dependencies (a no-op when it was
    already built from the same request, unless ``force``)."""
    validate_name(name)
    if name == DEFAULT:
        raise BadImageName("'default' is the built-in busybox image; choose another name")
    req = Request(split_packages(packages), split_packages(exclude), with_recommends, keep_docs)
    if not req.packages:
        raise ImageError("no packages given (--packages PKG[,PKG...])")
    store = store or Store.default()
    progress = progress or Progress()
    with store.locked(name):
        old = store.manifest(name)
        if not force and store.is_built(name) and old is not None and old.key == req.key:
            progress.step(f"image {name} is up to date (same packages; --force rebuilds)")
            return BuildResult(name, store.root(name), old, cached=True)
        try:
            return _build(name, req, store, progress, jobs)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskFull(f"disk full while building image {name} in {store.images}") from None
            raise
        finally:
            progress.clear()


def _build(name: str, req: Request, store: Store, progress: Progress, jobs: int) -> BuildResult:
    t0 = time.monotonic()
    progress.step(f"resolving {', '.join(req.packages)}")
    pkgs = resolver.resolve(req.packages, with_recommends=req.with_recommends, exclude=req.exclude)
    progress.step(f"resolve: {len(pkgs)} packages, {human(sum(p.size for p in pkgs))} of .debs")
    debs = fetch.fetch(pkgs, store.debs, progress, jobs=jobs)
    store.images.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(store, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{name}~", dir=store.images))
    try:
        os.chmod(tmp, 0o755)
        unpacked = extract.unpack_all([debs[p.name] for p in pkgs], tmp, progress)
        progress.step("configure: merged /usr, alternatives, /etc, ld.so.cache")
        extract.merge_usr(tmp)
        if not req.keep_docs:
            extract.slim(tmp)
        alternatives = extract.apply_alternatives(tmp, (u.postinst for u in unpacked))
        extract.write_dpkg_status(tmp, unpacked)
        skeleton.add_skeleton(tmp)
        skeleton.run_ldconfig(tmp)
        manifest = Manifest(
            name=name, key=req.key, requested=req.packages, with_recommends=req.with_recommends,
            exclude=req.exclude, keep_docs=req.keep_docs,
            packages=[PackageEntry(p.name, p.version, p.arch, p.sha256, p.size, p.deb_name) for p in pkgs],
            alternatives=alternatives, built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            image_bytes=tree_bytes(tmp))
        root = _swap_in(store, name, tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    manifest.build_seconds = round(time.monotonic() - t0, 2)
    manifest.save(store.manifest_path(name))
    store.marker(name).write_text(req.key + "\n")
    progress.step(f"image {name}: {len(pkgs)} packages, {human(manifest.image_bytes)} at {root} "
                  f"({manifest.build_seconds:.1f}s)")
    return BuildResult(name, root, manifest, cached=False)


def _swap_in(store: Store, name: str, tmp: Path) -> Path:
    root = store.root(name)
    store.marker(name).unlink(missing_ok=True)  # from here until the end the image is incomplete
    store.manifest_path(name).unlink(missing_ok=True)
    old: Path | None = None
    if root.exists() or root.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".old-{name}~", dir=store.images))
        os.rename(root, old / "root")
    os.rename(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return root


def _clean_leftovers(store: Store, name: str) -> None:
    """Temporary trees of an earlier build of ``name`` that was killed ('~' is never in a name)."""
    for pattern in (f".build-{name}~*", f".old-{name}~*"):
        for p in store.images.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)
