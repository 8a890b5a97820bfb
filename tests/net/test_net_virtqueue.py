"""Split virtqueue: layout byte-for-byte against the virtio 1.1 formulas, chains, indirect
tables, 16-bit wrap-around, EVENT_IDX and flag-based notification suppression, and the
device's refusal of malformed rings."""
from __future__ import annotations

import pytest

from net.virtio.ring import (DeviceQueue, DriverQueue, SplitLayout, VirtqueueError,
                             vring_need_event)


def le(mem, off: int, size: int) -> int:
    return int.from_bytes(mem[off:off + size], "little")


def align(x: int, a: int) -> int:
    return -(-x // a) * a


def spec_offsets(n: int, base: int = 0, page: int = 0):
    """virtio 1.1 2.6: descriptor table 16*N (align 16), available ring 6+2*N (align 2),
    used ring 6+8*N (align 4; legacy: QUEUE_ALIGN 4096)."""
    desc = align(base, 16)
    avail = desc + 16 * n
    used = align(avail + 6 + 2 * n, page or 4)
    return desc, avail, used, used + 6 + 8 * n


def pair(n: int = 8, *, event_idx=False, indirect=False, memsize=1 << 20):
    mem = memoryview(bytearray(memsize))
    lay = SplitLayout.at(n)
    return (mem, lay, DriverQueue(mem, lay, event_idx=event_idx, indirect=indirect),
            DeviceQueue(mem, lay, event_idx=event_idx, indirect=indirect))


@pytest.mark.parametrize("n", [1 << k for k in range(16)])
def test_layout_matches_spec(n):
    lay = SplitLayout.at(n, base=8)
    desc, avail, used, end = spec_offsets(n, base=8)
    assert (lay.desc, lay.avail, lay.used, lay.end) == (desc, avail, used, end)
    assert lay.desc % 16 == 0 and lay.avail % 2 == 0 and lay.used % 4 == 0
    # field offsets inside the rings
    assert lay.avail_idx == avail + 2 and lay.avail_ring == avail + 4
    assert lay.used_event == avail + 4 + 2 * n
    assert lay.used_idx == used + 2 and lay.used_ring == used + 4
    assert lay.avail_event == used + 4 + 8 * n
    legacy = SplitLayout.at(n, legacy=True)
    assert legacy.used == spec_offsets(n, page=4096)[2]


@pytest.mark.parametrize("n", [0, 3, 6, 65536, 32769, 40000])
def test_bad_queue_sizes(n):
    with pytest.raises(ValueError):
        SplitLayout.at(n)


def test_from_addresses_validates():
    with pytest.raises(VirtqueueError):
        SplitLayout.from_addresses(8, 8, 200, 400, 4096)       # desc not 16-aligned
    with pytest.raises(VirtqueueError):
        SplitLayout.from_addresses(8, 0, 128, 130, 4096)       # used overlaps avail
    with pytest.raises(VirtqueueError):
        SplitLayout.from_addresses(8, 0, 128, 4064, 4096)      # used past the end
    lay = SplitLayout.from_addresses(8, 1024, 0, 64, 4096)     # any order is fine
    assert lay.end == 64 + 6 + 64


def test_chain_bytes_and_used_ring():
    mem, lay, drv, dev = pair(8)
    head = drv.add([(0x1000, 100)], [(0x2000, 200), (0x3000, 50)], "tok")
    assert head == 0
    d = lay.desc
    # desc 0 -> 1 -> 2, flags NEXT=1, WRITE=2
    assert [le(mem, d + 16 * i, 8) for i in range(3)] == [0x1000, 0x2000, 0x3000]
    assert [le(mem, d + 16 * i + 8, 4) for i in range(3)] == [100, 200, 50]
    assert [le(mem, d + 16 * i + 12, 2) for i in range(3)] == [1, 3, 2]
    assert [le(mem, d + 16 * i + 14, 2) for i in range(2)] == [1, 2]
    assert le(mem, lay.avail, 2) == 0 and le(mem, lay.avail + 2, 2) == 1
    assert le(mem, lay.avail + 4, 2) == head
    chain = dev.pop()
    assert chain.head == head
    assert chain.readable == [(0x1000, 100)] and chain.writable == [(0x2000, 200), (0x3000, 50)]
    assert dev.pop() is None
    dev.push(head, 123)
    assert le(mem, lay.used + 2, 2) == 1
    assert le(mem, lay.used + 4, 4) == head and le(mem, lay.used + 8, 4) == 123
    assert drv.get_used() == ("tok", 123)
    assert drv.get_used() is None and drv.num_free == 8


def test_ring_full_and_descriptor_reuse():
    mem, lay, drv, dev = pair(4)
    assert drv.add([(0, 1), (1, 1), (2, 1)], [], "a") is not None
    assert drv.add([(0, 1), (1, 1)], [], "b") is None          # 1 descriptor left
    assert drv.add([(0, 1)], [], "c") is not None
    for _ in range(2):
        c = dev.pop()
        dev.push(c.head, 0)
    assert {drv.get_used()[0], drv.get_used()[0]} == {"a", "c"}
    assert drv.num_free == 4


def test_scatter_gather_read_write():
    mem, lay, drv, dev = pair(8)
    mem[0x1000:0x1003] = b"abc"
    mem[0x1100:0x1004 + 0x100] = b"defg"
    drv.add([(0x1000, 3), (0x1100, 4)], [(0x2000, 2), (0x2100, 10)], None)
    c = dev.pop()
    assert dev.read(c) == b"abcdefg" and dev.read(c, 2) == b"cdefg" and dev.read(c, 7) == b""
    assert dev.write(c, b"0123456789abcdef") == 12
    assert bytes(mem[0x2000:0x2002]) == b"01" and bytes(mem[0x2100:0x210a]) == b"23456789ab"
    assert dev.write(c, b"XY", offset=3) == 2 and bytes(mem[0x2101:0x2103]) == b"XY"


@pytest.mark.parametrize("n", [1, 4, 256])
def test_index_wraparound(n):
    """More than 65536 round trips: the free-running 16-bit indices wrap, the ring keeps working."""
    mem, lay, drv, dev = pair(n)
    rounds = 65536 + 3 * n + 5
    done = 0
    token = 0
    while done < rounds:
        batch = min(n, rounds - done)
        for i in range(batch):
            assert drv.add([(i * 16, 16)], [], token + i) is not None
        for _ in range(batch):
            c = dev.pop()
            dev.push(c.head, 7)
        for i in range(batch):
            assert drv.get_used() == (token + i, 7)
        token += batch
        done += batch
    assert le(mem, lay.avail_idx, 2) == rounds & 0xFFFF
    assert le(mem, lay.used_idx, 2) == rounds & 0xFFFF
    assert drv.num_free == n


def test_vring_need_event_formula():
    # the spec's own definition, checked exhaustively on a window including the wrap
    for old in (0, 1, 65530, 65535):
        for delta in range(0, 8):
            new = (old + delta) & 0xFFFF
            for ev in range(old - 3, old + 10):
                ev &= 0xFFFF
                expect = any(((old + k) & 0xFFFF) == ev for k in range(delta))
                assert vring_need_event(ev, new, old) == expect, (ev, new, old)


def test_event_idx_kick_suppression():
    mem, lay, drv, dev = pair(16, event_idx=True)
    # fresh ring: avail_event is 0 -> the first buffer (idx 0) needs a kick
    drv.add([(0, 1)], [], 0)
    assert drv.kick_needed()
    # the device wants a kick only once the driver adds the entry at index 5
    mem[lay.avail_event:lay.avail_event + 2] = (5).to_bytes(2, "little")
    kicks = []
    for i in range(1, 10):
        drv.add([(0, 1)], [], i)
        kicks.append(drv.kick_needed())
    assert kicks == [False, False, False, False, True, False, False, False, False]
    assert drv.kicks == 2
    # the device: after draining it re-arms with avail_event = its position
    while (c := dev.pop()) is not None:
        dev.push(c.head, 0)
    assert dev.enable_notify() is False
    assert le(mem, lay.avail_event, 2) == 10


def test_event_idx_interrupt_suppression():
    mem, lay, drv, dev = pair(16, event_idx=True)
    for i in range(8):
        drv.add([(0, 1)], [], i)
    for _ in range(3):
        dev.push(dev.pop().head, 0)
    assert dev.need_interrupt()              # used_event 0 -> interrupt for the first
    drv.get_used()                           # driver writes used_event = 1
    assert le(mem, lay.used_event, 2) == 1
    drv.disable_interrupts()                 # NAPI-style polling: used_event stays put
    drv.get_used()
    drv.get_used()
    assert le(mem, lay.used_event, 2) == 1
    dev.push(dev.pop().head, 0)
    assert not dev.need_interrupt()          # idx 3 added; driver asked about idx 1
    assert drv.enable_interrupts() is True   # one arrived meanwhile: poll again
    assert le(mem, lay.used_event, 2) == 3
    drv.get_used()
    dev.push(dev.pop().head, 0)
    assert dev.need_interrupt()


def test_flag_notification_suppression():
    mem, lay, drv, dev = pair(8)
    drv.add([(0, 1)], [], 0)
    assert drv.kick_needed()
    dev.disable_notify()
    assert le(mem, lay.used_flags, 2) == 1
    drv.add([(0, 1)], [], 1)
    assert not drv.kick_needed()
    dev.enable_notify()
    drv.add([(0, 1)], [], 2)
    assert drv.kick_needed()
    drv.disable_interrupts()
    assert le(mem, lay.avail_flags, 2) == 1
    dev.push(dev.pop().head, 0)
    assert not dev.need_interrupt()
    drv.enable_interrupts()
    dev.push(dev.pop().head, 0)
    assert dev.need_interrupt()


def test_indirect_table_layout():
    mem, lay, drv, dev = pair(8, indirect=True)
    table = 0x8000
    head = drv.add([(0x1000, 12), (0x1100, 30)], [(0x2000, 64)], "ind", indirect_table=table)
    assert drv.num_free == 7                              # one ring descriptor
    d = lay.desc + 16 * head
    assert (le(mem, d, 8), le(mem, d + 8, 4), le(mem, d + 12, 2)) == (table, 48, 4)
    rows = [(le(mem, table + 16 * i, 8), le(mem, table + 16 * i + 8, 4),
             le(mem, table + 16 * i + 12, 2), le(mem, table + 16 * i + 14, 2)) for i in range(3)]
    assert rows == [(0x1000, 12, 1, 1), (0x1100, 30, 1, 2), (0x2000, 64, 2, 0)]
    c = dev.pop()
    assert c.head == head and c.readable == [(0x1000, 12), (0x1100, 30)] and c.writable == [(0x2000, 64)]
    dev.push(head, 64)
    assert drv.get_used() == ("ind", 64) and drv.num_free == 8


def _raw_desc(mem, lay, i, addr, ln, flags, nxt):
    mem[lay.desc + 16 * i:lay.desc + 16 * i + 16] = (
        addr.to_bytes(8, "little") + ln.to_bytes(4, "little") + flags.to_bytes(2, "little")
        + nxt.to_bytes(2, "little"))


def _publish(mem, lay, heads):
    for k, h in enumerate(heads):
        mem[lay.avail_ring + 2 * k:lay.avail_ring + 2 * k + 2] = h.to_bytes(2, "little")
    mem[lay.avail_idx:lay.avail_idx + 2] = len(heads).to_bytes(2, "little")


@pytest.mark.parametrize("case", ["loop", "next_range", "read_after_write", "outside",
                                  "head_range", "indirect_off", "indirect_next", "nested",
                                  "indirect_len", "idx_jump"])
def test_device_rejects_malformed(case):
    mem, lay, drv, _ = pair(8)
    indirect = case.startswith(("indirect_next", "nested", "indirect_len"))
    dev = DeviceQueue(mem, lay, indirect=indirect)
    head = 0
    if case == "loop":
        _raw_desc(mem, lay, 0, 0, 1, 1, 1)
        _raw_desc(mem, lay, 1, 0, 1, 1, 0)
    elif case == "next_range":
        _raw_desc(mem, lay, 0, 0, 1, 1, 8)
    elif case == "read_after_write":
        _raw_desc(mem, lay, 0, 0, 1, 3, 1)
        _raw_desc(mem, lay, 1, 0, 1, 0, 0)
    elif case == "outside":
        _raw_desc(mem, lay, 0, len(mem) - 4, 8, 0, 0)
    elif case == "head_range":
        head = 9
    elif case == "indirect_off":
        _raw_desc(mem, lay, 0, 0x8000, 32, 4, 0)
    elif case == "indirect_next":
        _raw_desc(mem, lay, 0, 0x8000, 32, 5, 1)
    elif case == "nested":
        _raw_desc(mem, lay, 0, 0x8000, 16, 4, 0)
        mem[0x8000:0x8010] = (0x9000).to_bytes(8, "little") + (16).to_bytes(4, "little") + b"\4\0\0\0"
    elif case == "indirect_len":
        _raw_desc(mem, lay, 0, 0x8000, 24, 4, 0)
    if case == "idx_jump":
        mem[lay.avail_idx:lay.avail_idx + 2] = (9).to_bytes(2, "little")
    else:
        _publish(mem, lay, [head])
    with pytest.raises(VirtqueueError):
        dev.pop()


def test_driver_rejects_bogus_used_id():
    mem, lay, drv, dev = pair(8)
    drv.add([(0, 1)], [], 0)
    dev.pop()
    dev.push(5, 0)                          # never handed out
    with pytest.raises(VirtqueueError):
        drv.get_used()


def test_unpop_returns_chains():
    mem, lay, drv, dev = pair(8)
    for i in range(3):
        drv.add([], [(i * 64, 64)], i)
    a, b = dev.pop(), dev.pop()
    dev.unpop(2)
    assert dev.pop().head == a.head and dev.pop().head == b.head
