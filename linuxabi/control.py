"""The control socket of a running sandbox, and `linuxabi ctl`.

Each sandbox listens on a unix stream socket, mode 0600, in a 0700 directory:
``$XDG_RUNTIME_DIR/linuxabi/ID.sock``, or ``~/.cache/linuxabi/run/ID.sock`` without
XDG_RUNTIME_DIR. Its audit log, unless ``--audit`` names one, is
``$XDG_CACHE_HOME/linuxabi/audit/ID.log`` (``~/.cache/linuxabi/audit/ID.log``): a log has
to outlive the session, which a runtime directory does not.

Protocol: one JSON object per line each way.
    {"op": "list"}                          -> {"ok": true, "capabilities": [{slot, kind, object, rights}]}
    {"op": "grant", "path": P, "rights": R} -> {"ok": true, "slot": N}
    {"op": "revoke", "path": P} | {"op": "revoke", "slot": N}
                                            -> {"ok": true, "revoked": COUNT, "fds": [[PID, FD], ...]}
    {"op": "net"}                           -> {"ok": true, "text": STACK COUNTERS, "stats": {...}}
                                               (a sandbox run with --net tap:NAME)
    anything wrong                          -> {"ok": false, "error": TEXT}

``ControlServer`` never blocks: the supervisor registers ``fileno()`` (an epoll fd that turns
readable whenever the listening socket or a client needs attention) for reading in its own
event loop and calls ``on_readable()`` when it is.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import re
import select
import socket
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from syscalls.kernel import Kernel

_MAX_LINE = 64 * 1024
_PEERCRED = struct.Struct("=iII")


def new_sandbox_id() -> str:
    return f"{os.getpid()}-{os.urandom(3).hex()}"  # (what secrets.token_hex does, without its import)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """Where control sockets live (created 0700)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return _private_dir(Path(xdg) / "linuxabi")
    return _private_dir(Path.home() / ".cache" / "linuxabi" / "run")


def audit_dir() -> Path:
    """Where audit logs go by default (created 0700)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return _private_dir(Path(base) / "linuxabi" / "audit")


_DEFAULT_NAME = re.compile(r"(\d+)-[0-9a-f]{6}\.sock")  # new_sandbox_id()'s, as socket_path names it


def _sweep(directory: Path) -> None:
    """Remove the sockets of translators that died without closing theirs (a SIGKILL): a
    default id starts with its translator's pid, and no process has that pid any more. (A pid
    taken again by another process keeps its file: removed by a later sweep.)"""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = _DEFAULT_NAME.fullmatch(name)
        if m is not None and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                os.unlink(directory / name)
            except OSError:
                pass


def socket_path(sandbox: str) -> Path:
    """A sandbox id, or a path to a control socket (anything with a slash)."""
    if "/" in sandbox:
        return Path(sandbox)
    return run_dir() / f"{sandbox}.sock"


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""


class ControlServer:
    def __init__(self, kernel: "Kernel", sandbox_id: str, path: str | os.PathLike[str] | None = None) -> None:
        self.kernel = kernel
        self.sandbox_id = sandbox_id
        self.path = Path(path) if path is not None else socket_path(sandbox_id)
        if path is None:
            _sweep(self.path.parent)
        try:
            self.path.unlink()  # a socket left by a crashed sandbox of the same id
        except FileNotFoundError:
            pass
        self._listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # born 0600: no window where others could connect
        try:
            self._listen.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._listen.listen(16)
        self._ep = select.epoll()
        self._ep.register(self._listen.fileno(), select.EPOLLIN)
        self._conns: dict[int, _Conn] = {}

    def fileno(self) -> int:
        return self._ep.fileno()

    def on_readable(self) -> None:
        """Serve whatever is ready, without waiting for anything."""
        for fd, ev in self._ep.poll(0):
            if fd == self._listen.fileno():
                self._accept()
                continue
            conn = self._conns.get(fd)
            if conn is None:
                continue
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                self._read(conn)
            if fd in self._conns and ev & select.EPOLLOUT:
                self._flush(conn)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._ep.close()
        self._listen.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # ---- connections --------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: the client sees its connection closed
            sock.setblocking(False)
            _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            if uid not in (os.getuid(), 0):  # the 0600 mode says the same; a second lock is cheap
                sock.close()
                continue
            conn = _Conn(sock)
            self._conns[sock.fileno()] = conn
            self._ep.register(sock.fileno(), select.EPOLLIN)

    def _read(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return
            if not data:
                self._drop(conn)
                return
            conn.inbuf += data
            if len(conn.inbuf) > _MAX_LINE and b"\n" not in conn.inbuf:
                self._drop(conn)
                return
        while b"\n" in conn.inbuf:
            line, conn.inbuf = conn.inbuf.split(b"\n", 1)
            if line.strip():
                conn.outbuf += json.dumps(self.handle_line(line)).encode() + b"\n"
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return
            conn.outbuf = conn.outbuf[n:]
        want = select.EPOLLIN | (select.EPOLLOUT if conn.outbuf else 0)
        self._ep.modify(conn.sock.fileno(), want)

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self._conns.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()

    # ---- requests -----------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            return self.handle(req)
        except (ValueError, KeyError, TypeError, OSError) as e:
            return {"ok": False, "error": str(e) or type(e).__name__}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        from caps import GUEST_NS, FsSubtree, format_rights
        from caps.model import CapabilityError
        from caps.objects import check_path
        from caps.policy import FS_RIGHTS

        op = req.get("op")
        if op == "net":
            return self._net_stats()
        cs = self.kernel.cspace
        if cs is None:
            raise ValueError("this sandbox runs without capabilities")
        if op == "list":
            return {"ok": True, "sandbox": self.sandbox_id, "capabilities": [
                {"slot": slot, "kind": type(c.obj).__name__, "object": str(c.obj),
                 "rights": format_rights(c.rights)} for slot, c in cs]}
        if op == "grant":
            path = os.fsencode(str(req["path"]))
            check_path(path)
            rights = _parse_fs_rights(str(req.get("rights", "r")))
            if rights & ~FS_RIGHTS:
                raise ValueError(f"rights {format_rights(rights & ~FS_RIGHTS)!r} do not apply to files")
            slot = cs.insert(FsSubtree(GUEST_NS, path), rights, source="control")
            return {"ok": True, "slot": slot}
        if op == "revoke":
            if "slot" in req:
                slots = [int(req["slot"])]
            else:
                path = os.fsencode(str(req["path"]))
                check_path(path)
                slots = cs.fs_slots(path)
                if not slots:
                    raise ValueError(f"no capability names {path.decode(errors='replace')} exactly "
                                     "(see `linuxabi ctl list`)")
            count = 0
            try:
                for slot in slots:
                    count += cs.revoke(slot)
            except CapabilityError as e:
                raise ValueError(str(e)) from None
            stale = self.kernel.revoked()
            from syscalls.netrevoke import close_revoked_relays, shut_revoked_sockets

            sockets = shut_revoked_sockets(self.kernel)
            close_revoked_relays(self.kernel)
            return {"ok": True, "revoked": count, "fds": [[p.pid, fd] for p, fd in stale],
                    "sockets": [[p.pid, fd] for p, fd in sockets]}
        raise ValueError(f"unknown op {op!r} (list, grant, revoke, net)")

    def _net_stats(self) -> dict[str, Any]:
        """The uplink's stack counters (net/stats.py): traffic, drops, TCP connections."""
        net = self.kernel.net_if_any
        uplink = net.uplink if net is not None else None
        if uplink is None:
            raise ValueError("this sandbox has no network beyond its loopback (run it with --net tap:NAME)")
        from net.stats import render

        stats = uplink.stats()
        text = render(stats) + "\n" + "uplink  " + "  ".join(f"{k} {v}" for k, v in stats["uplink"].items())
        return {"ok": True, "text": text, "stats": json.loads(json.dumps(stats, default=str))}


def _parse_fs_rights(text: str):  # -> caps.Rights
    from caps import parse_rights

    items = [t.strip() for t in text.split(",")]
    if len(items) > 1 and all(len(t) == 1 for t in items):
        text = "".join(items)  # "r,w,x" as well as "rwx" and "read,write"
    return parse_rights(text)


# ---- the client: `linuxabi ctl` -------------------------------------------------------------------


def request(sandbox: str, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running sandbox and return its answer."""
    path = socket_path(sandbox)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the sandbox closed the connection without answering")
            buf += chunk
    answer = json.loads(buf.split(b"\n", 1)[0])
    if not isinstance(answer, dict):
        raise ConnectionError("not an answer from a linuxabi sandbox")
    return answer


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(message)


def ctl_main(argv: Sequence[str]) -> int:
    """`linuxabi ctl list|grant|revoke|net SANDBOX ...`: 0 done, 1 refused by the sandbox or not
    reachable, 2 a usage mistake."""
    p = _Parser(prog="linuxabi ctl", description="Change what a running sandbox may use.")
    sub = p.add_subparsers(dest="cmd", metavar="{list,grant,revoke,net}", parser_class=_Parser)
    sub.required = True
    ls = sub.add_parser("list", help="the sandbox's capabilities, by slot")
    ls.add_argument("sandbox", metavar="SANDBOX", help="sandbox id (see run --verbose / --id-file) or socket path")
    g = sub.add_parser("grant", help="give the sandbox access to a directory tree")
    g.add_argument("sandbox", metavar="SANDBOX")
    g.add_argument("path", metavar="PATH", help="guest path (absolute)")
    g.add_argument("--rights", default="r", help="r,w,x,c,d (read, write, exec, create, delete); default r")
    r = sub.add_parser("revoke", help="take access away again (and everything derived from it)")
    r.add_argument("sandbox", metavar="SANDBOX")
    r.add_argument("path", metavar="PATH", nargs="?", help="guest path a capability names exactly")
    r.add_argument("--slot", type=int, help="the capability in this slot instead")
    n = sub.add_parser("net", help="the counters of the sandbox's network stack (--net tap:NAME)")
    n.add_argument("sandbox", metavar="SANDBOX")
    try:
        args = p.parse_args(list(argv))
        if args.cmd in ("list", "net"):
            req: dict[str, Any] = {"op": args.cmd}
        elif args.cmd == "grant":
            try:
                _parse_fs_rights(args.rights)
            except ValueError as e:
                raise _Usage(f"--rights: {e}") from None
            req = {"op": "grant", "path": args.path, "rights": args.rights}
        else:
            if (args.path is None) == (args.slot is None):
                raise _Usage("revoke needs a PATH or --slot N")
            req = {"op": "revoke", "slot": args.slot} if args.slot is not None else {"op": "revoke", "path": args.path}
    except _Usage as e:
        sys.stderr.write(f"linuxabi: {e}\n")
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    try:
        answer = request(args.sandbox, req)
    except (OSError, ValueError) as e:
        why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOENT, errno.ECONNREFUSED):
            why = "no such running sandbox"
        sys.stderr.write(f"linuxabi: {args.sandbox}: {why}\n")
        return 1
    if not answer.get("ok"):
        sys.stderr.write(f"linuxabi: {answer.get('error', 'refused')}\n")
        return 1
    if args.cmd == "list":
        for c in answer.get("capabilities", []):
            print(f"{c['slot']:4d}  {c['kind']:<11} {c['rights'] or '-':<6} {c['object']}")
    elif args.cmd == "grant":
        print(f"granted: slot {answer['slot']}")
    elif args.cmd == "net":
        print(answer["text"])
    else:
        fds, socks = answer.get("fds", []), answer.get("sockets", [])
        print(f"revoked: {answer['revoked']} capabilities" + (f"; {len(fds)} open files cut off" if fds else "")
              + (f"; {len(socks)} socket fds shut down" if socks else ""))
    return 0
