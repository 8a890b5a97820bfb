"""net/uplink.py's doorbells and net/loopback_route.py, in a network namespace of their own
(`unshare -n`, only lo in it, as the sandbox's): the guest's listener accepts a connection from
the outside peer's own address, both ways carry bytes (the replies come back through the
policy rule), a doorbell whose four-tuple is still taken rings at the next loopback address,
and one whose four-tuple is only in TIME-WAIT takes it over."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import errno, fcntl, json, socket, struct
from net import loopback_route
from net.uplink import ring

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:           # lo up, as the launcher does
    flags = struct.unpack_from("=H", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("=16sH22x", b"lo", 0)), 16)[0]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("=16sH22x", b"lo", flags | 1))
out = {}
listener = socket.create_server(("0.0.0.0", 8080))                     # the guest's
listener.settimeout(1)
remote = ("203.0.113.7", 40123)                                        # an outside peer
try:
    ring(remote, 8080)
except OSError as e:
    out["without_route"] = errno.errorcode[e.errno]
    try:                                  # its SYN-ACK has no way back: nothing is accepted
        listener.accept()
        out["accepted_without_route"] = True
    except socket.timeout:
        out["accepted_without_route"] = False
else:
    try:
        listener.accept()
        out["accepted_without_route"] = True
    except socket.timeout:
        out["accepted_without_route"] = False
loopback_route.install()
loopback_route.install()                                               # again: already there, fine
listener.settimeout(5)
conns = []


def connect():
    bell = ring(remote, 8080)
    guest, peer = listener.accept()
    bell.setblocking(True)
    bell.settimeout(5)
    bell.sendall(b"GET")
    got = guest.recv(10)
    guest.sendall(b"reply %d" % len(conns))
    back = bell.recv(10)
    conns.append({"peer": list(peer), "local": list(guest.getsockname()), "bell_peer": list(bell.getpeername()),
                  "got": got.decode(), "back": back.decode()})
    return bell, guest


def close(bell, guest):
    bell.shutdown(socket.SHUT_WR)        # the outside closed first: the doorbell's FIN first,
    assert guest.recv(10) == b""
    guest.close()                        # then the guest's: the doorbell is left in TIME-WAIT
    assert bell.recv(10) == b""
    bell.close()


first = connect()
second = connect()                       # the remote's port again, the first still open
close(*first)
close(*second)
close(*connect())                        # both four-tuples now only in TIME-WAIT
out["conns"] = conns
print(json.dumps(out))
"""


def test_a_doorbell_names_the_outside_peer_and_rings_past_a_taken_four_tuple() -> None:
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["accepted_without_route"] is False          # the rule is what brings replies back
    conns = out["conns"]
    for i, conn in enumerate(conns):
        assert conn["peer"] == ["203.0.113.7", 40123]      # accept names the outside peer natively
        assert conn["got"] == "GET" and conn["back"] == f"reply {i}"
        assert conn["bell_peer"] == conn["local"]
    # the first four-tuple still open: the second rang at 127.0.0.2; the third took over the
    # first's TIME-WAIT (Linux allows it to a connect from a bound port, with timestamps)
    assert [c["local"] for c in conns] == [["127.0.0.1", 8080], ["127.0.0.2", 8080], ["127.0.0.1", 8080]]
