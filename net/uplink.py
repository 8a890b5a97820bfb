"""The sandbox's uplink: linuxabi's own stack on a TAP device, joined to the guests' sockets.

``linuxabi run --net tap:NAME[,ip=A.B.C.D/N[,gw=G]][,offload=off]`` (DHCP without ip=; with
offload=off the driver negotiates neither checksum offload nor TSO, so the TAP gets none either).
Guests' sockets stay host sockets in the sandbox's loopback-only network namespace
(net/socklayer.py); what leaves the sandbox goes through this stack, its virtio-net device and
the TAP, in one thread (the link's loop, which has entered the sandbox's namespace):

- outbound TCP: the translator connects the guest's socket to the hold port (holdport.py)
  and asks the stack to connect to the real destination; when the stack is established a
  simultaneous open from the hold port completes the guest's connect, and a Bridge (bridge.py)
  moves the bytes. A stack failure fails the guest's connect with the same errno.
- inbound TCP: a guest listening on 0.0.0.0:PORT gets a stack listener on PORT; each
  connection it accepts rings the guest's listener from inside the namespace: a "doorbell"
  socket bound (IP_TRANSPARENT) to the outside peer's own address connects to 127.0.0.1:PORT,
  and is bridged to the stack's connection. The guest's accept4 and getpeername are native and
  name the real peer (its replies come back into lo: loopback_route.py); getsockname's
  127.0.0.1 becomes the interface's address in the translator.
- outbound UDP: guest datagrams to outside addresses reach the stack through relays bound
  to the remotes' addresses in the sandbox, and its replies come back from them (udp_relay.py).
- names: the translator's getpeername/getsockname report the outside addresses of outbound
  sockets (``Names``), keyed by the guest socket's inode and checked against the loopback
  peer the socket really has.

The translator calls in from its own thread (``connect``, ``listen``, ``names_of``, ...):
those that touch the stack run on the loop's thread through ``call`` (one loop turn; the
loop never waits on a guest).
"""
from __future__ import annotations

import _socket
import errno
import ipaddress
import select
import selectors
import socket
import sys
import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Final, TYPE_CHECKING

from . import lo_steering, loopback_route
from .bridge import Bridge
from .hostlink import _ROUNDS, HostLink
from .holdport import HoldPort
from .ipv4 import aton, ntoa
from .tap import TapBackend
from .tcp import State, TcpSocket
from .icmp_relay import IcmpRelay
from .udp_relay import UdpRelay
from .virtio import features as F
from .virtio.driver import WANTED

if TYPE_CHECKING:
    from .socklayer import GuestNet

Addr = tuple[str, int]
_MAX_NAMES: Final = 65536
_IP_TRANSPARENT: Final = 19
_STEER_WINDOW: Final = 0.5   # seconds between lo_steering's looks at the CPUs
_RING_TRIES: Final = 8       # loopback addresses a doorbell tries (127.0.0.1-8)
_BELL_HOSTS: Final = tuple(f"127.0.0.{i}" for i in range(1, _RING_TRIES + 1))
# (module attributes are looked up at each use in compiled code too: these are read once)
_AF_INET: Final = int(socket.AF_INET)
_BELL_TYPE: Final = int(socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
_SOL_IP: Final = int(socket.SOL_IP)
_SOL_SOCKET: Final = int(socket.SOL_SOCKET)
_SO_REUSEADDR: Final = int(socket.SO_REUSEADDR)
_EINPROGRESS: Final = errno.EINPROGRESS
_EADDRNOTAVAIL: Final = errno.EADDRNOTAVAIL
_ESTABLISHED: Final = (State.ESTABLISHED, State.CLOSE_WAIT)
# what offload=off leaves out: the TAP is then told to send only whole, checksummed frames
_OFFLOADS: Final = (F.VIRTIO_NET_F_CSUM | F.VIRTIO_NET_F_GUEST_CSUM | F.VIRTIO_NET_F_HOST_TSO4
             | F.VIRTIO_NET_F_GUEST_TSO4)


@dataclass(frozen=True)
class NetSpec:
    """A parsed ``--net`` value: ``none`` or ``tap:NAME[,ip=A.B.C.D/N[,gw=G]][,offload=on|off]``."""

    tap: str = ""
    ip: str | None = None
    prefix: int = 24
    gateway: str | None = None
    offload: bool = True  # checksum offload and TSO negotiated (as far as the device offers them)

    @property
    def none(self) -> bool:
        return not self.tap

    @classmethod
    def parse(cls, text: str) -> "NetSpec":
        if text == "none":
            return cls()
        kind, _, rest = text.partition(":")
        if kind != "tap" or not rest:
            raise ValueError(f"--net {text!r}: expected none or tap:NAME[,ip=A.B.C.D/N[,gw=G]]")
        name, *opts = rest.split(",")
        if not name or len(name.encode()) >= 16 or "/" in name:
            raise ValueError(f"--net {text!r}: {name!r} is not an interface name (1-15 characters)")
        kw: dict[str, Any] = {}
        for opt in opts:
            key, eq, value = opt.partition("=")
            if not eq or key not in ("ip", "gw", "offload") or key in kw:
                raise ValueError(f"--net {text!r}: unknown or repeated option {opt!r} (ip=, gw=, offload=)")
            kw[key] = value
        spec: dict[str, Any] = {"tap": name}
        try:
            if "ip" in kw:
                iface = ipaddress.IPv4Interface(kw["ip"] if "/" in kw["ip"] else kw["ip"] + "/24")
                if iface.network.prefixlen > 30:
                    raise ValueError("prefix longer than /30")
                spec.update(ip=str(iface.ip), prefix=iface.network.prefixlen)
            if "gw" in kw:
                if "ip" not in kw:
                    raise ValueError("gw= needs ip= (DHCP brings its own gateway)")
                spec["gateway"] = str(ipaddress.IPv4Address(kw["gw"]))
            if "offload" in kw:
                if kw["offload"] not in ("on", "off"):
                    raise ValueError(f"offload={kw['offload']}: expected on or off")
                spec["offload"] = kw["offload"] == "on"
        except ValueError as e:
            raise ValueError(f"--net {text!r}: {e}") from None
        return cls(**spec)

    def __str__(self) -> str:
        return "none" if self.none else f"tap:{self.tap}"


@dataclass(frozen=True, slots=True)
class Names:
    """How a guest socket's ends look from outside. ``native_peer``: the loopback peer the
    guest's socket really has (None: names for an unconnected socket, getsockname only)."""

    local: Addr
    peer: Addr | None = None
    native_peer: Addr | None = None

    def __post_init__(self) -> None:
        # One string per address, not one per entry: up to _MAX_NAMES of them are kept (a
        # server's every connection), ~500 bytes each with their own strings, ~340 without.
        for name in ("local", "peer", "native_peer"):
            addr = getattr(self, name)
            if addr is not None and type(addr[0]) is str:
                object.__setattr__(self, name, (sys.intern(addr[0]), addr[1]))


class UplinkLoop(HostLink):
    """HostLink's loop plus host fds to watch (bridges, the hold port) and deferred work
    (bridge service after the stack processed a batch of frames)."""

    def __init__(self, backend: TapBackend, *, seed: int | None = None, name: str = "",
                 wanted: int = WANTED) -> None:
        super().__init__(backend, seed=seed, name=name, wanted=wanted)
        self._watched: dict[int, tuple[int, Callable[[], None]]] = {}  # fd -> (epoll events, callback)
        self._soon: list[Callable[[], None]] = []
        self._later: list[Callable[[], None]] = []   # run on the next turn, after what its poll found
        self._every: list[tuple[float, Callable[[], None]]] = []   # (interval, callback)
        self._every_due: list[float] = []
        self.callback_errors = 0

    # the bridge.Loop protocol
    def watch(self, fd: int, events: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` after a turn in which ``fd`` was ready for ``events``
        (selectors.EVENT_READ | EVENT_WRITE), or had an error or hang-up."""
        mask = (select.EPOLLIN if events & selectors.EVENT_READ else 0) | \
               (select.EPOLLOUT if events & selectors.EVENT_WRITE else 0)
        old = self._watched.get(fd)
        if old is None:
            self._ep.register(fd, mask)
        elif old[0] != mask:
            self._ep.modify(fd, mask)
        self._watched[fd] = (mask, callback)

    def unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            self._ep.unregister(fd)

    def soon(self, callback: Callable[[], None]) -> None:
        self._soon.append(callback)

    def later(self, callback: Callable[[], None]) -> None:
        self._later.append(callback)

    def every(self, interval: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` every ``interval`` seconds (in a turn, with the bridges' callbacks)."""
        self._every.append((interval, callback))
        self._every_due.append(self.clock() + interval)

    def now(self) -> float:
        return self.clock()

    # the loop
    def next_deadline(self) -> float | None:
        if self._soon or self._later or self.stack.has_output:
            return self.clock()
        d = super().next_deadline()
        if self._every_due:
            due = min(self._every_due)
            d = due if d is None else min(d, due)
        return d

    def _selected(self, fd: int) -> None:
        watched = self._watched.get(fd)
        if watched is not None:
            self._soon.append(watched[1])  # a watched fd's callback, run after the step
        else:
            super()._selected(fd)

    def step(self) -> None:
        if self._later:
            self._soon += self._later
            self._later = []
        if self._every_due:
            now = self.clock()
            for i, due in enumerate(self._every_due):
                if due <= now:
                    interval, callback = self._every[i]
                    self._every_due[i] = now + interval
                    self._soon.append(callback)
        super().step()
        for _ in range(8):                       # bridges feed the stack, the stack feeds bridges
            if not self._soon:
                return
            batch, self._soon = self._soon, []
            for cb in dict.fromkeys(batch):       # once per turn each (bound methods compare equal)
                try:
                    cb()
                except Exception:                 # a bug in one connection must not stop the link
                    self.callback_errors += 1
                    traceback.print_exc(file=sys.stderr)
            for _ in range(_ROUNDS):
                if self._pump is not None:
                    self._pump()
                if not self.nic.step(self.clock()):
                    break


def ring(remote: Addr, port: int) -> _socket.socket:
    """A doorbell: a non-blocking socket bound to the remote's own address, connecting (or
    connected) to the guest's listener on 127.0.0.1:port. An earlier connection from that
    address and port may still be open there (the remote reused its port before the guest
    closed its end): then it rings at 127.0.0.2, 127.0.0.3, ... (the guest, listening on
    0.0.0.0, is there too; getsockname names the interface's address either way). A four-tuple
    only in TIME-WAIT is no obstacle: Linux lets a connect from a bound port take it over (with
    timestamps, as on lo). OSError if none answers."""
    code = _EADDRNOTAVAIL
    for host in _BELL_HOSTS:
        # (socket.py's class adds a Python __init__ and close to each: ~4% of the loop's time
        # with `Connection: close`; nothing here needs makefile's reference counting)
        bell = _socket.socket(_AF_INET, _BELL_TYPE)
        try:
            bell.setsockopt(_SOL_IP, _IP_TRANSPARENT, 1)   # bound to an address not ours
            bell.setsockopt(_SOL_SOCKET, _SO_REUSEADDR, 1)
            bell.bind(remote)
            code = bell.connect_ex((host, port))
        except OSError as e:
            code = e.errno or errno.EADDRINUSE
        if code == 0 or code == _EINPROGRESS:
            return bell
        bell.close()
        if code != _EADDRNOTAVAIL:
            break
    raise OSError(code, f"doorbell to port {port}: {errno.errorcode.get(code, code)}")


@dataclass
class _Outbound:
    tcp: TcpSocket
    guest: Addr             # the guest socket's loopback address
    ino: int


class Uplink:
    def __init__(self, spec: NetSpec, *, seed: int | None = None) -> None:
        self.spec = spec
        wanted = WANTED if spec.offload else WANTED & ~_OFFLOADS
        self.link = UplinkLoop(TapBackend(spec.tap), seed=seed, name=spec.tap, wanted=wanted)
        self.stack = self.link.stack
        if spec.ip is not None:
            self.link.configure(spec.ip, spec.prefix, spec.gateway)
        else:
            self.link.start_dhcp()
        self.hold: HoldPort | None = None
        self.udp: UdpRelay | None = None       # made on the loop's thread, in the sandbox
        self.icmp: IcmpRelay | None = None     # likewise
        self._lock = threading.Lock()           # names: both threads use them
        self._names: OrderedDict[int, Names] = OrderedDict()   # guest socket inode -> names
        self._pending: dict[Addr, _Outbound] = {}
        self._listeners: dict[int, TcpSocket] = {}
        self.listening_ports: frozenset[int] = frozenset()
        self._bridges: set[Bridge] = set()
        self.counters = {"outbound": 0, "outbound_failed": 0, "inbound": 0, "inbound_refused": 0}
        # Set when the translator runs in another process (uplink_proc.py): names and bells go
        # to it as they are made (inode, Names; None: dropped) instead of being kept.
        self.on_names: Callable[[int, Names | None], None] | None = None
        # Where lo may take in what the loop sends into it (lo_steering.py): set by the embedder
        # to the CPUs the loop does not use, before attach.
        self.steer_cpus: frozenset[int] = frozenset()
        self.steering: lo_steering.LoSteering | None = None

    # ---- life cycle (the embedder's thread) ------------------------------------------------
    def start(self, cpus: frozenset[int] | None = None) -> None:
        """Run the link's loop; ``cpus``: where its thread may run (by default the caller's CPUs)."""
        self.link.start(cpus)

    def pause(self) -> None:
        """Stop the loop's thread (while the embedder forks); `start` resumes it."""
        self.link.stop()

    def wait_address(self, timeout: float) -> bool:
        return self.link.wait_for(lambda: self.stack.addr != 0, timeout)

    def attach(self, net: "GuestNet") -> None:
        """Move the loop's thread into the sandbox's network namespace and open the hold port
        there (the link must be running: this runs on its thread)."""
        self.link.call(lambda: self._attach(net))

    def _attach(self, net: "GuestNet") -> None:
        net.enter()
        loopback_route.install()
        if self.steer_cpus:
            self.steering = lo_steering.LoSteering(self.steer_cpus)
            self.link.every(_STEER_WINDOW, self.steering.tick)
        self.hold = HoldPort()
        assert self.hold.capture is not None
        self.link.watch(self.hold.capture.fileno(), selectors.EVENT_READ, self.hold.drain_capture)
        self.icmp = IcmpRelay(self.stack, self.link.now)
        self.udp = UdpRelay(self.link, self.stack, self.icmp.inject)

    def close(self, drain: float = 5.0) -> None:
        """Stop; first let what the guests sent before they went away reach its peers (up to
        `drain` seconds: their sockets are closed, so each bridge has seen the end of it).
        The loop runs for that in its thread, or in the caller's (uplink_proc.py's process)."""
        if self.link.error is None:
            try:
                self.link.wait_for(self._drained, drain)
                self.link.call(self._shutdown, timeout=5.0)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self.link.close()

    def _drained(self) -> bool:
        return all(b.closed or (b.up_eof and not b.tcp.sndq) for b in self._bridges)

    def _shutdown(self) -> None:
        for b in list(self._bridges):
            b.abort()
        now = self.link.now()
        for out in self._pending.values():
            out.tcp.on_event = None
            out.tcp.abort(now)
        self._pending.clear()
        for lst in self._listeners.values():
            lst.on_event = None
            lst.close(now)
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        if self.icmp is not None:
            self.icmp.close()
            self.icmp = None
        if self.hold is not None:
            self.link.unwatch(self.hold.capture.fileno())  # type: ignore[union-attr]
            self.hold.close()
            self.hold = None

    # ---- what the translator asks (its thread) -----------------------------------------------
    @property
    def address(self) -> str | None:
        a = self.stack.addr
        return ntoa(a) if a else None

    @property
    def hold_address(self) -> Addr:
        assert self.hold is not None, "the uplink is not attached"
        return self.hold.address

    def describe(self) -> str:
        st = self.link.call(self.stack.stats)["interface"]
        how = "static" if self.spec.ip is not None else "DHCP"
        gw = f" gateway {st['gateway']}" if st.get("gateway") else ""
        off = "" if self.spec.offload else ", offloads off"
        return f"{self.spec}: {st['address']}{gw} ({how}), mac {st['mac']}{off}"

    def stats(self) -> dict[str, Any]:
        s = self.link.call(self.link.stats)
        udp = self.udp.counters if self.udp is not None else {}
        if self.icmp is not None:
            udp = dict(udp, **self.icmp.counters)
        s["uplink"] = dict(self.counters, **udp, bridges=len(self._bridges), pending=len(self._pending),
                           lo_steered=int(self.steering is not None and self.steering.steered),
                           lo_steering_changes=self.steering.changes if self.steering is not None else 0)
        return s

    def connect(self, guest: Addr, remote: Addr, ino: int) -> None:
        """Start the stack's connect for the guest socket `guest` (already connecting to the
        hold port). Raises OSError for what fails at once (ENETUNREACH: no route)."""
        self.link.call(lambda: self._connect(guest, remote, ino))

    def udp_relay(self, remote: Addr) -> None:
        """Datagrams the sandbox sends to `remote` go out through the stack from now on."""
        self.link.call(lambda: self._udp().relay(remote))

    def udp_flow(self, guest: Addr) -> int:
        """The stack's port for the guest UDP socket bound (natively) at `guest`."""
        return self.link.call(lambda: self._udp().flow(guest))

    def udp_remotes(self) -> list[Addr]:
        """The remotes the sandbox's datagrams reach the stack for now."""
        if self.udp is None:
            return []
        udp = self.udp
        return self.link.call(udp.remotes)

    def udp_revoke(self, allowed: Callable[[Addr], bool]) -> list[Addr]:
        """After a revoke: datagrams to the remotes ``allowed`` refuses stop leaving."""
        if self.udp is None:
            return []
        udp = self.udp
        return self.link.call(lambda: udp.drop_relays(allowed))

    def ping(self, dst: str, msg: bytes) -> bool:
        """A guest's ICMP echo request to ``dst`` goes out through the stack (its replies come
        back into the sandbox's loopback); False when ``msg`` is no echo request."""
        icmp = self.icmp
        if icmp is None:
            raise OSError(errno.ENETUNREACH, "the uplink is not attached")
        return self.link.call(lambda: icmp.echo(dst, msg))

    def _udp(self) -> UdpRelay:
        if self.udp is None:
            raise OSError(errno.ENETUNREACH, "the uplink is not attached")
        return self.udp

    def routable(self, ip: str) -> bool:
        """Whether the stack has a route (and an address) for ip now. Read without the loop's
        thread: a hint (the stack's own connect decides), so a plain connect fails before the
        guest's socket is touched, as Linux's does."""
        try:
            return self.stack.source_address(aton(ip)) is not None
        except (ValueError, RuntimeError):
            return True

    def listen(self, port: int) -> None:
        """The guest listens on 0.0.0.0:port: so does the stack (if the port is free there)."""
        if port not in self.listening_ports:
            self.link.call(lambda: self._listen(port))

    def names_of(self, ino: int) -> Names | None:
        with self._lock:
            return self._names.get(ino)

    def set_names(self, ino: int, names: Names) -> None:
        if self.on_names is not None:
            self.on_names(ino, names)
            return
        with self._lock:
            self._names[ino] = names
            self._names.move_to_end(ino)
            while len(self._names) > _MAX_NAMES:
                self._names.popitem(last=False)

    def drop_names(self, ino: int) -> None:
        if self.on_names is not None:
            self.on_names(ino, None)
            return
        with self._lock:
            self._names.pop(ino, None)

    # ---- outbound (the loop's thread) ----------------------------------------------------------
    def _connect(self, guest: Addr, remote: Addr, ino: int) -> None:
        tcp = self.stack.tcp_socket()
        try:
            tcp.connect(remote[0], remote[1], self.link.now())
        except OSError:
            tcp.close(self.link.now())
            raise
        old = self._pending.pop(guest, None)
        if old is not None:
            old.tcp.abort(self.link.now())
        out = self._pending[guest] = _Outbound(tcp, guest, ino)
        local = tcp.sockname
        assert local is not None
        self.set_names(ino, Names(local, remote, self.hold_address))
        tcp.on_event = lambda _s: self.link.soon(lambda: self._outbound_event(out))
        self.counters["outbound"] += 1

    def _outbound_event(self, out: _Outbound) -> None:
        if self._pending.get(out.guest) is not out or self.hold is None:
            return
        tcp = out.tcp
        if tcp.state in _ESTABLISHED:
            del self._pending[out.guest]
            assert self.hold is not None
            try:
                host = self.hold.answer(out.guest)
            except OSError:                       # the guest socket is gone
                tcp.abort(self.link.now())
                self.drop_names(out.ino)
                return
            self._bridge(host, tcp)
        elif tcp.state == State.CLOSED:
            del self._pending[out.guest]
            code = tcp.take_error() or errno.ECONNREFUSED
            self.counters["outbound_failed"] += 1
            self.drop_names(out.ino)
            assert self.hold is not None
            self.hold.refuse(out.guest, code)     # a timeout: the guest's own timer says it
            tcp.close(self.link.now())

    # ---- inbound -------------------------------------------------------------------------------
    def _listen(self, port: int) -> None:
        if port in self._listeners:
            return
        lst = self.stack.tcp_socket()
        try:
            lst.bind(0, port)
            lst.listen(128)
        except OSError:
            lst.close(self.link.now())
            return
        lst.on_event = lambda _s: self.link.soon(lambda: self._accept(lst, port))
        self._listeners[port] = lst
        self.listening_ports = frozenset(self._listeners)

    def _accept(self, lst: TcpSocket, port: int) -> None:
        while lst.state == State.LISTEN and (child := lst.accept()) is not None:
            self._ring(child, port)

    def _ring(self, child: TcpSocket, port: int) -> None:
        """Bring an accepted stack connection to the guest's listener on port."""
        remote = child.peername
        assert remote is not None
        try:
            bell = ring(remote, port)
        except OSError:
            child.abort(self.link.now())          # nothing listens: the remote sees a reset
            self.counters["inbound_refused"] += 1
            return
        self.counters["inbound"] += 1
        self._bridge(bell, child, connecting=True)

    def _bridge(self, host: _socket.socket, tcp: TcpSocket, *, connecting: bool = True) -> None:
        b = Bridge(self.link, host, tcp, connecting=connecting, on_done=self._bridges.discard)
        self._bridges.add(b)
