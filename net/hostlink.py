"""A stack on a real link: one event loop object owning a Nic (stack + virtio-net device) and
its backend (a TAP), driven by a selector (epoll) and the monotonic clock.

Run it in its own thread (`start`/`stop`, and `call` to touch the stack from elsewhere),
step it from another loop (`fileno`, `next_deadline`, `step`), or run it in the foreground
(`run`). Timers (TCP, ARP, reassembly, DHCP) are the stack's deadlines; nothing polls on a
fixed tick.

    python3 -m net.hostlink --tap NAME [--ip A/N [--gw G] | --dhcp] [--echo PORT]

stands a stack up on TAP NAME (created if missing) that answers ARP and ping.
"""
from __future__ import annotations

import argparse
import os
import random
import select
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Final, TypeVar

from .apps import UdpEcho, tcp_echo
from .dhcp_agent import DhcpAgent
from .ethernet import format_mac
from .nic import Nic
from .stats import render
from .tap import TapBackend
from .virtio import features as F
from .virtio.device import DEFAULT_FEATURES, Backend
from .virtio.driver import WANTED

T = TypeVar("T")
_ROUNDS: Final = 64            # Nic steps per loop turn before the selector gets its say again


def random_mac(rng: random.Random | None = None) -> str:
    """A locally administered unicast MAC."""
    b = bytearray((rng or random.Random()).randbytes(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return format_mac(bytes(b))


class HostLink:
    def __init__(self, backend: Backend, *, mac: str | None = None, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic, wanted: int = WANTED,
                 device_features: int = DEFAULT_FEATURES, mtu: int = 1500, blocks: int = 512,
                 name: str = "") -> None:
        rng = random.Random(seed)
        self.clock, self.backend = clock, backend
        self.nic = Nic(backend, mac or random_mac(rng), seed=rng.getrandbits(32), wanted=wanted,
                       device_features=device_features, mtu=mtu, blocks=blocks,
                       name=name or getattr(backend, "name", ""))
        self.stack = self.nic.stack
        set_offload = getattr(backend, "set_offload", None)
        if set_offload is not None:            # let the kernel send what the driver takes
            feats = self.nic.driver.features
            set_offload(csum=bool(feats & F.VIRTIO_NET_F_GUEST_CSUM),
                        tso4=bool(feats & F.VIRTIO_NET_F_GUEST_TSO4))
        self._pump: Callable[[], None] | None = getattr(backend, "pump", None)
        self._backend_event: Callable[[], float | None] | None = getattr(backend, "next_event", None)
        # epoll itself, not a selectors.Selector: its select() builds a key object per ready fd
        # and its register/modify a named tuple per call, a few µs per turn and per connection.
        self._ep = select.epoll()
        self._ep.register(backend.fileno(), select.EPOLLIN)  # type: ignore[attr-defined]
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._wake_fd, select.EPOLLIN)
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._waiters: list[tuple[Callable[[], bool], threading.Event]] = []
        self._loop_thread: threading.Thread | None = None
        self._stopping = False
        self.error: BaseException | None = None
        self.turns = 0

    @classmethod
    def open_tap(cls, name: str, **kw: Any) -> HostLink:
        return cls(TapBackend(name), **kw)

    # -- configuration (call before start(), or through call())
    def configure(self, addr: str, prefix: int, gateway: str | None = None) -> None:
        self.stack.set_address(addr, prefix, self.clock())
        if gateway:
            self.stack.set_gateway(gateway)

    def start_dhcp(self, **client_options: Any) -> DhcpAgent:
        return self.stack.start_dhcp(self.clock(), **client_options)

    # -- stepping from another loop
    def fileno(self) -> int:
        """Readable when the link has something to do (the loop's own epoll fd)."""
        return self._ep.fileno()

    def next_deadline(self) -> float | None:
        """When `step` is next due even if nothing arrives (monotonic seconds)."""
        ds = [d for d in (self.nic.next_deadline(), self._backend_event() if self._backend_event else None)
              if d is not None]
        if self._calls or self.nic.tx_backlog:
            ds.append(self.clock())
        return min(ds) if ds else None

    def step(self) -> None:
        """Do everything that is due now: queued calls, frames in and out, timers."""
        while self._calls:
            fn, fut = self._calls.popleft()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:         # handed to the caller, not lost here
                    fut.set_exception(e)
        for _ in range(_ROUNDS):
            if self._pump is not None:
                self._pump()
            if not self.nic.step(self.clock()):
                break
        if self._waiters:
            for w in [w for w in self._waiters if w[0]()]:
                self._waiters.remove(w)
                w[1].set()

    def run_once(self, max_wait: float = 1.0) -> None:
        d = self.next_deadline()
        timeout = max_wait if d is None else min(max(d - self.clock(), 0.0), max_wait)
        for fd, _ in self._ep.poll(timeout):
            self._selected(fd)
        self.turns += 1
        self.step()

    def _selected(self, fd: int) -> None:
        """One fd epoll found ready (subclasses watch more than the wake-up fd)."""
        if fd == self._wake_fd:
            try:
                os.eventfd_read(self._wake_fd)
            except BlockingIOError:
                pass

    def run(self, until: Callable[[], bool] | None = None, timeout: float | None = None) -> bool:
        """Run in this thread until `until()` holds (True) or `timeout` passes (False)."""
        end = None if timeout is None else self.clock() + timeout
        self.step()
        while not self._stopping:
            if until is not None and until():
                return True
            left = None if end is None else end - self.clock()
            if left is not None and left <= 0:
                return until is None
            self.run_once(1.0 if left is None else min(left, 1.0))
        return until is None or until()

    # -- running in a thread
    def start(self, cpus: frozenset[int] | None = None) -> threading.Thread:
        """Run the loop in a thread of its own; ``cpus``: the CPUs it may run on (by default
        the caller's)."""
        if self._loop_thread is not None:
            raise RuntimeError("already running")
        self._stopping = False
        start_writer = getattr(self.backend, "start_writer", None)
        if start_writer is not None:           # the TAP's writes leave the loop (tap_writer.py); the
            start_writer()                     # writer runs on the caller's CPUs, the loop on `cpus`
        self._loop_thread = threading.Thread(target=self._thread_main, args=(cpus,), name=f"hostlink-{self.stack.name}",
                                        daemon=True)
        self._loop_thread.start()
        return self._loop_thread

    def _thread_main(self, cpus: frozenset[int] | None) -> None:
        try:
            if cpus:
                os.sched_setaffinity(0, cpus)
            self.run()
        except BaseException as e:               # kept for callers: call() re-raises it
            self.error = e
            for _, fut in self._calls:
                fut.set_exception(e)
            for _, ev in self._waiters:
                ev.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake()
        stuck = False
        if self._loop_thread is not None:
            self._loop_thread.join(timeout)
            stuck = self._loop_thread.is_alive()
            self._loop_thread = None
        stop_writer = getattr(self.backend, "stop_writer", None)
        if stop_writer is not None and not stuck:   # no thread of ours runs once stopped (a loop
            stop_writer()                           # still running keeps the writer it sends to)

    def _wake(self) -> None:
        os.eventfd_write(self._wake_fd, 1)

    def _in_loop(self) -> bool:
        return self._loop_thread is None or threading.current_thread() is self._loop_thread

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run fn on the loop's thread (the stack is not thread-safe) and return its result."""
        if self._in_loop():
            result = fn()
            self.step()
            return result
        if self.error is not None:
            raise RuntimeError("the link's loop died") from self.error
        fut: Future[T] = Future()
        self._calls.append((fn, fut))
        self._wake()
        return fut.result(timeout)

    def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        """Wait until pred() (evaluated on the loop's thread) holds; False on timeout."""
        if self._in_loop():
            return self.run(pred, timeout)
        ev = threading.Event()
        self.call(lambda: ev.set() if pred() else self._waiters.append((pred, ev)))
        ok = ev.wait(timeout)
        if self.error is not None:
            raise RuntimeError("the link's loop died") from self.error
        return ok

    # -- observing and closing
    def stats(self) -> dict[str, Any]:
        s = self.stack.stats()
        s["device"] = dict(self.nic.device.stats)
        s["driver"] = dict(self.nic.driver.stats)
        backend: dict[str, int] = dict(getattr(self.backend, "stats", {}))
        inner = getattr(self.backend, "inner", None)          # a wrapper's (ImpairedBackend's) TAP
        if inner is not None and hasattr(inner, "stats"):
            backend.update({f"link_{k}": v for k, v in inner.stats.items()})
        s["backend"] = backend
        return s

    def close(self) -> None:
        self.stop()
        self._ep.close()
        os.close(self._wake_fd)
        close = getattr(self.backend, "close", None) or getattr(getattr(self.backend, "inner", None), "close", None)
        if close is not None:
            close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m net.hostlink", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tap", required=True, help="TAP interface name (created if missing)")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--ip", help="static address A.B.C.D/N")
    mode.add_argument("--dhcp", action="store_true", help="get the address by DHCP")
    ap.add_argument("--gw", help="default gateway (with --ip)")
    ap.add_argument("--mac", help="MAC address (default: random, locally administered)")
    ap.add_argument("--echo", type=int, metavar="PORT", help="run TCP and UDP echo on PORT")
    ap.add_argument("--stats-every", type=float, metavar="S", help="print the stats table every S seconds")
    args = ap.parse_args(argv)
    link = HostLink.open_tap(args.tap, mac=args.mac)
    stack = link.stack
    print(f"{link.backend.name}: mac {format_mac(stack.mac)}", flush=True)   # type: ignore[attr-defined]
    if args.ip:
        addr, _, plen = args.ip.partition("/")
        link.configure(addr, int(plen or 24), args.gw)
    else:
        agent = link.start_dhcp()
        agent.on_lease = lambda ev: print(f"dhcp: {type(ev).__name__} {ev.lease.describe()}", flush=True)
    if args.echo:
        tcp_echo(stack, args.echo)
        UdpEcho(stack, args.echo)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    link.start()
    next_stats = time.monotonic() + (args.stats_every or 0)
    while not stop.wait(0.2):
        if args.stats_every and time.monotonic() >= next_stats:
            print(link.call(lambda: render(link.stats())), flush=True)
            next_stats += args.stats_every
    link.stop()
    print(render(link.stats()))
    link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
