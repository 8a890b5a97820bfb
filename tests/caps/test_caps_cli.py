"""`linuxabi policy check` and `linuxabi audit verify|show` entry points."""
from __future__ import annotations

from pathlib import Path

import pytest

from caps.audit import AuditLog
from caps.cli import audit_main, policy_check_main


def test_policy_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[filesystem]\n"/" = "rx"\n"/tmp" = "rwxcd"\n')
    assert policy_check_main([str(f)]) == 0
    assert capsys.readouterr().out == "ok: 2 rules\n"


def test_policy_check_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[filesystem]\n"/" = "rx"\n"/tmp" = "rwq"\n[network]\nconnect = ["tcp:nowhere:1"]\n')
    assert policy_check_main([str(f)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"{f}:3: ") and "unknown right 'q'" in out[0]
    assert out[1].startswith(f"{f}:5: ")


def test_policy_check_user_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert policy_check_main([str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err == f"linuxabi: {tmp_path / 'missing.toml'}: no such file\n"
    assert policy_check_main([]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def _log(path: Path) -> None:
    with AuditLog(path) as log:
        log.record("grant", cap=1, obj="/")
        log.record("deny", path=b"/etc/shadow", rights="r", errno="EACCES", reason="no capability covers it")
        log.record("bind", proto="tcp", ip="0.0.0.0", port=8080)


def test_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.log"
    _log(log)
    assert audit_main(["verify", str(log)]) == 0
    assert capsys.readouterr().out == "ok: 3 records\n"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[2])
    assert audit_main(["verify", str(log)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{log}: record 2: ") and out.count("\n") == 1


def test_audit_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.log"
    _log(log)
    assert audit_main(["show", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("#1 ") and " grant " in out[0]
    assert audit_main(["show", str(log), "--denied"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and " deny path=/etc/shadow rights=r errno=EACCES " in out[0] and 'reason="no capability covers it"' in out[0]


def test_audit_user_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_main(["verify", str(tmp_path / "none.log")]) == 2
    assert capsys.readouterr().err == f"linuxabi: {tmp_path / 'none.log'}: no such file\n"
    assert audit_main([]) == 2
    assert audit_main(["frob", "x"]) == 2
    errs = capsys.readouterr().err.splitlines()
    assert len(errs) == 2 and all(e.startswith("linuxabi: ") for e in errs)
