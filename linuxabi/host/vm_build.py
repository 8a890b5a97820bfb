"""Builds ``linuxabi.host._vm``: guest memory writes with process_vm_writev (see
linuxabi/host/memory.py), as a compiled cffi extension (API mode: a direct C call, ~1 us
cheaper than the same call through the ABI-mode libc bindings; a stat makes one).

``make setup`` runs ``python -m linuxabi.host.vm_build``; without the module, linuxabi.host.memory
uses the ABI-mode bindings, with the same behaviour.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "linuxabi.host._vm"

CDEF = """
long vm_write(int pid, unsigned long addr, const char *data, unsigned long n);
"""

SOURCE = """
#include <errno.h>
#include <sys/uio.h>

/* The number of bytes moved, or -errno. */
static long vm_write(int pid, unsigned long addr, const char *data, unsigned long n)
{
    struct iovec local = {(void *)data, n}, remote = {(void *)addr, n};
    long put = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    return put < 0 ? -errno : put;
}
"""


def built() -> bool:
    """Whether a compiled module newer than this builder is in place."""
    mine = Path(__file__).stat().st_mtime
    return any(p.stat().st_mtime >= mine for p in HERE.glob("_vm.*.so"))


def build() -> None:
    from cffi import FFI

    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(MODULE, SOURCE)
    tmp = HERE.parent.parent / "build" / "cffi"
    so = builder.compile(tmpdir=str(tmp), verbose=False)
    target = HERE / Path(so).name
    Path(so).replace(target)


def main() -> int:
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except Exception as e:  # no compiler or no Python headers: the fallback works, slower
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: {MODULE} not built ({last[0]}); guest memory writes use the ABI-mode call",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
