"""Compiles the stack's per-packet modules to C with mypyc (mypy's compiler for typed Python).

The uplink's loop thread is the limit of ``--net tap``: ~85 µs of Python per keep-alive request.
The same typed sources compiled by mypyc run it at about twice the rate, with no second
implementation to keep in step. ``make setup`` runs ``python -m net.mypyc_build``; the
extensions and a manifest (each source's sha256) go to build/mypyc/, and net/compiled.py loads
them only while every listed source is the one they were compiled from. Without them (no
compiler, an edited source, ``LINUXABI_PURE=1``) the same modules run as plain Python.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from net.compiled import SUFFIX

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "mypyc"
MANIFEST = OUT / "manifest.txt"   # read by net/compiled.py
GROUP = "linuxabi_net"     # the shared library's module name is GROUP + "__mypyc"

# What runs per frame or per connection on the loop's thread. They compile as one group: a
# compiled module reaches a compiled class's attributes directly, so all are current or none.
MODULES = (
    "net/checksum.py", "net/counters.py", "net/ethernet.py", "net/arp.py", "net/route.py",
    "net/ipv4.py", "net/udp.py", "net/ping.py",
    "net/tcp_timing.py", "net/tcp_segment.py", "net/tcp_cc.py", "net/timer_heap.py",
    "net/tcp.py", "net/tcp_layer.py", "net/stack.py", "net/nic.py", "net/bridge.py",
    "net/virtio/net_hdr.py", "net/virtio/features.py", "net/virtio/offload.py",
    "net/virtio/ring.py", "net/virtio/driver.py", "net/virtio/device.py", "net/virtio/engine.py",
    "net/hostlink.py", "net/uplink.py",
)


def digest(rel: str) -> str:
    return hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()


def module_name(rel: str) -> str:
    return rel.removesuffix(".py").replace("/", ".")


def manifest_lines(sources: dict[str, str]) -> list[str]:
    lines = [f"source {rel} {d}" for rel, d in sources.items()]
    lines += [f"module {module_name(rel)} lib/{rel.removesuffix('.py')}{SUFFIX}" for rel in MODULES]
    return lines + [f"module {GROUP}__mypyc lib/{GROUP}__mypyc{SUFFIX}"]


def current() -> bool:
    try:
        have = MANIFEST.read_text().splitlines()
        return have == manifest_lines({rel: digest(rel) for rel in MODULES}) and \
            all((OUT / line.split(" ")[2]).is_file() for line in have if line.startswith("module "))
    except OSError:
        return False


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    sources = {rel: digest(rel) for rel in MODULES}
    shutil.rmtree(OUT, ignore_errors=True)
    cwd = os.getcwd()
    os.chdir(ROOT)            # mypyc names modules after paths relative to the working directory
    try:
        exts = mypycify(list(MODULES), opt_level="3", target_dir=str(OUT / "c"), group_name=GROUP)
        OUT.mkdir(parents=True, exist_ok=True)
        os.chdir(OUT)         # (not beside pyproject.toml, which setup() would read)
        setup(name=GROUP, ext_modules=exts, script_name="mypyc_build",
              script_args=["-q", "build_ext", "--build-lib", str(OUT / "lib"), "--build-temp", str(OUT / "tmp"),
                           "--parallel", str(os.cpu_count() or 1)])
    finally:
        os.chdir(cwd)
    lines = manifest_lines(sources)
    missing = [line.split(" ")[1] for line in lines if line.startswith("module ")
               and not (OUT / line.split(" ")[2]).is_file()]
    if missing:
        raise RuntimeError(f"mypyc built no extension for {', '.join(missing)}")
    MANIFEST.write_text("\n".join(lines) + "\n")


def main() -> int:
    if "--force" not in sys.argv and current():
        return 0
    try:
        build()
    except (Exception, SystemExit) as e:  # no mypy or no compiler: the stack runs as plain Python
        MANIFEST.unlink(missing_ok=True)
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: the network stack is not compiled ({last[0]}); it runs as plain Python",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
