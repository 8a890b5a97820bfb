"""The hash-chained audit log: writing, resuming, and verify() pinning the first bad record."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caps.audit import GENESIS, AuditError, AuditLog, format_record, show, verify
from caps.cspace import CSpace
from caps.model import CapabilityDenied
from caps.objects import FsSubtree
from caps.rights import Rights


def make_log(path: Path, n: int = 25, every: int = 10) -> list[bytes]:
    with AuditLog(path, checkpoint_every=every) as log:
        for i in range(n):
            log.record("deny" if i % 3 == 0 else "grant", i=i, path=b"/data/\xff" + str(i).encode(), ok=True)
    return path.read_bytes().splitlines(keepends=True)


def write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_valid_log_verifies(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = make_log(log)
    r = verify(log)
    assert r.ok and r.first_bad_record is None and r.records == len(lines) == 27  # + 2 checkpoints
    recs = [json.loads(x) for x in lines]
    assert [x["seq"] for x in recs] == list(range(1, 28))
    assert recs[0]["prev"] == GENESIS
    cps = [x for x in recs if x["event"] == "checkpoint"]
    assert [x["seq"] for x in cps] == [10, 20]
    assert cps[0]["details"] == {"count": 9, "head": recs[9]["prev"]}
    assert recs[1]["details"]["path"] == "/data/\udcff1"  # undecodable bytes survive


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.integers(), inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(details=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _values, max_size=4))
def test_any_details_give_a_verifiable_canonical_record(tmp_path: Path, details: dict) -> None:
    """The record line is written out by hand in canonical key order (one JSON encoding per
    record): whatever the details hold, verify() must re-encode it to the same bytes."""
    log = tmp_path / "audit.log"
    log.unlink(missing_ok=True)
    with AuditLog(log) as a:
        a.record("grant", **details)
        a.record("exec", path=b"/bin/\xfe", cap=3, cspace="sandbox")
    r = verify(log)
    assert r.ok, r.reason
    assert r.records == 2


def test_empty_log_verifies(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert verify(tmp_path / "empty").ok


def test_file_mode_and_append_only_fd(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.log")
    flags = int(open(f"/proc/self/fdinfo/{log._fd}").read().split("flags:")[1].split()[0], 8)
    assert flags & os.O_APPEND
    assert (os.stat(tmp_path / "a.log").st_mode & 0o777) == 0o600
    log.close()


@pytest.mark.parametrize("k", [1, 2, 10, 14, 27])
def test_one_byte_change_is_found(tmp_path: Path, k: int) -> None:
    log = tmp_path / "audit.log"
    lines = make_log(log)
    line = bytearray(lines[k - 1])
    i = line.index(b'"i":') + 4 if b'"i":' in line else line.index(b'"count":') + 8
    line[i] = ord("7") if line[i] != ord("7") else ord("8")
    lines[k - 1] = bytes(line)
    write(log, lines)
    r = verify(log)
    assert not r.ok and r.first_bad_record == k and "hash" in r.reason


@given(st.data())
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_one_byte_change_is_found_at_its_record(tmp_path: Path, data: st.DataObject) -> None:
    log = tmp_path / "audit.log"
    if not log.exists():
        make_log(log, n=12, every=5)
    lines = log.read_bytes().splitlines(keepends=True)
    k = data.draw(st.integers(1, len(lines)))
    line = bytearray(lines[k - 1])
    i = data.draw(st.integers(0, len(line) - 1))
    line[i] = data.draw(st.integers(0, 255).filter(lambda b: b != line[i]))
    changed = lines[:k - 1] + [bytes(line)] + lines[k:]
    bad = tmp_path / "bad.log"
    write(bad, changed)
    r = verify(bad)
    assert not r.ok and r.first_bad_record == k, (k, i, r)


@pytest.mark.parametrize("k", [1, 5, 10, 26])
def test_deleted_line_is_found(tmp_path: Path, k: int) -> None:
    log = tmp_path / "audit.log"
    lines = make_log(log)
    del lines[k - 1]
    write(log, lines)
    r = verify(log)
    assert not r.ok and r.first_bad_record == k and "sequence" in r.reason


@pytest.mark.parametrize("k", [1, 9, 10, 26])
def test_swapped_lines_are_found(tmp_path: Path, k: int) -> None:
    log = tmp_path / "audit.log"
    lines = make_log(log)
    lines[k - 1], lines[k] = lines[k], lines[k - 1]
    write(log, lines)
    r = verify(log)
    assert not r.ok and r.first_bad_record == k


def test_truncated_last_line_is_found(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = make_log(log)
    lines[-1] = lines[-1][:30]
    write(log, lines)
    r = verify(log)
    assert not r.ok and r.first_bad_record == len(lines) and "truncated" in r.reason
    with pytest.raises(AuditError, match="truncated"):
        AuditLog(log)  # refuses to extend a broken chain


def test_dropped_tail_is_visible_only_through_the_head(tmp_path: Path) -> None:
    """Known limit: whole records cut off the end leave a valid shorter chain; a saved head
    (AuditLog.head) exposes it."""
    log = tmp_path / "audit.log"
    with AuditLog(log) as a:
        for i in range(5):
            a.record("grant", i=i)
        head = a.head
    write(log, log.read_bytes().splitlines(keepends=True)[:-1])
    r = verify(log)
    assert r.ok and r.records == 4 and r.head != head


def test_resume_continues_the_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    make_log(log, n=7)
    with AuditLog(log, checkpoint_every=10) as a:
        assert a.count == 7
        for i in range(5):
            a.record("revoke", i=i)
    r = verify(log)
    assert r.ok and r.records == 13  # 7 + checkpoint at 10 + 5


def test_levels_and_events(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "n.log") as a:
        assert a.record("open", path=b"/etc/passwd") is None
        assert a.record("exec", path=b"/bin/sh") == 1
        with pytest.raises(ValueError):
            a.record("nonsense")
    with AuditLog(tmp_path / "v.log", level="verbose") as a:
        assert a.record("open", path=b"/etc/passwd") == 1
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "x.log", level="loud")


def test_cspace_writes_audit_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        a, b = CSpace("a", audit=log), CSpace("b", audit=log)
        root = a.insert(FsSubtree("guest", b"/data"), Rights.READ | Rights.GRANT)
        kid = a.derive(root, rights=Rights.READ | Rights.GRANT)
        a.grant(root, b)
        a.transfer(kid, b)
        with pytest.raises(CapabilityDenied):
            a.authorize_path(b"/etc/shadow", Rights.READ)
        a.revoke(root)
    assert verify(path).ok
    events = [r["event"] for r in show(path)]
    assert events == ["grant", "derive", "grant", "transfer", "deny", "revoke"]
    denied = list(show(path, denied_only=True))
    assert len(denied) == 1 and denied[0]["details"]["path"] == "/etc/shadow"
    assert denied[0]["details"]["errno"] == "EACCES"
    line = format_record(denied[0])
    assert line.startswith("#5 ") and " deny " in line and "path=/etc/shadow" in line


def test_a_held_log_writes_nothing_until_released_then_chains_on(tmp_path: Path) -> None:
    """A sandbox built ahead (a warm spare's) holds its log: no file until release(), which
    writes what was recorded, at the path it is given, as one chain with what follows."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    log = AuditLog(first, held=True, checkpoint_every=3)
    for i in range(4):
        assert log.record("grant", i=i, path=b"/x") is None
    assert log.is_held and not first.exists() and log.count == 0
    log.release(second)
    assert not log.is_held and not first.exists()
    assert log.record("deny", i=4) == 7  # 4 held, a checkpoint among them, one due now, this one
    log.close()
    recs = [json.loads(x) for x in second.read_bytes().splitlines()]
    assert [r["event"] for r in recs] == ["grant", "grant", "checkpoint", "grant", "grant", "checkpoint", "deny"]
    assert [r["details"].get("i") for r in recs] == [0, 1, None, 2, 3, None, 4]
    assert verify(second).ok and verify(second).records == 7


def test_a_held_log_keeps_to_its_level_and_extends_an_existing_chain_at_release(tmp_path: Path) -> None:
    log_path = tmp_path / "a.log"
    make_log(log_path, n=3)
    held = AuditLog(log_path, held=True)
    held.record("open", path=b"/etc/passwd")  # verbose-only: not written at the normal level
    held.record("exec", path=b"/bin/sh")
    held.release()
    held.close()
    recs = [json.loads(x) for x in log_path.read_bytes().splitlines()]
    assert [r["event"] for r in recs][3:] == ["exec"]
    assert recs[3]["seq"] == 4
    assert verify(log_path).ok


def test_a_release_that_cannot_open_leaves_the_log_held(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.log", held=True)
    log.record("grant", i=1)
    with pytest.raises(OSError):
        log.release(tmp_path / "missing-dir" / "a.log")
    assert log.is_held
    log.release(tmp_path / "b.log")
    log.close()
    assert verify(tmp_path / "b.log").records == 1
