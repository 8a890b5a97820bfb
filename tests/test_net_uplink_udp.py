"""``linuxabi run --net tap:NAME``: guest UDP to the outside, through linuxabi's stack.

The namespace, its TAP and servers come from tests/test_net_uplink.py's `net` fixture (a
network namespace of its own for this module, torn down after it). Here the namespace also runs
a UDP echo server and a tiny DNS responder (Python, bounded in time); a static C probe
(tests/uplink_udp_probe.c) talks to the echo server under linuxabi and natively in the
namespace, and the two outputs must agree but for the addresses (the sandbox's own address is
the stack's, natively it is the namespace's). busybox nslookup asks the DNS responder.
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from oracle import compile_static
from test_net_uplink import LINUXABI, POLICY, REPO, SERVER, STATIC, SUBNET, Net, net  # noqa: F401

ECHO_PORT, DNS_PORT = 9500, 5353
UDP_POLICY = POLICY.replace('"udp:127.0.0.0/8:*",', f'"udp:127.0.0.0/8:*", "udp:{SUBNET}.0/24:*", "udp:10.98.0.0/24:*", '
                                                    f'"icmp:{SUBNET}.0/24:*",')

# A UDP server bounded in time (argv: address, port, seconds), answering each datagram with
# answer(data, sender); the two servers below define answer.
_SERVE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(1)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        data, a = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(answer(data, a), a)
"""

_ECHO = """
def answer(data, a):
    return data + b" seen=%s:%d" % (a[0].encode(), a[1])
""" + _SERVE

# answers every A query with 10.1.2.3 (one answer, TTL 60)
_DNS = """
import struct

def answer(q, a):
    i = 12
    while q[i]:
        i += q[i] + 1
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    answers = b""
    if qtype == 1:
        answers = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 1, 2, 3])
    head = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answers else 0, 0, 0)
    return head + question + answers
""" + _SERVE


def _udp_bound(net: Net, port: int) -> bool:
    return f":{port:04X} " in net.sh("cat /proc/net/udp").stdout


@pytest.fixture(scope="module")
def servers(net: Net) -> Iterator[Net]:  # noqa: F811 - the imported fixture
    (net.workdir / "udp.toml").write_text(UDP_POLICY)
    procs = [net.spawn(sys.executable, "-c", code, SERVER, str(port), "240", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL) for code, port in ((_ECHO, ECHO_PORT), (_DNS, DNS_PORT))]
    end = time.monotonic() + 10
    while not (_udp_bound(net, ECHO_PORT) and _udp_bound(net, DNS_PORT)):
        assert time.monotonic() < end, "the UDP servers did not start"
        time.sleep(0.05)
    yield net
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture(scope="module")
def udp_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_static(Path(__file__).with_name("uplink_udp_probe.c"), tmp_path_factory.mktemp("udp_probe") / "probe")


def _guest(net: Net, script: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    cmd = ["ip", "netns", "exec", net.ns, *LINUXABI, "run", "--net", f"tap:{net.tap},ip={STATIC}/24",
           "--policy", str(net.workdir / "udp.toml"), "--", "sh", "-c", script]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, cwd=REPO)


def test_guest_udp_sendto_and_connect_match_native(servers: Net, udp_probe: Path) -> None:
    """sendto+recvfrom/recvmsg and connect+send+recvfrom/read through the stack: the data, the
    reply's source (the real server), getpeername, and the port the server saw being the
    socket's own, as the same program sees them natively in the namespace."""
    net = servers
    native = net.sh(f"{udp_probe} {SERVER} {ECHO_PORT}", timeout=30)
    assert native.returncode == 0, native.stdout + native.stderr
    r = _guest(net, f"cat > /tmp/p && chmod +x /tmp/p && /tmp/p {SERVER} {ECHO_PORT}", input=udp_probe.read_bytes())
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    # natively the namespace reaches its own address (source SERVER); the guest is STATIC
    expected = native.stdout.replace(f"seen_ip={SERVER}", f"seen_ip={STATIC}")
    expected = expected.replace(f"connect=0 send=11 from={SERVER}:{ECHO_PORT} data=via-connect peer={SERVER}:{ECHO_PORT} "
                                f"sock_ip={SERVER}",
                                f"connect=0 send=11 from={SERVER}:{ECHO_PORT} data=via-connect peer={SERVER}:{ECHO_PORT} "
                                f"sock_ip={STATIC}")
    assert out == expected, (out, native.stdout)
    assert f"from={SERVER}:{ECHO_PORT} data=via-sendto sock_ip=0.0.0.0 seen_ip={STATIC} own_port=1" in out


def test_a_closed_port_refuses_a_connected_socket_as_natively(servers: Net, udp_probe: Path) -> None:
    """The namespace answers a datagram to a closed port with ICMP port unreachable; through
    the stack and the relay, the guest's connected socket gets ECONNREFUSED as it would
    natively, and an unconnected one hears nothing (its recv times out)."""
    net, closed = servers, ECHO_PORT + 7
    native = net.sh(f"{udp_probe} {SERVER} {closed} refused", timeout=30)
    assert native.returncode == 0, native.stdout + native.stderr
    assert "recv=Connection refused so_error_after=0" in native.stdout  # the oracle says so
    r = _guest(net, f"cat > /tmp/p && chmod +x /tmp/p && /tmp/p {SERVER} {closed} refused", input=udp_probe.read_bytes())
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert r.stdout.decode() == native.stdout


def test_busybox_nslookup_through_the_stack(servers: Net) -> None:
    """busybox nslookup asks the namespace's DNS responder (on a port of its own: busybox
    takes SERVER:PORT) and prints its answer."""
    r = _guest(servers, f"nslookup example.test {SERVER}:{DNS_PORT}", timeout=60)
    out = r.stdout.decode()
    assert "10.1.2.3" in out, out + r.stderr.decode()


def test_udp_to_an_unrouted_address_is_enetunreach(servers: Net, udp_probe: Path) -> None:
    """No gateway: an address off the subnet has no route in the stack, and sendto fails with
    ENETUNREACH, as natively in the namespace (no route there either)."""
    native = servers.sh(f"{udp_probe} 10.98.0.1 53", timeout=30)
    r = _guest(servers, "cat > /tmp/p && chmod +x /tmp/p && /tmp/p 10.98.0.1 53", input=udp_probe.read_bytes())
    first = r.stdout.decode().split(" ")[0]
    assert first == native.stdout.split(" ")[0] == "sendto=-101", (r.stdout.decode(), native.stdout)


_AFTER_REVOKE = r"""
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
/* A connected UDP socket: one echo, then (after SIGUSR1) another send and a 1 s wait. */
static void on_usr1(int sig) { (void)sig; }
static void exchange(int s, const char *what) {
    ssize_t n = send(s, what, 3, 0);
    char buf[128] = {0};
    struct pollfd p = {.fd = s, .events = POLLIN};
    int ready = n == 3 && poll(&p, 1, 1000) == 1 && recv(s, buf, sizeof buf - 1, MSG_DONTWAIT) > 0;
    printf("%s send=%zd reply=%s\n", what, n, ready ? "yes" : "none");
    fflush(stdout);
}
int main(int argc, char **argv) {
    signal(SIGUSR1, on_usr1);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (connect(s, (void *)&a, sizeof a)) { perror("connect"); return 1; }
    exchange(s, "one");
    pause();
    exchange(s, "two");
    return 0;
}
"""


def test_revoking_udp_connect_stops_the_datagrams(servers: Net, tmp_path: Path) -> None:
    """The guest's sends are native (its socket reaches the stack through a relay): revoking
    the capability closes the relay and shuts the socket, so nothing more leaves."""
    net = servers
    src = tmp_path / "after.c"
    src.write_text(_AFTER_REVOKE)
    exe = compile_static(src, tmp_path / "after")
    idf = tmp_path / "id"
    cmd = ["ip", "netns", "exec", net.ns, *LINUXABI, "run", "--net", f"tap:{net.tap},ip={STATIC}/24",
           "--policy", str(net.workdir / "udp.toml"), "--id-file", str(idf), "--", "sh", "-c",
           f"cat > /tmp/p && chmod +x /tmp/p && exec /tmp/p {SERVER} {ECHO_PORT}"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(exe.read_bytes())
        p.stdin.close()
        p.stdin = None  # communicate() must not flush it again
        assert p.stdout.readline() == b"one send=3 reply=yes\n"
        sandbox = idf.read_text().strip()
        listing = subprocess.run([*LINUXABI, "ctl", "list", sandbox], capture_output=True, text=True,
                                 cwd=REPO, timeout=30).stdout
        slot = next(line.split()[0] for line in listing.splitlines() if f"udp:{SUBNET}.0/24:*" in line)
        ctl = subprocess.run([*LINUXABI, "ctl", "revoke", sandbox, "--slot", slot], capture_output=True,
                             text=True, cwd=REPO, timeout=30)
        assert ctl.returncode == 0, ctl.stderr
        os.kill(p.pid, signal.SIGUSR1)  # forwarded to the guest's init: the probe
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.decode().split()[-1] == "reply=none", (out, err)


def test_guest_ping_through_the_stack(servers: Net) -> None:
    """busybox ping (a raw ICMP socket in the sandbox's namespace): the echo requests leave
    through the stack and the replies come back into the guest's socket; an address the policy
    does not grant is refused."""
    r = _guest(servers, f"ping -c 2 -W 3 {SERVER}; ping -c 1 -W 1 10.98.0.1; echo rc=$?", timeout=60)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert "2 packets transmitted, 2 packets received" in out, out + err
    assert f"bytes from {SERVER}: seq=1" in out, out
    assert out.rstrip().endswith("rc=1"), out + err
