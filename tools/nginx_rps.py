"""Requests per second of nginx natively (a chroot of the image) and under translation
(``linuxabi run --image nginx -p``), with wrk, keep-alive and with ``Connection: close``.

    .venv/bin/python tools/nginx_rps.py [--seconds 5] [--connections 10] [--path /index.html]
                                        [--only native|translated] [--mode keep-alive|close]
                                        [--via loopback|tap [--net-opts ,offload=off]]

The servers are tests/test_nginx.py's (the same image, script and config); each is started,
measured and stopped (SIGTERM, then SIGKILL, to the process group of the launcher it started)
before the next one starts, so the two never compete for CPUs. Needs root (the native side
mounts and chroots) and wrk on the host.

``--via loopback`` (the default): wrk on the host's 127.0.0.1, the translated nginx behind
``-p``. ``--via tap`` (tests/test_nginx_uplink.py's helpers): wrk runs in a client network
namespace; the native nginx runs in a second namespace joined to it by a veth pair, the
translated one under ``linuxabi run --net tap:TAP,ip=...`` in the client namespace, so every
request crosses linuxabi's own TCP/IP stack. The namespaces are removed afterwards.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_nginx import NginxServer, ServerFailed, wrk  # noqa: E402

MODES = (("keep-alive", False), ("close", True))


def measure(kind: str, args: argparse.Namespace, tapnet: Any = None) -> dict[str, float] | None:
    if tapnet is None:
        server: Any = NginxServer(kind)
        failed: tuple[type[BaseException], ...] = (ServerFailed,)
        run_wrk: Any = wrk
        where = "127.0.0.1:{port}"
    else:
        from test_nginx_uplink import NsNginx, wrk_in
        server = NsNginx(tapnet, "veth" if kind == "native" else "tap", net_opts=args.net_opts)
        failed = (RuntimeError,)
        run_wrk = lambda url, **kw: wrk_in(tapnet, url, **kw)  # noqa: E731
        where = "veth " if kind == "native" else f"--net tap:{tapnet.tap}{args.net_opts} "
    try:
        try:
            server.start()
        except failed as e:
            print(f"{kind}: {e}", file=sys.stderr)
            return None
        at = where.format(port=server.port) if tapnet is None else where + server.url()
        print(f"{kind}: nginx on {at} (ready after {server.start_seconds:.2f}s)", flush=True)
        out: dict[str, float] = {}
        for mode, close in MODES:
            if args.mode and mode != args.mode:
                continue
            w = run_wrk(server.url(args.path), connections=args.connections, seconds=args.seconds, close=close)
            out[mode] = w["rps"]
            note = "" if not (w["socket_errors"] or w["non_2xx"]) else \
                f"  ({w['socket_errors']:.0f} socket errors, {w['non_2xx']:.0f} non-2xx)"
            print(f"  {mode:<10} {w['rps']:>12.1f} req/s  ({w['requests']:.0f} requests){note}", flush=True)
        return out
    finally:
        if tapnet is None:
            server.cleanup()
        else:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5, help="wrk duration per run (default 5)")
    p.add_argument("--connections", type=int, default=10, help="wrk -c (default 10; one thread)")
    p.add_argument("--path", default="/index.html", help="URL path (default /index.html, 1 KiB; /big.bin is 10 MiB)")
    p.add_argument("--only", choices=("native", "translated"), help="measure one side only")
    p.add_argument("--mode", choices=[m for m, _ in MODES], help="measure one mode only")
    p.add_argument("--via", choices=("loopback", "tap"), default="loopback",
                   help="loopback: host 127.0.0.1 and -p (default); tap: namespaces, veth vs --net tap")
    p.add_argument("--net-opts", default="", help="appended to --net tap:TAP,ip=... with --via tap (e.g. ,offload=off)")
    args = p.parse_args(argv)
    kinds = [args.only] if args.only else ["native", "translated"]
    tapnet = None
    if args.via == "tap":
        from test_nginx_uplink import TapNet, why_not
        if why_not():
            p.error(f"--via tap: {why_not()}")
        tapnet = TapNet(veth="native" in kinds).create()
        if "translated" in kinds:
            import net.compiled  # (the same tree and environment as the sandbox's: the same answer)
            print("linuxabi's stack: " + ("compiled (net/mypyc_build.py)" if net.compiled.active()
                                          else "plain Python (not built, an edited source, or LINUXABI_PURE=1)"))
    try:
        results = {kind: measure(kind, args, tapnet) for kind in kinds}
    finally:
        if tapnet is not None:
            tapnet.destroy()
    native, translated = results.get("native"), results.get("translated")
    if native and translated:
        print("translated/native:")
        for mode in native.keys() & translated.keys():
            ratio = translated[mode] / native[mode] if native[mode] else float("nan")
            print(f"  {mode:<10} {ratio:>8.3f}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
