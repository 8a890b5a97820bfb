"""Split virtqueues (virtio 1.1, section 2.6) over one shared memory region.

The region (a memoryview over a bytearray or an mmap) plays guest-physical memory: addresses
in descriptors are offsets into it. `DriverQueue` is the driver's half (adds buffers, decides
kicks, collects used buffers) and `DeviceQueue` the device's half (pops available chains,
pushes used ones); each keeps only private shadow indices, everything shared lives in the
region, little-endian, at the offsets the spec gives.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Sequence

VIRTQ_DESC_F_NEXT: Final = 1
VIRTQ_DESC_F_WRITE: Final = 2
VIRTQ_DESC_F_INDIRECT: Final = 4
VIRTQ_AVAIL_F_NO_INTERRUPT: Final = 1
VIRTQ_USED_F_NO_NOTIFY: Final = 1

MAX_QUEUE_SIZE: Final = 32768
DESC_ALIGN: Final = 16  # split queue alignment, virtio 1.1 2.6
AVAIL_ALIGN: Final = 2
USED_ALIGN: Final = 4
LEGACY_QUEUE_ALIGN: Final = 4096                        # legacy interfaces put the used ring on a page

DESC: Final = struct.Struct("<QIHH")      # addr, len, flags, next
USED_ELEM: Final = struct.Struct("<II")   # id, len
U16: Final = struct.Struct("<H")

Buffer = tuple[int, int]           # (address, length) in the shared region


class VirtqueueError(Exception):
    """The other side broke the ring protocol; the device answers with DEVICE_NEEDS_RESET."""


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """True when `event_idx` lies in [old_idx, new_idx) modulo 2**16 (virtio 1.1, 2.6.7.2)."""
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def check_queue_size(size: int) -> None:
    if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
        raise ValueError(f"queue size {size} is not a power of two in 1..{MAX_QUEUE_SIZE}")


@dataclass(frozen=True, slots=True)
class SplitLayout:
    """Where the three parts of one split virtqueue live in the region."""
    size: int
    desc: int
    avail: int
    used: int

    @classmethod
    def at(cls, size: int, base: int = 0, *, legacy: bool = False) -> SplitLayout:
        """The three parts packed from `base` on, each at its alignment (or legacy page layout)."""
        check_queue_size(size)
        desc = _align(base, DESC_ALIGN)
        avail = desc + 16 * size
        used = _align(avail + 6 + 2 * size, LEGACY_QUEUE_ALIGN if legacy else USED_ALIGN)
        return cls(size, desc, avail, used)

    @classmethod
    def from_addresses(cls, size: int, desc: int, avail: int, used: int, mem_len: int) -> SplitLayout:
        """A layout the driver chose; checked as a device must before trusting it."""
        check_queue_size(size)
        lay = cls(size, desc, avail, used)
        if desc % DESC_ALIGN or avail % AVAIL_ALIGN or used % USED_ALIGN:
            raise VirtqueueError("virtqueue part misaligned")
        parts = sorted([(desc, desc + 16 * size), (avail, avail + 6 + 2 * size), (used, lay.end)])
        if parts[-1][1] > mem_len or parts[0][0] < 0:
            raise VirtqueueError("virtqueue outside shared memory")
        if parts[0][1] > parts[1][0] or parts[1][1] > parts[2][0]:
            raise VirtqueueError("virtqueue parts overlap")
        return lay

    # offsets of every field, from the spec's struct definitions
    @property
    def avail_flags(self) -> int: return self.avail
    @property
    def avail_idx(self) -> int: return self.avail + 2
    @property
    def avail_ring(self) -> int: return self.avail + 4
    @property
    def used_event(self) -> int: return self.avail + 4 + 2 * self.size
    @property
    def used_flags(self) -> int: return self.used
    @property
    def used_idx(self) -> int: return self.used + 2
    @property
    def used_ring(self) -> int: return self.used + 4
    @property
    def avail_event(self) -> int: return self.used + 4 + 8 * self.size
    @property
    def end(self) -> int: return self.used + 6 + 8 * self.size


class DriverQueue:
    """The driver's half: owns descriptor allocation and the available ring."""

    def __init__(self, mem: memoryview, layout: SplitLayout, *, event_idx: bool = False,
                 indirect: bool = False) -> None:
        self.mem, self.layout = mem, layout
        self.size, self.event_idx, self.indirect = layout.size, event_idx, indirect
        self._mask = layout.size - 1
        mem[layout.desc:layout.desc + 16 * layout.size] = bytes(16 * layout.size)
        mem[layout.avail:layout.avail + 6 + 2 * layout.size] = bytes(6 + 2 * layout.size)
        mem[layout.used:layout.end] = bytes(layout.end - layout.used)
        self._free = list(range(layout.size - 1, -1, -1))    # pop() hands out 0 first
        self._desc_at, self._avail_idx_at, self._avail_ring_at = layout.desc, layout.avail_idx, layout.avail_ring
        self._used_idx_at, self._used_ring_at, self._used_event_at = layout.used_idx, layout.used_ring, layout.used_event
        self._chains: list[list[int] | None] = [None] * layout.size
        self._tokens: list[object] = [None] * layout.size
        self._avail_idx = 0        # shadow of avail->idx
        self._kicked_idx = 0       # avail->idx when a kick was last decided
        self._last_used = 0
        self._interrupts = True
        self.kicks = 0

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def in_flight(self) -> int:
        return self.size - len(self._free)

    def add(self, out: Sequence[Buffer], inp: Sequence[Buffer], token: object,
            *, indirect_table: int | None = None) -> int | None:
        """Expose device-readable `out` then device-writable `inp` buffers as one chain.

        With `indirect_table` (an address with room for 16 bytes per buffer) the chain is
        written there and takes one ring descriptor. Returns the head, or None if full.
        """
        total = len(out) + len(inp)
        if total == 0:
            raise ValueError("empty descriptor chain")
        mem, pack = self.mem, DESC.pack_into
        bufs = [*out, *inp]
        nout = len(out)
        if indirect_table is not None:
            if not self.indirect:
                raise ValueError("VIRTIO_F_INDIRECT_DESC not negotiated")
            if not self._free:
                return None
            for i, (addr, ln) in enumerate(bufs):
                flags = (VIRTQ_DESC_F_WRITE if i >= nout else 0) | (VIRTQ_DESC_F_NEXT if i + 1 < total else 0)
                pack(mem, indirect_table + 16 * i, addr, ln, flags, i + 1 if i + 1 < total else 0)
            head = self._free.pop()
            pack(mem, self.layout.desc + 16 * head, indirect_table, 16 * total, VIRTQ_DESC_F_INDIRECT, 0)
            ids = [head]
        else:
            if len(self._free) < total:
                return None
            base = self._desc_at
            if total == 1:                       # the common chain: one buffer
                head = self._free.pop()
                ids = [head]
                addr, ln = bufs[0]
                pack(mem, base + 16 * head, addr, ln, VIRTQ_DESC_F_WRITE if nout == 0 else 0, 0)
            else:
                ids = [self._free.pop() for _ in range(total)]
                for i, (addr, ln) in enumerate(bufs):
                    last = i + 1 == total
                    flags = (VIRTQ_DESC_F_WRITE if i >= nout else 0) | (0 if last else VIRTQ_DESC_F_NEXT)
                    pack(mem, base + 16 * ids[i], addr, ln, flags, 0 if last else ids[i + 1])
                head = ids[0]
        return self._publish(head, ids, token)

    def _publish(self, head: int, ids: list[int], token: object) -> int:
        """Make the chain at `head` (descriptors `ids`) available to the device."""
        self._chains[head] = ids
        self._tokens[head] = token
        idx = self._avail_idx
        U16.pack_into(self.mem, self._avail_ring_at + 2 * (idx & self._mask), head)
        self._avail_idx = idx = (idx + 1) & 0xFFFF
        U16.pack_into(self.mem, self._avail_idx_at, idx)             # publish after the entry
        return head

    def add_one(self, addr: int, length: int, writable: bool, token: object) -> int | None:
        """``add`` of a chain of one buffer (``add(((addr, length),), (), token)``, or the
        device-writable ``add((), ((addr, length),), token)``), without its general steps: a
        receive buffer and most frames sent are one."""
        free = self._free
        if not free:
            return None
        head = free.pop()
        DESC.pack_into(self.mem, self._desc_at + 16 * head, addr, length, VIRTQ_DESC_F_WRITE if writable else 0, 0)
        return self._publish(head, [head], token)

    def kick_needed(self) -> bool:
        """Whether the buffers added since the last call need a notification to the device."""
        new, old = self._avail_idx, self._kicked_idx
        self._kicked_idx = new
        if new == old:
            return False
        if self.event_idx:
            need = vring_need_event(U16.unpack_from(self.mem, self.layout.avail_event)[0], new, old)
        else:
            need = not U16.unpack_from(self.mem, self.layout.used_flags)[0] & VIRTQ_USED_F_NO_NOTIFY
        self.kicks += need
        return need

    def get_used(self) -> tuple[object, int] | None:
        """The next used buffer as (token, bytes written by the device), or None."""
        mem, last = self.mem, self._last_used
        used_idx = U16.unpack_from(mem, self._used_idx_at)[0]
        if used_idx == last:
            return None
        if (used_idx - last) & 0xFFFF > self.size:
            raise VirtqueueError("used idx ran ahead of the ring")
        head, length = USED_ELEM.unpack_from(mem, self._used_ring_at + 8 * (last & self._mask))
        ids = self._chains[head] if head < self.size else None
        if ids is None:
            raise VirtqueueError(f"device used descriptor {head} that is not in flight")
        self._chains[head] = None
        self._free.extend(ids)
        token, self._tokens[head] = self._tokens[head], None
        self._last_used = last = (last + 1) & 0xFFFF
        if self.event_idx and self._interrupts:
            U16.pack_into(mem, self._used_event_at, last)         # interrupt me for the next one
        return token, length

    def take_used(self) -> list[tuple[object, int]]:
        """Every used buffer so far, as get_used returns them one by one (used_event is
        written once, after the last)."""
        mem, last = self.mem, self._last_used
        used_idx = U16.unpack_from(mem, self._used_idx_at)[0]
        n = (used_idx - last) & 0xFFFF
        if not n:
            return []
        if n > self.size:
            raise VirtqueueError("used idx ran ahead of the ring")
        out = []
        chains, tokens, free, mask, ring_at, size = self._chains, self._tokens, self._free, self._mask, self._used_ring_at, self.size
        unpack = USED_ELEM.unpack_from
        for _ in range(n):
            head, length = unpack(mem, ring_at + 8 * (last & mask))
            ids = chains[head] if head < size else None
            if ids is None:
                self._last_used = last
                raise VirtqueueError(f"device used descriptor {head} that is not in flight")
            chains[head] = None
            free.extend(ids)
            out.append((tokens[head], length))
            tokens[head] = None
            last = (last + 1) & 0xFFFF
        self._last_used = last
        if self.event_idx and self._interrupts:
            U16.pack_into(mem, self._used_event_at, last)         # interrupt me for the next one
        return out

    def disable_interrupts(self) -> None:
        self._interrupts = False
        if not self.event_idx:
            U16.pack_into(self.mem, self.layout.avail_flags, VIRTQ_AVAIL_F_NO_INTERRUPT)

    def enable_interrupts(self) -> bool:
        """Re-arm interrupts; True if used buffers arrived meanwhile (poll again)."""
        self._interrupts = True
        if self.event_idx:
            U16.pack_into(self.mem, self.layout.used_event, self._last_used)
        else:
            U16.pack_into(self.mem, self.layout.avail_flags, 0)
        return bool(U16.unpack_from(self.mem, self.layout.used_idx)[0] != self._last_used)


class Chain:
    """One popped descriptor chain: its head id and its readable/writable buffers."""
    __slots__ = ("head", "readable", "writable")

    def __init__(self, head: int, readable: list[Buffer], writable: list[Buffer]) -> None:
        self.head, self.readable, self.writable = head, readable, writable

    @property
    def readable_len(self) -> int:
        r = self.readable
        return r[0][1] if len(r) == 1 else sum(ln for _, ln in r)

    @property
    def writable_len(self) -> int:
        w = self.writable
        return w[0][1] if len(w) == 1 else sum(ln for _, ln in w)


class DeviceQueue:
    """The device's half: validates and pops available chains, fills the used ring."""

    def __init__(self, mem: memoryview, layout: SplitLayout, *, event_idx: bool = False,
                 indirect: bool = False) -> None:
        self.mem, self.layout = mem, layout
        self.size, self.event_idx, self.indirect = layout.size, event_idx, indirect
        self._mask = layout.size - 1
        # the layout's offsets as plain ints: they are read for every buffer
        self._avail_idx_at, self._avail_ring_at = layout.avail_idx, layout.avail_ring
        self._used_idx_at, self._used_ring_at = layout.used_idx, layout.used_ring
        self._desc_at = layout.desc
        self._used_event_at, self._avail_flags_at = layout.used_event, layout.avail_flags
        self._used_flags_at, self._avail_event_at = layout.used_flags, layout.avail_event
        self._last_avail = 0
        self._used_idx = 0
        self._signalled = 0        # used idx when an interrupt was last decided
        self.interrupts = 0

    def has_available(self) -> bool:
        return bool(U16.unpack_from(self.mem, self._avail_idx_at)[0] != self._last_avail)

    def pop(self) -> Chain | None:
        mem = self.mem
        avail_idx = U16.unpack_from(mem, self._avail_idx_at)[0]
        pending = (avail_idx - self._last_avail) & 0xFFFF
        if not pending:
            return None
        if pending > self.size:
            raise VirtqueueError(f"avail idx moved {pending} entries in a ring of {self.size}")
        head = U16.unpack_from(mem, self._avail_ring_at + 2 * (self._last_avail & self._mask))[0]
        chain = self._walk(head)
        self._last_avail = (self._last_avail + 1) & 0xFFFF
        return chain

    def unpop(self, n: int = 1) -> None:
        """Give back the last `n` popped chains (the device could not use them yet)."""
        self._last_avail = (self._last_avail - n) & 0xFFFF

    def _walk(self, head: int) -> Chain:
        mem, memlen, unpack = self.mem, len(self.mem), DESC.unpack_from
        if head >= self.size:
            raise VirtqueueError(f"head {head} out of range")
        readable: list[Buffer] = []
        writable: list[Buffer] = []
        base, limit, i, seen, in_table = self._desc_at, self.size, head, 0, False
        while True:
            addr, ln, flags, nxt = unpack(mem, base + 16 * i)
            seen += 1
            if seen > limit:
                raise VirtqueueError("descriptor loop")
            if flags & VIRTQ_DESC_F_INDIRECT:
                if not self.indirect:
                    raise VirtqueueError("indirect descriptor without VIRTIO_F_INDIRECT_DESC")
                if in_table or flags & VIRTQ_DESC_F_NEXT:
                    raise VirtqueueError("nested indirect, or INDIRECT with NEXT")
                if ln == 0 or ln % 16 or addr + ln > memlen:
                    raise VirtqueueError("bad indirect table")
                base, limit, i, seen, in_table = addr, ln // 16, 0, 0, True
                continue
            if addr + ln > memlen:
                raise VirtqueueError("buffer outside shared memory")
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append((addr, ln))
            elif writable:
                raise VirtqueueError("device-readable buffer after a device-writable one")
            else:
                readable.append((addr, ln))
            if not flags & VIRTQ_DESC_F_NEXT:
                return Chain(head, readable, writable)
            if nxt >= limit:
                raise VirtqueueError("next out of range")
            i = nxt

    def read(self, chain: Chain, skip: int = 0) -> bytes:
        """The chain's readable bytes from byte `skip` on, gathered in one copy."""
        mem, parts = self.mem, []
        for a, ln in chain.readable:
            if skip >= ln:
                skip -= ln
                continue
            parts.append(mem[a + skip:a + ln])
            skip = 0
        if len(parts) == 1:
            return bytes(parts[0])
        return b"".join(parts)

    def write(self, chain: Chain, data: bytes | memoryview, offset: int = 0) -> int:
        """Scatter `data` into the chain's writable buffers from byte `offset` on."""
        mem, pos, end = self.mem, 0, len(data)
        for a, ln in chain.writable:
            if offset >= ln:
                offset -= ln
                continue
            n = min(ln - offset, end - pos)
            mem[a + offset:a + offset + n] = data[pos:pos + n]
            pos += n
            offset = 0
            if pos == end:
                break
        return pos

    def push(self, head: int, length: int) -> None:
        mem, idx = self.mem, self._used_idx
        USED_ELEM.pack_into(mem, self._used_ring_at + 8 * (idx & self._mask), head, length)
        self._used_idx = idx = (idx + 1) & 0xFFFF
        U16.pack_into(mem, self._used_idx_at, idx)          # publish after the element

    def need_interrupt(self) -> bool:
        """Whether the buffers used since the last call need an interrupt to the driver."""
        new, old = self._used_idx, self._signalled
        self._signalled = new
        if new == old:
            return False
        if self.event_idx:
            need = vring_need_event(U16.unpack_from(self.mem, self._used_event_at)[0], new, old)
        else:
            need = not U16.unpack_from(self.mem, self._avail_flags_at)[0] & VIRTQ_AVAIL_F_NO_INTERRUPT
        self.interrupts += need
        return need

    def disable_notify(self) -> None:
        if not self.event_idx:
            U16.pack_into(self.mem, self._used_flags_at, VIRTQ_USED_F_NO_NOTIFY)

    def enable_notify(self) -> bool:
        """Ask for kicks again; True if buffers became available meanwhile (pop again)."""
        if self.event_idx:
            U16.pack_into(self.mem, self._avail_event_at, self._last_avail)
        else:
            U16.pack_into(self.mem, self._used_flags_at, 0)
        return self.has_available()
