"""The embedding API: ``Sandbox(SandboxConfig(...)).run(argv)``."""
from __future__ import annotations

import contextlib
import os
import signal
import stat as st
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from caps import AuditLog, Policy, PolicyInvalid, default_policy, load_policy
from syscalls.dispatch import Dispatcher
from syscalls.kernel import Kernel
from vfs import DevFs, ImageFs, OverlayFs, TmpFs, Vfs
from vfs.procfs import ProcFs

from .entry import current_umask
from .host.launch import launch
from .host.supervisor import Supervisor

if TYPE_CHECKING:
    from syscalls.nvidia.host import NvidiaHost
    from net.uplink_proc import UplinkProcess

    from .forward import PortForwarder
    from .control import ControlServer
from .terminal import TerminalRelay, raw_mode

DHCP_TIMEOUT = 10.0  # seconds a --net tap:NAME without ip= waits for its lease before the guest runs
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
    # Capabilities: a policy file (or a parsed Policy); None is the default policy (see
    # caps.policy.DEFAULT_POLICY_TOML). The audit log: a file, else a per-sandbox file under
    # linuxabi.control.audit_dir(). sandbox_id names the control socket and the default log.
    policy: "str | os.PathLike[str] | Policy | None" = None
    audit: "str | os.PathLike[str] | None" = None
    audit_level: str = "normal"
    sandbox_id: str | None = None
    control: bool = True  # listen on a control socket (linuxabi ctl) while running
    id_file: str | None = None  # written with the sandbox id once the control socket listens
    verbose: bool = False  # say the sandbox id, control socket and audit log on stderr
    tty: bool = False  # give the guest a pty of its own as stdio and controlling terminal
    # Host TCP ports forwarded to the sandbox's ports: "[HOST_IP:]HOST_PORT:GUEST_PORT" each
    publish: list[str] = field(default_factory=list)
    # The sandbox's link beyond its loopback: "none", or "tap:NAME[,ip=A.B.C.D/N[,gw=G]]" (linuxabi's
    # own TCP/IP stack on TAP device NAME, addressed by DHCP unless ip= is given; net/uplink.py)
    net: str = "none"
    # Where NVIDIA devices come from (syscalls.nvidia.host.NvidiaHost); None: the host's driver.
    nvidia: "NvidiaHost | None" = None

    def guest_env(self) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "HOSTNAME": self.hostname}
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        env.update(self.env)
        return env


def build_vfs(root: Path) -> Vfs:
    """The guest's filesystem: the image under a RAM overlay, plus /tmp, /dev and /proc."""
    vfs = Vfs(OverlayFs(ImageFs.open(root)))  # (read ahead, in a warm server's child)
    ctx = vfs.new_context(b"/")
    for mnt in (b"/tmp", b"/dev", b"/proc"):
        try:
            vfs.mkdir(ctx, ctx.root, mnt, 0o1777 if mnt == b"/tmp" else 0o755)
        except FileExistsError:
            pass
    vfs.mount(b"/tmp", TmpFs())
    vfs.mount(b"/dev", DevFs())
    return vfs


def _exit_code(status: int) -> int:
    """A wait status as an exit code (128+N when killed by signal N)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _identity(root: Path) -> tuple[int, int, int]:
    s = root.stat()
    return s.st_dev, s.st_ino, s.st_mtime_ns


def _devfs(vfs: Vfs) -> DevFs:
    return next(m.fs for m in vfs.table.mounts if isinstance(m.fs, DevFs))


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None, *, dispatcher: Dispatcher | None = None,
                 trace_denied: bool = False, ahead: bool = False) -> None:
        """``ahead``: made before its run is asked for (linuxabi/ahead.py): its audit log is
        held, nothing written, until ``take_on`` gives it the run's configuration."""
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
        self._root_identity = _identity(self.root)
        self.vfs = build_vfs(self.root)
        self.kernel = Kernel(self.vfs, hostname=self.config.hostname.encode())
        self.vfs.mount(b"/proc", ProcFs(self.kernel))
        self.supervisor: Supervisor | None = None
        # Called with the guest's exit code once it is known, before the sandbox is taken down
        # (a warm server's client has it ~0.5 ms sooner), unless the sandbox holds what the
        # caller may want next (the terminal, a published port, a TAP): then once those are
        # let go. Not for a program that could not be run (run raises then).
        self.on_exit_code: Callable[[int], None] | None = None
        self._setup_capabilities(held_audit=ahead)

    def _setup_capabilities(self, held_audit: bool) -> None:
        """The initial CSpace from the policy, its audit log, and the hooks that enforce it."""
        from .control import audit_dir, new_sandbox_id

        cfg = self.config
        self.sandbox_id = cfg.sandbox_id or new_sandbox_id()
        policy = cfg.policy
        if policy is None:
            policy = default_policy()
        elif not isinstance(policy, Policy):
            try:
                policy = load_policy(policy)
            except PolicyInvalid as e:
                raise SandboxError(f"invalid policy:\n{e}") from None
            except OSError as e:
                raise SandboxError(f"--policy {cfg.policy}: {e.strerror}") from None
        self.policy = policy
        self.audit_path = Path(cfg.audit) if cfg.audit is not None else audit_dir() / f"{self.sandbox_id}.log"
        try:
            self.audit = AuditLog(self.audit_path, cfg.audit_level, held=held_audit)
        except OSError as e:
            raise SandboxError(f"--audit {self.audit_path}: {e.strerror}") from None
        except ValueError as e:
            raise SandboxError(str(e)) from None
        self.cspace = policy.build_cspace(self.sandbox_id, audit=self.audit)
        self.kernel.install_cspace(self.cspace)
        # The host's NVIDIA devices appear in /dev only where the policy grants them. (The shim
        # package is imported only on hosts that have them: start-up time counts.)
        nvidia = cfg.nvidia
        if nvidia is None and any(name.startswith("nvidia") for name in os.listdir("/dev")):
            from syscalls.nvidia.host import NvidiaHost

            nvidia = NvidiaHost.real()
        if nvidia is not None:
            from syscalls.nvidia import devices as nvidia_devices

            shown = nvidia_devices.install(_devfs(self.vfs), nvidia.nodes,
                                           nvidia_devices.capability_allows(self.cspace))
            if shown:  # the driver's /proc files too, for its libraries (not without a device)
                procfs = next(m.fs for m in self.vfs.table.mounts if isinstance(m.fs, ProcFs))
                for path, gen in nvidia.proc.items():
                    procfs.add_file(path, gen)
            self.kernel.nvidia_host = nvidia
        self.dispatcher.on_denied = self.kernel.audit_denied_syscall
        # Refused calls trap (instead of failing in the filter) so that each one is audited;
        # they are rare, and the guest gets the same errno.
        self.trace_denied = True
        self.control: "ControlServer | None" = None

    def take_on(self, config: SandboxConfig, dispatcher: Dispatcher | None = None) -> bool:
        """Become the sandbox of ``config``, if this one (made ahead, with default options) is
        what ``Sandbox(config, dispatcher=dispatcher)`` would build now: the same image, as it
        is now, hostname, policy, audit level and id; the audit log goes where ``config`` says.
        False (and nothing changed) when it is not."""
        if (config.policy is not None or config.sandbox_id is not None or config.nvidia is not None
                or config.hostname != self.config.hostname or config.audit_level != self.config.audit_level
                or not self.audit.is_held):
            return False
        try:
            if config.root is None:
                from .image import default_image

                root = default_image()  # (the client's: it may have another cache directory)
            else:
                root = Path(config.root)
            if _identity(root) != self._root_identity:  # (another directory, or this one changed)
                return False
        except OSError:
            return False
        from .control import audit_dir

        audit_path = Path(config.audit) if config.audit is not None else audit_dir() / f"{self.sandbox_id}.log"
        try:
            self.audit.release(audit_path)
        except OSError as e:
            raise SandboxError(f"--audit {audit_path}: {e.strerror}") from None
        self.config, self.audit_path = config, audit_path
        if dispatcher is not None:
            self.dispatcher = dispatcher
            dispatcher.on_denied = self.kernel.audit_denied_syscall
        self.kernel.started = time.monotonic()  # its uptime counts from its run
        return True

    def discard(self) -> None:
        """Release what a sandbox that will not run holds (its scratch directory); its held
        audit log is never written."""
        self.vfs.close()
        self.kernel.close()
        self.audit.close()

    def _publish(self) -> "list[PortForwarder]":
        """Listen on the host for each -p before the guest starts: a taken port is the user's
        error, reported before anything runs."""
        forwarders: list[PortForwarder] = []
        if not self.config.publish:
            return forwarders  # (and the socket layer is not imported at all)
        from .forward import PortForwarder, Published

        try:
            for text in self.config.publish:
                try:
                    spec = Published.parse(text)
                except ValueError as e:
                    raise SandboxError(str(e)) from None
                try:
                    forwarders.append(PortForwarder(self.kernel.net, spec))
                except OSError as e:
                    raise SandboxError(f"-p {text}: {e.strerror}") from None
                if self.config.verbose:
                    host_ip, host_port = forwarders[-1].address
                    sys.stderr.write(f"linuxabi: forwarding {host_ip}:{host_port} to the sandbox's port "
                                     f"{spec.guest_port}\n")
        except BaseException:
            for fwd in forwarders:
                fwd.stop()
            raise
        return forwarders

    def _open_uplink(self) -> "UplinkProcess | None":
        """The TAP and the stack on it, before the guest starts: a bad --net, a TAP that cannot
        be opened or no DHCP lease is the user's error, reported before anything runs."""
        if self.config.net == "none":
            return None  # the stack is not even imported
        from net.uplink import NetSpec
        from net.uplink_proc import UplinkProcess

        try:
            spec = NetSpec.parse(self.config.net)
        except ValueError as e:
            raise SandboxError(str(e)) from None
        if spec.none:
            return None
        try:
            uplink = UplinkProcess(spec)  # its own process: its loop and ours share no lock
        except OSError as e:
            raise SandboxError(f"--net {spec}: cannot open or create TAP device {spec.tap}: "
                               f"{e.strerror or e}") from None
        if spec.ip is None:
            leased = uplink.wait_address(DHCP_TIMEOUT)  # (its loop runs from the start, in its process)
            if not leased:
                uplink.close()
                raise SandboxError(f"--net {spec}: no DHCP lease on {spec.tap} within {DHCP_TIMEOUT:g} s")
        return uplink

    def _attach_uplink(self, uplink: "UplinkProcess", sup: Supervisor) -> None:
        """Join the uplink to the sandbox's network namespace (after launch: it exists now),
        its loop on the translator's CPUs but the sandbox's home one."""
        uplink.start(sup.placement.helper_cpus())
        try:
            uplink.attach(self.kernel.net)
        except OSError as e:
            sup.kill_all()
            raise SandboxError(f"--net {uplink.spec}: cannot join the sandbox's network: {e.strerror or e}") from None
        self.kernel.net.uplink = uplink
        if self.config.verbose:
            sys.stderr.write(f"linuxabi: network {uplink.describe()}\n")

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
        uplink = self._open_uplink()
        try:
            forwarders = self._publish()
        except BaseException:
            if uplink is not None:
                uplink.close()
            raise
        # getsockname/getpeername name what -p and the uplink put behind guest sockets; without
        # either they run natively
        features = frozenset({"outside"}) if uplink is not None or forwarders else frozenset()
        launched = launch(path, [a.encode() for a in argv], [f"{k}={v}".encode() for k, v in env.items()],
                          trace_denied=self.trace_denied, tty=self.config.tty, features=features)
        sup = Supervisor(self.kernel, launched, path, dispatcher=self.dispatcher, features=features)
        self._start_control(sup)
        init = self.kernel.processes[1]
        init.fs.cwd = self.vfs.lookup(init.fs, init.fs.root, self.config.cwd.encode(), directory=True)
        init.fs.umask = current_umask()  # the caller's, as a child inherits it
        self.supervisor = sup
        relay = None
        if launched.pty_master >= 0:
            _devfs(self.vfs).attach_pts(launched.pts_dir)
            # Known to the VFS from now on, the guest's stdio names itself /dev/pts/0.
            ctx = self.vfs.new_context(b"/")
            os.close(self.vfs.open(ctx, ctx.root, b"/dev/pts/0", os.O_RDWR, 0).host_fd)
            relay = TerminalRelay(launched.pty_master)
            sup.signal_hooks[signal.SIGWINCH] = relay.on_winch
        # The exit code is told as soon as nothing the caller may want next is still held: a
        # published port or a TAP (a next run's own), the caller's terminal in raw mode.
        holds = bool(forwarders) or uplink is not None
        if relay is None and not holds:
            sup.on_exit = lambda: self._tell_exit(sup)
        if forwarders or uplink is not None:
            self.kernel.net.attach(f"/proc/{launched.host_pid}/ns/net")
        for fwd in forwarders:
            fwd.start()
        try:
            if uplink is not None:
                self._attach_uplink(uplink, sup)
            with raw_mode(0) if relay is not None else contextlib.nullcontext():
                if relay is not None:
                    relay.start()
                try:
                    status = sup.run()
                finally:
                    if relay is not None:
                        relay.stop()
            if not holds:
                self._tell_exit(sup)  # (the terminal is the caller's again)
        finally:
            for fwd in forwarders:
                fwd.stop()
            if uplink is not None:
                self.kernel.net.uplink = None
                uplink.close()
            self.vfs.close()
            self.kernel.close()
            self._stop_control()
        self._tell_exit(sup)
        if sup.exec_error and sup.exec_error > 0:
            raise ProgramNotRunnable(f"{argv[0]}: {os.strerror(sup.exec_error)}", sup.exec_error)
        return _exit_code(status)

    def _tell_exit(self, sup: Supervisor) -> None:
        """on_exit_code, once, unless the program could not be run."""
        if self.on_exit_code is None or sup.exit_status is None or (sup.exec_error and sup.exec_error > 0):
            return
        tell, self.on_exit_code = self.on_exit_code, None
        tell(_exit_code(sup.exit_status))

    def _start_control(self, sup: Supervisor) -> None:
        """The control socket, served by the platform's event loop where it offers that."""
        cfg = self.config
        if cfg.control:
            from .control import ControlServer

            self.control = ControlServer(self.kernel, self.sandbox_id)
            add_reader = getattr(sup, "add_reader", None)
            if add_reader is not None:
                add_reader(self.control)
        if cfg.verbose:
            where = f"control socket {self.control.path}, " if self.control is not None else ""
            sys.stderr.write(f"linuxabi: sandbox {self.sandbox_id} ({where}audit log {self.audit_path})\n")
        if cfg.id_file is not None:
            tmp = f"{cfg.id_file}.tmp"
            with open(tmp, "w") as f:
                f.write(self.sandbox_id + "\n")
            os.replace(tmp, cfg.id_file)  # readers never see half an id

    def _stop_control(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        self.audit.close()
