"""Runs a DhcpClient on a stack: a UDP socket on 0.0.0.0:68 carries its messages, and its
lease events configure the stack's address, netmask and default gateway."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .dhcp import DhcpClient, Event, LeaseAcquired, LeaseLost, LeaseRenewed, State
from .dhcp_msg import CLIENT_PORT, SERVER_PORT
from .ipv4 import ntoa
from .udp import UdpSocket

if TYPE_CHECKING:
    from .stack import Stack


class DhcpAgent:
    def __init__(self, stack: Stack, client: DhcpClient) -> None:
        self.stack, self.client = stack, client
        self.sock: UdpSocket = stack.udp_socket()
        self.sock.broadcast = True
        self.sock.bind(0, CLIENT_PORT)
        self.sock.on_event = self._readable
        self.on_lease: Callable[[Event], None] | None = None   # for whoever wants to know
        self.history: list[Event] = []

    def start(self, now: float) -> None:
        self.client.start(now)
        self.poll(now)

    def stop(self, now: float, release: bool = True) -> None:
        if release:
            self.client.release(now)
        else:
            self.client.stop()
        self._flush(now)
        self.sock.close()

    @property
    def state(self) -> State:
        return self.client.state

    def poll(self, now: float) -> None:
        self.client.poll(now)
        self._flush(now)

    def next_deadline(self) -> float | None:
        return self.client.next_deadline()

    def _readable(self, sock: UdpSocket) -> None:
        now = self.stack.now
        while (got := sock.recvfrom()) is not None:
            data, (_src, sport) = got
            if sport == SERVER_PORT:
                self.client.input(data, now)
        self._flush(now)

    def _flush(self, now: float) -> None:
        for s in self.client.take_output():
            try:
                self.sock.sendto(s.data, (ntoa(s.dst), SERVER_PORT), now)
            except OSError:
                self.stack.counters.tx_drops["dhcp_unsendable"] += 1
        for ev in self.client.take_events():
            self._apply(ev, now)
            self.history.append(ev)
            if self.on_lease is not None:
                self.on_lease(ev)

    def _apply(self, ev: Event, now: float) -> None:
        st, ctr = self.stack, self.stack.counters.events
        if isinstance(ev, LeaseLost):
            ctr[f"dhcp_lease_lost_{ev.reason}"] += 1
            if st.addr == ev.lease.address:
                st.clear_address()
            return
        lease = ev.lease
        ctr["dhcp_lease_acquired" if isinstance(ev, LeaseAcquired) else "dhcp_lease_renewed"] += 1
        changed = isinstance(ev, LeaseRenewed) and (ev.previous.address, ev.previous.netmask) != (
            lease.address, lease.netmask)
        if changed or st.addr != lease.address or st.netmask != lease.netmask:
            st.set_address(lease.address, lease.prefix_len, now)
        if lease.routers:
            st.set_gateway(lease.routers[0])
        st.dns = list(lease.dns)
