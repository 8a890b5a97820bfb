"""What the audit log says about network checks: one decision per bind, also for a dual-stack
wildcard that the IPv4 wildcard's capability covers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from caps import AuditLog, parse_policy
from linuxabi.api import build_vfs
from syscalls.kernel import Kernel

POLICY = '[filesystem]\n"/" = "rx"\n[network]\nbind = ["tcp:0.0.0.0:8080"]\n'


def _records(log: Path) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["event"] not in ("grant", "checkpoint")]


def test_a_dual_stack_bind_is_one_granted_record(image_copy: Path, tmp_path: Path) -> None:
    vfs = build_vfs(image_copy)
    kernel = Kernel(vfs)
    log = tmp_path / "audit.log"
    audit = AuditLog(log)
    try:
        kernel.install_cspace(parse_policy(POLICY).build_cspace("t", audit=audit))
        kernel.authorize_net("bind", "tcp", "::", 8080)  # covered by tcp:0.0.0.0:8080
        with pytest.raises(OSError):
            kernel.authorize_net("bind", "tcp", "::", 8081)  # covered by nothing
        audit.close()
        events = [(r["event"], r["details"].get("ip"), r["details"].get("port")) for r in _records(log)]
        assert events == [("bind", "0.0.0.0", 8080), ("deny", "0.0.0.0", 8081)]
    finally:
        vfs.close()
