"""The NVIDIA 535 driver's real headers (Debian bookworm non-free ``nvidia-kernel-source``) and
C programs compiled against them.

The package is fetched with ``apt-get download`` through a private sources list and state
directory (the system's apt configuration is not touched) and only the headers are kept, under
~/.cache/linuxabi/nvidia-headers/<version>/.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

DEB_PACKAGE = "nvidia-kernel-source"
DEB_VERSION = "535.261.03-1"  # the release the 535 table was generated from
CACHE = Path(os.path.expanduser("~/.cache/linuxabi/nvidia-headers"))
SOURCES = (
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm non-free\n"
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security "
    "bookworm-security non-free\n"
)
_KEEP = ("modules/nvidia-kernel/common/inc/", "modules/nvidia-kernel/nvidia-uvm/")


def _apt(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    opts = [f"-oDir::Etc::SourceList={work}/sources.list", "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={work}/lists", f"-oDir::Cache={work}/cache", "-oAPT::Get::List-Cleanup=0",
            "-oDebug::NoLocking=1", "-qq"]
    return subprocess.run(["apt-get", *opts, *args], cwd=work, capture_output=True, text=True, timeout=600)


def _private_apt() -> Path:
    """A fresh apt state directory over bookworm's non-free component (lists updated)."""
    work = CACHE / "apt"
    shutil.rmtree(work, ignore_errors=True)
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "cache" / "archives" / "partial").mkdir(parents=True)
    (work / "sources.list").write_text(SOURCES)
    r = _apt(work, "update")
    if r.returncode != 0:
        raise RuntimeError(f"apt-get update (private sources) failed: {r.stderr[-2000:]}")
    return work


def _download(work: Path, package: str, version: str) -> Path:
    r = _apt(work, "download", f"{package}={version}")
    if r.returncode != 0:
        raise RuntimeError(f"apt-get download {package}={version} failed: {r.stderr[-2000:]}")
    return next(work.glob(f"{package}_*.deb"))


def debs(packages: tuple[str, ...], version: str = DEB_VERSION) -> list[Path]:
    """The .deb files of ``packages`` at ``version`` from bookworm non-free, cached under
    ~/.cache/linuxabi/nvidia-headers/debs/ (downloaded on first use)."""
    cache = CACHE / "debs"
    wanted = {p: cache / f"{p}_{version}_amd64.deb" for p in packages}
    missing = [p for p, path in wanted.items() if not path.exists()]
    if missing:
        work = _private_apt()
        cache.mkdir(parents=True, exist_ok=True)
        for p in missing:
            shutil.copy(_download(work, p, version), wanted[p])
        shutil.rmtree(work, ignore_errors=True)
    return list(wanted.values())


def headers_dir() -> Path:
    """The include root (holding common/inc and nvidia-uvm); downloads on first use."""
    root = CACHE / DEB_VERSION
    marker = root / ".complete"
    if marker.exists():
        return root / "modules" / "nvidia-kernel"
    work = _private_apt()
    deb = _download(work, DEB_PACKAGE, DEB_VERSION)
    unpack = work / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpack)], check=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with tarfile.open(unpack / "usr/src/nvidia-kernel.tar.xz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(_KEEP) and m.name.endswith(".h")]
        tar.extractall(root, members=members, filter="data")
    shutil.rmtree(work, ignore_errors=True)
    marker.write_text(DEB_VERSION + "\n")
    return root / "modules" / "nvidia-kernel"


def c_paths(lay_leaves: list[Any]) -> list[Any]:
    """Leaves a C expression can name (not anonymous members)."""
    return [leaf for leaf in lay_leaves if "@" not in leaf.path and ".." not in leaf.path
            and not leaf.path.startswith(".")]


def build_program(structs: dict[str, list[Any]], macros: list[str], out_dir: Path, inc: Path) -> Path:
    """A C program, compiled with the real headers, that
    - ``layout``: prints {"sizeof": {T: n}, "offsetof": {T: {path: [off, size]}}, "macros": {...},
      "status": {name: value}} as JSON;
    - ``build T v1 v2 ...``: builds a zeroed T, assigns each C-nameable leaf from the next argv
      value (ints; arrays are filled with bytes seed+7k), and prints its bytes in hex."""
    lines = ['#include <stdio.h>', '#include <stdlib.h>', '#include <string.h>', '#include <stddef.h>',
             '#include "nv-ioctl.h"', '#include "nv-ioctl-numa.h"', '#include "uvm_linux_ioctl.h"',
             "static void hex(const void *p, size_t n) { const unsigned char *c = p; "
             "for (size_t i = 0; i < n; i++) printf(\"%02x\", c[i]); printf(\"\\n\"); }",
             "int main(int argc, char **argv) {", "  if (argc < 2) return 2;",
             '  if (!strcmp(argv[1], "layout")) {', '    printf("{\\"sizeof\\": {");']
    names = sorted(structs)
    for i, t in enumerate(names):
        lines.append(f'    printf("%s\\"{t}\\": %zu", "{"," if i else ""}", sizeof({t}));')
    lines.append('    printf("}, \\"offsetof\\": {");')
    for i, t in enumerate(names):
        lines.append(f'    printf("%s\\"{t}\\": {{", "{"," if i else ""}");')
        for j, leaf in enumerate(structs[t]):
            p = leaf.path
            lines.append(f'    printf("%s\\"{p}\\": [%zu, %zu]", "{"," if j else ""}", offsetof({t}, {p}), '
                         f'sizeof((({t} *)0)->{p}));')
        lines.append('    printf("}");')
    lines.append('    printf("}, \\"macros\\": {");')
    for i, m in enumerate(macros):
        lines.append(f'    printf("%s\\"{m}\\": %lld", "{"," if i else ""}", (long long)({m}));')
    lines.append('    printf("}, \\"status\\": {");')
    lines.append('    int first = 1;')
    lines.append('#define NV_STATUS_CODE(name, code, string) '
                 'printf("%s\\"%s\\": %d", first ? "" : ",", #name, (int)(code)); first = 0;')
    lines.append('#undef SDK_NVSTATUSCODES_H')  # nvstatus.h already expanded it once, as an enum
    lines.append('#include "nvstatuscodes.h"')
    lines.append('#undef NV_STATUS_CODE')
    lines.append('    printf("}}\\n");')
    lines.append("    return 0;")
    lines.append("  }")
    for t in names:
        lines.append(f'  if (argc >= 3 && !strcmp(argv[1], "build") && !strcmp(argv[2], "{t}")) {{')
        lines.append(f"    {t} s; memset(&s, 0, sizeof s); int a = 3; (void)a;")
        for leaf in structs[t]:
            p = leaf.path
            if leaf.is_int:
                lines.append(f"    s.{p} = (__typeof__(s.{p}))strtoull(argv[a++], 0, 0);")
            else:
                lines.append(f"    {{ unsigned seed = (unsigned)strtoul(argv[a++], 0, 0); "
                             f"for (size_t k = 0; k < sizeof(s.{p}); k++) "
                             f"((unsigned char *)&s.{p})[k] = (unsigned char)(seed + 7 * k); }}")
        lines.append("    hex(&s, sizeof s); return 0;")
        lines.append("  }")
    lines.append("  return 1;")
    lines.append("}")
    src = "\n".join(lines) + "\n"
    tag = hashlib.sha256(src.encode()).hexdigest()[:16]
    exe = out_dir / f"nvprobe-{tag}"
    if not exe.exists():
        c = out_dir / f"nvprobe-{tag}.c"
        c.write_text(src)
        r = subprocess.run(["gcc", "-std=gnu11", "-m64", "-DNV_LINUX", "-w", f"-I{inc}/common/inc",
                            f"-I{inc}/nvidia-uvm", "-o", str(exe), str(c)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"gcc failed:\n{r.stderr[-4000:]}")
    return exe


def run_layout(exe: Path) -> dict[str, Any]:
    out = subprocess.run([str(exe), "layout"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def run_build(exe: Path, type_name: str, values: list[int]) -> bytes:
    r = subprocess.run([str(exe), "build", type_name, *map(str, values)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"build {type_name} failed ({r.returncode})")
    return bytes.fromhex(r.stdout.strip())
