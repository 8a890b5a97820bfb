"""A signal that arrives before the supervisor has taken a translated call (the kernel then
withdraws the notification) is delivered after that call, as Linux delivers one that comes
during a call that does not block; a call that blocks is still interrupted by it.

The fault is made deterministic by putting the supervisor to sleep right after it answers the
guest's open of /tmp/arm: the guest's next call then waits, unreceived, while its timer fires.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from linuxabi.api import Sandbox, SandboxConfig
from linuxabi.host.supervisor import Supervisor
from oracle import compile_static
from syscalls.table import BY_NAME

# the path argument's index, for the calls the probe makes
_PATH_ARG = {BY_NAME[name].nr: i for name, i in (("openat", 1), ("newfstatat", 1), ("access", 0),
                                                   ("faccessat", 1), ("faccessat2", 1))}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_static(Path(__file__).with_name("signal_hold_probe.c"),
                          tmp_path_factory.mktemp("signal_hold") / "probe")


def _run_slow_after_arm(image: Path, probe: Path, mode: str, monkeypatch: pytest.MonkeyPatch,
                        capfd: pytest.CaptureFixture[str]) -> tuple[int, str, list[bytes]]:
    (image / "bin" / "signal-hold").write_bytes(probe.read_bytes())
    (image / "bin" / "signal-hold").chmod(0o755)
    served: list[bytes] = []
    serve = Supervisor._on_notification

    def recording(self: Supervisor, n) -> None:  # noqa: ANN001
        path = b""
        task = self.tasks.get(n.pid)
        if n.nr in _PATH_ARG and task is not None:
            try:
                path = task.mem.read_cstr(n.args[_PATH_ARG[n.nr]])
            except OSError:
                pass
        serve(self, n)
        if path:
            served.append(path)
        if path == b"/tmp/arm":
            time.sleep(0.3)  # the guest's timer (50 ms) fires while its next call waits

    monkeypatch.setattr(Supervisor, "_on_notification", recording)
    box = Sandbox(SandboxConfig(root=image))
    status = box.run(["/bin/signal-hold", mode])
    assert box.supervisor is not None and box.supervisor.errors == 0
    return status, capfd.readouterr().out, served


@pytest.mark.parametrize("mode, result, call", [
    # a call that does not block: no EINTR (the handler has no SA_RESTART); the handler after it
    ("stat", "ret=0 errno=0", b"/etc/passwd"),
    # a call that blocks (a FIFO with no writer), taken after the signal came: still interrupted
    ("fifo", "ret=-1 errno=EINTR", b"/tmp/fifo"),
])
def test_a_signal_that_comes_before_a_call_is_taken(
        mode: str, result: str, call: bytes, image_copy: Path, probe: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    status, out, served = _run_slow_after_arm(image_copy, probe, mode, monkeypatch, capfd)
    assert status == 0
    # one delivery, with the timer's own siginfo, and the guest's mask as it was: SIGUSR2 still
    # blocked, SIGUSR1 not left blocked by us
    assert out == f"{result} hits=1 code=SI_TIMER value=42 usr2_blocked=1 usr1_blocked=0\n"
    arm = served.index(b"/tmp/arm")
    assert served[arm:arm + 3] == [b"/tmp/arm", call, b"/tmp/in-handler"]  # the call, then the handler
