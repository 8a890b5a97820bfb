"""The stack on a real TAP device, against the host kernel in a network namespace.

A fixture opens a TAP in the root namespace (this process holds its fd), moves the device
into a fresh namespace `lxa-<random>`, addresses it there and runs busybox udhcpd on it.
The stack then gets its address by DHCP from that server, and is pinged, pinged from,
connected to and bulk-transferred against by the kernel's own TCP/UDP. Every subprocess
has a timeout; teardown stops the processes it started (by pid), closes the TAP and deletes
the namespace. Traffic goes only to addresses inside the namespaces created here.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from net import apps
from net.dhcp import State
from net.hostlink import HostLink
from net.ipv4 import aton, ntoa
from net.stats import render
from net.tap import TapBackend
from net.virtio.impair import ImpairedBackend
from netns_env import netns_environment, stop, udp_port_bound  # noqa: F401 - the fixture

PEER = Path(__file__).with_name("netns_peer.py")
SUBNET = "10.77.0"
SERVER = f"{SUBNET}.1"


pytestmark = pytest.mark.usefixtures("netns_environment")


class Env:
    """One namespace with the far end of a TAP, and the HostLink on the near end."""

    def __init__(self, ns: str, tap: str, link: HostLink, workdir: Path) -> None:
        self.ns, self.tap, self.link, self.workdir = ns, tap, link, workdir
        self.procs: list[subprocess.Popen[str]] = []

    def sh(self, cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, "sh", "-c", cmd], capture_output=True,
                              text=True, timeout=timeout)

    def spawn(self, *argv: str) -> subprocess.Popen[str]:
        # `ip netns exec` execs the command in place, so the pid is the command's own
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def peer(self, *args: object, timeout: float = 30) -> dict[str, Any]:
        r = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, str(PEER), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    @property
    def addr(self) -> str:
        return self.link.call(lambda: ntoa(self.link.stack.addr))

    def stop_procs(self) -> None:
        stop(self.procs)


def _udp_port_bound(env: Env, port: int) -> bool:
    return udp_port_bound(env.sh, port)


@contextmanager
def namespace(*, dhcp: bool, impaired: bool = False, lease: int = 10) -> Iterator[Env]:
    tag = secrets.token_hex(3)
    ns, tap = f"lxa-{tag}", f"lxa{tag}"
    workdir = Path(f"/tmp/net-{tag}")
    workdir.mkdir()
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    link: HostLink | None = None
    env: Env | None = None
    try:
        backend: Any = TapBackend(tap)
        if impaired:
            backend = ImpairedBackend(backend, time.monotonic, seed=7)
        link = HostLink(backend, seed=int(tag, 16), name=tap)
        env = Env(ns, tap, link, workdir)
        subprocess.run(["ip", "link", "set", tap, "netns", ns], check=True, timeout=10)
        r = env.sh(f"ip link set lo up && sysctl -qw net.ipv6.conf.{tap}.disable_ipv6=1; "
                   f"ip addr add {SERVER}/24 dev {tap} && ip link set {tap} up")
        assert r.returncode == 0, r.stderr
        if dhcp:
            conf = workdir / "udhcpd.conf"
            (workdir / "leases").touch()
            conf.write_text(f"start {SUBNET}.100\nend {SUBNET}.150\ninterface {tap}\nmin_lease 4\n"
                            f"lease_file {workdir}/leases\npidfile {workdir}/udhcpd.pid\n"
                            f"option subnet 255.255.255.0\noption router {SERVER}\noption dns {SERVER}\n"
                            f"option lease {lease}\n")
            env.spawn("busybox", "udhcpd", "-f", "-a", "100", str(conf))   # short ARP check
            end = time.monotonic() + 10
            while not _udp_port_bound(env, 67):
                assert time.monotonic() < end, "udhcpd did not start"
                time.sleep(0.05)
            link.start_dhcp()
        else:
            link.configure(f"{SUBNET}.2", 24, SERVER)
        link.start()
        yield env
    finally:
        if link is not None:
            link.close()                 # closes the TAP fd: the device goes away
        if env is not None:
            env.stop_procs()
        subprocess.run(["ip", "netns", "del", ns], timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def tapnet() -> Iterator[Env]:
    with namespace(dhcp=True) as env:
        assert env.link.wait_for(lambda: env.link.stack.addr != 0, 15), "no DHCP lease"
        yield env


def test_dhcp_lease_from_a_real_server(tapnet: Env) -> None:
    st = tapnet.link.call(tapnet.link.stack.stats)
    iface = st["interface"]
    addr, plen = iface["address"].split("/")
    assert aton(f"{SUBNET}.100") <= aton(addr) <= aton(f"{SUBNET}.150") and plen == "24"
    assert iface["gateway"] == SERVER and iface["dns"] == [SERVER]
    assert st["dhcp"]["state"] == "BOUND" and "lease 10s" in st["dhcp"]["lease"]
    # the kernel on the other side resolved us and knows our MAC
    leases = tapnet.sh(f"busybox ping -c 1 -W 2 {addr} >/dev/null; ip neigh show {addr}").stdout
    assert iface["mac"] in leases


def test_ping_from_namespace(tapnet: Env) -> None:
    r = tapnet.sh(f"busybox ping -c 3 -i 0.2 -W 2 {tapnet.addr}", timeout=15)
    assert r.returncode == 0 and "3 packets received" in r.stdout, r.stdout + r.stderr
    rtt = re.search(r"min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
    assert rtt is not None
    print(f"\nping RTT min/avg/max {rtt.group(1)}/{rtt.group(2)}/{rtt.group(3)} ms")


def test_stack_pings_namespace(tapnet: Env) -> None:
    link = tapnet.link
    p = link.call(link.stack.ping_socket)
    got: list[tuple[str, int, bytes]] = []

    def poll() -> bool:
        while (r := p.recv()) is not None:
            got.append(r)
        return len(got) == 3
    for seq in range(1, 4):
        link.call(lambda: p.send(SERVER, seq, b"linuxabi" * 8, link.stack.now))
    assert link.wait_for(poll, 5)
    assert sorted(g[1] for g in got) == [1, 2, 3] and all(g[0] == SERVER and g[2] == b"linuxabi" * 8
                                                          for g in got)
    link.call(p.close)


def test_tcp_echo_1mib_from_namespace(tapnet: Env) -> None:
    srv = tapnet.link.call(lambda: apps.tcp_echo(tapnet.link.stack, 7))
    try:
        res = tapnet.peer("echo", tapnet.addr, 7, 1 << 20)
        assert res["ok"] and res["len"] == 1 << 20
        print(f"\n1 MiB echoed (2 MiB moved) in {res['secs']:.3f} s")
    finally:
        tapnet.link.call(srv.close)


def test_tcp_bulk_each_way(tapnet: Env) -> None:
    n = 8 << 20
    link = tapnet.link
    sink = link.call(lambda: apps.tcp_sink(link.stack, 9))
    source = link.call(lambda: apps.tcp_source(link.stack, 19, n))
    try:
        up = tapnet.peer("send", tapnet.addr, 9, n)
        assert link.wait_for(lambda: bool(sink.conns) and sink.conns[0].done, 10)
        import hashlib
        expected = hashlib.sha256(apps.pattern(n)).hexdigest()
        assert link.call(lambda: (sink.conns[0].rx_bytes, sink.conns[0].digest.hexdigest())) == (n, expected)
        down = tapnet.peer("recv", tapnet.addr, 19, n)
        assert down["ok"] and down["len"] == n
        print(f"\nTCP over TAP: namespace->stack {up['MBps']:.1f} MB/s, stack->namespace {down['MBps']:.1f} MB/s")
    finally:
        link.call(sink.close)
        link.call(source.close)


def test_stack_connects_to_namespace(tapnet: Env) -> None:
    server = tapnet.spawn(sys.executable, str(PEER), "serve", SERVER, "8000")
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    link = tapnet.link
    data = os.urandom(300_000)
    conn = link.call(lambda: apps.tcp_echo_client(link.stack, SERVER, 8000, data))
    assert link.wait_for(lambda: conn.done, 15)
    assert bytes(conn.got) == data
    out, _ = server.communicate(timeout=10)
    assert json.loads(out.strip().splitlines()[-1]) == {"ok": True, "bytes": len(data)}


def test_udp_echo_with_fragments(tapnet: Env) -> None:
    echo = tapnet.link.call(lambda: apps.UdpEcho(tapnet.link.stack, 7))
    try:
        res = tapnet.peer("udp", tapnet.addr, 7, 12)
        assert res["ok"], res
        ev = tapnet.link.call(lambda: dict(tapnet.link.stack.counters.events))
        assert ev["ip_reassembled"] >= 1 and ev["ip_fragmented"] >= 1
    finally:
        tapnet.link.call(echo.close)


def test_dhcp_renews_with_the_server(tapnet: Env) -> None:
    link = tapnet.link
    ev = link.stack.counters.events
    assert link.wait_for(lambda: ev["dhcp_lease_renewed"] >= 1, 12)
    agent = link.stack.dhcp
    assert agent is not None
    assert link.call(lambda: (agent.state, link.stack.addr != 0)) == (State.BOUND, True)


def test_stats_account_for_every_frame(tapnet: Env) -> None:
    st = tapnet.link.call(tapnet.link.stats)
    p = st["packets"]
    assert p["rx_packets"] == p["rx_accepted"] + sum(st["drops"].values())
    assert p["rx_packets"] > 100 and p["tx_bytes"] > 1 << 20
    assert st["backend"]["rx_frames"] == st["device"]["rx_frames"]
    assert tapnet.link.backend.writer_running   # a link in its own thread writes through the writer thread
    assert st["backend"]["tx_frames"] > 100     # (its counters are the backend's)
    text = render(st)
    assert "traffic" in text and "dhcp BOUND" in text and tapnet.addr in text


def _netem(env: Env) -> bool:
    r = env.sh(f"tc qdisc add dev {env.tap} root netem loss 5% reorder 25% 50% delay 5ms")
    return r.returncode == 0


def test_impaired_link_10mib_both_ways() -> None:
    """10 MiB each way at once (an echo) through 5% loss, 5 ms delay, 25% reordering on the
    namespace's side: tc netem where the kernel has it, else the same impairment applied to
    frames coming from the TAP."""
    n = 10 << 20
    t0 = time.monotonic()
    with namespace(dhcp=False, impaired=True) as env:
        link = env.link
        used = "netem"
        if not _netem(env):
            used = "in-process"
            backend = link.backend
            assert isinstance(backend, ImpairedBackend)

            def impair() -> None:
                backend.loss, backend.delay, backend.reorder, backend.directions = 0.05, 0.005, 0.25, "in"
            link.call(impair)
        srv = link.call(lambda: apps.tcp_echo(link.stack, 7))
        res = env.peer("echo", f"{SUBNET}.2", 7, n, timeout=60)
        assert res["ok"] and res["len"] == n
        st = link.call(link.stats)
        ev = st["events"]
        print(f"\nimpaired ({used}): 10 MiB each way in {res['secs']:.1f} s "
              f"({2 * n / res['secs'] / 1e6:.2f} MB/s total); frames lost {st['backend'].get('lost', '?')}, "
              f"out-of-order segments {ev.get('tcp_ooo_segments', 0)}, our retransmits {st['tcp']['retransmits']}")
        assert ev.get("tcp_ooo_segments", 0) > 0           # losses and reordering reached the stack
        link.call(srv.close)
    assert time.monotonic() - t0 < 60


def test_cli_stands_up_a_stack_on_a_tap() -> None:
    """`python3 -m net.hostlink --tap NAME --ip A/N --echo PORT`: answers ARP, ping and echo,
    and prints the stats table when stopped."""
    tag = secrets.token_hex(3)
    ns, tap = f"lxa-{tag}", f"lxa{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    cli = subprocess.Popen([sys.executable, "-m", "net.hostlink", "--tap", tap, "--ip", "10.78.0.2/24",
                            "--echo", "7"], cwd=Path(__file__).resolve().parents[2],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cli.stdout is not None
        import select
        ready, _, _ = select.select([cli.stdout], [], [], 15)
        assert ready, "the CLI did not start"
        assert cli.stdout.readline().startswith(f"{tap}: mac ")
        env = Env(ns, tap, None, Path("/tmp"))  # type: ignore[arg-type]
        subprocess.run(["ip", "link", "set", tap, "netns", ns], check=True, timeout=10)
        r = env.sh(f"ip link set {tap} up && ip addr add 10.78.0.1/24 dev {tap} && "
                   "busybox ping -c 2 -i 0.2 -W 2 10.78.0.2", timeout=15)
        assert r.returncode == 0 and "2 packets received" in r.stdout, r.stdout + r.stderr
        res = env.peer("echo", "10.78.0.2", 7, 100_000)
        assert res["ok"]
        cli.terminate()
        out, err = cli.communicate(timeout=10)
        assert cli.returncode == 0, err
        assert "traffic" in out and "passive" in out and "icmp" not in err
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(5)
        subprocess.run(["ip", "netns", "del", ns], timeout=10)
