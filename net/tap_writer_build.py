"""Builds ``net._tap_writer`` from net/tap_writer.c (a cffi extension in API mode): the TAP's
writer thread (net/tap_writer.py). ``make setup`` runs ``python -m net.tap_writer_build``;
without the module the uplink writes each frame itself, as before, slower under load.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "net._tap_writer"
C_SOURCE = HERE / "tap_writer.c"

CDEF = """
struct tapw;
struct tapw *tapw_new(int fd, unsigned long cap);
int tapw_send(struct tapw *w, const char *hdr, unsigned long hlen, const char *frame, unsigned long flen);
int tapw_flush(struct tapw *w, int timeout_ms);
void tapw_free(struct tapw *w);
void tapw_counters(struct tapw *w, unsigned long long *out);
"""


def built() -> bool:
    """Whether a compiled module newer than its source and this builder is in place."""
    mine = max(Path(__file__).stat().st_mtime, C_SOURCE.stat().st_mtime)
    return any(p.stat().st_mtime >= mine for p in HERE.glob("_tap_writer.*.so"))


def build() -> None:
    from cffi import FFI

    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(MODULE, C_SOURCE.read_text(), extra_compile_args=["-O2", "-pthread"],
                       extra_link_args=["-pthread"])
    tmp = HERE.parent / "build" / "cffi"
    so = builder.compile(tmpdir=str(tmp), verbose=False)
    Path(so).replace(HERE / Path(so).name)


def main() -> int:
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except Exception as e:  # no compiler or no Python headers: the uplink writes frames itself
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: {MODULE} not built ({last[0]}); the uplink writes its frames itself", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
