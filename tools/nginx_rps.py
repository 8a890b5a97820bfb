"""Requests per second of nginx natively (a chroot of the image) and under translation
(``linuxabi run --image nginx -p``), with wrk, keep-alive and with ``Connection: close``.

    .venv/bin/python tools/nginx_rps.py [--seconds 5] [--connections 10] [--path /index.html]
                                        [--only native|translated]

The servers are tests/test_nginx.py's (the same image, script and config); each is started,
measured and stopped (SIGTERM, then SIGKILL, to the process group of the launcher it started)
before the next one starts, so the two never compete for CPUs. Needs root (the native side
mounts and chroots) and wrk on the host.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_nginx import NginxServer, ServerFailed, wrk  # noqa: E402

MODES = (("keep-alive", False), ("close", True))


def measure(kind: str, args: argparse.Namespace) -> dict[str, float] | None:
    server = NginxServer(kind)
    try:
        try:
            server.start()
        except ServerFailed as e:
            print(f"{kind}: {e}", file=sys.stderr)
            return None
        print(f"{kind}: nginx on 127.0.0.1:{server.port} (ready after {server.start_seconds:.2f}s)", flush=True)
        out: dict[str, float] = {}
        for mode, close in MODES:
            w = wrk(server.url(args.path), connections=args.connections, seconds=args.seconds, close=close)
            out[mode] = w["rps"]
            note = "" if not (w["socket_errors"] or w["non_2xx"]) else \
                f"  ({w['socket_errors']:.0f} socket errors, {w['non_2xx']:.0f} non-2xx)"
            print(f"  {mode:<10} {w['rps']:>12.1f} req/s  ({w['requests']:.0f} requests){note}", flush=True)
        return out
    finally:
        server.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5, help="wrk duration per run (default 5)")
    p.add_argument("--connections", type=int, default=10, help="wrk -c (default 10; one thread)")
    p.add_argument("--path", default="/index.html", help="URL path (default /index.html, 1 KiB; /big.bin is 10 MiB)")
    p.add_argument("--only", choices=("native", "translated"), help="measure one side only")
    args = p.parse_args(argv)
    kinds = [args.only] if args.only else ["native", "translated"]
    results = {kind: measure(kind, args) for kind in kinds}
    native, translated = results.get("native"), results.get("translated")
    if native and translated:
        print("translated/native:")
        for mode, _ in MODES:
            ratio = translated[mode] / native[mode] if native[mode] else float("nan")
            print(f"  {mode:<10} {ratio:>8.3f}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
