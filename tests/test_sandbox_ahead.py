"""A sandbox built ahead (linuxabi/ahead.py, a warm spare's): the run that asks for what was
built takes it, with its audit log written only then; any other run gets a sandbox of its
own, and the one built ahead leaves nothing behind."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from caps.audit import verify
from caps.policy import DEFAULT_POLICY_TOML
from linuxabi import ahead
from linuxabi.api import Sandbox, SandboxConfig
from vfs.scratch import default_parent as scratch_parent


@pytest.fixture
def made(image_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox built ahead on ``image_copy``; default audit logs go under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ahead.make(image_copy)
    sandbox = ahead._ahead[0]
    yield sandbox
    ahead.discard()


def _audit_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*.log"))


def test_a_run_that_asks_for_what_was_built_takes_it(made: Sandbox, image_copy: Path, tmp_path: Path) -> None:
    assert _audit_files(tmp_path) == []  # held: nothing written while nobody has asked
    time.sleep(1.2)
    box = ahead.take(SandboxConfig(root=image_copy, env={"X": "1"}, cwd="/tmp"))
    assert box is made and ahead._ahead == []
    assert box.run(["sh", "-c", 'test "$X" = 1 && test "$(pwd)" = /tmp && cat /proc/uptime > /tmp/u && '
                    'read up idle < /tmp/u && test "${up%%.*}" = 0']) == 0  # its uptime counts from its run
    logs = _audit_files(tmp_path)
    assert logs == [box.audit_path]
    records = [json.loads(line) for line in box.audit_path.read_bytes().splitlines()]
    assert [r["event"] for r in records].count("grant") == len(box.cspace)
    assert records[-1]["event"] == "exec"
    assert verify(box.audit_path).ok


def test_its_audit_log_goes_where_the_run_says(made: Sandbox, image_copy: Path, tmp_path: Path) -> None:
    box = ahead.take(SandboxConfig(root=image_copy, audit=str(tmp_path / "mine.log")))
    assert box is made
    assert box.run(["cat", "/etc/passwd"]) == 0
    events = [json.loads(line)["event"] for line in (tmp_path / "mine.log").read_bytes().splitlines()]
    assert events == ["grant"] * len(box.cspace) + ["exec"]
    assert _audit_files(tmp_path) == []


@pytest.mark.parametrize("differs", ["hostname", "policy", "audit level", "root", "root changed"])
def test_another_run_gets_its_own_and_the_one_built_ahead_leaves_nothing(
        made: Sandbox, image_copy: Path, tmp_path: Path, default_image: Path, differs: str) -> None:
    config = SandboxConfig(root=image_copy)
    if differs == "hostname":
        config.hostname = "other"
    elif differs == "policy":
        policy = tmp_path / "p.toml"
        policy.write_text(DEFAULT_POLICY_TOML)  # the same grants, but a file of the run's
        config.policy = str(policy)
    elif differs == "audit level":
        config.audit_level = "verbose"  # (the sandbox's guard knows its level from the start)
    elif differs == "root":
        config.root = default_image
    else:
        (image_copy / "new-file").write_text("")  # the image is not what was read ahead
    scratch = made.vfs.scratch.path
    box = ahead.take(config)
    assert box is not made and ahead._ahead == []
    assert not os.path.exists(scratch)
    assert box.run(["hostname"]) == 0
    assert _audit_files(tmp_path) == [box.audit_path]  # the run's own log only


def test_a_spare_that_ends_unused_leaves_no_log_and_no_scratch_directory(tmp_path: Path) -> None:
    """A server's idle spare builds a sandbox ahead; stopped before any run, it removes it."""
    from test_warm_server import Server, _children, _wait_gone

    parent = scratch_parent()
    before = set(os.listdir(parent))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    server = Server(tmp_path / "server.sock", env=env)
    try:
        deadline = time.monotonic() + 30
        while not (new := set(os.listdir(parent)) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(n.startswith("linuxabi-vfs-") for n in new)  # the spare's sandbox, built ahead
        spares = _children(server.proc.pid)
    finally:
        server.stop()
    assert _wait_gone(lambda: [p for p in spares if os.path.exists(f"/proc/{p}")]) == []
    assert {n for n in set(os.listdir(parent)) - before if n.startswith("linuxabi-vfs-")} == set()
    assert _audit_files(tmp_path) == []


def test_the_exit_code_is_told_before_the_sandbox_is_taken_down(image_copy: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandbox.on_exit_code (what a warm server's child sends its client): the guest's code, while
    the sandbox still stands; nothing for a program that could not be run (that is an error)."""
    from linuxabi.api import ProgramNotRunnable

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    box = Sandbox(SandboxConfig(root=image_copy))
    scratch = box.vfs.scratch.path
    told: list[tuple[int, bool]] = []
    box.on_exit_code = lambda code: told.append((code, os.path.isdir(scratch)))
    assert box.run(["sh", "-c", "exit 7"]) == 7
    assert told == [(7, True)] and not os.path.exists(scratch)
    box = Sandbox(SandboxConfig(root=image_copy))
    box.on_exit_code = lambda code: told.append((code, True))
    with pytest.raises(ProgramNotRunnable):
        box.run(["/no/such/program"])
    assert told == [(7, True)]


def test_with_a_published_port_the_exit_code_waits_until_the_port_is_free(
        image_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's next run may publish the same port: the code is told once it is free."""
    import socket

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def port_free() -> bool:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    box = Sandbox(SandboxConfig(root=image_copy, publish=[f"127.0.0.1:{port}:8080"]))
    told: list[tuple[int, bool]] = []
    box.on_exit_code = lambda code: told.append((code, port_free()))
    assert box.run(["sh", "-c", "exit 5"]) == 5
    assert told == [(5, True)]
