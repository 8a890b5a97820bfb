"""linuxabi.hotpages: a fork finds the pages it copied from its parent, the report carries them
(merged to fit one atomic pipe write), and a later fork that populates them no longer faults
when it writes them."""
from __future__ import annotations

import mmap
import os
import resource

from forked import in_child

from linuxabi import hotpages
from linuxabi.host.libc import address_of

PAGE = hotpages.PAGE
PAGES = 600


def _shared_buffer() -> tuple[bytearray, int]:
    buf = bytearray(PAGES * PAGE + PAGE)
    for i in range(0, len(buf), PAGE):  # present in the parent, so a child shares every page
        buf[i] = 1
    first = (_address(buf) + PAGE - 1) // PAGE  # the first whole page of the buffer
    return buf, first


def _address(buf: "bytearray | mmap.mmap") -> int:
    keep, addr = address_of(buf)  # type: ignore[arg-type]
    del keep  # (a buffer stays exported, so unclosable, while its cdata lives)
    return addr


def _write_pages(buf: bytearray, first: int, pages: "range") -> None:
    base = _address(buf)
    for p in pages:
        buf[(first + p) * PAGE - base] = 2


def test_a_fork_reports_the_pages_it_wrote_and_not_the_others() -> None:
    buf, first = _shared_buffer()
    written = range(100, 300)

    def work() -> bytes:
        shared = hotpages.writable_ranges()
        _write_pages(buf, first, written)
        return hotpages.encode(hotpages.owned_runs(shared))

    runs = hotpages.decode_all(in_child(work))
    owned = {first + p for a, n in runs for p in range(a - first, a - first + n)}
    assert {first + p for p in written} <= owned
    untouched = {first + p for p in range(PAGES)} - {first + p for p in written}
    assert not owned & untouched


def test_a_report_fits_one_pipe_write_and_loses_no_page() -> None:
    runs = [(1000 + 3 * i, 1) for i in range(5000)]  # 5,000 runs: far more than fit
    data = hotpages.encode(runs)
    assert len(data) <= hotpages.REPORT_MAX
    back = hotpages.decode_all(data + data[:7])  # a second, cut-off report is not read
    covered = {p for a, n in back for p in range(a, a + n)}
    assert {a for a, _ in runs} <= covered
    assert hotpages.merge([(10, 2), (11, 5), (20, 1), (17, 1)]) == [(10, 6), (17, 1), (20, 1)]
    assert hotpages.merge([(10, 2), (13, 1)], gap=1) == [(10, 4)]


def test_only_what_is_still_privately_writable_is_populated() -> None:
    ranges = [(10 * PAGE, 20 * PAGE), (30 * PAGE, 32 * PAGE)]
    runs = [(0, 5), (8, 4), (15, 1), (19, 12), (40, 2)]
    assert hotpages.within(runs, ranges) == [(10, 2), (15, 1), (19, 1), (30, 1)]
    assert hotpages.within(runs, []) == []


def test_populated_pages_no_longer_fault_when_written() -> None:
    buf, first = _shared_buffer()
    pages = range(0, PAGES)

    def faults_writing(populate: bool) -> bytes:
        def work() -> bytes:
            if populate:
                assert hotpages.populate([(first, PAGES)]) == PAGES
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            _write_pages(buf, first, pages)
            return str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode()
        return work

    assert int(in_child(faults_writing(populate=False))) >= PAGES
    assert int(in_child(faults_writing(populate=True))) < PAGES // 10


def test_pages_no_longer_mapped_are_skipped() -> None:
    m = mmap.mmap(-1, 4 * PAGE)
    first = _address(m) // PAGE
    m.close()  # unmapped now: populating it must not fail or map anything
    assert hotpages.populate([(first, 4)]) == 0


def test_populating_stops_when_asked_and_leaves_the_rest_to_fault() -> None:
    """A spare stops copying ahead once a client waits (linuxabi/server.py): `stop` is asked
    every STOP_EVERY pages, a long run included, and what is left faults when written."""
    buf, first = _shared_buffer()
    assert PAGES > 2 * hotpages.STOP_EVERY
    asked: list[int] = []

    def stop_after_two_looks() -> bool:
        asked.append(1)
        return len(asked) >= 2

    def work() -> bytes:
        done = hotpages.populate([(first, PAGES)], stop=stop_after_two_looks)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        _write_pages(buf, first, range(PAGES))
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        return f"{done} {len(asked)} {faults}".encode()

    done, looks, faults = (int(x) for x in in_child(work).split())
    assert done == 2 * hotpages.STOP_EVERY and looks == 2
    assert faults >= PAGES - done                       # the rest was not copied ahead
    assert hotpages.populate([(first, 4)], stop=lambda: True) == 4   # the first pages always
