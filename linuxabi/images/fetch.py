"""The shared .deb cache (``$XDG_CACHE_HOME/linuxabi/debs``) and parallel ``apt-get download``.

A cached file is used when its SHA-256 is the archive's; missing ones are downloaded in a few
concurrent batches, each into a private temporary directory (so a half-written file is never
seen under its final name), verified, then renamed into the cache.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from .errors import DiskFull, FetchError, ImageError
from .progress import Progress, human
from .resolver import Package

_NETWORK_HINTS = ("Temporary failure resolving", "Could not resolve", "Network is unreachable",
                  "Could not connect", "Connection failed", "Connection timed out", "No route to host")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _cached(pkg: Package, debs: Path) -> Path | None:
    path = debs / pkg.deb_name
    try:
        if path.stat().st_size != pkg.size:
            return None
    except FileNotFoundError:
        return None
    return path if not pkg.sha256 or sha256_file(path) == pkg.sha256 else None


def _batches(pkgs: list[Package], n: int) -> list[list[Package]]:
    """Split into ``n`` batches of about equal bytes (largest first, into the lightest batch)."""
    out: list[list[Package]] = [[] for _ in range(max(1, min(n, len(pkgs))))]
    weight = [0] * len(out)
    for p in sorted(pkgs, key=lambda p: -p.size):
        i = weight.index(min(weight))
        out[i].append(p)
        weight[i] += p.size
    return out


def _dir_bytes(d: Path) -> int:
    total = 0
    for base, _, files in os.walk(d):
        for f in files:
            try:
                total += os.lstat(os.path.join(base, f)).st_size
            except OSError:
                pass
    return total


def _download(batch: list[Package], debs: Path, tmp: Path) -> None:
    argv = ["apt-get", "download", "-q", *(f"{p.name}={p.version}" for p in batch)]
    try:
        r = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    except FileNotFoundError:
        raise ImageError("apt-get not found: building images needs Debian's apt on the host") from None
    if r.returncode != 0:
        errors = [ln[3:].strip() for ln in r.stderr.splitlines() if ln.startswith("E:")] or [r.stderr.strip() or "?"]
        text = "\n".join(errors)
        if "No space left" in text:
            raise DiskFull(f"disk full while downloading packages into {debs}")
        # "Failed to fetch URL  REASON": the reason is what the user needs.
        reason = errors[0].split("  ", 1)[-1] if errors[0].startswith("Failed to fetch") else errors[0]
        if any(h in text for h in _NETWORK_HINTS):
            raise FetchError(f"cannot download packages from the Debian mirrors (no network?): {reason}")
        raise FetchError(f"apt-get download failed: {reason}")
    for p in batch:
        got = tmp / p.deb_name
        if not got.exists():
            raise FetchError(f"apt-get download {p.name}={p.version} produced no {p.deb_name}")
        if p.sha256 and sha256_file(got) != p.sha256:
            raise FetchError(f"{p.deb_name}: SHA-256 differs from the archive's (corrupt download?)")
        os.replace(got, debs / p.deb_name)


def fetch(pkgs: list[Package], debs: Path, progress: Progress, *, jobs: int = 4) -> dict[str, Path]:
    """Paths of the packages' .debs in the cache, downloading those it lacks."""
    try:
        debs.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            cached = dict(zip((p.name for p in pkgs), pool.map(lambda p: _cached(p, debs), pkgs)))
        missing = [p for p in pkgs if cached[p.name] is None]
        if not missing:
            progress.step(f"fetch: all {len(pkgs)} packages cached")
            return {p.name: debs / p.deb_name for p in pkgs}
        total = sum(p.size for p in missing)
        progress.begin("fetch", total, f"downloading {len(missing)} packages ({human(total)}), "
                       f"{len(pkgs) - len(missing)} cached", unit_bytes=True)
        batches = _batches(missing, jobs)
        tmps = [Path(tempfile.mkdtemp(prefix=".dl-", dir=debs)) for _ in batches]
        try:
            with ThreadPoolExecutor(max_workers=len(tmps)) as pool:
                futures = [pool.submit(_download, b, debs, t) for b, t in zip(batches, tmps)]
                while True:
                    done, pending = wait(futures, timeout=0.2)
                    landed = [p for p in missing if (debs / p.deb_name).exists()]
                    arrived = len(landed) + sum(1 for p in missing for t in tmps if (t / p.deb_name).exists())
                    progress.update(min(total, sum(p.size for p in landed) + sum(_dir_bytes(t) for t in tmps)),
                                    f"{arrived}/{len(missing)} packages")
                    if not pending:
                        break
                for f in futures:
                    f.result()  # the first batch's error, typed
        finally:
            for t in tmps:
                shutil.rmtree(t, ignore_errors=True)
        progress.end(f"{len(missing)} downloaded, {human(total)}")
        return {p.name: debs / p.deb_name for p in pkgs}
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(f"disk full while downloading packages into {debs}") from None
        raise
