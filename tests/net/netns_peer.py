"""The far end of the TAP tests, run by the host kernel inside a test's network namespace
(`ip netns exec NS python3 netns_peer.py MODE ...`). Prints one JSON line of results.

  echo HOST PORT N        send N random bytes while reading them back; compare
  recv HOST PORT N        read until EOF; expect N bytes of the pattern
  send HOST PORT N        send N bytes of the pattern, half-close, wait for EOF
  udp HOST PORT N         N datagrams of growing size to a UDP echo; count intact replies
  serve ADDR PORT         accept one connection and echo it (prints "ready" first)
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time


def pattern(n: int, offset: int = 0) -> bytes:        # the same ramp as net.apps.pattern
    ramp = bytes(range(251))
    start = offset % 251
    return (ramp * ((start + n) // 251 + 1))[start:start + n]


def read_all(s: socket.socket) -> bytes:
    got = bytearray()
    while b := s.recv(1 << 20):
        got += b
    return bytes(got)


def main() -> None:
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    res: dict[str, object] = {}
    if mode == "serve":
        lst = socket.create_server((host, port))
        print("ready", flush=True)
        lst.settimeout(30)
        c, _ = lst.accept()
        c.settimeout(30)
        total = 0
        while b := c.recv(65536):
            c.sendall(b)
            total += len(b)
        c.close()
        print(json.dumps({"ok": True, "bytes": total}))
        return
    if mode == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        good = 0
        for i in range(n):
            data = os.urandom(1 + i * 4000 // max(n - 1, 1))     # up to 4001 bytes: fragmented
            s.sendto(data, (host, port))
            try:
                back, _ = s.recvfrom(65536)
                good += back == data
            except socket.timeout:
                pass
        print(json.dumps({"ok": good == n, "good": good}))
        return
    s = socket.create_connection((host, port), timeout=30)
    t0 = time.monotonic()
    if mode == "echo":
        data = os.urandom(n)

        def tx() -> None:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        th = threading.Thread(target=tx)
        th.start()
        got = read_all(s)
        th.join()
        res["ok"] = got == data
        res["len"] = len(got)
    elif mode == "recv":
        got = read_all(s)
        res["ok"] = got == pattern(n)
        res["len"] = len(got)
    elif mode == "send":
        s.sendall(pattern(n))
        s.shutdown(socket.SHUT_WR)
        read_all(s)
        res["ok"] = True
    res["secs"] = time.monotonic() - t0
    res["MBps"] = n / res["secs"] / 1e6            # type: ignore[operator]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
