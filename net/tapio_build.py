"""Builds ``net._tapio`` (a cffi extension in API mode), the uplink's TAP I/O in C:

- net/tap_writer.c: the TAP's writer thread (net/tap_writer.py);
- net/virtio/device_engine.c: the virtio-net device's per-frame work for a TAP backend
  (net/virtio/engine.py);
- net/bridge_io.c: the bridge's reads of its host socket, without an exception for an empty one
  (net/bridge.py).

``make setup`` runs ``python -m net.tapio_build``; without the module the Python device model
serves the TAP and the uplink writes each frame itself, with the same behaviour, slower.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "net._tapio"
C_SOURCES = (HERE / "tap_writer.c", HERE / "virtio" / "device_engine.c", HERE / "bridge_io.c")

CDEF = """
struct tapw;
struct tapw *tapw_new(int fd, unsigned long cap);
int tapw_send(struct tapw *w, const char *hdr, unsigned long hlen, const char *frame, unsigned long flen);
int tapw_flush(struct tapw *w, int timeout_ms);
void tapw_free(struct tapw *w);
void tapw_counters(struct tapw *w, unsigned long long *out);

struct engine;
struct engine *engine_new(char *mem, unsigned long memlen, int fd, struct tapw *writer, int feats,
                          unsigned int size_rx, unsigned long rx_desc, unsigned long rx_avail,
                          unsigned long rx_used, unsigned int size_tx, unsigned long tx_desc,
                          unsigned long tx_avail, unsigned long tx_used);
void engine_set_writer(struct engine *e, struct tapw *writer);
int engine_tx(struct engine *e);
int engine_rx(struct engine *e);
void engine_free(struct engine *e);
const char *engine_error(struct engine *e);
void engine_counters(struct engine *e, unsigned long long *out);
#define E_EVENT_IDX 1
#define E_INDIRECT 2
#define E_HOST_CSUM 4
#define E_HOST_TSO4 8
#define E_GUEST_CSUM 16
#define E_GUEST_TSO4 32
#define E_MRG 64

long bridge_recv(int fd, char *buf, unsigned long len);
"""


def built() -> bool:
    """Whether a compiled module newer than its source and this builder is in place."""
    mine = max(p.stat().st_mtime for p in (Path(__file__), *C_SOURCES))
    return any(p.stat().st_mtime >= mine for p in HERE.glob("_tapio.*.so"))


def build() -> None:
    from cffi import FFI

    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(MODULE, "\n".join(p.read_text() for p in C_SOURCES), extra_compile_args=["-O2", "-pthread"],
                       extra_link_args=["-pthread"])
    tmp = HERE.parent / "build" / "cffi"
    so = builder.compile(tmpdir=str(tmp), verbose=False)
    Path(so).replace(HERE / Path(so).name)


def main() -> int:
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except Exception as e:  # no compiler or no Python headers: the Python path serves the TAP
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: {MODULE} not built ({last[0]}); the uplink's TAP I/O runs in Python", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
