"""The `linuxabi` command."""
from __future__ import annotations

import argparse
import atexit
import functools
import os
import sys
from typing import Sequence

_COMMANDS = "run, trace, compat, serve, conformance, bench, image, policy check, audit, ctl"


class _Formatter(argparse.HelpFormatter):
    """argparse's own, given the terminal's width as shutil.get_terminal_size finds it:
    argparse makes a formatter for every option added, and its own import of shutil for
    that costs ~5 ms of every start."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
        super().__init__(prog, width=(columns or 80) - 2)


class _Parser(argparse.ArgumentParser):
    """User mistakes are one line and exit status 2, never a traceback or a usage dump."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"linuxabi: {message}\n")
        raise SystemExit(2)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", metavar="DIR", help="image directory (default: the built-in busybox image)")
    p.add_argument("--image", metavar="NAME", help="an image built with `linuxabi image build NAME`")
    p.add_argument("--env", metavar="K=V", action="append", default=[], help="set a guest environment variable")
    p.add_argument("--cwd", metavar="DIR", default="/", help="the guest's working directory")
    p.add_argument("--hostname", default="linuxabi")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the guest a terminal of its own (a pty; the user's terminal is relayed)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="keep stdin attached (always the case; accepted for -it)")
    p.add_argument("-p", "--publish", metavar="[HOST_IP:]HOST_PORT:GUEST_PORT", action="append", default=[],
                   help="forward a host TCP port to a port the guest listens on (HOST_IP: 127.0.0.1)")
    p.add_argument("--net", metavar="none|tap:NAME[,ip=A.B.C.D/N[,gw=G]][,offload=off]", default="none",
                   help="none: loopback only (the default); tap:NAME: linuxabi's own TCP/IP stack on TAP "
                   "device NAME (created if missing), addressed by DHCP unless ip= is given; offload=off: "
                   "no checksum offload or TSO on the link")
    _add_capability_options(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- PROG ARGS...")


def _add_capability_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", metavar="FILE.toml", help="sandbox policy (default: the image read+exec, "
                   "/tmp and the overlay writable, no network, the usual /dev entries)")
    p.add_argument("--audit", metavar="FILE", help="append the audit log to FILE (default: a file per "
                   "sandbox under ~/.cache/linuxabi/audit/)")
    p.add_argument("--audit-level", choices=("normal", "verbose"), default="normal",
                   help="verbose also records every file open")
    p.add_argument("--id-file", metavar="FILE", help="write the sandbox id (for linuxabi ctl) to FILE once "
                   "its control socket listens")
    p.add_argument("-v", "--verbose", action="store_true", help="print the sandbox id, control socket and audit log")


def _with_capabilities(args: argparse.Namespace, cfg):  # noqa: ANN001, ANN202 - a SandboxConfig
    if args.policy is not None and not os.path.isfile(args.policy):
        raise _UserError(f"--policy {args.policy}: no such file")
    cfg.policy = args.policy
    cfg.audit = args.audit
    cfg.audit_level = args.audit_level
    cfg.id_file = args.id_file
    cfg.verbose = args.verbose
    return cfg


def _config(args: argparse.Namespace):
    from .api import SandboxConfig

    env = {}
    for item in args.env:
        if "=" not in item:
            raise _UserError(f"--env {item!r}: expected K=V")
        k, v = item.split("=", 1)
        env[k] = v
    if args.root is not None and not os.path.isdir(args.root):
        raise _UserError(f"--root {args.root}: no such directory")
    root = args.root
    if args.image is not None:
        if root is not None:
            raise _UserError("--image and --root name two images: give one")
        from .images import image_root

        root = str(image_root(args.image))
    if args.net != "none":
        from net.uplink import NetSpec

        try:
            NetSpec.parse(args.net)
        except ValueError as e:
            raise _UserError(str(e)) from None
    cfg = SandboxConfig(root=root, env=env, cwd=args.cwd, hostname=args.hostname, tty=args.tty,
                        publish=list(getattr(args, "publish", [])), net=args.net)
    return _with_capabilities(args, cfg)


class _UserError(Exception):
    pass


def _guest_argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise _UserError("no program given (usage: linuxabi run [OPTIONS] -- PROG ARGS...)")
    return argv


def _cmd_run(args: argparse.Namespace) -> int:
    from syscalls.dispatch import Dispatcher

    from . import ahead

    argv = _guest_argv(args)
    if not args.profile:
        return ahead.take(_config(args)).run(argv)
    dispatcher = Dispatcher(profile=True)
    try:
        return ahead.take(_config(args), dispatcher).run(argv)
    finally:
        with open(args.profile, "w") as f:
            dispatcher.write_profile(f)


def _cmd_trace(args: argparse.Namespace) -> int:
    from . import ahead
    from .tracer import Tracer

    out = open(args.output, "w") if args.output else sys.stderr
    tracer = Tracer(out)
    from syscalls.dispatch import Dispatcher

    sandbox = ahead.take(_config(args), Dispatcher(tracer=tracer))
    try:
        return sandbox.run(_guest_argv(args))
    finally:
        tracer.summary(sandbox.dispatcher)
        if args.output:
            out.close()


def _cmd_compat(args: argparse.Namespace) -> int:
    from .compat import report

    sys.stdout.write(report(verbose=not args.summary))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .server import ServerError, default_socket_path, serve

    if not 1 <= args.spares <= 64:
        raise _UserError("--spares: between 1 and 64")
    for root in args.keep_root:
        if not os.path.isdir(root):
            raise _UserError(f"--keep-root {root}: no such directory")
    try:
        return serve(Path(args.socket) if args.socket else default_socket_path(), spares=args.spares,
                     keep_roots=args.keep_root)
    except ServerError as e:
        raise _UserError(str(e)) from None


def _cmd_conformance(rest: list[str]) -> int:
    from conformance.runner import main as conformance_main

    return conformance_main(rest)


def _cmd_bench(rest: list[str]) -> int:
    from bench.runner import main as bench_main

    return bench_main(rest)


@functools.cache
def main_parser() -> _Parser:
    """The parser of run, trace, compat and serve (built once: a warm server's children share it)."""
    parser = _Parser(prog="linuxabi", description="Run Linux x86-64 programs under a syscall translator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("run", help="run a guest program")
    p.add_argument("--profile", metavar="FILE", help="write calls and translator time per syscall to FILE")
    _add_run_options(p)
    p = sub.add_parser("trace", help="run a guest and print each trapped syscall")
    p.add_argument("-o", "--output", metavar="FILE", help="write the trace to FILE instead of stderr")
    _add_run_options(p)
    p = sub.add_parser("compat", help="print the syscall compatibility report")
    p.add_argument("--summary", action="store_true", help="only the counts per disposition")
    p = sub.add_parser("serve", help="keep a translator warm: `linuxabi run` with LINUXABI_SERVER=SOCKET "
                       "forks it instead of starting cold")
    p.add_argument("--socket", metavar="PATH", help="where to listen (default: "
                   "$XDG_RUNTIME_DIR/linuxabi/server.sock, or ~/.cache/linuxabi/server.sock)")
    p.add_argument("--spares", metavar="N", type=int, default=1,
                   help="translators kept forked and ready (default 1; more for clients that start together)")
    p.add_argument("--keep-root", metavar="DIR", action="append", default=[],
                   help="read the image at DIR once, for runs with --root DIR (repeatable; DIR must not "
                        "change while the server runs: its runs would not see the change); a spare builds "
                        "its sandbox ahead on the first DIR (else on the default image)")
    sub.add_parser("conformance", help="run the Linux conformance suite (see --help there)")
    sub.add_parser("bench", help="syscall latency and workload benchmarks against native (see --help there)")
    sub.add_parser("image", help="build, list, show and remove images made from Debian packages (see --help there)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "conformance":
        return _run_guarded(lambda: _cmd_conformance(argv[1:]))
    if argv[:2] == ["policy", "check"]:
        from caps.cli import policy_check_main

        return _run_guarded(lambda: policy_check_main(argv[2:]))
    if argv[:1] == ["audit"]:
        from caps.cli import audit_main

        return _run_guarded(lambda: audit_main(argv[1:]))
    if argv[:1] == ["ctl"]:
        from .control import ctl_main

        return _run_guarded(lambda: ctl_main(argv[1:]))
    if argv and argv[0] == "bench":
        return _run_guarded(lambda: _cmd_bench(argv[1:]))
    if argv[:1] == ["image"]:  # its own parser: the package tools are not imported for `run`
        from .images.cli import add_image_parser, cmd_image

        image_parser = _Parser(prog="linuxabi")
        add_image_parser(image_parser.add_subparsers(dest="command", parser_class=_Parser))
        image_args = image_parser.parse_args(argv)
        return _run_guarded(lambda: cmd_image(image_args))
    parser = main_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"missing command ({_COMMANDS})")
    handler = {"run": _cmd_run, "trace": _cmd_trace, "compat": _cmd_compat, "serve": _cmd_serve}[args.command]
    return _run_guarded(lambda: handler(args))


def entry() -> None:
    """The ``linuxabi`` command. After ``run`` or ``trace`` the process ends at once: the
    interpreter's teardown (freeing every module's objects one by one) would add ~20 ms to
    each guest's run, and it has nothing left to do (the commands close their files; atexit
    handlers still run)."""
    code = main()
    if sys.argv[1:2] not in (["run"], ["trace"]):
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the fd was closed when we started
                stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream
            pass
    os._exit(code)


def _run_guarded(fn) -> int:
    from .api import ProgramNotRunnable, SandboxError
    from .image import ImageError

    try:
        return fn()
    except ProgramNotRunnable as e:
        sys.stderr.write(f"linuxabi: {e}\n")
        return e.exit_code
    except (SandboxError, ImageError, _UserError) as e:
        sys.stderr.write(f"linuxabi: {e}\n")
        return 2
    except PermissionError as e:
        sys.stderr.write(f"linuxabi: {e.strerror}: linuxabi needs root or unprivileged user namespaces\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # our output's reader went away (`| head`): end quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    entry()
