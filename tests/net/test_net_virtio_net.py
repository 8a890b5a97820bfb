"""virtio-net: feature negotiation, the 12-byte header, and driver <-> device <-> backend
end to end (mergeable and big receive buffers, TSO and checksum offload finishing), pcap."""
from __future__ import annotations

import io
import socket
import struct

import pytest

from net.checksum import pseudo_sum, sum16, valid
from net.tap import TapBackend
from net.virtio import features as F
from net.virtio.backends import PairLink, PcapTap, PcapWriter
from net.virtio.device import DEFAULT_FEATURES, VirtioNetDevice
from net.virtio.driver import VirtioNetDriver, WANTED
from net.virtio.net_hdr import (HDR_LEN, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                VIRTIO_NET_HDR_GSO_TCPV4, VirtioNetHdr)
from net.virtio.offload import segment_tcp4
from net.virtio.ring import VIRTQ_DESC_F_NEXT

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


# -- feature negotiation

def test_negotiation_happy_path():
    dev = VirtioNetDevice(memoryview(bytearray(1 << 16)), PcapWriter(io.BytesIO(), lambda: 0.0), mac=MAC_A)
    got = F.negotiate(dev, F.VIRTIO_NET_F_MAC | F.VIRTIO_NET_F_HOST_TSO4 | F.VIRTIO_NET_F_CSUM | (1 << 60))
    assert got == F.VIRTIO_F_VERSION_1 | F.VIRTIO_NET_F_MAC | F.VIRTIO_NET_F_HOST_TSO4 | F.VIRTIO_NET_F_CSUM
    assert dev.get_status() == F.ACKNOWLEDGE | F.DRIVER | F.FEATURES_OK
    assert dev.state.negotiated == got


def test_negotiation_drops_features_missing_dependencies():
    # GUEST_TSO4 needs GUEST_CSUM, HOST_ECN needs HOST_TSO4/6, HOST_TSO4 needs CSUM
    dev = VirtioNetDevice(memoryview(bytearray(64)), PcapWriter(io.BytesIO(), lambda: 0.0), mac=MAC_A,
                          features=F.VIRTIO_F_VERSION_1 | F.VIRTIO_NET_F_GUEST_TSO4 | F.VIRTIO_NET_F_HOST_TSO4
                          | F.VIRTIO_NET_F_HOST_ECN)
    got = F.negotiate(dev, F.VIRTIO_NET_F_GUEST_TSO4 | F.VIRTIO_NET_F_HOST_TSO4 | F.VIRTIO_NET_F_HOST_ECN)
    assert got == F.VIRTIO_F_VERSION_1


def test_device_refuses_inconsistent_or_unoffered_features():
    st = F.DeviceStatus(F.VIRTIO_F_VERSION_1 | F.VIRTIO_NET_F_GUEST_TSO4 | F.VIRTIO_NET_F_GUEST_CSUM)
    for bad in (F.VIRTIO_NET_F_GUEST_TSO4 | F.VIRTIO_F_VERSION_1,          # missing GUEST_CSUM
                F.VIRTIO_NET_F_MAC | F.VIRTIO_F_VERSION_1,                # not offered
                F.VIRTIO_NET_F_GUEST_CSUM):                               # no VERSION_1
        st.reset()
        st.write_status(F.ACKNOWLEDGE)
        st.write_status(F.ACKNOWLEDGE | F.DRIVER)
        st.write_driver_features(bad)
        st.write_status(F.ACKNOWLEDGE | F.DRIVER | F.FEATURES_OK)
        assert not st.status & F.FEATURES_OK and st.negotiated == 0


def test_status_state_machine_order_and_reset():
    st = F.DeviceStatus(F.VIRTIO_F_VERSION_1)
    st.write_status(F.DRIVER)                         # DRIVER before ACKNOWLEDGE
    assert st.status == 0
    st.write_status(F.ACKNOWLEDGE)
    st.write_driver_features(F.VIRTIO_F_VERSION_1)    # too early: ignored
    assert st.driver_features == 0
    st.write_status(F.ACKNOWLEDGE | F.DRIVER_OK)      # skips DRIVER/FEATURES_OK
    assert st.status == F.ACKNOWLEDGE
    st.write_status(F.ACKNOWLEDGE | F.DRIVER)
    st.write_driver_features(F.VIRTIO_F_VERSION_1)
    st.write_status(F.ACKNOWLEDGE | F.DRIVER | F.FEATURES_OK)
    st.write_driver_features(0)                       # frozen after FEATURES_OK
    assert st.negotiated == F.VIRTIO_F_VERSION_1
    st.write_status(F.ACKNOWLEDGE)                    # clearing bits is not allowed
    assert st.status & F.FEATURES_OK
    st.write_status(st.status | F.DRIVER_OK)
    assert st.live
    st.needs_reset()
    assert not st.live
    st.write_status(0)
    assert st.status == 0 and st.negotiated == 0
    assert st.rejected_writes == 5


def test_negotiate_fails_on_legacy_device():
    dev = VirtioNetDevice(memoryview(bytearray(64)), PcapWriter(io.BytesIO(), lambda: 0.0), mac=MAC_A,
                          features=F.VIRTIO_NET_F_MAC)
    with pytest.raises(F.NegotiationError):
        F.negotiate(dev, F.VIRTIO_NET_F_MAC)
    assert dev.get_status() & F.FAILED


# -- virtio_net_hdr

def test_net_hdr_layout():
    h = VirtioNetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4 | 0x80,
                     hdr_len=0x1234, gso_size=1448, csum_start=34, csum_offset=16, num_buffers=3)
    raw = h.pack()
    assert len(raw) == HDR_LEN == 12
    assert raw[0] == 1 and raw[1] == 0x81
    assert [int.from_bytes(raw[i:i + 2], "little") for i in range(2, 12, 2)] == [0x1234, 1448, 34, 16, 3]
    assert VirtioNetHdr.unpack(raw) == h and h.gso == VIRTIO_NET_HDR_GSO_TCPV4 and h.needs_csum


# -- end to end

class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class TapPair:
    """Two TAP backends on a SOCK_SEQPACKET socketpair (a TAP keeps message boundaries the
    same way): devices on them move frames in C (net/virtio/engine.py), not in the Python model."""

    def __init__(self) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (a, b):
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.a, self.b = TapBackend("a", fd=a.detach()), TapBackend("b", fd=b.detach())

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture(params=["model", "engine"])
def make_link(request):
    """The link between two devices: a PairLink (the Python device model serves it) or a
    socketpair of TAP backends (the C engine does), for the same checks."""
    made = []

    def make(clock, **kw):
        link = PairLink(clock, **kw) if request.param == "model" else TapPair()
        made.append(link)
        return link
    make.engine = request.param == "engine"
    yield make
    for link in made:
        if isinstance(link, TapPair):
            assert link.a.engine_running          # (every test has a device on a)
            link.close()


def build(link_end, mac, *, device_features=DEFAULT_FEATURES, wanted=WANTED, **kw):
    sizes = {k: v for k, v in kw.items() if k in ("block_size", "rx_blocks", "tx_blocks")}
    mem = memoryview(bytearray(VirtioNetDriver.memory_size(**sizes)))
    dev = VirtioNetDevice(mem, link_end, mac=mac, features=device_features)
    drv = VirtioNetDriver(dev, mem, wanted=wanted, **kw)
    return dev, drv


def ipv4_tcp_frame(payload: bytes, *, seq=1000, src=0x0A000001, dst=0x0A000002, flags=0x18) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, seq, 0, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, total, 7, 0x4000, 64, 6, 0, src, dst))
    c = ~sum16(ip) & 0xFFFF
    ip[10:12] = c.to_bytes(2, "big")
    return MAC_B + MAC_A + b"\x08\x00" + bytes(ip) + tcp + payload


def tcp_ok(frame: bytes) -> bool:
    ip = frame[14:34]
    src, dst = int.from_bytes(ip[12:16], "big"), int.from_bytes(ip[16:20], "big")
    seg = frame[34:14 + int.from_bytes(ip[2:4], "big")]
    return valid(ip) and valid(seg, pseudo_sum(src, dst, 6, len(seg)))


def partial_csum(frame: bytes) -> tuple[VirtioNetHdr, bytes]:
    """What a stack hands a CSUM-capable device: the pseudo-header sum in the field."""
    buf = bytearray(frame)
    seglen = len(frame) - 34
    buf[50:52] = pseudo_sum(0x0A000001, 0x0A000002, 6, seglen).to_bytes(2, "big")
    return VirtioNetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=34, csum_offset=16), bytes(buf)


def pump(*devs):
    while any([d.poll() for d in devs]):
        pass


@pytest.mark.parametrize("wanted_b", [WANTED, WANTED & ~F.VIRTIO_NET_F_MRG_RXBUF,
                                      WANTED & ~(F.VIRTIO_NET_F_MRG_RXBUF | F.VIRTIO_F_INDIRECT_DESC)])
def test_frames_cross_intact_and_gso_passes_to_a_capable_peer(wanted_b, make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0, segment=False)
    dev_a, drv_a = build(link.a, MAC_A)
    dev_b, drv_b = build(link.b, MAC_B, wanted=wanted_b)
    assert drv_a.mac == MAC_A and drv_a.mtu == 1500
    small = [bytes([i]) * (60 + i * 97) for i in range(10)]
    for f in small:
        assert drv_a.transmit(VirtioNetHdr(), f)
    drv_a.flush()
    big_hdr, big = partial_csum(ipv4_tcp_frame(bytes(range(256)) * 200))      # 51200 payload bytes
    big_hdr = big_hdr._replace(gso_type=VIRTIO_NET_HDR_GSO_TCPV4, gso_size=1448, hdr_len=54)
    assert drv_a.transmit(big_hdr, big)
    drv_a.flush()
    got = []
    for _ in range(4):      # without indirect, 33-descriptor big buffers: only 7 fit the ring
        pump(dev_a, dev_b)
        got += drv_b.receive()
    assert [f for _, f in got[:10]] == small
    # the GSO frame arrives whole at a GUEST_TSO4 driver, with the checksum left partial
    assert len(got) == 11 and got[10][1] == big and got[10][0].gso_type == VIRTIO_NET_HDR_GSO_TCPV4
    assert dev_b.stats["rx_frames"] == 11 and not dev_b.stats["ring_errors"]


def test_tso_and_checksum_finished_for_a_plain_peer():
    clock = Clock()
    link = PairLink(clock, delay=0.0, segment=False)
    dev_a, drv_a = build(link.a, MAC_A)
    plain = F.VIRTIO_F_VERSION_1 | F.VIRTIO_NET_F_MAC
    dev_b, drv_b = build(link.b, MAC_B, wanted=plain)
    payload = bytes(range(251)) * 40                                        # 10040 bytes
    hdr, frame = partial_csum(ipv4_tcp_frame(payload, flags=0x19))          # PSH|FIN|ACK
    drv_a.transmit(hdr._replace(gso_type=VIRTIO_NET_HDR_GSO_TCPV4, gso_size=1000, hdr_len=54), frame)
    hdr2, frame2 = partial_csum(ipv4_tcp_frame(b"hello", seq=5))
    drv_a.transmit(hdr2, frame2)
    drv_a.flush()
    pump(dev_a, dev_b)
    got = drv_b.receive()
    assert len(got) == 12
    assert all(h.flags == 0 and h.gso_type == 0 for h, _ in got)           # no GUEST_CSUM: flags 0
    segs = [f for _, f in got[:11]]
    assert all(tcp_ok(f) for f, in zip(segs)) and tcp_ok(got[11][1])
    assert b"".join(f[54:] for f in segs) == payload
    seqs = [int.from_bytes(f[38:42], "big") for f in segs]
    assert seqs == [1000 + 1000 * i for i in range(11)]
    assert [f[47] for f in segs] == [0x10] * 10 + [0x19]                    # FIN/PSH only last
    assert [int.from_bytes(f[18:20], "big") for f in segs] == [7 + i for i in range(11)]


def test_a_plain_peer_behind_a_tap_gets_checksums_completed_and_no_gso(make_link):
    """The engine's part of finishing: a partial checksum is completed for a driver without
    GUEST_CSUM; a GSO frame such a driver cannot take is dropped and counted (a TAP is told
    which offloads the driver takes, so the kernel never sends one; the model cuts it up)."""
    if not make_link.engine:
        return                                  # (the model's finishing: the test above)
    link = make_link(Clock())
    dev_a, drv_a = build(link.a, MAC_A)
    dev_b, drv_b = build(link.b, MAC_B, wanted=F.VIRTIO_F_VERSION_1 | F.VIRTIO_NET_F_MAC)
    hdr, frame = partial_csum(ipv4_tcp_frame(bytes(range(251)) * 40, flags=0x19))
    drv_a.transmit(hdr._replace(gso_type=VIRTIO_NET_HDR_GSO_TCPV4, gso_size=1000, hdr_len=54), frame)
    hdr2, frame2 = partial_csum(ipv4_tcp_frame(b"hello", seq=5))
    assert not tcp_ok(frame2)
    drv_a.transmit(hdr2, frame2)
    drv_a.transmit(VirtioNetHdr(flags=VIRTIO_NET_HDR_F_DATA_VALID), frame2)
    drv_a.flush()
    pump(dev_a, dev_b)
    got = drv_b.receive()
    assert [h for h, _ in got] == [VirtioNetHdr(), VirtioNetHdr()]          # no GUEST_CSUM: flags 0
    assert tcp_ok(got[0][1]) and got[0][1][54:] == b"hello" and got[1][1] == frame2
    assert dev_b.stats["rx_bad_offload"] == 1 and dev_b.stats["rx_frames"] == 2


def test_mergeable_buffers_span_chains(make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0, segment=False)
    dev_a, drv_a = build(link.a, MAC_A)
    dev_b, drv_b = build(link.b, MAC_B, block_size=512)
    frame = bytes(range(256)) * 6                                            # 1536 bytes -> 4 buffers
    drv_a.transmit(VirtioNetHdr(), frame)
    drv_a.flush()
    dev_a.poll()
    dev_b.poll()
    # four used entries for one packet (12 + 1536 bytes in 512-byte buffers)...
    mem, lay = drv_b.mem, drv_b.rx.layout
    assert int.from_bytes(mem[lay.used_idx:lay.used_idx + 2], "little") == 4
    elems = [struct.unpack_from("<II", mem, lay.used_ring + 8 * i) for i in range(4)]
    assert [ln for _, ln in elems] == [512, 512, 512, 12]
    # ...and num_buffers=4 in the first buffer's header
    first = drv_b.rx._tokens[elems[0][0]][0]
    assert VirtioNetHdr.unpack(mem, first).num_buffers == 4
    assert drv_b.receive() == [(VirtioNetHdr(), frame)]
    assert drv_b.rx.in_flight == drv_b.rx.size


def test_big_packet_chains_without_mrg_use_indirect_tables(make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0, segment=False)
    dev_a, drv_a = build(link.a, MAC_A)
    dev_b, drv_b = build(link.b, MAC_B, wanted=WANTED & ~F.VIRTIO_NET_F_MRG_RXBUF, rx_blocks=340)
    # GUEST_TSO4 without MRG_RXBUF: every receive buffer must hold 65562 bytes -> 33 blocks
    assert drv_b._rx_chain_blocks == 33 and drv_b.rx.in_flight == 340 // 34
    lay = drv_b.rx.layout
    flags = int.from_bytes(drv_b.mem[lay.desc + 12:lay.desc + 14], "little")
    assert flags == 4                                                        # INDIRECT
    hdr, frame = partial_csum(ipv4_tcp_frame(b"x" * 60000))
    drv_a.transmit(hdr._replace(gso_type=VIRTIO_NET_HDR_GSO_TCPV4, gso_size=1448, hdr_len=54), frame)
    drv_a.flush()
    pump(dev_a, dev_b)
    (h, f), = drv_b.receive()
    assert f == frame and h.gso_size == 1448


def test_chained_tx_without_indirect(make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0, segment=False)
    dev_a, drv_a = build(link.a, MAC_A, wanted=WANTED & ~F.VIRTIO_F_INDIRECT_DESC, block_size=256)
    dev_b, drv_b = build(link.b, MAC_B)
    frame = bytes(range(200)) * 5
    drv_a.transmit(VirtioNetHdr(), frame)
    lay = drv_a.tx.layout
    assert int.from_bytes(drv_a.mem[lay.desc + 12:lay.desc + 14], "little") == VIRTQ_DESC_F_NEXT
    drv_a.flush()
    pump(dev_a, dev_b)
    assert drv_b.receive() == [(VirtioNetHdr(), frame)]
    drv_a.reclaim_tx()
    assert drv_a.tx.num_free == drv_a.tx.size


def test_rx_backpressure_waits_for_buffers(make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0, segment=False)
    dev_a, drv_a = build(link.a, MAC_A)
    dev_b, drv_b = build(link.b, MAC_B, rx_blocks=4)
    for i in range(10):
        drv_a.transmit(VirtioNetHdr(), bytes([i]) * 100)
    drv_a.flush()
    pump(dev_a, dev_b)
    got = []
    for _ in range(5):
        got += drv_b.receive()          # receive() reposts buffers...
        pump(dev_a, dev_b)              # ...and the device fills them
    assert [f[0] for _, f in got] == list(range(10))


def test_device_needs_reset_on_broken_ring(make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0)
    dev_a, drv_a = build(link.a, MAC_A)
    lay = drv_a.tx.layout
    drv_a.mem[lay.avail_idx:lay.avail_idx + 2] = (999).to_bytes(2, "little")   # idx jump
    assert dev_a.poll() is False
    assert dev_a.get_status() & F.DEVICE_NEEDS_RESET and drv_a.broken
    assert dev_a.stats["ring_errors"] == 1


def test_event_idx_reduces_kicks_and_interrupts(make_link):
    clock = Clock()
    link = make_link(clock, delay=0.0)
    dev_a, drv_a = build(link.a, MAC_A)
    dev_b, drv_b = build(link.b, MAC_B)
    for round_ in range(20):
        for i in range(8):
            drv_a.transmit(VirtioNetHdr(), b"z" * 80)
            drv_a.flush()              # asks after every frame; EVENT_IDX says no until polled
        pump(dev_a, dev_b)
        drv_b.receive()
        drv_a.reclaim_tx()
    assert drv_a.tx.kicks == 20 and dev_a.stats["kicks_q1"] == 20


def test_pcap_writer_format():
    clock = Clock()
    out = io.BytesIO()
    link = PairLink(clock, delay=0.0)
    writer = PcapWriter(out, clock)
    tap = PcapTap(link.a, writer)
    clock.t = 12.25
    tap.send_frame(VirtioNetHdr(), b"\x01" * 60)
    link.b.send_frame(VirtioNetHdr(), b"\x02" * 70)
    clock.t = 13.5
    assert tap.recv_frame()[1] == b"\x02" * 70
    raw = out.getvalue()
    magic, vmaj, vmin, zone, sigfigs, snap, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, vmaj, vmin, zone, linktype) == (0xA1B2C3D4, 2, 4, 0, 1)
    recs, off = [], 24
    while off < len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        recs.append((sec, usec, incl, orig, raw[off + 16:off + 16 + incl]))
        off += 16 + incl
    assert recs == [(12, 250000, 60, 60, b"\x01" * 60), (13, 500000, 70, 70, b"\x02" * 70)]


def test_segment_rejects_garbage():
    assert segment_tcp4(VirtioNetHdr(gso_type=1, gso_size=0), b"\0" * 100) is None
    assert segment_tcp4(VirtioNetHdr(gso_type=1, gso_size=100), b"\0" * 20) is None
    assert VIRTIO_NET_HDR_F_DATA_VALID == 2
