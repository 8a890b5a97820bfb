"""TCP congestion control: slow start and congestion avoidance (RFC 5681), fast retransmit and
NewReno fast recovery (RFC 6582); with SACK, recovery is paced by the pipe estimate of RFC 6675
instead of window inflation. The socket tells it what happened and asks what to send."""
from __future__ import annotations

from .tcp_timing import seq_le, seq_lt


def initial_window(mss: int) -> int:
    """RFC 6928: min(10*MSS, max(2*MSS, 14600))."""
    return min(10 * mss, max(2 * mss, 14600))


class NewReno:
    DUPACK_THRESHOLD = 3

    def __init__(self, mss: int, *, sack: bool = False) -> None:
        self.mss, self.sack = mss, sack
        self.cwnd = initial_window(mss)
        self.ssthresh = 1 << 30
        self.in_recovery = False
        self.recover = 0            # snd_max when recovery (or the last RTO) began
        self.recover_valid = False
        self.dupacks = 0
        self._ca_acc = 0            # bytes acked toward the next cwnd increase in CA

    def on_ack(self, acked: int, snd_una: int, flight_before: int) -> bool:
        """A cumulative ACK advanced snd_una by `acked` bytes. True: a NewReno partial ACK,
        the caller retransmits the first unacknowledged segment."""
        self.dupacks = 0
        if self.in_recovery:
            if seq_lt(snd_una, self.recover):
                if not self.sack:                       # RFC 6582 3.2 step 5: deflate
                    self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
                return True
            self.in_recovery = False                   # full ACK: step 6
            flight = max(flight_before - acked, 0)
            self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)
            return False
        if self.cwnd < self.ssthresh:                  # slow start, RFC 5681 (3.2)
            self.cwnd += min(acked, self.mss)
        else:                                          # congestion avoidance, byte counting
            self._ca_acc += acked
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += self.mss
        return False

    def on_dupack(self, snd_una: int, snd_max: int, flight: int) -> bool:
        """A duplicate ACK. True when it is the one that triggers fast retransmit."""
        self.dupacks += 1
        if self.in_recovery:
            if not self.sack:
                self.cwnd += self.mss                  # inflate: a segment left the network
            return False
        if self.dupacks != self.DUPACK_THRESHOLD:
            return False
        if self.recover_valid and not seq_le(self.recover, snd_una):
            return False                               # dupacks for data sent before an RTO
        self.enter_recovery(snd_max, flight)
        return True

    def enter_recovery(self, snd_max: int, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh if self.sack else self.ssthresh + 3 * self.mss
        self.in_recovery, self.recover, self.recover_valid = True, snd_max, True

    def on_timeout(self, snd_max: int, flight: int) -> None:
        """RFC 5681 (4): loss window of one segment; RFC 6582 4: remember snd_max."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.in_recovery, self.dupacks, self._ca_acc = False, 0, 0
        self.recover, self.recover_valid = snd_max, True
