"""Rights parsing and the kernel-object descriptors: coverage and narrowing."""
from __future__ import annotations

import ipaddress

import pytest

from caps.objects import (ANY_PORT, DeviceClass, FsSubtree, NetEndpoint, SpawnRight, TtyRight, check_path,
                          normalise_ip, within)
from caps.rights import ALL, NONE, Rights, format_rights, parse_rights

R, W, X, C, D = Rights.READ, Rights.WRITE, Rights.EXEC, Rights.CREATE, Rights.DELETE


def fs(path: bytes, *holes: bytes) -> FsSubtree:
    return FsSubtree("guest", path, frozenset(holes))


@pytest.mark.parametrize("text,expected", [
    ("rx", R | X), ("r-x", R | X), ("rwxcd", R | W | X | C | D), ("", NONE), ("none", NONE),
    ("read,write", R | W), ("connect", Rights.CONNECT), ("bl", Rights.BIND | Rights.LISTEN),
    ("RWX", R | W | X), ("all", ALL), ("g", Rights.GRANT), ("i", Rights.IOCTL), ("n", Rights.CONNECT),
])
def test_parse_rights(text: str, expected: Rights) -> None:
    assert parse_rights(text) == expected


@pytest.mark.parametrize("text", ["rq", "read,frob", "z"])
def test_parse_rights_rejects_unknown(text: str) -> None:
    with pytest.raises(ValueError, match="unknown right"):
        parse_rights(text)


def test_format_rights_round_trips() -> None:
    for r in (NONE, R | X, ALL, Rights.BIND | Rights.GRANT):
        assert parse_rights(format_rights(r)) == r


@pytest.mark.parametrize("path", [b"/", b"/a", b"/a/b", b"/.hidden", b"/a/...", b"/a/b.", b"/a..b"])
def test_check_path_accepts_normalised(path: bytes) -> None:
    check_path(path)


@pytest.mark.parametrize("path", [b"", b"a", b"a/b", b"/a/", b"//a", b"/a//b", b"/./a", b"/a/.", b"/a/..",
                                  b"/data/../etc", b"/a/./b", b"/a\0b"])
def test_check_path_rejects_unnormalised(path: bytes) -> None:
    with pytest.raises(ValueError):
        check_path(path)


def test_check_path_wants_bytes() -> None:
    with pytest.raises(TypeError):
        check_path("/a")  # type: ignore[arg-type]


def test_subtree_covers_component_wise() -> None:
    data = fs(b"/data")
    assert data.covers(b"/data") and data.covers(b"/data/x") and data.covers(b"/data/x/y")
    assert not data.covers(b"/database") and not data.covers(b"/dat") and not data.covers(b"/")
    assert fs(b"/").covers(b"/anything/at/all")


def test_subtree_holes() -> None:
    root = fs(b"/", b"/data", b"/tmp")
    assert root.covers(b"/etc/passwd") and root.covers(b"/database")
    assert not root.covers(b"/data") and not root.covers(b"/data/x") and not root.covers(b"/tmp/y")


@pytest.mark.parametrize("hole", [b"/data", b"/other", b"/database"])
def test_subtree_hole_must_be_strictly_inside(hole: bytes) -> None:
    with pytest.raises(ValueError):
        fs(b"/data", hole)


def test_subtree_within() -> None:
    assert within(fs(b"/data/x"), fs(b"/data"))
    assert within(fs(b"/data"), fs(b"/data"))
    assert not within(fs(b"/database"), fs(b"/data"))
    assert not within(fs(b"/"), fs(b"/data"))
    assert not within(FsSubtree("other", b"/data"), fs(b"/"))
    # Holes: the child must keep every parent hole that lies inside it...
    assert not within(fs(b"/"), fs(b"/", b"/data"))
    assert within(fs(b"/", b"/data"), fs(b"/", b"/data"))
    assert within(fs(b"/", b"/data/x", b"/data"), fs(b"/", b"/data/x"))  # a wider hole is fine
    assert not within(fs(b"/", b"/data/x"), fs(b"/", b"/data"))
    # ...and cannot sit inside one.
    assert not within(fs(b"/data/x"), fs(b"/", b"/data"))
    assert within(fs(b"/etc"), fs(b"/", b"/data"))
    assert not within(fs(b"/data"), NetEndpoint.parse("tcp:0.0.0.0:80"))  # type: ignore[arg-type]


@pytest.mark.parametrize("text,proto,net,ports", [
    ("tcp:0.0.0.0:8080", "tcp", "0.0.0.0/0", range(8080, 8081)),
    ("tcp:10.0.2.0/24:*", "tcp", "10.0.2.0/24", ANY_PORT),
    ("tcp:127.0.0.1:1000-2000", "tcp", "127.0.0.1/32", range(1000, 2001)),
    ("udp:[fd00::/8]:53", "udp", "fd00::/8", range(53, 54)),
    ("tcp:[::]:80", "tcp", "::/0", range(80, 81)),
    ("tcp:[::1]:80", "tcp", "::1/128", range(80, 81)),
    ("TCP:0.0.0.0/32:80", "tcp", "0.0.0.0/32", range(80, 81)),  # an explicit /32 means just 0.0.0.0
])
def test_endpoint_parse(text: str, proto: str, net: str, ports: range) -> None:
    ep = NetEndpoint.parse(text)
    assert (ep.proto, ep.network, ep.ports) == (proto, ipaddress.ip_network(net), ports)
    assert NetEndpoint.parse(str(ep)) == ep


@pytest.mark.parametrize("text", ["tcp:10.0.2.1/24:*", "sctp:1.2.3.4:80", "tcp:1.2.3.4", "tcp:::1:80",
                                  "tcp:1.2.3.4:70000", "tcp:1.2.3.4:20-10", "tcp:1.2.3.4:http",
                                  "tcp:example.com:80"])
def test_endpoint_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        NetEndpoint.parse(text)


def test_endpoint_matches_and_within() -> None:
    lan = NetEndpoint.parse("tcp:10.0.2.0/24:*")
    assert lan.matches("tcp", ipaddress.ip_address("10.0.2.9"), 443)
    assert not lan.matches("udp", ipaddress.ip_address("10.0.2.9"), 443)
    assert not lan.matches("tcp", ipaddress.ip_address("10.0.3.9"), 443)
    # A network of the other family never matches (ipaddress would compare raw integers).
    assert not NetEndpoint.parse("tcp:[::]:*").matches("tcp", ipaddress.ip_address("1.2.3.4"), 1)
    assert within(NetEndpoint.parse("tcp:10.0.2.7:80"), lan)
    assert within(NetEndpoint.parse("tcp:10.0.2.0/25:1000-2000"), lan)
    assert not within(lan, NetEndpoint.parse("tcp:10.0.2.7:80"))
    assert not within(NetEndpoint.parse("tcp:10.0.0.0/16:*"), lan)
    assert not within(NetEndpoint.parse("udp:10.0.2.7:80"), lan)
    assert not within(NetEndpoint.parse("tcp:127.0.0.1:999-1500"), NetEndpoint.parse("tcp:127.0.0.1:1000-2000"))


def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    assert normalise_ip("::ffff:10.0.2.1") == ipaddress.ip_address("10.0.2.1")
    assert normalise_ip("::1") == ipaddress.ip_address("::1")


def test_device_class() -> None:
    nv = DeviceClass("/dev/nvidia*")
    assert nv.matches(b"/dev/nvidia0") and nv.matches(b"/dev/nvidia-uvm") and not nv.matches(b"/dev/null")
    assert within(DeviceClass("/dev/nvidia0"), nv)
    assert within(nv, nv)
    assert not within(DeviceClass("/dev/nvidia[0-9]"), nv)  # only literals and equal patterns narrow
    assert not within(DeviceClass("/dev/null"), nv)
    assert not within(nv, DeviceClass("/dev/nvidia0"))
    with pytest.raises(ValueError):
        DeviceClass("nvidia*")


def test_singletons() -> None:
    assert within(SpawnRight(), SpawnRight()) and within(TtyRight(), TtyRight())
    assert not within(SpawnRight(), TtyRight())  # type: ignore[arg-type]
