"""The uplink (net/uplink.py) in a process of its own, so that its loop and the translator's trap
loop no longer share one interpreter lock.

In one process the two threads took turns: with ``Connection: close`` traffic each spent a fifth
of its time waiting for the lock or handing it over, and together they could not use more than
one CPU's worth of Python. Here the loop runs in a child forked before the guest starts; the
translator keeps an ``UplinkProcess``, which answers the same calls as ``Uplink`` (the subset
syscalls/, linuxabi/api.py and linuxabi/control.py use):

- calls that touch the stack (connect, listen, udp_*, ping, stats, ...) are requests over a
  SOCK_SEQPACKET socketpair, answered by the child between two turns of its loop (pickled: both
  ends are this same code);
- the names of the outbound sockets the uplink carries (``Names``: what getpeername and
  getsockname report) live on the translator's side; the child sends each one as it makes it,
  before the stack's SYN leaves. Should the socket be full, the child keeps what it could not
  send, raises a flag in a page both processes share, and sends it when it can; a lookup that
  misses while the flag is up asks the child to send everything first (``sync``). (Inbound
  connections need no names: their doorbells carry the outside peer's own address.)

The child ignores the terminal's and the launcher's signals (the translator stops it, after the
guest, by ``close``) and dies with the translator (PR_SET_PDEATHSIG). Its own failures reach
the translator's callers as OSError(ENETDOWN).
"""
from __future__ import annotations

import array
import ctypes
import errno
import gc
import mmap
import os
import pickle
import select
import selectors
import signal
import socket
import threading
import time
import traceback
import sys
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Callable

from .uplink import Names, NetSpec, Uplink

if TYPE_CHECKING:
    from .socklayer import GuestNet

Addr = tuple[str, int]

_MAX_NAMES = 65536
_CHUNK = 60000               # bytes per packet (a reply can be bigger: stats with many connections)
_GC_YOUNG = 100000           # container allocations between young collections (Python's default: 700)
_BUFFER = 1 << 17            # per direction (the kernel doubles it): room for a few hundred pushes
_CLOSE_WAIT = 10.0           # seconds the child may take to stop before it is killed
_PR_SET_PDEATHSIG = 1
# the packet's first byte: a push (names), the last or a middle part of a request or reply
_PUSH, _END, _MORE = b"P", b"E", b"M"


class UplinkGone(OSError):
    def __init__(self, why: str) -> None:
        super().__init__(errno.ENETDOWN, f"the uplink's process is gone ({why})")


# ---- the translator's side ----------------------------------------------------------------------

class UplinkProcess:
    """``Uplink(spec)`` run in a child process. Raises OSError as Uplink(spec) would (a TAP that
    cannot be opened), with the child's errno."""

    def __init__(self, spec: NetSpec, *, seed: int | None = None) -> None:
        self.spec = spec
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        deferred = mmap.mmap(-1, mmap.PAGESIZE)        # shared: byte 0 is 1 while the child holds pushes
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                                   # the child: never returns
            ours.close()
            code = 1
            try:
                code = _child_main(theirs, spec, seed, deferred, parent)
            except BaseException:                      # noqa: BLE001 - reported, then the exit code says it
                traceback.print_exc(file=sys.stderr)
            finally:
                os._exit(code)
        theirs.close()
        self.pid: int | None = pid
        self._ch = Channel(ours, deferred)
        self._hold: Addr | None = None
        self.listening_ports: frozenset[int] = frozenset()
        try:
            self._ch.first_answer(timeout=30.0)        # the child's Uplink(spec): made, or why not
        except BaseException:
            self._reap(0.0)
            raise

    # ---- life cycle -------------------------------------------------------------------------
    def start(self, cpus: frozenset[int] | None = None) -> None:
        """``cpus``: where the child's loop may run (its loop runs from the start)."""
        if cpus:
            self._ch.call("cpus", cpus)

    def wait_address(self, timeout: float) -> bool:
        return bool(self._ch.call("wait_address", timeout, timeout=timeout + 10.0))

    def attach(self, net: "GuestNet") -> None:
        """The child joins the sandbox's network namespace and opens the hold port there."""
        self._hold = self._ch.call("attach", fds=[net.netns_fd])

    def close(self, drain: float = 5.0) -> None:
        """Stop the child (it first lets what the guests sent reach its peers: Uplink.close)."""
        if self.pid is None:
            return
        try:
            self._ch.call("close", drain, timeout=drain + _CLOSE_WAIT)
        except OSError:
            pass                                       # gone already, or stuck: killed below
        self._reap(_CLOSE_WAIT)

    def _reap(self, wait: float) -> None:
        pid, self.pid = self.pid, None
        self._ch.close()
        if pid is None:
            return
        end = time.monotonic() + wait
        try:
            while True:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
                if time.monotonic() >= end:
                    os.kill(pid, signal.SIGKILL)       # ours, by its PID
                    os.waitpid(pid, 0)
                    return
                time.sleep(0.01)
        except ChildProcessError:
            pass                                       # reaped already (by a waitpid(-1) of the supervisor's)

    # ---- what the translator asks ---------------------------------------------------------------
    @property
    def address(self) -> str | None:
        return self._ch.call("address")  # type: ignore[no-any-return]

    @property
    def hold_address(self) -> Addr:
        assert self._hold is not None, "the uplink is not attached"
        return self._hold

    def describe(self) -> str:
        return self._ch.call("describe")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self._ch.call("stats")  # type: ignore[no-any-return]

    def connect(self, guest: Addr, remote: Addr, ino: int) -> None:
        self._ch.call("connect", guest, remote, ino)

    def udp_relay(self, remote: Addr) -> None:
        self._ch.call("udp_relay", remote)

    def udp_flow(self, guest: Addr) -> int:
        return self._ch.call("udp_flow", guest)  # type: ignore[no-any-return]

    def udp_revoke(self, allowed: Callable[[Addr], bool]) -> list[Addr]:
        """`allowed` is the translator's (capabilities): asked here, of the child's remotes."""
        refused = [r for r in self._ch.call("udp_remotes") if not allowed(r)]
        return self._ch.call("udp_revoke", refused) if refused else []  # type: ignore[no-any-return]

    def ping(self, dst: str, msg: bytes) -> bool:
        return bool(self._ch.call("ping", dst, msg))

    def routable(self, ip: str) -> bool:
        return bool(self._ch.call("routable", ip))

    def listen(self, port: int) -> None:
        if port not in self.listening_ports:
            self.listening_ports = self._ch.call("listen", port)

    def names_of(self, ino: int) -> Names | None:
        return self._ch.names_of(ino)

    def set_names(self, ino: int, names: Names) -> None:
        self._ch.set_names(ino, names)

    def drop_names(self, ino: int) -> None:
        self._ch.drop_names(ino)


class Channel:
    """The translator's end of the socket to the uplink's process: requests and their answers,
    and the names the child pushes (kept here, for the translator's lookups)."""

    def __init__(self, chan: socket.socket, deferred: mmap.mmap) -> None:
        self._chan, self._deferred = chan, deferred
        self._lock = threading.Lock()                  # one conversation at a time; guards the names too
        self._names: OrderedDict[int, Names] = OrderedDict()   # guest socket inode -> names
        self.closed = False
        self.error: BaseException | None = None

    def close(self) -> None:
        self.closed = True
        self._chan.close()

    def first_answer(self, timeout: float) -> Any:
        with self._lock:
            return self._answer(timeout)

    def call(self, op: str, *args: Any, fds: list[int] | None = None, timeout: float = 10.0) -> Any:
        with self._lock:
            return self._converse((op, *args), fds or [], timeout)

    def names_of(self, ino: int) -> Names | None:
        with self._lock:
            late = self._deferred[0]               # read first: a push made before it is sent by now
            self._drain()
            names = self._names.get(ino)
            if names is None and late:
                self._converse(("sync",), [], 10.0)
                names = self._names.get(ino)
            return names

    def set_names(self, ino: int, names: Names) -> None:
        with self._lock:
            self._set_names(ino, names)

    def drop_names(self, ino: int) -> None:
        with self._lock:
            self._names.pop(ino, None)

    # ---- (self._lock held) ----------------------------------------------------------------------
    def _converse(self, request: tuple[Any, ...], fds: list[int], timeout: float) -> Any:
        if self.closed or self.error is not None:
            raise UplinkGone(str(self.error) if self.error else "closed")
        try:
            _send(self._chan, pickle.dumps(request), fds)
        except OSError as e:
            self.error = e
            raise UplinkGone(e.strerror or str(e)) from None
        return self._answer(timeout)

    def _answer(self, timeout: float) -> Any:
        """Read until the child's answer (applying the pushes before it); its result or error."""
        end = time.monotonic() + timeout
        parts: list[bytes] = []
        while True:
            left = end - time.monotonic()
            if left <= 0 or not _readable(self._chan, left):
                self.error = TimeoutError(f"no answer within {timeout:g} s")
                raise UplinkGone(str(self.error))
            try:
                packet = self._chan.recv(_CHUNK + 1)
            except OSError as e:
                self.error = e
                raise UplinkGone(e.strerror or str(e)) from None
            if not packet:
                self.error = EOFError("it exited")
                raise UplinkGone("it exited")
            kind, body = packet[:1], packet[1:]
            if kind == _PUSH:
                self._apply(body)
            elif kind == _MORE:
                parts.append(body)
            else:
                ok, value = pickle.loads(b"".join(parts) + body)
                if ok:
                    return value
                raise value

    def _drain(self) -> None:
        while not self.closed:
            try:
                packet = self._chan.recv(_CHUNK + 1, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return                                 # the next call reports it
            if not packet or packet[:1] != _PUSH:      # (only pushes come unasked)
                return
            self._apply(packet[1:])

    def _apply(self, body: bytes) -> None:
        ino, fields = pickle.loads(body)
        if fields is None:
            self._names.pop(ino, None)
        else:
            self._set_names(ino, Names(*fields))

    def _set_names(self, ino: int, names: Names) -> None:
        self._names[ino] = names
        self._names.move_to_end(ino)
        while len(self._names) > _MAX_NAMES:
            self._names.popitem(last=False)


def _send(chan: socket.socket, payload: bytes, fds: list[int]) -> None:
    """One request or reply, in parts of _CHUNK bytes (blocking: the other side is reading)."""
    for at in range(0, max(len(payload), 1), _CHUNK):
        last = at + _CHUNK >= len(payload)
        packet = (_END if last else _MORE) + payload[at:at + _CHUNK]
        if fds and last:
            socket.send_fds(chan, [packet], fds)
        else:
            chan.sendall(packet)


# ---- the child ----------------------------------------------------------------------------------

def _child_main(chan: socket.socket, spec: NetSpec, seed: int | None, deferred: mmap.mmap, parent: int) -> int:
    for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(signo, signal.SIG_IGN)      # (SIGPIPE stays ignored, as Python starts: EPIPE instead)
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
        return 1
    try:
        uplink = Uplink(spec, seed=seed)
    except OSError as e:
        _send(chan, pickle.dumps((False, OSError(e.errno, e.strerror))), [])
        return 1
    server = _Server(chan, uplink, deferred)
    _send(chan, pickle.dumps((True, None)), [])
    start_writer = getattr(uplink.link.backend, "start_writer", None)
    if start_writer is not None:                 # the TAP's writes leave the loop (tap_writer.py)
        start_writer()
    uplink.link.watch(chan.fileno(), selectors.EVENT_READ, server.ready)
    gc.freeze()                                  # what the process started with: never collected
    gc.set_threshold(_GC_YOUNG, 20, 20)
    uplink.link.run(until=lambda: server.done)
    return 0


# requests answered by the Uplink method of the same name
_UPLINK_CALLS = frozenset({"wait_address", "describe", "stats", "connect", "udp_relay", "udp_flow", "udp_remotes",
                           "ping", "routable"})


class _Server:
    """The child's end: requests served between turns of the loop, names pushed as made."""

    def __init__(self, chan: socket.socket, uplink: Uplink, deferred: mmap.mmap) -> None:
        self.chan, self.uplink, self.deferred = chan, uplink, deferred
        self.held: deque[bytes] = deque()            # pushes the socket had no room for
        self.done = False
        uplink.on_names = self.push
        uplink.counters["names_deferred"] = 0          # pushes the socket had no room for at first
        self.fds: list[int] = []

    def push(self, ino: int, names: Names | None) -> None:
        fields = None if names is None else (names.local, names.peer, names.native_peer)  # (Names: no pickle)
        packet = _PUSH + pickle.dumps((ino, fields))
        if not self.held:
            try:
                self.chan.send(packet, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                pass
        self.held.append(packet)
        self.uplink.counters["names_deferred"] += 1
        self.deferred[0] = 1
        self.uplink.link.watch(self.chan.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE, self.ready)

    def _flush(self, *, block: bool) -> None:
        while self.held:
            try:
                self.chan.send(self.held[0], 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self.held.popleft()
        self.deferred[0] = 0
        self.uplink.link.watch(self.chan.fileno(), selectors.EVENT_READ, self.ready)

    def ready(self) -> None:
        """The socket is readable (a request, or the translator gone) or, with pushes held, writable."""
        if self.held:
            self._flush(block=False)
        parts: list[bytes] = []
        while not self.done:
            try:
                packet, fds = _recv_fds(self.chan)
            except BlockingIOError:
                if not parts:
                    return
                _readable(self.chan, 5.0)                 # the rest of a request being sent
                continue
            except OSError:
                packet, fds = b"", []
            if not packet:                               # the translator is gone: stop
                self.uplink.close(drain=0)
                self.done = True
                return
            self.fds.extend(fds)
            if packet[:1] == _MORE:
                parts.append(packet[1:])
                continue
            request = pickle.loads(b"".join(parts) + packet[1:])
            parts = []
            self._serve(request)

    def _serve(self, request: tuple[Any, ...]) -> None:
        op, *args = request
        try:
            fn = getattr(self.uplink, op) if op in _UPLINK_CALLS else getattr(self, "op_" + op, None)
            if fn is None:
                raise ValueError(f"unknown request {op!r}")
            answer: tuple[bool, Any] = (True, fn(*args))
        except Exception as e:                            # noqa: BLE001 - the caller's to raise
            answer = (False, e if _picklable(e) else RuntimeError(repr(e)))
        finally:
            for fd in self.fds:
                os.close(fd)
            self.fds.clear()
        self._flush(block=True)                           # what it pushed before it answered
        _send(self.chan, pickle.dumps(answer), [])

    # the requests that are not Uplink's own methods
    def op_sync(self) -> None:
        """Nothing: every answer first sends the names held back."""

    def op_cpus(self, cpus: frozenset[int]) -> None:
        """The loop (this thread) runs on ``cpus``; the TAP's writer thread on the others, where
        it takes no turns from the loop (nginx via --net tap on 2 CPUs, 6 interleaved pairs:
        +9% keep-alive, +7% Connection: close, medians), and so does the kernel's work for what
        the loop sends into lo (once attached: lo_steering.py). A thread takes its creator's
        CPUs: the writer is started again from here."""
        others = frozenset(os.sched_getaffinity(0)) - cpus
        self.uplink.steer_cpus = others                # lo's packets are taken in there too
        backend = self.uplink.link.backend
        if others and getattr(backend, "stop_writer", None) is not None:
            backend.stop_writer()
            os.sched_setaffinity(0, others)
            backend.start_writer()
        os.sched_setaffinity(0, cpus)

    def op_address(self) -> str | None:
        return self.uplink.address

    def op_listen(self, port: int) -> frozenset[int]:
        self.uplink.listen(port)
        return self.uplink.listening_ports

    def op_udp_revoke(self, refused: list[Addr]) -> list[Addr]:
        return self.uplink.udp_revoke(lambda remote: remote not in refused)

    def op_attach(self) -> Addr:
        from .socklayer import GuestNet

        net = GuestNet()
        net.attach_fd(os.dup(self.fds[0]))
        try:
            self.uplink.attach(net)
        finally:
            net.close()
        return self.uplink.hold_address

    def op_close(self, drain: float) -> None:
        self.uplink.close(drain)
        self.done = True


def _readable(sock: socket.socket, timeout: float) -> bool:
    """poll, not select: the translator's fds may number past FD_SETSIZE."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def _recv_fds(chan: socket.socket) -> tuple[bytes, list[int]]:
    """One packet and the fds sent with it, without waiting (socket.recv_fds drops its flags)."""
    fds = array.array("i")
    packet, ancillary, _, _ = chan.recvmsg(_CHUNK + 1, socket.CMSG_SPACE(4 * fds.itemsize),
                                           socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return packet, list(fds)


def _picklable(e: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(e))
        return True
    except Exception:  # noqa: BLE001
        return False
