"""``--net`` values (net.uplink.NetSpec) and what ``offload=`` does to the uplink's virtio-net
negotiation (a socketpair stands in for the TAP)."""
from __future__ import annotations

import socket

import pytest

import net.uplink as uplink
from net.tap import TapBackend
from net.uplink import NetSpec, Uplink
from net.virtio import features as F

OFFLOADS = (F.VIRTIO_NET_F_CSUM, F.VIRTIO_NET_F_GUEST_CSUM, F.VIRTIO_NET_F_HOST_TSO4, F.VIRTIO_NET_F_GUEST_TSO4)


@pytest.mark.parametrize("text,want", [
    ("none", NetSpec()),
    ("tap:t0", NetSpec(tap="t0")),
    ("tap:t0,offload=on", NetSpec(tap="t0")),
    ("tap:t0,offload=off", NetSpec(tap="t0", offload=False)),
    ("tap:t0,ip=10.0.0.2/16,gw=10.0.0.1,offload=off",
     NetSpec(tap="t0", ip="10.0.0.2", prefix=16, gateway="10.0.0.1", offload=False)),
    ("tap:t0,offload=off,ip=10.0.0.2", NetSpec(tap="t0", ip="10.0.0.2", offload=False)),
])
def test_parse(text: str, want: NetSpec) -> None:
    assert NetSpec.parse(text) == want


@pytest.mark.parametrize("text,why", [
    ("tap:t0,offload=no", "offload=no: expected on or off"),
    ("tap:t0,offload=", "offload=: expected on or off"),
    ("tap:t0,offload", "unknown or repeated option 'offload'"),
    ("tap:t0,offload=off,offload=on", "unknown or repeated option 'offload=on'"),
])
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        NetSpec.parse(text)


@pytest.mark.parametrize("offload", [True, False])
def test_offload_off_negotiates_no_csum_or_tso(monkeypatch: pytest.MonkeyPatch, offload: bool) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    monkeypatch.setattr(uplink, "TapBackend", lambda name: TapBackend(name, fd=a.detach()))
    u = Uplink(NetSpec.parse("tap:t0,ip=10.9.0.2/24" + ("" if offload else ",offload=off")))
    try:
        feats = u.link.nic.driver.features
        assert [bool(feats & f) for f in OFFLOADS] == [offload] * len(OFFLOADS), F.names(feats)
        assert feats & F.VIRTIO_F_VERSION_1 and feats & F.VIRTIO_NET_F_MRG_RXBUF  # the rest stays
    finally:
        u.close(drain=0)
        b.close()
