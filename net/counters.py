"""Per-stack packet counters. Every received frame ends either accepted or dropped with a
reason, so rx_packets == rx_accepted + total_drops always holds; packets the stack itself
gives up on (no route, unresolved neighbour...) are counted apart, in tx_drops."""
from __future__ import annotations

from collections import Counter


class Counters:
    __slots__ = ("rx_packets", "rx_bytes", "rx_accepted", "tx_packets", "tx_bytes", "drops", "tx_drops",
                 "events")

    def __init__(self) -> None:
        self.rx_packets = self.rx_bytes = self.rx_accepted = 0
        self.tx_packets = self.tx_bytes = 0
        self.drops: Counter[str] = Counter()     # reason -> received frames dropped
        self.tx_drops: Counter[str] = Counter()  # reason -> outgoing packets dropped
        self.events: Counter[str] = Counter()    # everything else worth counting

    def drop(self, reason: str) -> None:
        self.drops[reason] += 1

    @property
    def total_drops(self) -> int:
        return sum(self.drops.values())

    def snapshot(self) -> dict[str, object]:
        return {"rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "rx_accepted": self.rx_accepted, "tx_packets": self.tx_packets,
                "tx_bytes": self.tx_bytes, "drops": dict(self.drops), "tx_drops": dict(self.tx_drops),
                "events": dict(self.events)}

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()})"
