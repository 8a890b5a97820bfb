"""TCP round trips across a network link: the guest's microbench against an echo peer outside.

Each sample makes its own namespaces and removes them (tests/test_nginx_uplink.py's TapNet, as
tools/nginx_rps.py --via tap uses them): a client namespace where the echo peer (the host's
build of the microbench, ``--echo PORT``) listens, with

- natively, a veth pair to a server namespace, where the microbench runs in a chroot of its image
  copy, on the host kernel's TCP/IP (the peer is the client's end of the pair);
- under linuxabi, a TAP that ``linuxabi run --net tap:TAP,ip=...`` attaches the sandbox to: every
  byte crosses linuxabi's TCP/IP stack and its virtio-net queues (the peer is the TAP's address).

The figure is the guest's own time per round trip (set-up excluded), as for every micro op.
Processes it starts it stops by PID; the namespaces and the TAP go with the sample.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

from .build import GUEST_BINARY, microbench_binary
from .ops import Op, parse_microbench
from .runners import MICRO_TIMEOUT_S, Runner, Sample

TESTS = Path(__file__).resolve().parent.parent / "tests"
PORT = 7007


def _helpers() -> ModuleType:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import test_nginx_uplink

    return test_nginx_uplink


def _policy(peer: str) -> str:
    return f"""\
[filesystem]
"/" = "rwxcd"
"/tmp" = "rwxcd"
[network]
bind = ["tcp:0.0.0.0:*"]
connect = ["tcp:{peer}:{PORT}"]
[devices]
allow = ["/dev/null", "/dev/zero", "/dev/urandom"]
"""


def prepare() -> str | None:
    """Why link ops cannot run here, or None (iproute2 is installed if missing)."""
    _helpers()  # (puts tests/ on the path)
    from netns_env import missing

    return missing(("ip",))


def sample(op: Op, runner: Runner, root: Path, round_no: int, *, quick: bool, max_seconds: float) -> Sample:
    h = _helpers()
    native = runner.name == "native"
    peer = h.VETH_CLIENT if native else h.HOST_SIDE
    argv = [*op.guest_argv(quick=quick, max_seconds=max_seconds), f"{peer}:{PORT}"]
    assert argv[0] == GUEST_BINARY
    net = h.TapNet(veth=native).create()
    try:
        net.policy.write_text(_policy(peer))
        if native:
            cmd = ["ip", "netns", "exec", net.server_ns, "chroot", str(root), *argv]
        else:
            cmd = ["ip", "netns", "exec", net.ns, sys.executable, "-m", "linuxabi", "run", "--root", str(root),
                   "--net", f"tap:{net.tap},ip={h.SANDBOX}/24", "--policy", str(net.policy), "--", *argv]
        echo = subprocess.Popen(["ip", "netns", "exec", net.ns, str(microbench_binary()), "--echo", str(PORT)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert echo.stdout is not None
            if echo.stdout.readline().strip() != b"ready":
                return Sample(op.name, runner.name, round_no, None, error="the echo peer did not start")
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=runner.env,
                                   cwd=runner.cwd, timeout=MICRO_TIMEOUT_S + 15)
            except subprocess.TimeoutExpired:
                return Sample(op.name, runner.name, round_no, None, error=f"timed out after {MICRO_TIMEOUT_S + 15:g} s")
        finally:
            echo.kill()  # (by its PID: ip netns exec execs the echo peer in place)
            echo.wait(timeout=15)
    finally:
        net.destroy()
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        return Sample(op.name, runner.name, round_no, None,
                      error=f"exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-200:]}")
    res = parse_microbench(out)
    if res is None or res.op != op.name:
        return Sample(op.name, runner.name, round_no, None, error=f"no result line: {out[-200:]!r}")
    return Sample(op.name, runner.name, round_no, res.ns_per_op * 1e-9, iters=res.iters)
