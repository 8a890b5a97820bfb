"""nginx reached through linuxabi's own TCP/IP stack: ``linuxabi run --image nginx --net tap:TAP``.

The image, content, config and guest script are tests/test_nginx.py's; here nginx listens on
port 80 of the sandbox and no ``-p`` is involved. A module fixture makes a network namespace
``lxn-<random>`` with a persistent TAP in it (10.81.0.1/24 on the namespace's side), and
linuxabi runs *inside* it (``ip netns exec``, as tests/test_net_uplink.py does) with a static
address (``ip=10.81.0.50/24``), so every byte between curl/wrk in the namespace and nginx
crosses the namespace's kernel, the TAP, linuxabi's virtio-net device and its stack.

``TapNet`` and ``NsNginx`` are helpers tools/nginx_rps.py uses too (``--via tap``): a client
namespace with the TAP and, optionally, a server namespace joined to it by a veth pair where
a native nginx (the chroot twin of test_nginx) runs. Everything created here is removed at
teardown: processes stopped by pid (their own process groups), the TAP, veth and namespaces.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from test_nginx import (_NATIVE_NGINX, BIG_SHA256, BIG_SIZE, GUEST_PORT, IMAGE, INDEX, WRK_NON_2XX, NginxServer,
                        WRK_REQUESTS, WRK_RPS, WRK_SOCKET_ERRORS, guest_script, nginx_image)
from netns_env import missing, netns_environment  # noqa: F401 - the fixture

SUBNET = "10.81.0"
HOST_SIDE = f"{SUBNET}.1"        # the client namespace's address on the TAP
SANDBOX = f"{SUBNET}.50"         # the sandbox's static address
VETH_SUBNET = "10.82.0"
VETH_CLIENT = f"{VETH_SUBNET}.1"  # client namespace's end of the veth pair
VETH_SERVER = f"{VETH_SUBNET}.2"  # server namespace's end (native nginx)
START_TIMEOUT = 30.0
POLICY = """\
[filesystem]
"/" = "rwxcd"
"/tmp" = "rwxcd"
[network]
bind = ["tcp:0.0.0.0:*", "udp:0.0.0.0:*", "tcp:[::]:*"]
connect = ["tcp:127.0.0.0/8:*", "udp:127.0.0.0/8:*"]
[devices]
allow = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
"""


NETNS_TOOLS = ("ip", "curl", "wrk")


def why_not() -> str | None:
    """What is missing to run nginx behind a TAP (tools/nginx_rps.py --via tap asks too)."""
    return missing(NETNS_TOOLS)


class TapNet:
    """A client namespace with a TAP for linuxabi (and, with ``veth=True``, a server namespace
    joined to it by a veth pair). ``create()``/``destroy()``; every command has a timeout."""

    def __init__(self, *, veth: bool = False) -> None:
        tag = secrets.token_hex(3)
        self.ns, self.tap = f"lxn-{tag}", f"lxn{tag}"
        self.server_ns = f"lxs-{tag}" if veth else None
        self.veth = f"lxv{tag}"
        self.workdir = Path(tempfile.mkdtemp(prefix="nginxtap_helper_", dir="/tmp"))
        self.policy = self.workdir / "policy.toml"
        self.policy.write_text(POLICY)
        self._made: list[str] = []

    def sh(self, cmd: str, *, ns: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns or self.ns, "sh", "-c", cmd], capture_output=True,
                              text=True, timeout=timeout)

    def _ok(self, cmd: str, *, ns: str | None = None) -> None:
        r = self.sh(cmd, ns=ns)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd}: {r.stderr.strip()}")

    def create(self) -> "TapNet":
        try:
            subprocess.run(["ip", "netns", "add", self.ns], check=True, timeout=10)
            self._made.append(self.ns)
            self._ok(f"ip link set lo up && ip tuntap add dev {self.tap} mode tap && "
                     f"sysctl -qw net.ipv6.conf.{self.tap}.disable_ipv6=1; "
                     f"ip addr add {HOST_SIDE}/24 dev {self.tap} && ip link set {self.tap} up")
            if self.server_ns is not None:
                subprocess.run(["ip", "netns", "add", self.server_ns], check=True, timeout=10)
                self._made.append(self.server_ns)
                self._ok(f"ip link set lo up && ip link add {self.veth}c type veth peer name {self.veth}s && "
                         f"ip link set {self.veth}s netns {self.server_ns} && "
                         f"ip addr add {VETH_CLIENT}/24 dev {self.veth}c && ip link set {self.veth}c up")
                self._ok(f"ip link set lo up && ip addr add {VETH_SERVER}/24 dev {self.veth}s && "
                         f"ip link set {self.veth}s up", ns=self.server_ns)
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        if self.ns in self._made:
            subprocess.run(["ip", "netns", "exec", self.ns, "ip", "tuntap", "del", "dev", self.tap, "mode", "tap"],
                           capture_output=True, timeout=10)
        for ns in reversed(self._made):  # deleting a namespace deletes the veth end in it (and its peer)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._made.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


class NsNginx(NginxServer):
    """nginx from the image, answering on port 80 of ``address``:

    - ``"tap"``: under ``linuxabi run --image nginx --net tap:TAP,ip=SANDBOX/24`` run inside
      the client namespace (the sandbox's stack owns SANDBOX);
    - ``"veth"``: natively (test_nginx's chroot twin) inside the server namespace.

    ``net_opts`` is appended to the ``--net`` value (e.g. ``,offload=off``). Stopped by
    ``stop()``: SIGTERM, then SIGKILL, to the process group of the launcher it started."""

    def __init__(self, net: TapNet, kind: str, *, net_opts: str = "") -> None:
        if kind not in ("tap", "veth") or (kind == "veth" and net.server_ns is None):
            raise ValueError(kind)
        self.net, self.kind, self.net_opts = net, kind, net_opts
        self.address = SANDBOX if kind == "tap" else VETH_SERVER
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.start_seconds = 0.0

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}:{GUEST_PORT}{path}"

    def command(self) -> list[str]:
        if self.kind == "tap":
            nginx_image()
            return ["ip", "netns", "exec", self.net.ns, sys.executable, "-m", "linuxabi", "run", "--image", IMAGE,
                    "--net", f"tap:{self.net.tap},ip={SANDBOX}/24{self.net_opts}", "--policy", str(self.net.policy),
                    "--", "/bin/sh", "-c", guest_script(str(GUEST_PORT))]
        assert self.net.server_ns is not None
        return ["ip", "netns", "exec", self.net.server_ns,
                "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                "/bin/sh", "-c", _NATIVE_NGINX, str(nginx_image()), "/bin/sh", "-c",
                guest_script(f"{VETH_SERVER}:{GUEST_PORT}")]

    def _new_workdir(self) -> Path:
        path = self.net.workdir / f"nginx-{self.kind}-{secrets.token_hex(2)}"
        path.mkdir(parents=True)
        return path

    def _native(self) -> bool:
        return self.kind == "veth"

    def _answers(self) -> str | None:
        r = self.net.sh(f"curl -s -o /dev/null -w '%{{http_code}}' --noproxy '*' -m 2 "
                        f"-H 'Connection: close' {self.url('/index.html')}", timeout=10)
        return None if r.stdout == "200" else f"curl status {r.returncode}, http {r.stdout!r}"


def curl_in(net: TapNet, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(["ip", "netns", "exec", net.ns, "curl", "-sS", "--noproxy", "*", "-m", str(timeout - 5),
                        *args], capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"curl {' '.join(args)}: status {r.returncode}: {r.stderr.decode()}"
    return r


def wrk_in(net: TapNet, url: str, *, connections: int = 10, seconds: int = 2, close: bool = False) -> dict:
    """test_nginx.wrk's figures, wrk run inside the client namespace."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *(["-H", "Connection: close"] if close else [])]
    r = subprocess.run(["ip", "netns", "exec", net.ns, *cmd, url], capture_output=True, timeout=seconds + 60)
    assert r.returncode == 0, f"{' '.join(cmd)}: status {r.returncode}: {r.stdout.decode()}{r.stderr.decode()}"
    rps, reqs = WRK_RPS.search(r.stdout), WRK_REQUESTS.search(r.stdout)
    assert rps and reqs, r.stdout.decode()
    errs, non2xx = WRK_SOCKET_ERRORS.search(r.stdout), WRK_NON_2XX.search(r.stdout)
    return {"requests": float(reqs.group(1)), "rps": float(rps.group(1)),
            "socket_errors": float(sum(map(int, errs.groups()))) if errs else 0.0,
            "non_2xx": float(non2xx.group(1)) if non2xx else 0.0, "output": r.stdout.decode()}


# ---------------------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("netns_environment")


@pytest.fixture(scope="module")
def net() -> Iterator[TapNet]:
    n = TapNet().create()
    try:
        yield n
    finally:
        n.destroy()


@pytest.fixture(scope="module")
def server(net: TapNet) -> Iterator[NsNginx]:
    s = NsNginx(net, "tap")
    try:
        yield s.start()
    finally:
        s.stop()


def test_index_page(net: TapNet, server: NsNginx) -> None:
    r = curl_in(net, "-H", "Connection: close", server.url("/index.html"))
    assert r.stdout == INDEX


def test_big_file_sha256(net: TapNet, server: NsNginx) -> None:
    r = curl_in(net, "-H", "Connection: close", server.url("/big.bin"))
    assert len(r.stdout) == BIG_SIZE
    assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256


def test_keepalive_reuses_connection(net: TapNet, server: NsNginx) -> None:
    a, b = net.workdir / "a", net.workdir / "b"
    r = curl_in(net, "-o", str(a), "-o", str(b), "-w", "%{num_connects}\n", server.url("/big.bin"),
                server.url("/big.bin"))
    assert r.stdout.split() == [b"1", b"0"]  # the second transfer went over the first connection
    for f in (a, b):
        assert hashlib.sha256(f.read_bytes()).hexdigest() == BIG_SHA256
        f.unlink()
    r = curl_in(net, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                server.url("/index.html"), server.url("/index.html"))
    assert r.stdout.split() == [b"1", b"0"]


def test_connection_close_reconnects(net: TapNet, server: NsNginx) -> None:
    r = curl_in(net, "-H", "Connection: close", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                server.url("/index.html"), server.url("/index.html"))
    assert r.stdout.split() == [b"1", b"1"]


@pytest.mark.parametrize("close", [False, True], ids=["keepalive", "connection-close"])
def test_wrk(net: TapNet, server: NsNginx, close: bool) -> None:
    w = wrk_in(net, server.url("/index.html"), close=close)
    assert w["requests"] > 0, w["output"]
    assert w["socket_errors"] == 0 and w["non_2xx"] == 0, w["output"]


def test_error_log_clean(server: NsNginx) -> None:
    assert server.workdir is not None
    log = (server.workdir / "stderr").read_text(errors="replace")
    assert not re.search(r"\[(emerg|alert|crit)\]", log), log
