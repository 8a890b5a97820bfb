"""``linuxabi image build|list|show|rm|path``."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, TextIO

from .build import build_image
from .errors import ImageNotFound
from .progress import Progress, Quiet, human
from .store import DEFAULT, Store, image_root, tree_bytes, validate_name


def add_image_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``image`` command to the top-level subparsers; its handler is :func:`cmd_image`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "image", help="build, list, show and remove images made from Debian packages")
    sub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND", parser_class=type(p))
    b = sub.add_parser("build", help="assemble an image from Debian packages (and their dependencies)")
    b.add_argument("name", metavar="NAME")
    b.add_argument("-p", "--packages", action="append", default=[], metavar="PKG,...", required=True,
                   help="packages to install (comma-separated; repeatable); libc6 is always included")
    b.add_argument("--with-recommends", action="store_true", help="follow Recommends too")
    b.add_argument("--exclude", action="append", default=[], metavar="PKG,...",
                   help="never install these, even where something depends on them")
    b.add_argument("--keep-docs", action="store_true",
                   help="keep /usr/share/{doc,man,info,locale} (dropped by default, copyright files excepted)")
    b.add_argument("-f", "--force", action="store_true", help="rebuild even if NAME is up to date")
    b.add_argument("-j", "--jobs", type=int, default=4, help="concurrent downloads (default 4)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub.add_parser("list", help="list the images")
    s = sub.add_parser("show", help="print what an image holds")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--json", action="store_true", help="the manifest as JSON")
    r = sub.add_parser("rm", help="remove an image (the .deb cache is kept)")
    r.add_argument("name", metavar="NAME", nargs="+")
    pa = sub.add_parser("path", help="print an image's root directory (for --root)")
    pa.add_argument("name", metavar="NAME")
    p.set_defaults(image_parser=p)
    return p


def cmd_image(args: argparse.Namespace, *, store: Store | None = None, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    """Run an ``image`` subcommand; errors are raised as ImageError (one line, for the CLI)."""
    store = store or Store.default()
    out = out or sys.stdout
    err = err or sys.stderr
    cmd = args.image_command
    if cmd is None:
        args.image_parser.error("missing subcommand (build, list, show, rm, path)")
    if cmd == "build":
        build_image(args.name, args.packages, with_recommends=args.with_recommends, exclude=args.exclude,
                    keep_docs=args.keep_docs, force=args.force, store=store, progress=Quiet() if args.quiet else Progress(err),
                    jobs=max(1, args.jobs))
        return 0
    if cmd == "list":
        return _list(store, out)
    if cmd == "show":
        return _show(store, args.name, args.json, out)
    if cmd == "rm":
        for name in args.name:
            store.remove(validate_name(name))
            out.write(f"removed {name}\n")
        return 0
    # With the default store, "default" is the built-in image (built on first use).
    out.write(f"{image_root(args.name, None if store == Store.default() else store)}\n")
    return 0


def _list(store: Store, out: TextIO) -> int:
    rows = []
    for name in store.names():
        m = store.manifest(name)
        if m is not None:
            rows.append((name, str(len(m.packages)), human(m.image_bytes), m.built_at[:16].replace("T", " "),
                         ",".join(m.requested)))
        elif name == DEFAULT:
            rows.append((name, "1", human(tree_bytes(store.root(name))), "", "busybox-static (built-in)"))
    if not rows:
        out.write("no images (build one with: linuxabi image build NAME --packages PKG[,PKG...])\n")
        return 0
    header = ("NAME", "PACKAGES", "SIZE", "BUILT", "REQUESTED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, *rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] + "\n")
    return 0


def _show(store: Store, name: str, as_json: bool, out: TextIO) -> int:
    validate_name(name)
    if not store.is_built(name):
        raise ImageNotFound(f"no image named {name}; build it with: linuxabi image build {name} --packages PKG[,PKG...]")
    m = store.manifest(name)
    if m is None:  # the built-in image has a marker but no manifest
        marker = store.marker(name).read_text().strip()
        out.write(json.dumps({"name": name, "root": str(store.root(name)), "deb": marker}) + "\n" if as_json
                  else f"image {name}: {store.root(name)}\nbuilt-in, from {marker}\n")
        return 0
    if as_json:
        out.write(json.dumps(asdict(m), indent=2) + "\n")
        return 0
    out.write(f"image {name}: {store.root(name)}\n")
    out.write(f"requested: {', '.join(m.requested)}"
              + (" (with recommends)" if m.with_recommends else "")
              + (f"; excluded: {', '.join(m.exclude)}" if m.exclude else "")
              + ("; docs kept" if m.keep_docs else "") + "\n")
    out.write(f"built {m.built_at} in {m.build_seconds:.1f}s; {human(m.image_bytes)} on disk, "
              f"{len(m.packages)} packages:\n")
    width = max(len(p.name) for p in m.packages)
    vwidth = max(len(p.version) for p in m.packages)
    for p in m.packages:
        out.write(f"  {p.name.ljust(width)}  {p.version.ljust(vwidth)}  {human(p.size):>10}  {p.sha256[:16]}\n")
    if m.alternatives:
        out.write(f"alternatives: {', '.join(m.alternatives)}\n")
    return 0
