"""TCP round trips across a network link: the guest's microbench against an echo peer outside.

Each sample makes its own namespaces and removes them: a peer namespace where the echo peer
(the host's build of the microbench, ``--echo PORT``) listens on 10.83.0.1, and

- natively, a guest namespace joined to it by a veth pair (the guest's end 10.83.0.2), where the
  microbench runs in a chroot of its image copy, on the host kernel's TCP/IP;
- under linuxabi, a TAP in the peer namespace that ``linuxabi run --net tap:TAP,ip=10.83.0.2/24``
  attaches the sandbox to: every byte crosses linuxabi's TCP/IP stack and its virtio-net queues.

The figure is the guest's own time per round trip (set-up excluded), as for every micro op.
Processes it starts it stops by PID; namespaces and the TAP go with the sample.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .build import GUEST_BINARY, microbench_binary
from .ops import Op, parse_microbench
from .runners import MICRO_TIMEOUT_S, Runner, Sample

PEER, GUEST, PORT = "10.83.0.1", "10.83.0.2", 7007
POLICY = f"""\
[filesystem]
"/" = "rwxcd"
"/tmp" = "rwxcd"
[network]
bind = ["tcp:0.0.0.0:*"]
connect = ["tcp:{PEER}:{PORT}"]
[devices]
allow = ["/dev/null", "/dev/zero", "/dev/urandom"]
"""


def prepare() -> str | None:
    """Why link ops cannot run here, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root (network namespaces, TAP)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


class _Net:
    """The peer namespace and the guest's way to it (a TAP for linuxabi, a veth pair natively)."""

    def __init__(self, native: bool) -> None:
        tag = secrets.token_hex(3)
        self.peer_ns, self.guest_ns = f"lxbp-{tag}", (f"lxbg-{tag}" if native else None)
        self.dev = f"lxb{tag}"
        self._made: list[str] = []

    def __enter__(self) -> "_Net":
        try:
            _ip("netns", "add", self.peer_ns)
            self._made.append(self.peer_ns)
            _ip("link", "set", "lo", "up", ns=self.peer_ns)
            if self.guest_ns is None:
                _ip("tuntap", "add", "dev", self.dev, "mode", "tap", ns=self.peer_ns)
            else:
                _ip("netns", "add", self.guest_ns)
                self._made.append(self.guest_ns)
                _ip("link", "set", "lo", "up", ns=self.guest_ns)
                _ip("link", "add", self.dev, "type", "veth", "peer", "name", self.dev + "g", ns=self.peer_ns)
                _ip("link", "set", self.dev + "g", "netns", self.guest_ns, ns=self.peer_ns)
                _ip("addr", "add", f"{GUEST}/24", "dev", self.dev + "g", ns=self.guest_ns)
                _ip("link", "set", self.dev + "g", "up", ns=self.guest_ns)
            _ip("addr", "add", f"{PEER}/24", "dev", self.dev, ns=self.peer_ns)
            _ip("link", "set", self.dev, "up", ns=self.peer_ns)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for ns in reversed(self._made):  # the TAP and the veth pair go with their namespace
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)
        self._made.clear()


def _guest_command(runner: Runner, root: Path, argv: list[str], net: _Net, policy: Path) -> list[str]:
    if runner.name == "native":
        assert net.guest_ns is not None
        return ["ip", "netns", "exec", net.guest_ns, "chroot", str(root), *argv]
    return ["ip", "netns", "exec", net.peer_ns, sys.executable, "-m", "linuxabi", "run", "--root", str(root),
            "--net", f"tap:{net.dev},ip={GUEST}/24", "--policy", str(policy), "--", *argv]


def sample(op: Op, runner: Runner, root: Path, round_no: int, *, quick: bool, max_seconds: float) -> Sample:
    argv = [*op.guest_argv(quick=quick, max_seconds=max_seconds), f"{PEER}:{PORT}"]
    assert argv[0] == GUEST_BINARY
    with tempfile.TemporaryDirectory(prefix="linuxabi-bench-link-") as tmp, _Net(runner.name == "native") as net:
        policy = Path(tmp) / "policy.toml"
        policy.write_text(POLICY)
        echo = subprocess.Popen(["ip", "netns", "exec", net.peer_ns, str(microbench_binary()), "--echo", str(PORT)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert echo.stdout is not None
            if echo.stdout.readline().strip() != b"ready":
                return Sample(op.name, runner.name, round_no, None, error="the echo peer did not start")
            try:
                r = subprocess.run(_guest_command(runner, root, argv, net, policy), stdin=subprocess.DEVNULL,
                                   capture_output=True, env=runner.env, cwd=runner.cwd, timeout=MICRO_TIMEOUT_S + 15)
            except subprocess.TimeoutExpired:
                return Sample(op.name, runner.name, round_no, None, error=f"timed out after {MICRO_TIMEOUT_S + 15:g} s")
        finally:
            echo.kill()  # (by its PID: ip netns exec execs the echo peer in place)
            echo.wait(timeout=15)
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        return Sample(op.name, runner.name, round_no, None,
                      error=f"exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-200:]}")
    res = parse_microbench(out)
    if res is None or res.op != op.name:
        return Sample(op.name, runner.name, round_no, None, error=f"no result line: {out[-200:]!r}")
    return Sample(op.name, runner.name, round_no, res.ns_per_op * 1e-9, iters=res.iters)
