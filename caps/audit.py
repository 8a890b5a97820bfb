"""The audit log: append-only, hash-chained JSON lines.

Each line is the canonical JSON (sorted keys, no spaces, ASCII) of one record:
    {"details": {...}, "event": "deny", "hash": H, "prev": P, "seq": N, "time": T}
- seq: 1-based, equal to the line number;
- prev: sha256 hex of the previous line (without its newline); 64 zeros for the first;
- hash: sha256 hex of the canonical JSON of the record without its "hash" key.
Every ``checkpoint_every``-th record is a ``checkpoint`` whose details carry the number of
records before it and the chain head (the sha256 of the line before it), so a verifier or an
external anchor can pin the log at that point.

Each record is one os.write on an O_APPEND descriptor: nothing sits in a user-space buffer, so
a crash of the supervisor loses no record it has returned from.

What the chain cannot show by itself: records cut off the END of the log (whole lines). Keep
the last head somewhere else (or compare checkpoints) to detect that; see VerifyResult.head.
"""
from __future__ import annotations

import ipaddress
import json
import os
import threading
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any, Iterator

from .digest import sha256_hex

GENESIS = "0" * 64
LEVELS = ("normal", "verbose")
# Too frequent for the normal level: file opens, and connections that stay inside the sandbox
# (its own loopback; a server's clients may connect thousands of times a second).
VERBOSE_ONLY = frozenset({"open", "connect-loopback"})
EVENTS = frozenset({"grant", "derive", "revoke", "transfer", "deny", "exec", "bind", "connect", "connect-loopback",
                    "listen", "open", "checkpoint"})


class AuditError(Exception):
    pass


def _jsonable(o: object) -> object:
    if isinstance(o, bytes):
        return os.fsdecode(o)  # surrogateescape: undecodable bytes survive as \udcXX
    if isinstance(o, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
                      ipaddress.IPv6Network, range)):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def canonical(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_jsonable)


def _canonical_flat(details: dict[str, Any]) -> str | None:
    """canonical(details) for the usual record, string keys and str/bytes/int values, built
    without a JSON encoder per call (json.dumps with options makes one each time); None for
    anything else. The same escaping function json uses, so the same text."""
    if any(type(k) is not str for k in details):
        return None
    parts = []
    for k in sorted(details):
        v = details[k]
        t = type(v)
        if t is str:
            text = _json_str(v)
        elif t is bytes:
            text = _json_str(os.fsdecode(v))
        elif t is int:
            text = int.__repr__(v)
        else:
            return None
        parts.append(f"{_json_str(k)}:{text}")
    return "{" + ",".join(parts) + "}"


def _details_text(details: dict[str, Any]) -> str:
    """The canonical JSON of a record's details."""
    text = _canonical_flat(details)
    if text is None:
        text = canonical(details)
        if any(isinstance(v, (dict, list, tuple, set, frozenset)) for v in details.values()):
            # Round-trip containers once so the stored form is exactly what verify re-encodes
            # (a nested object's keys may not be strings yet, and would sort differently).
            text = canonical(json.loads(text))
    return text


def _sha(text: str) -> str:
    return sha256_hex(text.encode("ascii"))


class AuditLog:
    def __init__(self, path: str | os.PathLike[str], level: str = "normal", *,
                 checkpoint_every: int = 1000, fsync: bool = False, held: bool = False) -> None:
        """``held``: the file is neither read nor made yet; records wait in memory until
        ``release()`` writes them (a sandbox built before anything runs in it: a warm
        server's spare, which may end without a run and must leave no log behind)."""
        if checkpoint_every < 2:
            raise ValueError("checkpoint_every must be at least 2")
        if level not in LEVELS:
            raise ValueError(f"audit level must be one of {LEVELS}, not {level!r}")
        self.path = os.fspath(path)
        self.level = level
        self.checkpoint_every = checkpoint_every
        self._fsync = fsync
        self._lock = threading.Lock()
        self._held: list[tuple[str, str]] | None = [] if held else None  # (event, details as JSON)
        self._seq, self._prev, self._fd = 0, GENESIS, -1
        if not held:
            self._open()

    def _open(self) -> None:
        self._seq, self._prev = _tail_state(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @property
    def is_held(self) -> bool:
        return self._held is not None

    def release(self, path: str | os.PathLike[str] | None = None) -> None:
        """Open the log (at ``path`` if given) and write what was recorded while held, in one
        write, each record timed now. OSError (the file) or AuditError (a broken chain to
        extend) leave it held."""
        if self._held is None:
            return
        if path is not None:
            self.path = os.fspath(path)
        self._open()
        with self._lock:
            self._append([(event, text) for event, text in self._held if self.enabled(event)])
        self._held = None

    def enabled(self, event: str) -> bool:
        return self.level == "verbose" or event not in VERBOSE_ONLY

    def record(self, event: str, **details: Any) -> int | None:
        """Append one record; returns its seq (None if the level filters the event out, or
        while the log is held)."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        if self._held is not None:
            self._held.append((event, _details_text(details)))
            return None
        if not self.enabled(event):
            return None
        with self._lock:
            self._append([(event, _details_text(details))])
            return self._seq

    def _append(self, records: list[tuple[str, str]]) -> None:
        """Write ``records`` (and the checkpoints due among them) in one write; the chain moves
        on only once they are written."""
        seq, prev = self._seq, self._prev
        lines: list[str] = []
        for event, text in records:
            if (seq + 1) % self.checkpoint_every == 0:
                checkpoint = _details_text({"count": seq, "head": prev})
                seq, prev = self._add_line(lines, seq, prev, "checkpoint", checkpoint)
            seq, prev = self._add_line(lines, seq, prev, event, text)
        if lines:
            self._write("".join(lines).encode("ascii"))
        self._seq, self._prev = seq, prev

    @staticmethod
    def _add_line(lines: list[str], prev_seq: int, prev: str, event: str, text: str) -> tuple[int, str]:
        seq = prev_seq + 1
        # The canonical JSON of the record, written out in its sorted key order: "details",
        # "event", ("hash",) "prev", "seq", "time" (event names and hashes need no escaping,
        # and json writes a float as its repr). One encoding instead of three on each exec.
        t = round(time.time(), 6)
        rest = f'"prev":"{prev}","seq":{seq},"time":{t!r}}}'
        head = f'{{"details":{text},"event":"{event}",'
        line = f'{head}"hash":"{_sha(head + rest)}",{rest}'
        lines.append(line + "\n")
        return seq, _sha(line)

    def _write(self, data: bytes) -> None:
        n = os.write(self._fd, data)
        if n != len(data):  # a short write on a regular file means the disk is full
            raise AuditError(f"{self.path}: short write ({n} of {len(data)} bytes)")
        if self._fsync:
            os.fsync(self._fd)

    @property
    def head(self) -> str:
        return self._prev

    @property
    def count(self) -> int:
        return self._seq

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail_state(path: str) -> tuple[int, str]:
    """(seq, head) of an existing log, to continue its chain; a log whose last line is cut
    (a crash mid-write, or tampering) is refused rather than silently extended."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return 0, GENESIS
            f.seek(max(0, size - (1 << 20)))  # records are far smaller than this
            tail = f.read()
    except FileNotFoundError:
        return 0, GENESIS
    if not tail.endswith(b"\n"):
        raise AuditError(f"{path}: the last record is truncated; check it with `linuxabi audit verify`")
    last = tail[:-1].rsplit(b"\n", 1)[-1].decode("ascii", "replace")
    try:
        rec = json.loads(last)
        return int(rec["seq"]), _sha(last)
    except (ValueError, KeyError, TypeError):
        raise AuditError(f"{path}: the last record is unreadable; check it with `linuxabi audit verify`") from None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_record: int | None  # 1-based line number
    reason: str
    records: int = 0              # records checked (all of them when ok)
    head: str = GENESIS           # sha256 of the last good line: compare with a saved head

    def __bool__(self) -> bool:
        return self.ok


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check every record's form, seq, hash and link to the previous line; stop at the first
    bad one. Raises OSError if the file cannot be read."""
    prev = GENESIS
    n = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            def bad(reason: str) -> VerifyResult:
                return VerifyResult(False, n, reason, n - 1, prev)

            if not raw.endswith(b"\n"):
                return bad("truncated record (no end of line)")
            try:
                line = raw[:-1].decode("ascii")
                rec = json.loads(line)
            except (UnicodeDecodeError, ValueError):
                return bad("not a valid JSON record")
            if not isinstance(rec, dict) or set(rec) != {"seq", "time", "event", "details", "prev", "hash"}:
                return bad("not an audit record (wrong fields)")
            if canonical(rec) != line:
                return bad("record altered (not in canonical form)")
            body = {k: v for k, v in rec.items() if k != "hash"}
            if rec["hash"] != _sha(canonical(body)):
                return bad("record altered (hash mismatch)")
            if rec["seq"] != n:
                return bad(f"out of sequence: seq {rec['seq']} at line {n} (a record was deleted, "
                           "inserted or moved)")
            if rec["prev"] != prev:
                return bad("chain broken: prev does not match the record before it")
            if rec["event"] == "checkpoint":
                d = rec["details"]
                if not isinstance(d, dict) or d.get("count") != n - 1 or d.get("head") != prev:
                    return bad("checkpoint does not match the chain")
            prev = _sha(line)
    return VerifyResult(True, None, "ok", n, prev)


def show(path: str | os.PathLike[str], denied_only: bool = False) -> Iterator[dict[str, Any]]:
    """The records, in order (checkpoints included unless denied_only). Raises AuditError on a
    line that is not JSON; use verify() to know whether the log is intact."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                rec = json.loads(raw)
            except ValueError:
                raise AuditError(f"record {n}: not a valid JSON record") from None
            if not isinstance(rec, dict):
                raise AuditError(f"record {n}: not an audit record")
            if denied_only and rec.get("event") != "deny":
                continue
            yield rec


_SHOW_FIRST = ("cspace", "kind", "op", "path", "proto", "ip", "port", "obj", "rights", "errno", "reason")


def format_record(rec: dict[str, Any]) -> str:
    """One human-readable line: ``#SEQ TIME EVENT key=value ...``."""
    t = rec.get("time")
    when = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
            if isinstance(t, (int, float)) else "?")
    details = rec.get("details") or {}
    parts = []
    if isinstance(details, dict):
        first = [k for k in _SHOW_FIRST if k in details]
        for k in first + sorted(k for k in details if k not in _SHOW_FIRST):
            v = details[k]
            s = v if isinstance(v, str) else json.dumps(v)
            parts.append(f"{k}={json.dumps(s) if (not s or ' ' in s or '=' in s) else s}")
    return f"#{rec.get('seq')} {when} {rec.get('event')} {' '.join(parts)}".rstrip()
