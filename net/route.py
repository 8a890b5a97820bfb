"""The IPv4 routing table: longest-prefix match, then lowest metric."""
from __future__ import annotations

from typing import Iterator, NamedTuple

from .ipv4 import prefix_mask


class Route(NamedTuple):
    dest: int
    prefix_len: int
    gateway: int = 0          # 0: on-link (the destination is its own next hop)
    metric: int = 0

    def matches(self, addr: int) -> bool:
        return addr & prefix_mask(self.prefix_len) == self.dest


class RoutingTable:
    def __init__(self) -> None:
        self._routes: list[Route] = []        # kept most specific first

    def add(self, dest: int, prefix_len: int, gateway: int = 0, metric: int = 0) -> Route:
        if not 0 <= prefix_len <= 32:
            raise ValueError(f"bad prefix length {prefix_len}")
        r = Route(dest & prefix_mask(prefix_len), prefix_len, gateway, metric)
        self.remove(r.dest, prefix_len, gateway)
        self._routes.append(r)
        self._routes.sort(key=lambda x: (-x.prefix_len, x.metric))
        return r

    def set_default(self, gateway: int, metric: int = 0) -> Route:
        self._routes = [r for r in self._routes if r.prefix_len]
        return self.add(0, 0, gateway, metric)

    def remove(self, dest: int, prefix_len: int, gateway: int | None = None) -> None:
        self._routes = [r for r in self._routes if not (
            r.dest == dest & prefix_mask(prefix_len) and r.prefix_len == prefix_len
            and (gateway is None or r.gateway == gateway))]

    def lookup(self, addr: int) -> Route | None:
        for r in self._routes:
            if r.matches(addr):
                return r
        return None

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)
