"""What the tests that make network namespaces and TAP devices need, in one place: root on
Linux, /dev/net/tun, and host tools (installed from Debian's archive when absent, as `make test`
would). A module opts in with ``pytestmark = pytest.mark.usefixtures("netns_environment")``
after importing the fixture: a missing piece is a failure, never a skip."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

_PACKAGE_OF = {"busybox": "busybox", "ip": "iproute2", "curl": "curl", "wrk": "wrk"}


def install_missing(tools: tuple[str, ...]) -> None:
    missing = sorted({_PACKAGE_OF[t] for t in tools if t in _PACKAGE_OF and shutil.which(t) is None})
    if not missing or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        if subprocess.run(cmd, capture_output=True, timeout=300).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
            subprocess.run(cmd, capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        pass


def busybox_applets() -> set[str]:
    bb = shutil.which("busybox")
    if bb is None:
        return set()
    return set(subprocess.run([bb, "--list"], capture_output=True, text=True, timeout=10).stdout.split())


def missing(tools: tuple[str, ...] = ("ip", "busybox")) -> str | None:
    """What is missing for namespaces and TAPs with ``tools`` (None: nothing)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (network namespaces, TAP)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    install_missing(tools)
    for tool in tools:
        if shutil.which(tool) is None:
            return f"no {tool}"
    if "busybox" in tools and not {"udhcpd", "ping"} <= busybox_applets():
        return "no busybox with udhcpd and ping"
    return None


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop what a test started in a namespace (by PID): SIGTERM, then SIGKILL after 5 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def udp_port_bound(sh, port: int) -> bool:  # noqa: ANN001 - a namespace's shell runner
    """Whether something in the namespace (``sh(cmd)`` runs there) is bound to UDP ``port``."""
    return f":{port:04X} " in sh("cat /proc/net/udp").stdout


@pytest.fixture(scope="module")
def netns_environment(request: pytest.FixtureRequest) -> None:
    """Fails the module's tests when something is missing (its NETNS_TOOLS, else ip and busybox)."""
    why = missing(getattr(request.module, "NETNS_TOOLS", ("ip", "busybox")))
    assert why is None, why
