"""``linuxabi run --net tap:NAME``: guests reach a real network through linuxabi's own stack.

A module fixture makes a network namespace `lxu-<random>` with a persistent TAP device in it
(10.79.0.1/24 on the namespace's side), busybox udhcpd on it and a Python http.server serving
a 1 MiB and a 10 MiB file. linuxabi runs *inside* that namespace (`ip netns exec`), so it opens
the TAP there and the namespace's kernel is "the outside": every packet between a guest and
it crosses linuxabi's stack, its virtio-net device and the TAP. The sandbox's own network
namespace still has only its loopback. Every command has a timeout; teardown stops the
processes started here (by pid), deletes the TAP and the namespace. Traffic goes only to
addresses inside the namespace created here.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from netns_env import netns_environment, stop, udp_port_bound  # noqa: F401 - the fixture
from host_tasks import host_tasks_with, wait_for
from oracle import compile_static

REPO = Path(__file__).resolve().parent.parent
LINUXABI = [sys.executable, "-m", "linuxabi"]
SUBNET = "10.79.0"
SERVER = f"{SUBNET}.1"
STATIC = f"{SUBNET}.50"
HTTP_PORT = 8000
POLICY = f"""\
[filesystem]
"/" = "rwxcd"
"/tmp" = "rwxcd"
[network]
bind = ["tcp:0.0.0.0:*", "udp:0.0.0.0:*", "tcp:[::]:*"]
connect = ["tcp:127.0.0.0/8:*", "udp:127.0.0.0/8:*", "tcp:{SUBNET}.0/24:*", "tcp:10.98.0.0/24:*"]
[devices]
allow = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
"""


pytestmark = pytest.mark.usefixtures("netns_environment")


class Net:
    def __init__(self, ns: str, tap: str, workdir: Path) -> None:
        self.ns, self.tap, self.workdir = ns, tap, workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.policy = workdir / "policy.toml"
        self.policy.write_text(POLICY)

    def sh(self, cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, "sh", "-c", cmd], capture_output=True,
                              text=True, timeout=timeout)

    def py(self, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Python code run in the namespace (the helpers below are small scripts)."""
        return subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", code, *args],
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, *argv: str, **kw: object) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs the command in place: the pid is the command's own
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def linuxabi(self, net: str, script: str, *, input: bytes | None = None, timeout: float = 60,
                 verbose: bool = False) -> subprocess.CompletedProcess[bytes]:
        cmd = ["ip", "netns", "exec", self.ns, *LINUXABI, "run", "--net", net, "--policy", str(self.policy)]
        cmd += ["-v"] if verbose else []
        return subprocess.run([*cmd, "--", "sh", "-c", script], input=input, capture_output=True,
                              timeout=timeout, cwd=REPO)

    def start_linuxabi(self, net: str, script: str, input: bytes | None = None, *,
                       extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        cmd = ["ip", "netns", "exec", self.ns, *LINUXABI, "run", "--net", net, "--policy", str(self.policy),
               *extra, "--", "sh", "-c", script]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else None, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=REPO)
        self.procs.append(p)
        if input is not None:
            assert p.stdin is not None
            p.stdin.write(input)
            p.stdin.close()
            p.stdin = None  # communicate() must not touch it again
        return p

    def stop_procs(self) -> None:
        stop(self.procs)


def _udp_port_bound(net: Net, port: int) -> bool:
    return udp_port_bound(net.sh, port)


def _tcp_listening(net: Net, port: int) -> bool:
    return f":{port:04X} 00000000:0000 0A" in net.sh("cat /proc/net/tcp").stdout


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    tag = secrets.token_hex(3)
    ns, tap = f"lxu-{tag}", f"lxu{tag}"
    workdir = Path(f"/tmp/uplink-{tag}")
    (workdir / "www").mkdir(parents=True)
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    n = Net(ns, tap, workdir)
    try:
        r = n.sh(f"ip link set lo up && ip tuntap add dev {tap} mode tap && "
                 f"sysctl -qw net.ipv6.conf.{tap}.disable_ipv6=1; "
                 f"ip addr add {SERVER}/24 dev {tap} && ip link set {tap} up")
        assert r.returncode == 0, r.stderr
        (workdir / "leases").touch()
        conf = workdir / "udhcpd.conf"
        conf.write_text(f"start {SUBNET}.100\nend {SUBNET}.150\ninterface {tap}\nmin_lease 30\n"
                        f"lease_file {workdir}/leases\npidfile {workdir}/udhcpd.pid\n"
                        f"option subnet 255.255.255.0\noption router {SERVER}\noption lease 60\n")
        n.spawn("busybox", "udhcpd", "-f", "-a", "100", str(conf), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        rng = __import__("random").Random(7)
        (workdir / "www" / "small").write_bytes(rng.randbytes(1 << 20))
        (workdir / "www" / "big").write_bytes(rng.randbytes(10 << 20))
        n.http_log = workdir / "http.log"  # type: ignore[attr-defined]
        with open(n.http_log, "wb") as log:  # type: ignore[attr-defined]
            n.spawn(sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", SERVER,
                    "--directory", str(workdir / "www"), stdout=log, stderr=log)
        end = time.monotonic() + 10
        while not (_udp_port_bound(n, 67) and _tcp_listening(n, HTTP_PORT)):
            assert time.monotonic() < end, "udhcpd or http.server did not start"
            time.sleep(0.05)
        yield n
    finally:
        n.stop_procs()
        subprocess.run(["ip", "netns", "exec", ns, "ip", "tuntap", "del", "dev", tap, "mode", "tap"],
                       capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_CONNECT = """
import socket, sys, time
end = time.monotonic() + 15
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except OSError:
        assert time.monotonic() < end, "the guest never listened"
        time.sleep(0.1)
"""

_GET = _CONNECT.replace("import socket", "import urllib.request, socket") + """
c.close()
for path in sys.argv[3:]:
    print(urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}{path}", timeout=10).read().decode().strip())
"""

_UPLOAD = _CONNECT + """
data = open(sys.argv[3], "rb").read()
t = time.monotonic()
c.sendall(data)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(round(len(data) / (time.monotonic() - t) / 1e6, 1))
"""

_SINK = """
import hashlib, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(30)
c, a = s.accept()
h, n, t = hashlib.sha256(), 0, None
while True:
    d = c.recv(1 << 20)
    t = t or time.monotonic()
    if not d:
        break
    n += len(d)
    h.update(d)
print(a[0], n, h.hexdigest(), round(n / (time.monotonic() - t) / 1e6, 1))
"""


# ---- acceptance ---------------------------------------------------------------------------------


def test_dhcp_address_and_wget(net: Net) -> None:
    """The sandbox takes its address by DHCP; a guest busybox wget fetches 1 MiB and 10 MiB
    from the namespace's http.server, intact."""
    url = f"http://{SERVER}:{HTTP_PORT}"
    r = net.linuxabi(f"tap:{net.tap}", f"wget -q -O /tmp/small {url}/small && sha256sum /tmp/small && "
                     f"wget -q -O - {url}/big | sha256sum", verbose=True)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    got = re.findall(r"^([0-9a-f]{64}) ", r.stdout.decode(), re.M)
    assert got == [_sha(net.workdir / "www" / "small"), _sha(net.workdir / "www" / "big")]
    m = re.search(rf"network tap:{net.tap}: ({SUBNET}\.\d+)/24 gateway {SERVER} \(DHCP\)", err)
    assert m is not None, err
    address = m.group(1)
    assert 100 <= int(address.rsplit(".", 1)[1]) <= 150
    # the server saw the sandbox's own address: the requests came through the stack
    log = net.http_log.read_text()  # type: ignore[attr-defined]
    assert f'{address} - - ' in log and '"GET /big HTTP/1.1" 200' in log


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tests/uplink_probe.c, static (the guest gets it on stdin: it is not in the image)."""
    return compile_static(Path(__file__).with_name("uplink_probe.c"), tmp_path_factory.mktemp("probe") / "probe").read_bytes()


def test_guest_connect_names_and_errors(net: Net, probe: bytes) -> None:
    """A guest's connect through the stack: the names it sees, blocking and non-blocking
    (poll shows it not writable until established), and the errnos of failures."""
    runs = [f"{SERVER} {HTTP_PORT}", f"{SERVER} {HTTP_PORT} nb", f"{SERVER} 9", f"{SERVER} 9 nb",
            "10.98.0.1 80", "10.98.0.1 80 nb", f"{SUBNET}.99 80 nb"]
    script = "cat > /tmp/p && chmod +x /tmp/p && " + " && ".join(f"/tmp/p {a}" for a in runs)
    r = net.linuxabi(f"tap:{net.tap},ip={STATIC}/24", script, input=probe)
    out = r.stdout.decode().splitlines()
    assert r.returncode == 0 and len(out) == len(runs), r.stdout.decode() + r.stderr.decode()
    ok = f"sock={STATIC}:\\d+ peer={SERVER}:{HTTP_PORT}"
    assert re.fullmatch(f"connect=0 {ok} reply=HTTP/1.0 200", out[0]), out[0]
    # established before the guest's first poll, or not yet: either is what Linux can say
    assert out[1].startswith("connect=EINPROGRESS ") and "revents=0x4 so_error=0" in out[1], out[1]
    assert re.search(f"so_error=0 {ok} reply=HTTP/1.0 200$", out[1]), out[1]
    assert out[2].startswith("connect=ECONNREFUSED ") and out[2].endswith("peer=ENOTCONN"), out[2]
    assert (re.search(r"revents=0x1c so_error=ECONNREFUSED sock=\S+ peer=ENOTCONN$", out[3])
            or re.fullmatch(r"connect=EINPROGRESS writable_at_once=0 again=ECONNREFUSED sock=\S+ peer=ENOTCONN",
                            out[3])), out[3]
    assert out[4] == "connect=ENETUNREACH sock=0.0.0.0:0 peer=ENOTCONN", out[4]  # no gateway: no route
    assert out[5] == "connect=ENETUNREACH sock=0.0.0.0:0 peer=ENOTCONN", out[5]
    # nobody has that address: not writable while ARP asks (seconds), then EHOSTUNREACH
    assert re.fullmatch(f"connect=EINPROGRESS writable_at_once=0 again=EALREADY sock={STATIC}:\\d+ peer=ENOTCONN "
                        "revents=0x1c so_error=EHOSTUNREACH sock=\\S+ peer=ENOTCONN", out[6]), out[6]


def test_namespace_reaches_guest_httpd_with_real_peer(net: Net) -> None:
    """A guest httpd listening on every address is reached from the namespace through the
    stack; its CGI sees the real peer address; ping to the sandbox works meanwhile."""
    script = ("mkdir -p /tmp/www/cgi-bin && echo hello > /tmp/www/index.html && "
              "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=$REMOTE_ADDR\\n' "
              "> /tmp/www/cgi-bin/peer && chmod +x /tmp/www/cgi-bin/peer && "
              "exec httpd -f -p 8080 -h /tmp/www")
    guest = net.start_linuxabi(f"tap:{net.tap},ip={STATIC}/24", script)
    try:
        r = net.py(_GET, STATIC, "8080", "/index.html", "/cgi-bin/peer")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == "hello"
        # httpd listens on [::] (dual stack): Linux shows an IPv4 peer there v4-mapped
        assert r.stdout.splitlines()[1] in (f"peer={SERVER}", f"peer=[::ffff:{SERVER}]"), r.stdout
        ping = net.sh(f"busybox ping -c 3 -i 0.2 -W 2 {STATIC}", timeout=15)
        assert "3 packets received" in ping.stdout, ping.stdout + ping.stderr
    finally:
        guest.terminate()
        guest.wait(10)


_ECHO = _CONNECT + """
c.sendall(b"ping through the stack")
c.shutdown(socket.SHUT_WR)
print(c.getsockname()[1], c.recv(100).decode())
"""


@pytest.mark.parametrize("bind_ip", ["0.0.0.0", STATIC])
def test_guest_accept_reports_outside_names(net: Net, probe: bytes, bind_ip: str) -> None:
    """A guest listener on every address, or on the sandbox's own address: accept and
    getpeername give the namespace's address and port, getsockname the sandbox's; half-close
    travels both ways (the echo ends when the client's FIN arrives)."""
    guest = net.start_linuxabi(f"tap:{net.tap},ip={STATIC}/24",
                               f"cat > /tmp/p && chmod +x /tmp/p && /tmp/p -l {bind_ip} 9200", input=probe)
    try:
        r = net.py(_ECHO, STATIC, "9200")
        assert r.returncode == 0, r.stderr
        client_port, echoed = r.stdout.split(" ", 1)
        assert echoed.strip() == "ping through the stack"
        out, err = guest.communicate(timeout=30)
        lines = out.decode().splitlines()
        assert lines == [f"listening={bind_ip}:9200",
                         f"accepted={SERVER}:{client_port} sock={STATIC}:9200 peer={SERVER}:{client_port}"], err
    finally:
        if guest.poll() is None:
            guest.kill()
            guest.wait(10)


_MANY = _CONNECT + """
import resource
n = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) for _ in range(n)]
print("connected", flush=True)
sys.stdin.read()  # they stay open until the test is done
"""


def test_a_late_accepting_guest_names_every_outside_peer(net: Net, probe: bytes) -> None:
    """Hundreds of connections wait in a guest listener's backlog before it accepts any, and
    every accept and getpeername names its outside peer: natively, each doorbell is bound to its
    peer's address (net/uplink.py), so the uplink's process sent no names for them at all (none
    deferred in `linuxabi ctl net`, where a per-connection name would have filled the socket)."""
    n = 700
    id_file = net.workdir / "late.id"
    guest = net.start_linuxabi(f"tap:{net.tap},ip={STATIC}/24",
                               f"cat > /tmp/p && chmod +x /tmp/p && /tmp/p -n 0.0.0.0 9400 {n + 1} && sleep 60",
                               input=probe, extra=("--id-file", str(id_file)))
    # the first connection (_CONNECT's, which waits for the listener) waits in the backlog too
    client = net.spawn(sys.executable, "-c", _MANY, STATIC, "9400", str(n),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert guest.stdout is not None
        lines = [guest.stdout.readline().decode().strip() for _ in range(2)]
        assert lines == ["listening", f"accepted={n + 1} outside={n + 1}"], lines
        stats = subprocess.run([*LINUXABI, "ctl", "net", id_file.read_text().strip()], capture_output=True,
                               text=True, timeout=30, cwd=REPO)
        counts = dict(re.findall(r"(inbound|names_deferred) (\d+)", stats.stdout))
        assert counts == {"inbound": str(n + 1), "names_deferred": "0"}, stats.stdout + stats.stderr
    finally:
        for p in (client, guest):
            p.kill()
            p.wait(10)


def test_namespace_uploads_10mib_to_guest_nc(net: Net) -> None:
    """10 MiB from the namespace to a guest `nc -l` (0.0.0.0), through the stack, intact."""
    data = (net.workdir / "www" / "big").read_bytes()
    guest = net.start_linuxabi(f"tap:{net.tap},ip={STATIC}/24", "nc -l -p 9000 | sha256sum")
    try:
        r = net.py(_UPLOAD, STATIC, "9000", str(net.workdir / "www" / "big"), timeout=60)
        assert r.returncode == 0, r.stderr
        out, err = guest.communicate(timeout=30)
        assert out.decode().split()[0] == hashlib.sha256(data).hexdigest(), err.decode()
        print(f"\nnamespace -> guest nc: {r.stdout.strip()} MB/s")
    finally:
        if guest.poll() is None:
            guest.kill()
            guest.wait(10)


def test_guest_uploads_to_namespace_and_loopback_stays_inside(net: Net) -> None:
    """Guest -> namespace bulk through the stack (with its figure), while a guest-internal
    127.0.0.1 connection on a port the stack also listens on stays on the loopback."""
    receiver = net.spawn(sys.executable, "-c", _SINK, SERVER, "9100", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    end = time.monotonic() + 10
    while not _tcp_listening(net, 9100):
        assert time.monotonic() < end
        time.sleep(0.05)
    n = 64 << 20
    # (the listener's output is read once it has exited; the client retries until it listens)
    script = ("nc -l -p 7000 > /tmp/loop & listener=$!; for i in $(seq 50); do "
              "echo inside | nc 127.0.0.1 7000 2>/dev/null && break; sleep 0.1; done; wait $listener; cat /tmp/loop; "
              f"dd if=/dev/zero bs=65536 count={n >> 16} 2>/dev/null | nc {SERVER} 9100")
    r = net.linuxabi(f"tap:{net.tap},ip={STATIC}/24", script)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().splitlines()[0] == "inside"
    out, err = receiver.communicate(timeout=30)
    peer, count, digest, mbps = out.decode().split()
    assert (peer, int(count), digest) == (STATIC, n, hashlib.sha256(bytes(n)).hexdigest()), err.decode()
    print(f"\nguest -> namespace through the stack: {mbps} MB/s")


_HOLD = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(30)
c, _ = s.accept()
c.sendall(b"hello\\n")
c.settimeout(30)
print(repr(c.recv(100)), flush=True)
"""


def test_revoking_connect_shuts_uplink_connections(net: Net) -> None:
    """A revoked connect capability shuts the connections it covered, though the guest's
    socket is connected (natively) to a loopback address: the namespace's end sees EOF.
    (`linuxabi ctl net` shows the live connection first.)"""
    policy = net.workdir / "narrow.toml"
    policy.write_text(POLICY.replace('bind = ["tcp:0.0.0.0:*", "udp:0.0.0.0:*", "tcp:[::]:*"]', 'bind = []'))
    server = net.spawn(sys.executable, "-c", _HOLD, SERVER, "9300", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 10
    while not _tcp_listening(net, 9300):
        assert time.monotonic() < end
        time.sleep(0.05)
    id_file = net.workdir / "sandbox.id"
    guest = subprocess.Popen(["ip", "netns", "exec", net.ns, *LINUXABI, "run", "--net", f"tap:{net.tap},ip={STATIC}/24",
                              "--policy", str(policy), "--id-file", str(id_file), "--", "sh", "-c",
                              f"sleep 30 | nc {SERVER} 9300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    net.procs.append(guest)
    try:
        assert guest.stdout is not None
        assert guest.stdout.readline() == b"hello\n"  # connected through the stack
        sandbox = id_file.read_text().strip()
        ctl = [*LINUXABI, "ctl"]
        stats = subprocess.run([*ctl, "net", sandbox], capture_output=True, text=True, timeout=30, cwd=REPO)
        assert stats.returncode == 0 and f"{STATIC}/24" in stats.stdout, stats.stdout + stats.stderr
        assert re.search(r"^uplink  outbound 1 .* bridges 1 ", stats.stdout, re.M), stats.stdout
        listing = subprocess.run([*ctl, "list", sandbox], capture_output=True, text=True, timeout=30, cwd=REPO)
        slot = next(line.split()[0] for line in listing.stdout.splitlines() if f"tcp:{SUBNET}.0/24" in line)
        r = subprocess.run([*ctl, "revoke", sandbox, "--slot", slot], capture_output=True, text=True, timeout=30,
                           cwd=REPO)
        assert r.returncode == 0 and "1 socket fds shut down" in r.stdout, r.stdout + r.stderr
        out, err = server.communicate(timeout=15)
        assert out.decode().strip() == "b''", err.decode()  # the guest's shutdown, carried out as a FIN
    finally:
        guest.kill()
        guest.wait(10)


def uplink_process(pid: int) -> int | None:
    """The uplink's process (net/uplink_proc.py): the translator's child forked from it."""
    mine = Path(f"/proc/{pid}/cmdline").read_bytes()
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            try:
                if Path(f"/proc/{child}/cmdline").read_bytes() == mine:
                    return int(child)
            except OSError:
                continue
    return None


def test_the_stack_runs_beside_a_compact_sandbox_not_on_its_cpu(net: Net) -> None:
    """While the sandbox is compact (its guests and the trap loop on one CPU), the uplink's
    loop runs on the translator's other CPUs: there each guest it wakes does not preempt it.
    The loop is the main thread of a process of its own (net/uplink_proc.py); that process's
    other thread, the TAP's writer, runs on the CPUs the loop does not."""
    cpus = frozenset(os.sched_getaffinity(0))
    marker = "30.4417"
    guest = net.start_linuxabi(f"tap:{net.tap},ip={STATIC}/24", f"sleep {marker}")
    try:
        sleeper = wait_for(lambda: host_tasks_with(f"sleep\x00{marker}"), 30)
        assert sleeper, "the guest did not start"
        threads = {int(t): frozenset(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{guest.pid}/task")}
        stack = wait_for(lambda: uplink_process(guest.pid), 10)
        assert stack is not None, "no uplink process"
        loop = frozenset(os.sched_getaffinity(stack))
        if len(cpus) < 2:                        # nothing to place
            assert set(threads.values()) == {cpus} and loop == cpus
            return
        home = frozenset(os.sched_getaffinity(sleeper[0]))
        assert len(home) == 1 and threads[guest.pid] == home, (home, threads)
        assert loop == cpus - home, (home, loop)   # the uplink's loop
        others = {int(t): frozenset(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{stack}/task")
                  if int(t) != stack}
        assert others and set(others.values()) == {cpus - loop}, (loop, others)   # the TAP's writer
    finally:
        guest.kill()
        guest.wait(10)


def test_bad_net_values_are_one_line() -> None:
    for value, why in (("bogus", "expected none or tap:NAME"), ("tap:x,ip=10.0.0", "Expected 4 octets"),
                       ("tap:x,gw=10.0.0.1", "gw= needs ip="), ("tap:x,mtu=9000", "unknown or repeated option")):
        r = subprocess.run([*LINUXABI, "run", "--net", value, "--", "true"], capture_output=True, text=True,
                           timeout=30, cwd=REPO)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and why in r.stderr, (value, r.stderr)


def test_tap_without_permission_is_one_line() -> None:
    """A TAP that does not exist and may not be created: one clear line, exit status 2."""
    # root of a fresh user namespace: no CAP_NET_ADMIN over this network namespace
    r = subprocess.run(["unshare", "--user", "--map-root-user", *LINUXABI, "run", "--net", "tap:lxunope0",
                        "--", "true"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "cannot open or create TAP device lxunope0" in r.stderr, r.stderr
