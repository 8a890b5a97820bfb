"""Puts the mypyc-compiled forms of the stack's modules (net/mypyc_build.py) in front of their
sources, when every source is the one they were compiled from.

Run once, from net/__init__.py, before any other module of the package is imported. The check
is all or nothing: the modules are one compiled group that reaches its classes' attributes
directly, so a compiled module beside an edited plain one would misread it. An edited source
therefore runs as plain Python, never as stale machine code. ``LINUXABI_PURE=1`` keeps
everything plain (to compare, or to debug with Python's tools).
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "build", "mypyc", "manifest.txt")
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]   # this interpreter's ABI, in each file's name


class _CompiledFinder:
    """A meta path finder (importlib.abc's base class is not imported: it costs ~25 ms)."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        so = self.paths.get(fullname)
        if so is None or sys.argv[:1] == ["-m"]:
            return None     # (the module `python -m` is locating runs from source: runpy needs its code)
        loader = importlib.machinery.ExtensionFileLoader(fullname, so)
        return importlib.machinery.ModuleSpec(fullname, loader, origin=so)


def active() -> bool:
    """Whether the compiled forms are in use in this process."""
    return any(isinstance(f, _CompiledFinder) for f in sys.meta_path)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def install(manifest: str = MANIFEST) -> bool:
    if os.environ.get("LINUXABI_PURE") or active():
        return active()
    base = os.path.dirname(manifest)
    paths: dict[str, str] = {}
    try:
        for line in _read(manifest).decode().splitlines():   # "source REL SHA256" / "module NAME SO"
            kind, name, value = line.split(" ")
            if kind == "source":
                if hashlib.sha256(_read(os.path.join(ROOT, name))).hexdigest() != value:
                    return False
            elif kind == "module" and value.endswith(SUFFIX):
                paths[name] = os.path.join(base, value)
            else:
                return False
    except (OSError, ValueError):
        return False
    if not paths or not all(os.path.isfile(p) for p in paths.values()):
        return False
    sys.meta_path.insert(0, _CompiledFinder(paths))
    return True
