"""One network interface's stack: Ethernet, ARP, IPv4, ICMP, UDP and TCP glued together.

Sans-IO: frames come in through `input(frame, now, hdr)`, timers run in `poll(now)`, frames to
send pile up for `take_output()`, and `next_deadline()` says when `poll` is next due. Nothing
here reads a clock or touches a device; every malformed frame is dropped and counted in
`counters` (rx_packets == rx_accepted + total_drops), never raised. An interface set up with
`start_dhcp` takes its address, netmask and default gateway from the lease (dhcp_agent.py).
"""
from __future__ import annotations

import errno
import random
from collections import deque
from typing import Any, Final

from . import arp, icmp, ipv4
from .counters import Counters
from .dhcp import DhcpClient
from .dhcp_agent import DhcpAgent
from .ethernet import (BROADCAST, ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ZERO_MAC,
                       header, parse_mac)
from .ipv4 import (IP_DF, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, LIMITED_BROADCAST, Ipv4Header, aton,
                   is_loopback, is_multicast, prefix_mask)
from .ping import PingSocket
from .route import RoutingTable
from .stats import stack_stats
from .tcp import TcpSocket
from .tcp_layer import TcpLayer
from .udp import UdpLayer, UdpSocket
from .virtio.net_hdr import PLAIN, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VirtioNetHdr

_CSUM_DONE: Final = VIRTIO_NET_HDR_F_DATA_VALID | VIRTIO_NET_HDR_F_NEEDS_CSUM
LOOPBACK: Final = 0x7F000001
_ALL_HOSTS: Final = 0xE0000001


class Stack:
    def __init__(self, mac: bytes | str, *, mtu: int = 1500, seed: int = 0, tx_csum: bool = False,
                 tso: bool = False, arp_timeout: float = 60.0, icmp_rate: float = 1000.0,
                 icmp_burst: int = 50, name: str = "") -> None:
        self.mac = parse_mac(mac) if isinstance(mac, str) else bytes(mac)
        self.mtu, self.name = mtu, name
        self.tx_csum, self.tso = tx_csum, tso      # offloads the NIC performs for us
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.addr = self.netmask = self.bcast = 0
        self._prefix_len = 0
        self.routes = RoutingTable()
        self.arp: arp.ArpCache[tuple[VirtioNetHdr, bytes]] = arp.ArpCache(timeout=arp_timeout)
        self.reassembler = ipv4.Reassembler()
        self.udp = UdpLayer(self)
        self.tcp = TcpLayer(self)
        self._pings: dict[int, PingSocket] = {}
        self._out: list[tuple[VirtioNetHdr, bytes]] = []
        self._loop: deque[tuple[VirtioNetHdr, bytes]] = deque()
        self._ident = self.rng.randrange(1 << 16)
        self._icmp_rate, self._icmp_burst = icmp_rate, icmp_burst
        self._icmp_tokens, self._icmp_stamp = float(icmp_burst), 0.0
        self.now = 0.0
        self.dns: list[int] = []
        self.dhcp: DhcpAgent | None = None

    # -- configuration
    def set_address(self, addr: str | int, prefix_len: int, now: float) -> None:
        """Assign the interface address, add its connected route, announce it (gratuitous ARP)."""
        a = aton(addr)
        if self.addr:
            self.routes.remove(self.addr & self.netmask, self._prefix_len)
        self.addr, self._prefix_len = a, prefix_len
        self.netmask = prefix_mask(prefix_len)
        self.bcast = (a | ~self.netmask) & 0xFFFFFFFF if prefix_len < 31 else LIMITED_BROADCAST
        self.routes.add(a, prefix_len)
        self.now = now
        self._emit(PLAIN, header(BROADCAST, self.mac, ETH_P_ARP)
                   + arp.build(arp.ARP_REQUEST, self.mac, a, ZERO_MAC, a))
        self.counters.events["arp_gratuitous"] += 1

    def set_gateway(self, gateway: str | int) -> None:
        self.routes.set_default(aton(gateway))

    def clear_address(self) -> None:
        """Forget the address, its connected route and the default route (a lost lease)."""
        if self.addr:
            self.routes.remove(self.addr & self.netmask, self._prefix_len)
        self.routes.remove(0, 0)
        self.addr = self.netmask = self.bcast = 0
        self._prefix_len = 0
        self.counters.events["address_cleared"] += 1

    @property
    def prefix_len(self) -> int:
        return self._prefix_len

    def start_dhcp(self, now: float, **client_options: object) -> DhcpAgent:
        """Configure the interface by DHCP: address, netmask and gateway follow the lease."""
        if self.dhcp is None:
            client = DhcpClient(self.mac, seed=self.rng.getrandbits(32), **client_options)  # type: ignore[arg-type]
            self.dhcp = DhcpAgent(self, client)
        self.now = now
        self.dhcp.start(now)
        return self.dhcp

    def stats(self) -> dict[str, Any]:
        """Counters, drops by reason and by class, TCP connections, the lease: one plain dict."""
        return stack_stats(self)

    # -- sockets
    def udp_socket(self) -> UdpSocket:
        return self.udp.socket()

    def tcp_socket(self) -> TcpSocket:
        return self.tcp.socket()

    def ping_socket(self, ident: int | None = None) -> PingSocket:
        if ident is None:
            if len(self._pings) >= 0xFFFF:
                raise OSError(errno.EAGAIN, "no ICMP identifiers left")
            ident = self.rng.randrange(1, 1 << 16)
            while ident in self._pings:
                ident = ident % 0xFFFF + 1
        elif ident in self._pings:
            raise OSError(errno.EADDRINUSE, "identifier in use")
        s = self._pings[ident] = PingSocket(self, ident)
        return s

    # -- address predicates the protocol layers use
    def is_local(self, a: int) -> bool:
        return (a == self.addr and a != 0) or is_loopback(a)

    def is_broadcast(self, a: int) -> bool:
        return a == LIMITED_BROADCAST or (a == self.bcast and self.addr != 0)

    def source_address(self, dst: int) -> int | None:
        if is_loopback(dst):
            return LOOPBACK
        if dst == LIMITED_BROADCAST or self.is_local(dst):
            return self.addr or None
        return self.addr if self.addr and self.routes.lookup(dst) is not None else None

    # -- the sans-IO surface
    def input(self, frame: bytes | memoryview, now: float, hdr: VirtioNetHdr = PLAIN) -> None:
        self.now = now
        c = self.counters
        c.rx_packets += 1
        c.rx_bytes += len(frame)
        reason = self._eth_input(memoryview(frame), now, hdr)
        if reason is None:
            c.rx_accepted += 1
        else:
            c.drops[reason] += 1

    def poll(self, now: float) -> None:
        self.now = now
        while self._loop:
            vh, packet = self._loop.popleft()
            self.counters.events["loopback"] += 1
            reason = self._ip_input(memoryview(packet), now, vh, looped=True)
            if reason is not None:
                self.counters.drops[reason] += 1
        retry, failed = self.arp.poll(now)
        for ip in retry:
            self._arp_request(ip)
        for ip, items in failed:
            for _vh, packet in items:
                self.counters.tx_drops["arp_unresolved"] += 1
                self._local_error(packet, icmp.DEST_UNREACH, icmp.HOST_UNREACH)
        for h, first8 in self.reassembler.expire(now):
            self.counters.events["frag_timeouts"] += 1
            quoted = ipv4.build_header(h.src, h.dst, h.proto, h.total_len - h.hlen, h.ident,
                                       ttl=h.ttl, tos=h.tos, frag=h.frag) + first8
            self.send_icmp_error(icmp.TIME_EXCEEDED, icmp.REASSEMBLY_EXCEEDED, h, memoryview(quoted), now)
        self.tcp.poll(now)
        if self.dhcp is not None:
            self.dhcp.poll(now)

    def next_deadline(self) -> float | None:
        if self._loop:
            return self.now
        ds = [d for d in (self.arp.next_deadline(), self.reassembler.next_deadline(),
                          self.tcp.next_deadline(),
                          self.dhcp.next_deadline() if self.dhcp is not None else None)
              if d is not None]
        return min(ds) if ds else None

    def take_output(self) -> list[tuple[VirtioNetHdr, bytes]]:
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    # -- receive path
    def _eth_input(self, frame: memoryview, now: float, hdr: VirtioNetHdr) -> str | None:
        if len(frame) < ETH_HLEN:
            return "eth_truncated"
        dst = frame[:6]
        if dst != self.mac and dst != BROADCAST:
            return "eth_not_for_us"
        if frame[6] & 1:
            return "eth_bad_source"
        etype = frame[12] << 8 | frame[13]
        if etype == ETH_P_IP:
            return self._ip_input(frame[ETH_HLEN:], now, hdr)
        if etype == ETH_P_ARP:
            return self._arp_input(frame[ETH_HLEN:], now)
        if etype == ETH_P_8021Q:
            return "eth_vlan"
        if etype == ETH_P_IPV6:
            return "eth_ipv6"
        return "eth_unknown_type"

    def _arp_input(self, buf: memoryview, now: float) -> str | None:
        p = arp.parse(buf)
        if isinstance(p, str):
            return p
        if p.sha[0] & 1 or p.spa == LIMITED_BROADCAST or is_multicast(p.spa) or is_loopback(p.spa):
            return "arp_bogus_sender"
        if p.sha == self.mac:
            return "arp_own_frame"
        if self.addr and p.spa == self.addr:
            self.counters.events["arp_address_conflict"] += 1     # RFC 5227: someone has our address
            return "arp_conflict"
        for_us = self.addr != 0 and p.tpa == self.addr
        if p.spa:                                                 # 0.0.0.0: a probe, learn nothing
            for vh, packet in self.arp.learn(p.spa, p.sha, now, create=for_us):
                self._emit(vh, header(p.sha, self.mac, ETH_P_IP) + packet)
        if for_us and p.op == arp.ARP_REQUEST:
            self._emit(PLAIN, header(p.sha, self.mac, ETH_P_ARP)
                       + arp.build(arp.ARP_REPLY, self.mac, self.addr, p.sha, p.spa))
        return None

    def _ip_input(self, buf: memoryview, now: float, hdr: VirtioNetHdr, looped: bool = False) -> str | None:
        r = ipv4.parse(buf)
        if isinstance(r, str):
            return r
        h, payload = r
        dst, src = h.dst, h.src
        unicast = True
        if not ((dst == self.addr and dst) or (looped and is_loopback(dst))):
            if dst == LIMITED_BROADCAST or (dst == self.bcast and self.addr) or dst == _ALL_HOSTS:
                unicast = False
            else:
                return "ip_not_for_us"        # forwarding is off: drop, whatever the TTL
        if (src == LIMITED_BROADCAST or is_multicast(src) or (is_loopback(src) and not looped)
                or (src == 0 and h.proto != IPPROTO_UDP)):
            return "ip_martian_source"
        csum_ok = bool(hdr.flags & _CSUM_DONE)
        if h.is_fragment:
            done, why = self.reassembler.add(h, payload, now)
            if why is not None:
                return why
            if done is None:
                return None
            self.counters.events["ip_reassembled"] += 1
            h, data = done
            payload = memoryview(data)
            buf = memoryview(ipv4.build_header(h.src, h.dst, h.proto, len(data), h.ident,
                                               ttl=h.ttl, tos=h.tos, frag=0) + data)
            csum_ok = False
        proto = h.proto
        if proto == IPPROTO_TCP:
            if not unicast:
                return "tcp_not_unicast"
            return self.tcp.input(h, payload, csum_ok, now, hdr)
        if proto == IPPROTO_UDP:
            return self.udp.input(h, payload, csum_ok, now, buf[:h.total_len], unicast)
        if proto == IPPROTO_ICMP:
            return self._icmp_input(h, payload, now, unicast)
        if unicast:
            self.send_icmp_error(icmp.DEST_UNREACH, icmp.PROTO_UNREACH, h, buf[:h.total_len], now)
        return "ip_unknown_protocol"

    def _icmp_input(self, h: Ipv4Header, payload: memoryview, now: float, unicast: bool) -> str | None:
        m = icmp.parse(payload)
        if isinstance(m, str):
            return m
        if m.type == icmp.ECHO_REQUEST:
            if not unicast:
                return "icmp_broadcast_echo"   # Linux's icmp_echo_ignore_broadcasts default
            self.counters.events["icmp_echo_replied"] += 1
            self.ip_output(IPPROTO_ICMP, h.dst, h.src, icmp.echo_reply(m), now, df=False)
            return None
        if m.type == icmp.ECHO_REPLY:
            sock = self._pings.get(m.rest >> 16)
            if sock is None:
                return "icmp_no_socket"
            sock._deliver(h.src, m.rest & 0xFFFF, bytes(m.body))
            return None
        if m.type in (icmp.DEST_UNREACH, icmp.TIME_EXCEEDED, icmp.PARAM_PROBLEM):
            q = icmp.parse_quote(m.body)
            if isinstance(q, str):
                return q
            if q.src != h.dst:
                return "icmp_quote_not_ours"
            self.counters.events[f"icmp_error_{m.type}_{m.code}"] += 1
            self._dispatch_error(q, m.type, m.code)
            return None
        return "icmp_unsupported_type"

    def _dispatch_error(self, q: icmp.Quote, type_: int, code: int) -> None:
        if q.proto == IPPROTO_UDP:
            self.udp.error(q, type_, code)
        elif q.proto == IPPROTO_TCP:
            self.tcp.error(q, type_, code)

    def _local_error(self, packet: bytes, type_: int, code: int) -> None:
        """Report a datagram we could not send as if an ICMP error had come back for it."""
        q = icmp.parse_quote(memoryview(packet))
        if not isinstance(q, str):
            self._dispatch_error(q, type_, code)

    # -- transmit path
    def send_icmp_error(self, type_: int, code: int, h: Ipv4Header, datagram: memoryview, now: float) -> None:
        """RFC 1122 3.2.2 / RFC 1812 4.3.2.7: never about an ICMP error, a non-first fragment,
        or a datagram from a non-unicast source; rate-limited by a token bucket."""
        if h.frag & ipv4.IP_OFFMASK or h.src == 0 or self.is_broadcast(h.src) or is_multicast(h.src):
            return
        if h.proto == IPPROTO_ICMP and (len(datagram) <= h.hlen or datagram[h.hlen] not in
                                        (icmp.ECHO_REQUEST, icmp.ECHO_REPLY)):
            return
        self._icmp_tokens = min(self._icmp_burst,
                                self._icmp_tokens + (now - self._icmp_stamp) * self._icmp_rate)
        self._icmp_stamp = now
        if self._icmp_tokens < 1:
            self.counters.events["icmp_rate_limited"] += 1
            return
        self._icmp_tokens -= 1
        src = h.dst if self.is_local(h.dst) else self.addr
        self.counters.events[f"icmp_sent_{type_}_{code}"] += 1
        self.ip_output(IPPROTO_ICMP, src, h.src, icmp.error(type_, code, datagram), now, df=False)

    def ip_output(self, proto: int, src: int, dst: int, payload: bytes, now: float, *,
                  df: bool = True, tos: int = 0, ttl: int = 64, vhdr: VirtioNetHdr = PLAIN) -> str | None:
        """Route, fragment if allowed and needed, resolve and frame one datagram. Returns a
        reason when it is dropped here (counted), None when sent or queued for ARP."""
        self._ident = (self._ident + 1) & 0xFFFF
        if self.is_local(dst):
            pkt = ipv4.build_header(src, dst, proto, len(payload), self._ident, ttl=ttl, tos=tos,
                                    frag=IP_DF if df else 0) + payload
            self._loop.append((vhdr if vhdr.flags else PLAIN, pkt))
            return None
        mac: bytes | None
        if dst == LIMITED_BROADCAST or self.is_broadcast(dst):
            next_hop, mac = dst, BROADCAST
        else:
            route = self.routes.lookup(dst)
            if route is None:
                self.counters.tx_drops["no_route"] += 1
                return "no_route"
            next_hop = route.gateway or dst
            mac = BROADCAST if next_hop == self.bcast else self.arp.lookup(next_hop, now)
        if 20 + len(payload) <= self.mtu or vhdr.gso_type:
            packets = [ipv4.build_header(src, dst, proto, len(payload), self._ident, ttl=ttl, tos=tos,
                                         frag=IP_DF if df else 0) + payload]
        elif df:
            self.counters.tx_drops["ip_too_big"] += 1
            return "ip_too_big"
        else:
            packets = ipv4.fragment(src, dst, proto, payload, self._ident, self.mtu, ttl=ttl, tos=tos)
            self.counters.events["ip_fragmented"] += 1
        for pkt in packets:
            if mac is not None:
                self._emit(vhdr, header(mac, self.mac, ETH_P_IP) + pkt)
                continue
            fresh, dropped = self.arp.enqueue(next_hop, (vhdr, pkt), now, len(pkt))
            if fresh:
                self._arp_request(next_hop)
            for _ in dropped:
                self.counters.tx_drops["arp_queue_full"] += 1
        return None

    def _arp_request(self, ip: int) -> None:
        self._emit(PLAIN, header(BROADCAST, self.mac, ETH_P_ARP)
                   + arp.build(arp.ARP_REQUEST, self.mac, self.addr, ZERO_MAC, ip))

    def _emit(self, vhdr: VirtioNetHdr, frame: bytes) -> None:
        c = self.counters
        c.tx_packets += 1
        c.tx_bytes += len(frame)
        self._out.append((vhdr, frame))
