"""Unpacking .debs into a root with ``dpkg-deb -x`` (no maintainer scripts run), then doing
what dpkg and those scripts would have done that matters to programs: bookworm's merged /usr,
and the update-alternatives links (e.g. /usr/bin/awk for mawk)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import DiskFull, ImageError
from .progress import Progress
from .rootpath import exists_in_root

# Top-level directories that are symlinks into /usr on a merged-/usr system (bookworm's
# usrmerge); packages still ship some files under the old paths, which are moved over.
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ALWAYS_LINKED = ("bin", "sbin", "lib", "lib64")


@dataclass(frozen=True)
class Alternative:
    name: str
    link: str
    path: str
    priority: int
    slaves: tuple[tuple[str, str, str], ...]  # (link, name, path)


def _fail(deb: Path, root: Path, stderr: str) -> ImageError:
    if "No space left" in stderr:
        return DiskFull(f"disk full while unpacking {deb.name} into {root.parent}")
    lines = stderr.strip().splitlines()
    return ImageError(f"dpkg-deb could not unpack {deb.name}: {lines[-1] if lines else '?'}")


def _control_file(deb: Path, member: str) -> str:
    r = subprocess.run(["dpkg-deb", "-I", str(deb), member], capture_output=True, text=True, errors="replace")
    return r.stdout if r.returncode == 0 else ""


@dataclass(frozen=True)
class Unpacked:
    control: str  # the package's control stanza
    postinst: str  # empty if it has none


def _unpack(deb: Path, root: Path) -> Unpacked:
    try:
        r = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
    except FileNotFoundError:
        raise ImageError("dpkg-deb not found: building images needs Debian's dpkg on the host") from None
    if r.returncode != 0:
        raise _fail(deb, root, r.stderr)
    return Unpacked(_control_file(deb, "control"), _control_file(deb, "postinst"))


def unpack_all(debs: list[Path], root: Path, progress: Progress, *, jobs: int = 0) -> list[Unpacked]:
    """Unpack every .deb into ``root``, concurrently (tar copes with directories that appear
    meanwhile; packages of one closure do not ship the same file)."""
    progress.begin("unpack", len(debs), f"unpacking {len(debs)} packages")
    out: list[Unpacked] = []
    with ThreadPoolExecutor(max_workers=jobs or max(2, os.cpu_count() or 2)) as pool:
        for i, unpacked in enumerate(pool.map(lambda d: _unpack(d, root), debs), 1):
            out.append(unpacked)
            progress.update(i, debs[i - 1].name.split("_", 1)[0])
    progress.end(f"{len(debs)} packages unpacked")
    return out


def write_dpkg_status(root: Path, unpacked: list[Unpacked]) -> None:
    """/var/lib/dpkg/status listing the packages as installed, so that dpkg-query (and programs
    that ask it) inside the image know what is there."""
    stanzas = []
    for u in unpacked:
        lines = [ln for ln in u.control.rstrip("\n").splitlines() if ln]
        if not lines:
            continue
        lines.insert(1, "Status: install ok installed")
        stanzas.append("\n".join(lines) + "\n")
    d = root / "var" / "lib" / "dpkg"
    d.mkdir(parents=True, exist_ok=True)
    (d / "status").write_text("\n".join(stanzas))
    for sub in ("info", "updates", "triggers"):
        (d / sub).mkdir(exist_ok=True)


# Documentation and translations nobody reads inside a sandbox (as Debian's slim images do;
# copyright files are kept).
_SLIM_DIRS = ("usr/share/locale", "usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/lintian",
              "usr/share/linda")


def slim(root: Path) -> None:
    for rel in _SLIM_DIRS:
        shutil.rmtree(root / rel, ignore_errors=True)
    doc = root / "usr" / "share" / "doc"
    if doc.is_dir():
        for base, dirs, files in os.walk(doc, topdown=False):
            for f in files:
                if f != "copyright":
                    os.unlink(os.path.join(base, f))
            for d in dirs:
                p = os.path.join(base, d)
                if os.path.islink(p):
                    os.unlink(p)
                elif not os.listdir(p):
                    os.rmdir(p)


def _rebase_links(src: Path, dst: Path) -> None:
    """Rewrite relative symlinks under ``src`` so that they still point at the same place once
    ``src`` is moved to ``dst`` (which is deeper: /bin/x -> /usr/bin/x)."""
    for base, dirs, files in os.walk(src):
        for name in dirs + files:
            link = Path(base, name)
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if target.startswith("/"):
                continue
            rel = link.parent.relative_to(src)
            aimed = os.path.normpath(os.path.join("/", src.name, str(rel), target))
            new_dir = os.path.join("/", "usr", dst.name, str(rel))
            link.unlink()
            link.symlink_to(os.path.relpath(aimed, os.path.normpath(new_dir)))


def _merge_into(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.listdir(src)):
        s, d = src / entry, dst / entry
        if not (d.exists() or d.is_symlink()):
            os.rename(s, d)
        elif s.is_dir() and not s.is_symlink() and d.is_dir() and not d.is_symlink():
            _merge_into(s, d)
        elif d.is_symlink() and os.path.basename(os.readlink(d)) == entry:
            # /usr/bin/x -> /bin/x (or the like) would point at itself once merged: the real one wins.
            d.unlink()
            os.rename(s, d)
        # else: both real and different; the /usr one wins, as it does on a merged system.


def merge_usr(root: Path) -> None:
    """/bin, /sbin, /lib, /lib64 ... become symlinks into /usr, their contents moved there."""
    for name in MERGED_DIRS:
        top, usr = root / name, root / "usr" / name
        if top.is_symlink():
            continue
        if top.is_dir():
            _rebase_links(top, usr)
            _merge_into(top, usr)
            shutil.rmtree(top)  # what is left lost a conflict with /usr
        if name in _ALWAYS_LINKED or usr.is_dir():
            usr.mkdir(parents=True, exist_ok=True)
            top.symlink_to(f"usr/{name}")


def parse_alternatives(script: str) -> list[Alternative]:
    """``update-alternatives --install LINK NAME PATH PRIO [--slave LINK NAME PATH]...`` calls
    with literal arguments (ones built from shell variables are skipped)."""
    out: list[Alternative] = []
    joined = re.sub(r"\\\n", " ", script)
    for line in joined.splitlines():
        if "update-alternatives" not in line or "--install" not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        try:
            i = words.index("--install")
            link, name, path, prio = words[i + 1:i + 5]
            slaves = []
            j = i + 5
            while j + 3 < len(words) and words[j] == "--slave":
                slaves.append((words[j + 1], words[j + 2], words[j + 3]))
                j += 4
            if "$" in "".join([link, name, path, *(w for s in slaves for w in s)]):
                continue
            out.append(Alternative(name, link, path, int(prio), tuple(slaves)))
        except (ValueError, IndexError):
            continue
    return out


def _link(root: Path, link: str, name: str, path: str) -> None:
    # Debian's layout: LINK -> /etc/alternatives/NAME -> PATH.
    alt = root / "etc" / "alternatives" / name
    alt.parent.mkdir(parents=True, exist_ok=True)
    if alt.is_symlink() or alt.exists():
        alt.unlink()
    alt.symlink_to(path)
    host = root / link.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    if not (host.exists() or host.is_symlink()):
        host.symlink_to(f"/etc/alternatives/{name}")


def apply_alternatives(root: Path, scripts: Iterable[str]) -> list[str]:
    """Create the best (highest-priority) alternative of each name whose target is in the image;
    returns the links made."""
    best: dict[str, Alternative] = {}
    for alt in (a for s in scripts for a in parse_alternatives(s)):
        if exists_in_root(root, alt.path) and (alt.name not in best or alt.priority > best[alt.name].priority):
            best[alt.name] = alt
    made = []
    for alt in best.values():
        _link(root, alt.link, alt.name, alt.path)
        made.append(alt.link)
        for link, name, path in alt.slaves:
            if exists_in_root(root, path):
                _link(root, link, name, path)
    return sorted(made)
