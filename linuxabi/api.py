"""The embedding API: ``Sandbox(SandboxConfig(...)).run(argv)``."""
from __future__ import annotations

import os
import stat as st
from dataclasses import dataclass, field
from pathlib import Path

from syscalls.dispatch import Dispatcher
from syscalls.kernel import Kernel
from vfs import DevFs, ImageFs, OverlayFs, TmpFs, Vfs
from vfs.procfs import ProcFs

from .host.launch import launch
from .host.supervisor import Supervisor

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(Exception):
    """A user's mistake: one line for the CLI (exit status 2)."""


class ProgramNotRunnable(SandboxError):
    """The guest program could not be executed (exit status 127 or 126, as a shell says)."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.exit_code = 127 if errno == 2 else 126


@dataclass
class SandboxConfig:
    root: str | os.PathLike[str] | None = None  # image directory; None: the built-in default image
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    hostname: str = "linuxabi"

    def guest_env(self) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "HOSTNAME": self.hostname}
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        env.update(self.env)
        return env


def build_vfs(root: Path) -> Vfs:
    """The guest's filesystem: the image under a RAM overlay, plus /tmp, /dev and /proc."""
    vfs = Vfs(OverlayFs(ImageFs(str(root))))
    ctx = vfs.new_context(b"/")
    for mnt in (b"/tmp", b"/dev", b"/proc"):
        try:
            vfs.mkdir(ctx, ctx.root, mnt, 0o1777 if mnt == b"/tmp" else 0o755)
        except FileExistsError:
            pass
    vfs.mount(b"/tmp", TmpFs())
    vfs.mount(b"/dev", DevFs())
    return vfs


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None, *, dispatcher: Dispatcher | None = None,
                 trace_denied: bool = False) -> None:
        self.config = config or SandboxConfig()
        self.trace_denied = trace_denied
        if self.config.root is None:
            from .image import default_image

            self.root = default_image()
        else:
            self.root = Path(self.config.root)
            if not self.root.is_dir():
                raise SandboxError(f"image root {self.root} is not a directory")
        self.dispatcher = dispatcher or Dispatcher()
        self.vfs = build_vfs(self.root)
        self.kernel = Kernel(self.vfs, hostname=self.config.hostname.encode())
        self.vfs.mount(b"/proc", ProcFs(self.kernel))
        self.supervisor: Supervisor | None = None

    def resolve_program(self, name: str, env: dict[str, str]) -> bytes:
        """argv[0] as the guest's shell would find it: a path, or a search of $PATH in the VFS."""
        ctx = self.vfs.new_context(self.config.cwd.encode())
        candidates = [name] if "/" in name else [f"{d or '.'}/{name}" for d in env.get("PATH", "").split(":")]
        for cand in candidates:
            try:
                s = self.vfs.stat(ctx, ctx.cwd, cand.encode())
            except OSError:
                continue
            if st.S_ISREG(s.mode) and s.mode & 0o111:
                return cand.encode()
        if "/" in name:
            return name.encode()  # let exec report the precise errno
        raise ProgramNotRunnable(f"{name}: command not found in the image", 2)

    def run(self, argv: list[str]) -> int:
        """Run ``argv`` in the sandbox; return its exit code (128+N when killed by signal N)."""
        if not argv:
            raise SandboxError("no program given")
        env = self.config.guest_env()
        try:
            self.vfs.lookup(self.vfs.new_context(b"/"), self.vfs.root(), self.config.cwd.encode(), directory=True)
        except OSError as e:
            raise SandboxError(f"--cwd {self.config.cwd}: {os.strerror(e.errno or 0)}") from None
        path = self.resolve_program(argv[0], env)
        launched = launch(path, [a.encode() for a in argv], [f"{k}={v}".encode() for k, v in env.items()],
                          trace_denied=self.trace_denied)
        sup = Supervisor(self.kernel, launched, path, dispatcher=self.dispatcher)
        init = self.kernel.processes[1]
        init.fs.cwd = self.vfs.lookup(init.fs, init.fs.root, self.config.cwd.encode(), directory=True)
        self.supervisor = sup
        try:
            status = sup.run()
        finally:
            self.vfs.close()
        if sup.exec_error and sup.exec_error > 0:
            raise ProgramNotRunnable(f"{argv[0]}: {os.strerror(sup.exec_error)}", sup.exec_error)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.WEXITSTATUS(status)
