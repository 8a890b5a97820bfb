"""TCP retransmission timeout (RFC 6298) and the sequence-space comparisons everything uses."""
from __future__ import annotations

from typing import Final
M32: Final = 0xFFFFFFFF


def seq_lt(a: int, b: int) -> bool:
    """a < b in sequence space (RFC 9293 3.4): the difference, as a signed 32-bit, is negative."""
    return 0 < (b - a) & M32 < 0x80000000


def seq_le(a: int, b: int) -> bool:
    return (b - a) & M32 < 0x80000000


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance (|distance| < 2**31)."""
    d = (a - b) & M32
    return d - (1 << 32) if d & 0x80000000 else d


class RtoEstimator:
    """SRTT/RTTVAR smoothing and the backed-off RTO (RFC 6298). `min_rto` defaults to Linux's
    200 ms rather than the RFC's 1 s: guests compare against Linux."""

    K = 4
    ALPHA = 0.125   # 1/8
    BETA = 0.25     # 1/4

    def __init__(self, *, initial: float = 1.0, min_rto: float = 0.2, max_rto: float = 120.0,
                 granularity: float = 0.001) -> None:
        self.min_rto, self.max_rto, self.g = min_rto, max_rto, granularity
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = initial
        self.backoffs = 0

    def sample(self, r: float) -> None:
        r = max(r, 0.0)
        if self.srtt is None:                     # 2.2: first measurement
            self.srtt, self.rttvar = r, r / 2
        else:                                     # 2.3
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - r)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * r
        self.rto = min(self.max_rto, max(self.min_rto, self.srtt + max(self.g, self.K * self.rttvar)))
        self.backoffs = 0

    def backoff(self) -> None:                    # 5.5: double on expiry, keep until a sample
        self.rto = min(self.rto * 2, self.max_rto)
        self.backoffs += 1
