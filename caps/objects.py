"""Kernel-object descriptors: the *what* a capability names (its rights are the *how*).

Every descriptor is a frozen value. ``within(child, parent)`` is the narrowing order that
derivation enforces: the child names a subset of what the parent names.

Paths are guest paths as bytes, already resolved by the VFS walk: absolute, no ``.``/``..``
components, no empty components, no trailing slash (except ``/`` itself). The caps layer never
resolves anything itself — a path it has to normalise is a path it could get wrong — so a
non-normalised path is a caller bug and raises ValueError.
"""
from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Union

GUEST_NS = "guest"  # the sandbox's one guest path namespace (the mount_id of its subtrees)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def check_path(path: bytes) -> None:
    """Raise ValueError unless *path* is an absolute, normalised guest path."""
    if type(path) is not bytes:
        raise TypeError(f"guest path must be bytes, not {type(path).__name__}")
    if not path.startswith(b"/") or b"\0" in path:
        raise ValueError(f"not an absolute guest path: {path!r}")
    if path != b"/" and (path.endswith(b"/") or b"//" in path or b"/./" in path or b"/../" in path
                         or path.endswith(b"/.") or path.endswith(b"/..")):
        raise ValueError(f"guest path not normalised (resolve it in the VFS first): {path!r}")


def path_under(path: bytes, prefix: bytes) -> bool:
    """Component-wise prefix: /data is under /data and /, /data/x is under /data, /database is not."""
    if prefix == b"/":
        return True
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == 0x2F)


@dataclass(frozen=True)
class FsSubtree:
    """The subtree of guest paths at *path*, minus the subtrees at *excludes* (holes).

    Holes are how a policy's "most specific rule wins" survives as plain capabilities: the
    policy gives "/" = rwxcd a hole at "/data", and "/data" = r its own capability. Holding
    more capabilities then never means less access, and revoking or dropping the "/data"
    capability removes access to /data instead of exposing the wider "/" rule underneath.
    """

    mount_id: str
    path: bytes
    excludes: frozenset[bytes] = field(default=frozenset())

    def __post_init__(self) -> None:
        check_path(self.path)
        if not isinstance(self.excludes, frozenset):
            object.__setattr__(self, "excludes", frozenset(self.excludes))
        for hole in self.excludes:
            check_path(hole)
            if hole == self.path or not path_under(hole, self.path):
                raise ValueError(f"excluded path {hole!r} is not strictly inside {self.path!r}")

    def covers(self, path: bytes) -> bool:
        return path_under(path, self.path) and not any(path_under(path, h) for h in self.excludes)

    def within(self, other: object) -> bool:
        if not isinstance(other, FsSubtree) or other.mount_id != self.mount_id:
            return False
        if not other.covers(self.path):
            return False
        # Every hole of the parent that lies inside our subtree must be a hole of ours too
        # (or sit inside one of ours).
        for hole in other.excludes:
            if path_under(hole, self.path) and not any(path_under(hole, mine) for mine in self.excludes):
                return False
        return True

    def __str__(self) -> str:
        s = self.path.decode("utf-8", "backslashreplace")
        if self.excludes:
            s += " minus " + ",".join(sorted(h.decode("utf-8", "backslashreplace") for h in self.excludes))
        return s


ANY_PORT = range(0, 65536)


@dataclass(frozen=True)
class NetEndpoint:
    """Addresses in *network*, ports in *ports*, over *proto* ("tcp" or "udp")."""

    proto: str
    network: IPNetwork
    ports: range = ANY_PORT

    def __post_init__(self) -> None:
        if self.proto not in ("tcp", "udp", "icmp"):  # icmp: echo (ping) only; ports do not apply
            raise ValueError(f"protocol must be tcp, udp or icmp, not {self.proto!r}")
        p = self.ports
        if p.step != 1 or len(p) == 0 or p.start < 0 or p.stop > 65536:
            raise ValueError(f"bad port range {p!r}")

    @classmethod
    def parse(cls, text: str) -> "NetEndpoint":
        """``PROTO:ADDR:PORTS``: ADDR is an address or CIDR network (IPv6 in brackets); a bare
        unspecified address (0.0.0.0 or [::]) means every address of its family, as it does for
        bind. PORTS is N, N-M or *. Examples: tcp:0.0.0.0:8080, tcp:10.0.2.0/24:*,
        udp:[fd00::/8]:53, tcp:127.0.0.1:1000-2000."""
        try:
            proto, rest = text.split(":", 1)
            addr, ports_s = rest.rsplit(":", 1)
        except ValueError:
            raise ValueError(f"endpoint {text!r}: expected PROTO:ADDRESS:PORTS") from None
        if addr.startswith("[") and addr.endswith("]"):
            addr = addr[1:-1]
        elif ":" in addr:
            raise ValueError(f"endpoint {text!r}: write IPv6 addresses in brackets, e.g. [::1]")
        try:
            net = ipaddress.ip_network(addr, strict=True)
        except ValueError as e:
            raise ValueError(f"endpoint {text!r}: {e}") from None
        if "/" not in addr and net.network_address.is_unspecified:
            net = ipaddress.ip_network("0.0.0.0/0" if net.version == 4 else "::/0")
        return cls(proto.lower(), net, _parse_ports(text, ports_s))

    def matches(self, proto: str, ip: IPAddress, port: int) -> bool:
        return (proto == self.proto and ip.version == self.network.version and ip in self.network
                and port in self.ports)

    def within(self, other: object) -> bool:
        return (isinstance(other, NetEndpoint) and other.proto == self.proto
                and self.network.version == other.network.version
                and self.network.subnet_of(other.network)  # type: ignore[arg-type]
                and other.ports.start <= self.ports.start and self.ports.stop <= other.ports.stop)

    def __str__(self) -> str:
        net = str(self.network) if self.network.version == 4 else f"[{self.network}]"
        p = self.ports
        ports = "*" if p == ANY_PORT else str(p.start) if len(p) == 1 else f"{p.start}-{p.stop - 1}"
        return f"{self.proto}:{net}:{ports}"


def _parse_ports(text: str, s: str) -> range:
    try:
        if s == "*":
            return ANY_PORT
        lo, sep, hi = s.partition("-")
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise ValueError(f"endpoint {text!r}: ports must be N, N-M or *") from None
    if not (0 <= a <= b <= 65535):
        raise ValueError(f"endpoint {text!r}: ports must be within 0-65535, low to high")
    return range(a, b + 1)


def normalise_ip(ip: "str | IPAddress") -> IPAddress:
    """An address as the checks see it: IPv4-mapped IPv6 (::ffff:a.b.c.d) counts as IPv4, so a
    dual-stack socket cannot slip past an IPv4 rule."""
    if isinstance(ip, str):
        return _parsed_ip(ip)
    return _normalised(ip)


@functools.lru_cache(maxsize=1024)
def _parsed_ip(text: str) -> IPAddress:
    """(A server's clients, or a client's servers, are few addresses asked for again and again.)"""
    return _normalised(ipaddress.ip_address(text))


def _normalised(a: IPAddress) -> IPAddress:
    if a.version == 6 and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class DeviceClass:
    """Device nodes whose guest path matches an fnmatch *pattern*, e.g. /dev/nvidia*."""

    pattern: str

    def __post_init__(self) -> None:
        if not self.pattern.startswith("/"):
            raise ValueError(f"device pattern must be an absolute path: {self.pattern!r}")

    @property
    def literal(self) -> bool:
        return not _MAGIC.search(self.pattern)

    def regex(self) -> "re.Pattern[bytes]":
        # latin-1 maps bytes 1:1, so the byte pattern matches raw guest path bytes.
        return re.compile(fnmatch.translate(self.pattern).encode("latin-1"))

    def matches(self, path: bytes) -> bool:
        return self.regex().match(path) is not None

    def within(self, other: object) -> bool:
        # Pattern containment in general is a regex-inclusion problem; a literal path that the
        # parent matches, or the same pattern, is all narrowing ever needs.
        if not isinstance(other, DeviceClass):
            return False
        return self.pattern == other.pattern or (self.literal and other.matches(self.pattern.encode("latin-1")))

    def __str__(self) -> str:
        return self.pattern


@dataclass(frozen=True)
class SpawnRight:
    """May create processes (fork/clone/vfork) inside the sandbox."""

    def within(self, other: object) -> bool:
        return isinstance(other, SpawnRight)

    def __str__(self) -> str:
        return "spawn"


@dataclass(frozen=True)
class TtyRight:
    """May use the sandbox's controlling terminal."""

    def within(self, other: object) -> bool:
        return isinstance(other, TtyRight)

    def __str__(self) -> str:
        return "tty"


KernelObject = Union[FsSubtree, NetEndpoint, DeviceClass, SpawnRight, TtyRight]


def within(child: KernelObject, parent: KernelObject) -> bool:
    """True if *child* names a subset of what *parent* names."""
    return child.within(parent)
