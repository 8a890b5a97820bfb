"""A sandbox built before its run is asked for: a warm server's spare builds one while it
waits (linuxabi/server.py), and the run that comes takes it if it asks for what was built.

Building one (the image's VFS, the kernel objects, the capability space from the default
policy) is ~2 ms of a warm run otherwise. Nothing of it shows outside until a run takes it:
its audit log is held in memory (caps/audit.py), its scratch directory is swept if the spare
is killed (vfs/scratch.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from syscalls.dispatch import Dispatcher

from .api import Sandbox, SandboxConfig, SandboxError

_ahead: list[Sandbox] = []
# What a taken sandbox calls with its guest's exit code (Sandbox.on_exit_code): a warm server's
# child sends it to its client.
on_exit_code: "list[Callable[[int], None]]" = []


def make(root: "str | Path | None" = None) -> None:
    """Build the sandbox the next ``take`` may give out: default options, on ``root`` (None:
    the default image)."""
    discard()
    sandbox = Sandbox(SandboxConfig(root=root), ahead=True)
    # A first path walk costs ~0.5 ms more than the next ones (the overlay's first nodes, code
    # run the first time in this process): done now, not as the run looks up its program.
    try:
        sandbox.resolve_program("sh", sandbox.config.guest_env())
    except SandboxError:  # (an image without a shell)
        pass
    _ahead.append(sandbox)


def take(config: SandboxConfig, dispatcher: Dispatcher | None = None) -> Sandbox:
    """``Sandbox(config, dispatcher=dispatcher)``: the one built ahead if it is that, else a new one."""
    sandbox = _taken(config, dispatcher)
    sandbox.on_exit_code = on_exit_code[0] if on_exit_code else None
    return sandbox


def _taken(config: SandboxConfig, dispatcher: Dispatcher | None) -> Sandbox:
    if _ahead:
        sandbox = _ahead.pop()
        try:
            if sandbox.take_on(config, dispatcher):
                return sandbox
        except BaseException:
            sandbox.discard()
            raise
        sandbox.discard()
    return Sandbox(config, dispatcher=dispatcher)


def discard() -> None:
    while _ahead:
        _ahead.pop().discard()
