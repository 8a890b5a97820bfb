"""net/uplink_proc.py: the uplink in a process of its own. Its TAP here is one end of a
SOCK_SEQPACKET pair (as tests/net/test_net_netspec.py does), so no device is needed; the child
is forked with it. tests/test_net_uplink.py runs the whole path on a real TAP."""
from __future__ import annotations

import errno
import mmap
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from net import uplink
from net.tap import TapBackend
from net.uplink import Names, NetSpec
from net.uplink_proc import Channel, UplinkProcess, _Server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[UplinkProcess]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    monkeypatch.setattr(uplink, "TapBackend", lambda name: TapBackend(name, fd=a.detach()))
    u = UplinkProcess(NetSpec.parse("tap:t0,ip=10.9.0.2/24"))
    try:
        yield u
    finally:
        u.close(drain=0)
        b.close()


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


def test_requests_reach_the_child_and_names_stay_here(up: UplinkProcess) -> None:
    assert up.pid is not None and up.pid != os.getpid() and not gone(up.pid)
    assert up.address == "10.9.0.2"
    assert up.routable("10.9.0.77") and not up.routable("10.10.0.1")   # on the link; no gateway
    assert "10.9.0.2/24 (static)" in up.describe()
    stats = up.stats()
    assert stats["interface"]["address"] == "10.9.0.2/24" and stats["uplink"]["names_deferred"] == 0
    names = Names(("10.9.0.2", 80), ("10.9.0.9", 4000), ("127.0.0.1", 5000))
    up.set_names(1234, names)
    assert up.names_of(1234) == names and up.names_of(99) is None
    up.drop_names(1234)
    assert up.names_of(1234) is None
    with pytest.raises(OSError) as e:
        up.udp_flow(("127.0.0.1", 5))                 # not attached: the child's error, raised here
    assert e.value.errno == errno.ENETUNREACH


def test_close_stops_the_child(up: UplinkProcess) -> None:
    pid = up.pid
    assert pid is not None
    up.close(drain=0)
    assert up.pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)                   # reaped already
    with pytest.raises(OSError) as e:
        up.describe()
    assert e.value.errno == errno.ENETDOWN


def test_a_killed_child_is_enetdown_not_a_crash(up: UplinkProcess) -> None:
    assert up.pid is not None
    os.kill(up.pid, signal.SIGKILL)
    with pytest.raises(OSError) as e:
        up.connect(("127.0.0.1", 4000), ("10.9.0.9", 80), 1)
    assert e.value.errno == errno.ENETDOWN
    assert up.names_of(1) is None                     # lookups still answer
    t = time.monotonic()
    up.close()
    assert time.monotonic() - t < 2 and up.pid is None


_ORPHAN = """
import socket, sys, time
from net import uplink
from net.tap import TapBackend
from net.uplink import NetSpec
from net.uplink_proc import UplinkProcess
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
a.setblocking(False)
uplink.TapBackend = lambda name: TapBackend(name, fd=a.detach())
u = UplinkProcess(NetSpec.parse("tap:t0,ip=10.9.0.2/24"))
print(u.pid, flush=True)
time.sleep(60)
"""


def test_the_child_dies_with_the_translator() -> None:
    """SIGKILL to the translator (no close): its uplink process does not outlive it."""
    p = subprocess.Popen([sys.executable, "-c", _ORPHAN], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert p.stdout is not None
        child = int(p.stdout.readline())
        assert not gone(child)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        end = time.monotonic() + 10
        while not gone(child):
            assert time.monotonic() < end, "the uplink process outlived the translator"
            time.sleep(0.02)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


class _Link:
    """What _Server asks of the loop: which events of its socket to watch."""

    def __init__(self) -> None:
        self.events: int = 0

    def watch(self, fd: int, events: int, callback: Callable[[], None]) -> None:
        self.events = events


class _HeldUplink:
    """Only what _Server touches when it pushes names and answers `sync`: a full socket and the
    translator's lookup racing the child's flush cannot be made to happen on cue with the loop."""

    def __init__(self) -> None:
        self.link = _Link()
        self.counters: dict[str, int] = {}
        self.on_names: Any = None


def test_names_held_back_by_a_full_socket_are_fetched_by_a_lookup() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    flag = mmap.mmap(-1, mmap.PAGESIZE)
    stub = _HeldUplink()
    server = _Server(theirs, stub, flag)  # type: ignore[arg-type]
    ch = Channel(ours, flag)

    def names(i: int) -> Names:   # an outbound connection's, the guest socket's inode 1000 + i
        return Names(("10.9.0.2", 40000 + i), ("10.9.0.9", 80), ("127.0.0.1", 20000))

    n = 0
    while not server.held or len(server.held) < 5:   # until the socket is full, and then some
        stub.on_names(1000 + n, names(n))
        n += 1
        assert n < 100000
    assert flag[0] == 1 and stub.counters["names_deferred"] == 5
    assert stub.link.events == selectors.EVENT_READ | selectors.EVENT_WRITE
    stop = threading.Event()

    def serve() -> None:                              # the child's loop, as far as `sync` needs it
        sel = selectors.DefaultSelector()
        sel.register(theirs, selectors.EVENT_READ)
        while not stop.is_set():
            if sel.select(0.05):
                server.ready()

    t = threading.Thread(target=serve)
    t.start()
    try:
        assert ch.names_of(1000) == names(0)                # in the socket
        assert ch.names_of(1000 + n - 1) == names(n - 1)    # held back: asked for
        assert flag[0] == 0 and not server.held
        assert stub.link.events == selectors.EVENT_READ
        assert ch.names_of(1000 + n) is None                # never made: a miss, no sync
        assert all(ch.names_of(1000 + i) == names(i) for i in range(1, n - 1))
    finally:
        stop.set()
        t.join(5)
        ours.close()
        theirs.close()


def test_a_channel_past_fd_setsize_still_answers() -> None:
    """The translator holds many fds (guests' sockets, pidfds): its end of the socket may be
    numbered past select()'s FD_SETSIZE (1024); waiting on it must not depend on that."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    high = os.dup2(a.detach(), 1500)
    ours = socket.socket(fileno=high)
    flag = mmap.mmap(-1, mmap.PAGESIZE)
    server = _Server(b, _HeldUplink(), flag)  # type: ignore[arg-type]
    ch = Channel(ours, flag)

    def serve_one() -> None:
        sel = selectors.PollSelector()
        sel.register(b, selectors.EVENT_READ)
        if sel.select(5.0):
            server.ready()

    t = threading.Thread(target=serve_one)
    try:
        t.start()
        assert ch.call("sync", timeout=5.0) is None
    finally:
        t.join(5)
        ours.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
