"""Dependency closure of Debian packages, from the host's apt lists (no network needed).

One recursive ``apt-cache depends`` gives the graph (every alternative and provider, so no
further queries are needed to choose among them) and one ``apt-cache show`` the candidate
records; the choice itself is made here, deterministically:

* Depends and Pre-Depends are followed (Recommends on request); versions are ignored.
* Of alternatives ``a | b``, one already chosen wins, else the first that is available.
* A virtual package goes to a provider already chosen, else the provider of highest priority.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from .errors import ImageError, UnknownPackage

# What dynamically linked programs need to start; everything else comes from Depends.
BASE = ("libc6",)

_PKG_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_DEP_LINE = re.compile(r"^ ([ |])(PreDepends|Depends|Recommends): (.+)$")
_PRIORITY = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    filename: str  # path in the archive (pool/...)
    size: int
    sha256: str
    priority: str = "optional"
    provides: tuple[str, ...] = ()

    @property
    def deb_name(self) -> str:
        """The file name ``apt-get download`` gives it (the epoch's colon escaped)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass
class Graph:
    """``apt-cache depends`` output: clauses per package, providers per dependency name."""
    clauses: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)  # name -> [(kind, alts)]
    providers: dict[str, list[str]] = field(default_factory=dict)
    virtual: set[str] = field(default_factory=set)

    def merge(self, other: "Graph") -> None:
        for k, v in other.clauses.items():
            self.clauses.setdefault(k, v)
        for k, provs in other.providers.items():
            known = self.providers.setdefault(k, [])
            known.extend(p for p in provs if p not in known)
        self.virtual |= other.virtual


def valid_package_name(name: str) -> bool:
    return bool(_PKG_NAME.match(name))


def _strip_arch(name: str) -> str:
    # "python3:any" and friends: one architecture only, so the qualifier carries nothing.
    return name.split(":", 1)[0]


def _apt_cache(args: list[str]) -> str:
    env = dict(os.environ, LC_ALL="C")
    try:
        r = subprocess.run(["apt-cache", *args], capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise ImageError("apt-cache not found: building images needs Debian's apt on the host") from None
    if r.returncode != 0 and not r.stdout:
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("E:")]
        # Unknown names are reported by the caller, which knows which ones they were.
        if not any("No packages found" in ln or "Unable to locate" in ln for ln in errors):
            raise ImageError(f"apt-cache failed: {(errors or r.stderr.splitlines() or ['?'])[-1]}")
    return r.stdout


def parse_depends(text: str) -> Graph:
    g = Graph()
    current: list[tuple[str, list[str]]] | None = None
    last_dep: str | None = None
    open_alt = False  # the previous dependency line ended in "|": this one continues its clause
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            name = line.strip()
            if name.startswith("<") and name.endswith(">"):
                g.virtual.add(_strip_arch(name[1:-1]))
                current = None
            else:
                current = g.clauses.setdefault(_strip_arch(name), [])
            open_alt = False
            continue
        m = _DEP_LINE.match(line)
        if m:
            bar, kind, target = m.groups()
            dep = _strip_arch(target.strip().strip("<>"))
            last_dep = dep
            if current is not None:
                if open_alt and current:
                    current[-1][1].append(dep)
                else:
                    current.append((kind, [dep]))
            open_alt = bar == "|"
            continue
        if line.startswith("    ") and last_dep is not None:
            prov = _strip_arch(line.strip())
            known = g.providers.setdefault(last_dep, [])
            if prov not in known:
                known.append(prov)
    return g


def depends(names: Iterable[str], *, recommends: bool) -> Graph:
    opts = ["--recurse", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
    if not recommends:
        opts.append("--no-recommends")
    return parse_depends(_apt_cache(["depends", *opts, "--", *names]))


def parse_records(text: str) -> dict[str, Package]:
    out: dict[str, Package] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, v = line.split(":", 1)
                fields[k] = v.strip()
        if "Package" not in fields or "Filename" not in fields or fields["Package"] in out:
            continue
        provides = tuple(_strip_arch(p.split("(")[0].strip()) for p in fields.get("Provides", "").split(",") if p.strip())
        out[fields["Package"]] = Package(
            name=fields["Package"], version=fields["Version"], arch=fields.get("Architecture", "amd64"),
            filename=fields["Filename"], size=int(fields.get("Size", "0")), sha256=fields.get("SHA256", ""),
            priority=fields.get("Priority", "optional"), provides=provides)
    return out


def show(names: Iterable[str]) -> dict[str, Package]:
    names = sorted(set(names))
    out: dict[str, Package] = {}
    for i in range(0, len(names), 400):  # keep the command line modest
        out.update(parse_records(_apt_cache(["show", "--no-all-versions", "--", *names[i:i + 400]])))
    return out


def reverse_provides(name: str) -> list[str]:
    """Providers of a virtual package that nothing in the graph lists them for (a requested one)."""
    text = _apt_cache(["showpkg", "--", name])
    _, _, tail = text.partition("Reverse Provides:")
    return list(dict.fromkeys(_strip_arch(ln.split()[0]) for ln in tail.splitlines() if ln.strip()))


def resolve(requested: Iterable[str], *, with_recommends: bool = False,
            exclude: Iterable[str] = ()) -> list[Package]:
    """The packages to install for ``requested`` (plus BASE), in breadth-first order."""
    roots = list(dict.fromkeys([*BASE, *requested]))
    bad = [n for n in [*roots, *exclude] if not valid_package_name(n)]
    if bad:
        raise UnknownPackage(f"not a Debian package name: {bad[0]!r}")
    excluded = set(exclude)
    graph = depends(roots, recommends=with_recommends)
    for name in roots:
        if name in graph.clauses:
            continue
        provs = reverse_provides(name) if name in graph.virtual else []
        if not provs:
            raise UnknownPackage(f"unknown package: {name} (not in the host's apt lists; "
                                 f"check the name, or run apt-get update)")
        graph.providers[name] = provs
        graph.merge(depends(provs, recommends=with_recommends))
    records = show(graph.clauses)
    return _choose(roots, graph, records, excluded, with_recommends)


def _choose(roots: list[str], graph: Graph, records: dict[str, Package], excluded: set[str],
            with_recommends: bool) -> list[Package]:
    chosen: dict[str, Package] = {}
    provided: set[str] = set()
    order = {name: i for i, name in enumerate(graph.clauses)}
    queue: deque[str] = deque()

    def take(name: str) -> None:
        chosen[name] = records[name]
        provided.update(records[name].provides)
        queue.append(name)

    def candidate(alt: str) -> str | None:
        if alt in records and alt not in excluded:
            return alt
        provs = [p for p in graph.providers.get(alt, []) if p in records and p not in excluded]
        if not provs:
            return None
        return min(provs, key=lambda p: (p not in chosen, _PRIORITY.get(records[p].priority, 9), order.get(p, 0)))

    for name in roots:
        pick = name if name in records else candidate(name)
        if pick is None:
            raise UnknownPackage(f"unknown package: {name} (no installable candidate in the host's apt lists)")
        if pick not in chosen:
            take(pick)
    while queue:
        name = queue.popleft()
        for kind, alts in graph.clauses.get(name, []):
            if kind == "Recommends" and not with_recommends:
                continue
            if any(a in chosen or a in provided or a in excluded for a in alts):
                continue
            pick = next((c for c in map(candidate, alts) if c is not None), None)
            if pick is not None:
                if pick not in chosen:
                    take(pick)
            elif kind != "Recommends":
                raise UnknownPackage(f"{name} depends on {' | '.join(alts)}, which no available package provides")
    return list(chosen.values())
