"""Run a command in a network namespace of its own, with only its loopback up.

    python3 bench/own_netns.py COMMAND [ARG ...]

The native runner runs the micro ops this way, as each linuxabi sandbox has a namespace of its
own: in the host's, the TIME-WAITs that earlier rounds' connections left made the native
socket+connect+close row erratic (15 µs to 4.5 ms per connect between rounds of one run).
Self-contained (the runner's environment has no PYTHONPATH); needs root, as chroot does.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("=16sH22x", b"lo", 0)
        (flags,) = struct.unpack_from("=H", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req), 16)
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("=16sH22x", b"lo", flags | IFF_UP))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: own_netns.py COMMAND [ARG ...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        print(f"own_netns: unshare(CLONE_NEWNET): {os.strerror(e)}", file=sys.stderr)
        return 1
    loopback_up()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
