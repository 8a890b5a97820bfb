"""The supervisor: one event loop serving every guest thread of a sandbox.

Sources: the seccomp listener (translated calls), a signalfd for SIGCHLD (ptrace stops and
exits of guest tasks) and for the signals the CLI forwards, and parked calls' wait fds.
Nothing a guest does may raise out of this loop: a handler's failure becomes an errno, a
vanished task is forgotten.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F
from linuxabi.abi import x86_64

from syscalls.base import CONTINUE, Disposition, ExecPlan, InstallFd, Park, ReplaceFd, Trap
from syscalls.dispatch import Dispatcher
from syscalls.kernel import Kernel, Process
from syscalls.process import thread_comm
from syscalls.table import SYSCALLS, keeps_answers

from . import in_guest, ptrace
from .answers import AnswerCache
from .filter import TRACE_MARKER
from .inject import FdRemoval
from .interp import stage_interpreter
from .launch import Launched
from .libc import block_all_signals, current_cpu, raw_syscall, restore_signals
from .notify import Listener, Notification
from .placement import Placement
from .task import HostProcess, HostTask, guest_tid_of, host_tgid_of, read_proc_file

NR = x86_64.NR
_SIGTRAP_SYSCALL = signal.SIGTRAP | 0x80
# __WALL: threads and children alike (looked up by name: inside a class it would be mangled)
_WAIT_ANY = os.WNOHANG | getattr(F, "__WALL")
_STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)
_ERESTARTSYS_RET = -512 & 0xFFFFFFFFFFFFFFFF  # the kernel-internal restart codes, as rax holds them
_ERESTARTNOINTR = 513
# The direct exec's program-file fd: the fd request's result is both the fd and, left in rax
# at the syscall instruction, the number of the call it runs next.
_EXECVEAT_FD = NR["execveat"]
_FAULT_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP, signal.SIGSYS}
_TERMINATING_BY_DEFAULT = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                           signal.SIGUSR1, signal.SIGUSR2}


class _Reader(Protocol):
    def fileno(self) -> int: ...
    def on_readable(self) -> None: ...


class _Wakeup(Exception):
    """Raised by the signal handler to break a blocking NOTIF_RECV."""


@dataclass
class _ExecDance:
    """An exec in progress for one thread (see Supervisor._on_seccomp_trace)."""

    plan: ExecPlan
    stage: str  # "fd" (waiting for the injected fd), "exec" (execveat issued)
    scratch: int = 0  # guest address of our "" + argv block
    guest_fd: int = -1
    kernel_comm: bytes = b""  # the name the kernel will give the task (the file's name)
    # Signals that arrived mid-dance: held back and raised again just before the real exec,
    # so they stay pending across it as they would across a native execve.
    deferred: list[int] = field(default_factory=list)
    saved_regs: "ptrace.Regs | None" = None  # a failed exec's registers, while its fd is closed
    tgid: int = 0  # the thread group's host id (an exec from a thread finishes under it)
    # (pid, (soft, hard)): RLIMIT_NOFILE raised by one to lend the program file a slot, to be
    # put back once the exec is over (Linux's exec needs no free fd).
    lent_nofile: "tuple[int, tuple[int, int]] | None" = None
    # The direct form (see _on_seccomp_trace): the fd request returns at the guest's own
    # syscall instruction, which runs again as the execveat; no exit stop between. saved_regs
    # then holds the guest's execve (registers at its entry), should it have to be restarted.
    direct: bool = False
    error: int = 0  # the install failed: the execveat's stop fails the exec with this errno
    # The thread's signal mask while the fd request runs with every signal blocked (None once
    # put back): a signal arriving then stays pending instead of interrupting the request, so
    # under a stream of signals the exec still goes through (as Linux's own does) rather than
    # being planned again for each one; it is delivered after the exec, as on Linux.
    sigmask: int | None = None


@dataclass
class _Parked:
    notif: Notification
    task: HostTask
    park: Park


@dataclass
class _PendingChild:
    """A new task seen by the tracer before (or after) its creator's fork event."""

    stopped: bool = False  # its initial ptrace stop arrived
    registered: bool = False  # its state was created from the parent's


# SIGCHLD, SIGCONT, SIGURG, SIGWINCH: ignored by default. Linux drops such a signal at once, so
# it never interrupts a wait; a traced guest keeps it pending for us, so it is left out here.
_IGNORED_BY_DEFAULT = sum(1 << (s - 1) for s in (17, 18, 23, 28))


def _signal_pending(tgid: int, tid: int, blocked: int | None = None) -> bool:
    """Whether the thread has a signal pending that it does not block and does not ignore
    (``blocked``: the guest's own mask, while we hold its signals)."""
    try:
        with open(f"/proc/{tgid}/task/{tid}/status", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        pending = int(fields[b"SigPnd"], 16) | int(fields[b"ShdPnd"], 16)
        caught = int(fields[b"SigCgt"], 16)
        dropped = int(fields[b"SigIgn"], 16) | (_IGNORED_BY_DEFAULT & ~caught)
        if blocked is None:
            blocked = int(fields[b"SigBlk"], 16)
        return bool(pending & ~blocked & ~dropped)
    except (OSError, KeyError, ValueError):
        return False


def _ready(fd: int, events: int) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(0))


def _cancel(park: Park) -> None:
    if park.cancel is not None:
        try:
            park.cancel()
        except OSError:
            pass


def _tasks_in_namespace(pidns: int) -> bool:
    """Whether a live task is in the pid namespace whose nsfs inode is ``pidns``."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(f"/proc/{entry.name}/ns/pid").st_ino == pidns:
                    return True
            except OSError:
                continue                       # gone, or a zombie (waitpid reports those)
    return False


class Supervisor:
    def __init__(self, kernel: Kernel, launched: Launched, init_exe: bytes, *,
                 dispatcher: Dispatcher | None = None, features: frozenset[str] = frozenset()) -> None:
        self.kernel = kernel
        self.features = features  # the filter's (a call translated only with one may be native)
        self.launched = launched
        self.listener = Listener(launched.listener_fd)
        self.dispatcher = dispatcher or Dispatcher()
        self.tasks: dict[int, HostTask] = {}  # host tid -> task
        self.procs: dict[int, HostProcess] = {}  # host tgid -> process handles
        self.pending: dict[int, _PendingChild] = {}
        self.execs: dict[int, _ExecDance] = {}
        self.parked: dict[int, _Parked] = {}  # wait fd -> parked call
        # host tid -> the syscall it runs natively as we answered (CONTINUE, or -ERESTARTSYS for
        # a parked call a signal interrupted): its -ERESTARTSYS is the kernel's, keep it
        self._native_calls: dict[int, int] = {}
        # host tid -> its own signal mask, while a translated call a signal withdrew runs again
        # with every signal blocked (_hold_signals); put back at the stop after that call
        self._masked: dict[int, int] = {}
        self.init_host_pid = launched.host_pid
        self.exit_status: int | None = None
        self.exec_error: int | None = None
        self.errors = 0  # internal errors survived (a handler bug), for tests and the CLI
        self._signals: list[int] = []
        # Notifications received while a thread's ioctl ran in the guest (in_guest.py), to be
        # served next; and the threads held at such an ioctl's exit until their answer.
        self._stashed: list[Notification] = []
        self._held: dict[int, in_guest.Held] = {}
        self._in_recv = False
        # Signals the embedder handles itself instead of forwarding (SIGWINCH with a pty).
        self.signal_hooks: dict[int, Callable[[], None]] = {}
        self._readers: list[_Reader] = []  # e.g. the control socket
        # Where the threads run (placement.py): compact on our CPU while that is enough.
        self.placement = Placement.for_sandbox(launched.host_pid)
        try:  # the sandbox's pid namespace, where guest_tid_of asks for new tasks' ids
            self._pidns_fd = os.open(f"/proc/{launched.host_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._pidns_fd = -1
        init = Process(pid=1, host_pid=launched.host_pid, ppid=0, fs=kernel.vfs.new_context(b"/"),
                       exe=init_exe)
        init.threads.add(launched.host_pid)
        self.placement.start(launched.host_pid)
        kernel.cpu_affinity = self.placement
        self._adopt(init)
        self._register_task(launched.host_pid, init)
        kernel.dup_guest_fd = self._dup_guest_fd
        kernel.install_fd = self._install_fd
        kernel.reap_exited_thread = self._reap_exited_thread
        kernel.on_thread_renamed = self._thread_renamed
        kernel.run_ioctl_in_guest = self._run_ioctl_in_guest
        kernel.on_revoke_fds = self._revoke_fds
        kernel.on_revoke_maps = self._revoke_maps
        self._removals: dict[int, FdRemoval] = {}  # host tid -> fds to close in it
        # Stat answers the loop gives in C (answers.py); made by run, unless a tracer, the
        # profile or an errno swap wants to see every call.
        self.answers: AnswerCache | None = None
        self._exec_answers: list[HostTask] = []  # threads whose exec just ended (_after_flush)
        self.answered = 0  # calls the cache answered (known once run returns)
        self._installs = 0  # fd installs into guests (placement discounts their preemptions)
        # Called once the guest's init has ended (exit_status and exec_error known), before the
        # supervisor's own teardown (the embedder tells its caller the status then).
        self.on_exit: Callable[[], None] | None = None

    def _revoke_fds(self, stale: list[tuple[Process, int]]) -> None:
        """Revoked files the guest holds as host fds: close them in each holding process, by
        stopping one of its threads and running close() in it (inject.py)."""
        by_proc: dict[int, list[int]] = {}
        for proc, fd in stale:
            by_proc.setdefault(proc.host_pid, []).append(fd)
        for host_pid, fds in by_proc.items():
            removal = self._removal_for(host_pid)
            if removal is not None:
                removal.fds.extend(f for f in sorted(set(fds)) if f not in removal.fds)

    def _revoke_maps(self, stale: list[tuple[Process, list[tuple[int, int]]]]) -> None:
        """Mappings of revoked files: replaced in each process by inaccessible memory."""
        for proc, ranges in stale:
            removal = self._removal_for(proc.host_pid)
            if removal is not None:
                removal.unmaps.extend(r for r in ranges if r not in removal.unmaps)

    def _removal_for(self, host_pid: int) -> FdRemoval | None:
        """The pending removal in a thread of the process (started now: PTRACE_INTERRUPT)."""
        hp = self.procs.get(host_pid)
        tids = sorted(hp.tasks) if hp is not None else []
        if not tids:
            return None
        tid = host_pid if host_pid in tids else tids[0]
        removal = self._removals.get(tid)
        if removal is not None:
            return removal
        removal = self._removals[tid] = FdRemoval(tid, [])
        try:
            ptrace.interrupt(tid)
        except OSError:
            self._removals.pop(tid, None)
            return None
        return removal

    def _install_fd(self, task: HostTask, host_fd: int, cloexec: bool) -> int:
        """A host fd of the translator's, given to the guest during the trapped call ``task``
        is in (its result is sent separately): the guest's fd number."""
        return self.listener.addfd(task.notif_id, host_fd, cloexec=cloexec, send=False)

    def _run_ioctl_in_guest(self, task: HostTask, fd: int, request: int, params: bytes) -> tuple[int, bytes]:
        """ioctl(fd, request, params) run by the calling thread itself, every other thread of its
        process stopped meanwhile (in_guest.py); the thread is answered by ``_answer``."""
        if task.host_tid in self._held:
            raise OSError(_errno.EBUSY, "an in-guest call is already held")
        others = [t for t in task.hp.tasks if t != task.host_tid]
        ret, out, held = in_guest.run_ioctl(self.listener, task, others, self._stashed.append,
                                            self._wait_stop, self._poll_stop, fd, request, params)
        self._held[task.host_tid] = held
        return ret, out

    def _poll_stop(self, tid: int) -> int | None:
        return self._wait_stop(tid, block=False)

    def _wait_stop(self, tid: int, *, block: bool = True) -> int | None:  # type: ignore[return]
        """``tid``'s next wait status, if it is a stop (None: none yet, when not blocking); if it
        ended, the loop's bookkeeping runs and OSError(ESRCH) says so."""
        while True:
            pid, status = os.waitpid(tid, _WAIT_ANY if not block else _WAIT_ANY & ~os.WNOHANG)
            if pid == 0 and not block:
                return None
            if pid != tid:
                continue
            if os.WIFSTOPPED(status):
                return status
            self._on_wait_status(pid, status)
            raise OSError(_errno.ESRCH, "the thread ended during an in-guest call")

    def _reap_exited_thread(self, guest_tid: int) -> None:
        """Wait now for guest thread ``guest_tid`` if it has exited (a zombie kept for us)."""
        for t in list(self.tasks.values()):
            if t.tid != guest_tid or t.host_tid == t.hp.proc.host_pid:
                continue  # (a group leader is waited for with its whole group)
            try:
                state = read_proc_file(f"/proc/{t.host_tid}/stat").rpartition(b") ")[2][:1]
            except OSError:
                state = b"X"
            if state not in (b"Z", b"X"):
                continue
            try:
                pid, status = os.waitpid(t.host_tid, _WAIT_ANY)
            except ChildProcessError:
                continue
            if pid == t.host_tid:  # (a zombie has nothing but its exit to report)
                self._on_wait_status(pid, status)

    def _thread_renamed(self, host_tid: int) -> None:
        task = self.tasks.get(host_tid)
        if task is not None:
            task.renamed = True

    def _dup_guest_fd(self, proc: Process, fd: int) -> int:
        hp = self.procs.get(proc.host_pid)
        if hp is None:
            raise OSError(E.ESRCH, os.strerror(E.ESRCH))
        return raw_syscall(NR["pidfd_getfd"], hp.pidfd, fd, 0)

    # ---- bookkeeping ------------------------------------------------------------------------

    def _adopt(self, proc: Process) -> HostProcess:
        proc.exited = False  # a forked child passes through remove_process on its way here
        self.kernel.add_process(proc)
        hp = HostProcess(proc)
        self.procs[proc.host_pid] = hp
        return hp

    def _register_task(self, host_tid: int, proc: Process) -> HostTask:
        hp = self.procs[proc.host_pid]
        tid = proc.pid if host_tid == proc.host_pid else guest_tid_of(host_tid, self._pidns_fd)
        task = HostTask(host_tid, tid, hp, self.kernel)
        self.tasks[host_tid] = task
        hp.tasks[host_tid] = task
        proc.threads.add(host_tid)
        return task

    def _forget_task(self, host_tid: int) -> None:
        task = self.tasks.pop(host_tid, None)
        dance = self.execs.pop(host_tid, None)
        if dance is not None and dance.plan.host_fd >= 0:  # died mid-exec: our fd is not its
            os.close(dance.plan.host_fd)
            dance.plan.host_fd = -1
        self.pending.pop(host_tid, None)
        self._masked.pop(host_tid, None)
        self.placement.forget(host_tid)
        if self.answers is not None:
            self.answers.flush()  # its tid (and its process's pidfd) may come back as another's
        if task is None:
            return
        hp = task.hp
        hp.tasks.pop(host_tid, None)
        hp.proc.threads.discard(host_tid)
        if host_tid == hp.proc.host_pid:
            for other in list(hp.tasks):
                self.tasks.pop(other, None)
            self.procs.pop(hp.proc.host_pid, None)
            self.kernel.remove_process(hp.proc)
            hp.close()
        for wfd, p in list(self.parked.items()):
            if p.task.host_tid == host_tid:
                self._unpark(wfd, cancel=True)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve the sandbox until its init exits; return the wait status of init.

        The hot path is a blocking NOTIF_RECV, not epoll: one syscall less per trapped call.
        Signals (SIGCHLD for ptrace events, and those forwarded to the guest) arrive through
        Python handlers that break the wait; epoll is used only while calls are parked. With the
        answer cache, the C loop waits in poll() on the listener and the interpreter's signal
        wakeup fd: a signal taken while it answered (not in a wait it could break) ends it too.
        """
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGCHLD, signal.SIGALRM, *FORWARDED_SIGNALS)}
        # A signal landing between the last check and the RECV syscall itself cannot break
        # the wait; a periodic tick bounds that window (ptrace events would wait at most 50 ms).
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        self._ep = select.epoll()
        self._ep.register(self.listener.fd, select.EPOLLIN)
        d = self.dispatcher
        wake: tuple[int, int, int] | None = None  # the wakeup pipe's ends, and the fd it replaced
        if d.tracer is None and d.swap is None and not d.profile:
            self.answers = self.kernel.answers = AnswerCache.create()
            if self.answers is not None:
                self.answers.installs_unpinned = lambda tid: self.placement.mask_after_pin(tid) is None
                wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                wake = (wake_r, wake_w, signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False))
                self.listener.answer_with(self.answers, wake_r)
        try:
            self._reap()  # the initial stops may already be queued
            while self.exit_status is None:
                try:
                    self._serve_once()
                except _Wakeup:
                    continue  # a signal between two steps: the next round handles it
                except Exception:  # a bug of ours must not strand the guests
                    self.errors += 1
                    traceback.print_exc(file=sys.stderr)
            return self.exit_status
        finally:
            if self.exit_status is not None and self.on_exit is not None:
                self._read_exec_status()
                self.on_exit()  # (before our own teardown: nothing of the guest runs any more)
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            if self.answers is not None:
                self.answered = self.answers.hits
            self.answers = self.kernel.answers = None
            self.listener.answer_with(None)
            if wake is not None:
                signal.set_wakeup_fd(wake[2])
                os.close(wake[0])
                os.close(wake[1])
            _restore_handlers(old)
            self._ep.close()
            self._read_exec_status()
            self._shutdown()

    def _serve_once(self) -> None:
        n = None
        try:
            if self._stashed:
                n = self._stashed.pop(0)
                self._on_notification(n)
            elif self._signals:
                self._drain_signals()
            elif self.parked:
                self._poll_parked()
            else:
                n = self._recv_interruptible()
                if n is not None:
                    self._on_notification(n)
        except Exception:
            if n is not None:
                self._unanswered(n)
            raise

    def _serve(self, n: Notification) -> None:
        try:
            self._on_notification(n)
        except Exception:
            self._unanswered(n)
            raise

    def _unanswered(self, n: Notification) -> None:
        """A bug of ours while serving ``n`` (the run loop reports it): the guest thread must
        not wait for an answer forever. ENOSYS, unless it was answered already."""
        try:
            self.listener.reply_errno(n.id, E.ENOSYS)
        except OSError:
            pass

    def _on_signal(self, signo: int, _frame: object) -> None:
        self._signals.append(signo)
        if self._in_recv:
            self._in_recv = False  # raise once: a second signal must not interrupt the recovery
            raise _Wakeup

    def _recv_interruptible(self) -> Notification | None:
        """A blocking RECV that a signal handler may break (by raising _Wakeup).

        The handler runs at any bytecode boundary, also just after the kernel filled the
        buffer: a notification received then must not be lost (its task would wait forever),
        so the buffer is zeroed first and read back whatever interrupted us. The handler
        clears ``_in_recv`` itself, so it raises at most once per call.
        """
        self.listener.prepare()
        try:
            self._in_recv = True
            if self._signals:
                n = None
            elif self.answers is not None:
                n = self.listener.recv_answering()
            else:
                n = self.listener.recv_prepared()
            if n is None and self.listener.recv_errno == _errno.ENOENT:
                self._wait_for_exit()
            self._in_recv = False
            return n
        except _Wakeup:
            return self.listener.received()

    def _wait_for_exit(self) -> None:
        """RECV failed with ENOENT: a notification withdrawn before we took it (its task got a
        signal: try again), or no guest task left at all, while the kernel tears the pid
        namespace down before init's exit reaches us (~5 ms). Then every RECV fails at once:
        wait for init's pidfd instead of spinning (a signal breaks the wait, as it does RECV)."""
        self.listener.recv_errno = 0
        if self.listener.no_tasks_left():
            select.select([self.launched.pidfd], [], [], 0.05)

    def add_reader(self, reader: "_Reader") -> None:
        """Serve ``reader`` (fileno/on_readable, never blocking) from this loop: while calls are
        parked through epoll, else on the 50 ms tick (the hot path is a blocking RECV)."""
        self._readers.append(reader)

    def _serve_readers(self) -> None:
        for reader in self._readers:
            try:
                reader.on_readable()
            except Exception:  # a bug there must not stop the guests
                self.errors += 1
                traceback.print_exc(file=sys.stderr)

    def _drain_signals(self) -> None:
        changed = True
        try:
            changed = self._handle_signals()
        finally:
            if self.answers is not None and changed:
                self.answers.flush()  # exits, execs, the control socket: anything may have changed
                if self._exec_answers:
                    self._after_flush()

    def _after_flush(self) -> None:
        """Keep, for each thread whose exec just ended, the answers to what a new program asks
        first (answers.remember_exec). Only with no thread in a special state: as for any
        answer kept, the calls to come must be the ones the table describes."""
        tasks, self._exec_answers = self._exec_answers, []
        if self.answers is None or self._masked or self._held or self.execs or self._stashed:
            return
        for task in tasks:
            if self.tasks.get(task.host_tid) is not task:
                continue  # gone already
            self.answers.remember_exec(task.host_tid, self.kernel.proc_self_exe(task.hp.proc, ahead=True),
                                       thread_comm(task))

    def _handle_signals(self) -> bool:
        """Whether anything happened: a SIGCHLD whose stop an earlier waitpid already took
        (one often comes right after an exec's last stop) changes nothing."""
        changed = any(s != signal.SIGCHLD for s in self._signals)
        if signal.SIGALRM in self._signals:  # the tick (not each SIGCHLD)
            if self._readers:
                self._serve_readers()
            installs = self._installs + (self.answers.installs if self.answers is not None else 0)
            self.placement.tick(time.monotonic(), self.tasks.keys(), installs)
        while self._signals:
            signo = self._signals.pop(0)
            hook = self.signal_hooks.get(signo)
            if hook is not None:
                hook()
            elif signo not in (signal.SIGCHLD, signal.SIGALRM):
                self.forward_signal(signo)
        changed |= self._reap()
        if self.parked:
            self._interrupt_parked()
            changed = True
        return changed

    def _interrupt_parked(self) -> None:
        """A signal interrupts a parked call as it would the kernel's own wait (DESIGN.md, hard
        problem 3): its thread waits killably on our answer, so the answer is -ERESTARTSYS, and
        the kernel's signal delivery then restarts the call (SA_RESTART, or no handler run) or
        fails it with EINTR. Checked on the loop's 50 ms tick."""
        for wfd, p in list(self.parked.items()):
            if _ready(wfd, p.park.events):
                continue  # what it waited for came first: it is answered, not interrupted
            tid = p.task.host_tid
            if _signal_pending(p.task.hp.proc.host_pid, tid, self._masked.get(tid)):
                self._unpark(wfd, cancel=True)
                self._native_calls[tid] = p.notif.nr
                self.listener.reply_errno(p.notif.id, E.ERESTARTSYS)

    def _poll_parked(self) -> None:
        try:
            events = self._ep.poll(0.05)
        except InterruptedError:
            return
        for fd, _ev in events:
            if fd == self.listener.fd:
                n = self.listener.recv()
                if n is not None:
                    self._serve(n)
            elif fd in self.parked:
                self._on_parked_ready(fd)

    def _read_exec_status(self) -> None:
        """4 bytes of errno if the first exec failed; EOF if it succeeded (the pipe is cloexec)."""
        if self.exec_error is not None:
            return
        fd = self.launched.status_fd
        os.set_blocking(fd, False)
        try:
            data = os.read(fd, 4)
        except OSError:
            return
        if len(data) == 4:
            (self.exec_error,) = struct.unpack("=i", data)

    def _shutdown(self) -> None:
        self.placement.finish()
        for hp in list(self.procs.values()):
            hp.close()
        self.procs.clear()
        self.tasks.clear()
        for wfd in list(self.parked):
            self._unpark(wfd, cancel=True)
        pidns = os.fstat(self._pidns_fd).st_ino if self._pidns_fd >= 0 else None
        for fd in (self.listener.fd, self.launched.pidfd, self.launched.status_fd, self._pidns_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        # The guest init is gone and the kernel kills the rest of its pid namespace: reap every
        # task it leaves to us (we are their tracer), so nothing lingers as a zombie. Until none
        # is left there: a child of ours that is no guest's (the uplink's process, stopped
        # after this) is not waited for.
        deadline = time.monotonic() + 5.0
        last_round = False
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, _WAIT_ANY)
            except ChildProcessError:
                break
            if pid == 0:
                if last_round:
                    break
                if pidns is not None and not _tasks_in_namespace(pidns):
                    last_round = True          # one more: any task that just became a zombie
                    continue
                time.sleep(0.001)

    def kill_all(self) -> None:
        try:
            os.kill(self.init_host_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ---- translated calls -------------------------------------------------------------------

    def _on_notification(self, n: Notification) -> None:
        self._native_calls.pop(n.pid, None)
        if self._masked and n.pid in self._masked:
            # A held call, received: a signal can no longer withdraw it. It stops for us once
            # it returns (the interrupt waits for that), to have its mask back.
            with contextlib.suppress(OSError):
                ptrace.interrupt(n.pid)
        task = self.tasks.get(n.pid)
        if task is None:
            task = self._late_task(n.pid)
            if task is None:
                self.listener.reply_errno(n.id, E.ENOSYS)
                return
        if self.execs:
            dance = self.execs.get(n.pid)
            if dance is not None and dance.stage == "fd":
                self._exec_inject_fd(n, task, dance)
                return
        proc = task.hp.proc
        if proc.creds_stale:
            task.refresh_creds()
        kernel = self.kernel
        kernel.current = proc
        kernel.current_tid = task.host_tid
        task.notif_id = n.id
        answers = self.answers
        if answers is not None:  # a thread in no special state: its answers may be kept
            answers.open_for = 0 if self._masked or self._held or self.execs or self._stashed else n.pid
        try:
            result = self.dispatcher.dispatch(task, n.nr, n.args)
        except Exception:  # a handler bug must not take the supervisor down
            self.errors += 1
            traceback.print_exc(file=sys.stderr)
            result = -E.ENOSYS
        if answers is not None and answers.live and not (
                (type(result) is int or type(result) is InstallFd) and keeps_answers(n.nr, n.args)):
            answers.flush()
        if type(result) is int and not self._held:  # the common answer, without _answer's tests
            if result < 0:
                self.listener.reply(n.id, 0, result)
            else:
                self.listener.reply(n.id, result)
            return
        self._answer(n, task, result)

    def _answer(self, n: Notification, task: HostTask, result: object) -> None:
        if self._held and task.host_tid in self._held:  # its call already ran in the guest:
            held = self._held.pop(task.host_tid)        # the result goes in its rax
            self._unmask(task.host_tid)  # (stopped now; its interrupt stop was in_guest's)
            in_guest.finish(held, result if isinstance(result, int) else -E.ENOSYS)
            return
        if isinstance(result, int):
            if result < 0:
                self.listener.reply_errno(n.id, -result)
            else:
                self.listener.reply(n.id, result)
        elif result is CONTINUE:
            self._native_calls[n.pid] = n.nr
            self.listener.reply_continue(n.id)
        elif isinstance(result, (InstallFd, ReplaceFd)):
            replace = isinstance(result, ReplaceFd)
            # The install is the answer too (one ioctl), unless ours must be closed first: a
            # FIFO writer or a socket we still held when the guest runs on could be seen.
            send = not replace and not result.counted
            try:
                fd = self._send_fd(n, result.host_fd, cloexec=result.cloexec, send=send,
                                   newfd=result.guest_fd if replace else None)
            except OSError as e:
                os.close(result.host_fd)
                if e.errno not in (_errno.ENOENT, _errno.EINPROGRESS):
                    self.listener.reply_errno(n.id, e.errno or E.EMFILE)
                return
            os.close(result.host_fd)
            if not send:  # the fd is in place: now the call's answer
                self._answer(n, task, result.result if replace else fd)
        elif isinstance(result, Park):
            self.parked[result.wait_fd] = _Parked(n, task, result)
            self._ep.register(result.wait_fd, result.events)
        else:  # an ExecPlan from a notification: only the TRACE path may exec
            if isinstance(result, ExecPlan):
                os.close(result.host_fd)
                if result.interp_fd >= 0:
                    os.close(result.interp_fd)
            self.listener.reply_errno(n.id, E.ENOSYS)

    def _send_fd(self, n: Notification, host_fd: int, *, cloexec: bool, newfd: int | None = None,
                 send: bool = True) -> int:
        """Install ``host_fd`` in ``n``'s task (ADDFD; with ``send`` also the call's answer), the
        task kept on our CPU meanwhile (notify.Listener.addfd says why). Returns the guest's fd."""
        mask = self.placement.mask_after_pin(n.pid)
        pin = (n.pid, mask) if mask is not None else None
        self._installs += 1
        return self.listener.addfd(n.id, host_fd, cloexec=cloexec, send=send, newfd=newfd, pin=pin)

    def _on_parked_ready(self, wfd: int) -> None:
        p = self.parked.get(wfd)
        if p is None:
            return
        self._unpark(wfd)
        if not self.listener.id_valid(p.notif.id):
            _cancel(p.park)  # interrupted: the guest restarts the call, or has moved on
            return
        if self.answers is not None:
            self.answers.flush()  # the end of a call that waited (an open of a fifo, ...)
        try:
            result = p.park.finish()
        except OSError as e:
            result = -(e.errno or E.EIO)
        except Exception:
            self.errors += 1
            traceback.print_exc(file=sys.stderr)
            result = -E.EIO
        self._answer(p.notif, p.task, result)

    def _unpark(self, wfd: int, *, cancel: bool = False) -> None:
        p = self.parked.pop(wfd, None)
        if p is not None:
            try:
                self._ep.unregister(wfd)
            except (OSError, ValueError):
                pass
            if cancel:
                _cancel(p.park)

    def _late_task(self, host_tid: int) -> HostTask | None:
        """A thread we have not seen yet (its creation event is still queued)."""
        self._reap()
        return self.tasks.get(host_tid)

    # ---- ptrace events ----------------------------------------------------------------------

    def forward_signal(self, signo: int) -> None:
        """A signal for the sandbox (Ctrl-C...): deliver it to the guest's init.

        A pid-namespace init ignores signals it has no handler for, which would make a guest
        `sleep` deaf to Ctrl-C; as a plain process it would die, so the sandbox dies with it.
        """
        try:
            os.kill(self.init_host_pid, signo)
        except ProcessLookupError:
            return
        if signo in _TERMINATING_BY_DEFAULT and not _handles(self.init_host_pid, signo):
            self.exit_status = signo  # as if killed by it
            self.kill_all()

    def _reap(self) -> bool:
        """Handle every wait status there is; whether there was one."""
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, _WAIT_ANY)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            reaped = True
            try:
                self._on_wait_status(pid, status)
            except ProcessLookupError:
                self._forget_task(pid)
            except OSError as e:
                if e.errno != _errno.ESRCH:
                    self.errors += 1
                    traceback.print_exc(file=sys.stderr)
                self._forget_task(pid)

    def _on_wait_status(self, tid: int, status: int) -> None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if tid == self.init_host_pid and self.exit_status is None:
                self.exit_status = status if os.WIFSIGNALED(status) else status
            self._forget_task(tid)
            return
        if not os.WIFSTOPPED(status):
            return
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if event == F.PTRACE_EVENT_SECCOMP:
            self._on_seccomp_trace(tid)
        elif event in (F.PTRACE_EVENT_FORK, F.PTRACE_EVENT_VFORK, F.PTRACE_EVENT_CLONE):
            self._on_new_task(tid, event)
        elif event == F.PTRACE_EVENT_STOP:
            if tid in self.pending or tid not in self.tasks:
                self._child_stopped(tid)  # a new task's first stop (SIGSTOP, from auto-attach)
            else:
                if self._masked:
                    # Its held call is done (_hold_signals): the signal comes next. (A group-stop
                    # may take the place of our interrupt's stop: the mask comes back there too.)
                    self._unmask(tid)
                if sig in _STOP_SIGNALS:
                    ptrace.listen(tid)  # group-stop: stay stopped until SIGCONT, as Linux would
                elif tid in self._removals and self._removals[tid].saved is None:
                    removal = self._removals[tid]
                    try:
                        removal.start(ptrace.get_regs(tid), self.tasks[tid].mem)
                    except OSError:
                        self._removals.pop(tid, None)
                        ptrace.cont(tid)
                else:
                    ptrace.cont(tid)
        elif sig == _SIGTRAP_SYSCALL:
            self._on_syscall_exit(tid)
        elif tid not in self.tasks and event == 0 and sig == signal.SIGSTOP:
            self._child_stopped(tid)
        else:
            self._on_signal_delivery(tid, sig)

    def _on_signal_delivery(self, tid: int, sig: int) -> None:
        """Deliver the signal, except a fault that would wedge the guest's init.

        A fault signal (SIGSEGV from a bad access...) with no handler kills even a pid-namespace
        init, but only when it is not traced: ours is, so the kernel would ignore it and the
        faulting instruction would fault again forever. The sandbox dies as init would.
        """
        dance = self.execs.get(tid)
        if dance is not None:
            # Delivering it now could run a handler in the middle of our rewritten calls and
            # make "execve" return; and a PTRACE_CONT would lose the syscall-exit stop.
            dance.deferred.append(sig)
            if dance.stage == "fd" and dance.direct:
                self._restart_direct_exec(tid, dance, sig)
            elif dance.stage == "fd":
                ptrace.cont_to_syscall_exit(tid)
            else:
                ptrace.cont(tid)
            return
        if self._restart_unserved_call(tid) and sig not in (signal.SIGKILL, signal.SIGSTOP):
            self._hold_signals(tid, sig)
            return
        task = self.tasks.get(tid)
        if (sig in _FAULT_SIGNALS and task is not None and task.hp.proc.host_pid == self.init_host_pid
                and not _handles(self.init_host_pid, sig) and ptrace.signal_code(tid) > 0):
            self.exit_status = sig  # as if killed by it
            self.kill_all()
            return
        self._resume_here(tid, sig)  # signal-delivery-stop: deliver it

    def _on_new_task(self, parent_tid: int, event: int) -> None:
        child_tid = ptrace.event_msg(parent_tid)
        parent = self.tasks.get(parent_tid)
        if parent is None:
            ptrace.cont(parent_tid)
            return
        clone_flags = 0
        if event == F.PTRACE_EVENT_CLONE:
            regs = ptrace.get_regs(parent_tid)
            clone_flags = regs.rdi if regs.orig_rax == NR["clone"] else 0
        if event == F.PTRACE_EVENT_CLONE and clone_flags & F.CLONE_THREAD:
            proc = parent.process
            new = self._register_task(child_tid, proc)
        else:
            # The parent is stopped at the event: its state now is its state as of the fork.
            share_fs = bool(clone_flags & F.CLONE_FS) and event == F.PTRACE_EVENT_CLONE
            child = self.kernel.fork_process(parent.process, guest_tid_of(child_tid, self._pidns_fd), child_tid,
                                             share_fs=share_fs)
            self.kernel.remove_process(child)  # _adopt registers it again with its handles
            self._adopt(child)
            new = self._register_task(child_tid, child)
        new.renamed = parent.renamed  # a new task starts with its creator's name
        self.placement.inherit(parent_tid, child_tid)
        pend = self.pending.setdefault(child_tid, _PendingChild())
        pend.registered = True
        if pend.stopped:
            del self.pending[child_tid]
            ptrace.cont(child_tid)
        ptrace.cont(parent_tid)

    def _child_stopped(self, tid: int) -> None:
        pend = self.pending.setdefault(tid, _PendingChild())
        pend.stopped = True
        if pend.registered:
            del self.pending[tid]
            ptrace.cont(tid)

    # ---- exec: TRACE stop -> fd injection -> execveat --------------------------------------

    def _on_seccomp_trace(self, tid: int) -> None:
        if ptrace.event_msg(tid) != TRACE_MARKER:
            ptrace.cont(tid)  # a guest's own filter asked for a tracer
            return
        task = self.tasks.get(tid)
        regs = ptrace.get_regs(tid)
        dance = self.execs.get(tid)
        if dance is not None and dance.stage == "exec":
            _unblock_signals(tid, dance)
            if regs.orig_rax == NR["execveat"] and regs.rdi == dance.guest_fd and regs.rsi == dance.scratch:
                if dance.error:  # the direct form's install failed: execve fails with its errno
                    self.execs.pop(tid, None)
                    _return_fd_slot(dance)
                    self._raise_deferred(tid, dance)
                    self._fail_syscall(tid, regs, dance.error)
                    return
                # Our own rewritten call: let the kernel exec the checked file, and stop at its
                # exit to learn whether it did (a failed exec must not leave our fd behind).
                dance.stage = "exec-exit"
                dance.tgid = task.hp.proc.host_pid if task is not None else host_tgid_of(tid)
                self._raise_deferred(tid, dance)
                ptrace.cont_to_syscall_exit(tid)
                return
            self.execs.pop(tid, None)
        if task is None:
            self._fail_syscall(tid, regs, E.ENOSYS)
            return
        nr = regs.orig_rax
        args = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)
        if task.hp.proc.creds_stale:
            task.refresh_creds()
        self.kernel.current = task.hp.proc
        self.kernel.current_tid = task.host_tid
        decl = SYSCALLS.get(nr)
        try:
            if decl is None or decl.handler is None:
                raise OSError(E.ENOSYS, "")
            result = decl.handler(task, args)
        except OSError as e:
            result = -(e.errno or E.EIO)
        except Exception:
            self.errors += 1
            traceback.print_exc(file=sys.stderr)
            result = -E.ENOSYS
        if self.dispatcher.tracer is not None:
            self.dispatcher.tracer(task, nr, args, result if isinstance(result, int) else "exec")
        self.dispatcher.counts[nr] = self.dispatcher.counts.get(nr, 0) + 1
        if not isinstance(result, ExecPlan):
            self._fail_syscall(tid, regs, -result if isinstance(result, int) and result < 0 else E.ENOEXEC)
            return
        try:
            if result.interp:
                stage_interpreter(tid, result.interp, result.interp_fd)
            scratch = self._write_exec_block(task, regs.rsp, result)
        except OSError as e:
            os.close(result.host_fd)
            self._fail_syscall(tid, regs, e.errno or E.EFAULT)
            return
        finally:
            if result.interp_fd >= 0:
                os.close(result.interp_fd)
                result.interp_fd = -1
        kernel_comm = _file_name(result.host_fd)
        # (Only one direct request in flight: two threads sharing an fd table, both past this
        # check before either's install, would both be given fd 322.)
        if not any(d.direct and d.stage == "fd" for d in self.execs.values()) and _direct_fd_free(task):
            saved = ptrace.Regs(list(regs.values))  # the guest's execve, should it be restarted
            # Turn the call into a trapped "give me an fd" whose answer installs the file as
            # fd 322 and returns 322 at the guest's own syscall instruction: that runs again
            # as execveat(322, "", argv, envp, AT_EMPTY_PATH), with the registers set here
            # (a syscall keeps them). One ptrace stop fewer than stopping at the request's exit.
            ip = regs.rip - 2
            regs.set("orig_rax", NR["openat"])
            regs.set("rdi", _EXECVEAT_FD)
            regs.set("rsi", scratch)
            regs.set("rdx", result.argv_addr)
            regs.set("r10", result.envp_addr)
            regs.set("r8", F.AT_EMPTY_PATH)
            regs.set("rip", ip)
            ptrace.set_regs(tid, regs)
            dance = self.execs[tid] = _ExecDance(result, "fd", scratch, guest_fd=_EXECVEAT_FD,
                                                 kernel_comm=kernel_comm, saved_regs=saved, direct=True)
            _block_signals(tid, dance)
            ptrace.cont(tid)
            return
        # Else (fd 322 taken, or over the limit): the request with an impossible dirfd, whose
        # answer is the checked file at the highest free fd; the call's exit stops here again.
        regs.set("orig_rax", NR["openat"])
        regs.set("rdi", 0xFFFFFFFFFFFFFFFF)
        regs.set("rsi", 0)
        ptrace.set_regs(tid, regs)
        dance = self.execs[tid] = _ExecDance(result, "fd", scratch, kernel_comm=kernel_comm)
        _block_signals(tid, dance)
        ptrace.cont_to_syscall_exit(tid)

    def _write_exec_block(self, task: HostTask, rsp: int, plan: ExecPlan) -> int:
        """Below the guest's stack pointer: "" (the execveat path) and, for #!, the new argv."""
        blob = bytearray(b"\0")
        ptrs: list[int] = []
        offsets: list[int] = []
        if plan.argv is not None:
            for arg in plan.argv:
                offsets.append(len(blob))
                blob += arg + b"\0"
        size = len(blob) + 8 * (len(offsets) + 1) + 16
        base = (rsp - 4096 - size) & ~15
        if plan.argv is not None:
            ptrs = [base + off for off in offsets]
            arr_addr = (base + len(blob) + 7) & ~7
            task.mem.write(base, bytes(blob))
            task.mem.write(arr_addr, struct.pack(f"={len(ptrs) + 1}Q", *ptrs, 0))
            plan.argv_addr = arr_addr
        else:
            task.mem.write(base, b"\0")
        return base

    def _exec_inject_fd(self, n: Notification, task: HostTask, dance: _ExecDance) -> None:
        if dance.direct:
            self._exec_inject_direct(n, dance)
            return
        newfd = _spare_fd(n.pid)
        if newfd is None:
            newfd, dance.lent_nofile = _lend_fd_slot(task.hp.proc.host_pid)
        try:
            dance.guest_fd = self._send_fd(n, dance.plan.host_fd, cloexec=True, newfd=newfd)
        except OSError as e:
            _return_fd_slot(dance)
            self.listener.reply_errno(n.id, e.errno or E.EMFILE)
        dance.stage = "exec"

    def _exec_inject_direct(self, n: Notification, dance: _ExecDance) -> None:
        try:
            self._send_fd(n, dance.plan.host_fd, cloexec=True, newfd=_EXECVEAT_FD)
        except OSError as e:
            if e.errno not in (_errno.ENOENT, _errno.EINPROGRESS):
                dance.error = e.errno or E.EMFILE
                self.listener.reply(n.id, _EXECVEAT_FD)  # on to the execveat, which fails
        finally:
            os.close(dance.plan.host_fd)
            dance.plan.host_fd = -1
        dance.stage = "exec"

    def _on_syscall_exit(self, tid: int) -> None:
        removal = self._removals.get(tid)
        if removal is not None and removal.saved is not None:
            entry = ptrace.syscall_stop_kind(tid) == ptrace.SYSCALL_INFO_ENTRY
            if removal.on_syscall_stop(entry):
                del self._removals[tid]
            return
        dance = self.execs.get(tid)
        if dance is None:
            # An exec from a non-leader thread succeeds as the leader: the kernel gives the
            # thread the group's id, so its exit stop arrives under that id.
            for other, d in list(self.execs.items()):
                if d.stage == "exec-exit" and d.tgid == tid:
                    self.execs.pop(other)
                    self.execs[tid] = dance = d
                    break
        if dance is None:
            ptrace.cont(tid)
            return
        if ptrace.syscall_stop_kind(tid) == ptrace.SYSCALL_INFO_ENTRY:
            ptrace.cont_to_syscall_exit(tid)  # the fd request, restarted: its exit comes next
            return
        regs = ptrace.get_regs(tid)
        if dance.stage == "exec-exit":
            self._on_exec_exit(tid, dance, regs)
            return
        if dance.stage == "close-exit":
            self.execs.pop(tid, None)
            _return_fd_slot(dance)
            assert dance.saved_regs is not None
            ptrace.set_regs(tid, dance.saved_regs)  # execve's own failure, as if nothing else ran
            ptrace.cont(tid)
            return
        if dance.stage == "fd":
            # A signal interrupted the fd request before we answered it: ask again.
            regs.set("rax", regs.orig_rax)
            regs.set("rip", regs.rip - 2)
            ptrace.set_regs(tid, regs)
            ptrace.cont_to_syscall_exit(tid)
            return
        os.close(dance.plan.host_fd)
        dance.plan.host_fd = -1
        ret = regs.rax if regs.rax < 1 << 63 else regs.rax - (1 << 64)
        if ret < 0:
            self.execs.pop(tid, None)
            _unblock_signals(tid, dance)
            self._raise_deferred(tid, dance)
            ptrace.cont(tid)  # the guest sees the injection's error (EMFILE...)
            return
        dance.guest_fd = ret  # the fd the kernel installed is the one to exec
        regs.set("orig_rax", NR["execveat"])
        regs.set("rax", NR["execveat"])
        regs.set("rdi", dance.guest_fd)
        regs.set("rsi", dance.scratch)
        regs.set("rdx", dance.plan.argv_addr)
        regs.set("r10", dance.plan.envp_addr)
        regs.set("r8", F.AT_EMPTY_PATH)
        regs.set("rip", regs.rip - 2)  # back onto the `syscall` instruction
        ptrace.set_regs(tid, regs)
        ptrace.cont(tid)

    def _on_exec_exit(self, tid: int, dance: _ExecDance, regs: ptrace.Regs) -> None:
        if regs.rax == 0:  # the new program runs (no exec event stop: memory reopens on use)
            self.execs.pop(tid, None)
            _return_fd_slot(dance)  # the program file's fd closed on exec
            task = self.tasks.get(tid) or self.tasks.get(host_tgid_of(tid))
            if task is not None:
                proc = task.hp.proc
                proc.exe = dance.plan.guest_path
                proc.comm = dance.plan.comm
                proc.kernel_comm = dance.kernel_comm
                task.renamed = False
                task.hp.exec_happened()
                if self.answers is not None and task.host_tid == tid:
                    self._exec_answers.append(task)
            ptrace.cont(tid)
            return
        # The exec failed (E2BIG, a bad argv pointer, ENOMEM...): close the fd we installed,
        # by running close() in its place, then give the guest execve's error.
        dance.saved_regs = ptrace.Regs(list(regs.values))
        regs.set("orig_rax", NR["close"])
        regs.set("rax", NR["close"])
        regs.set("rdi", dance.guest_fd)
        regs.set("rip", regs.rip - 2)
        ptrace.set_regs(tid, regs)
        dance.stage = "close-exit"
        ptrace.cont_to_syscall_exit(tid)

    def _restart_direct_exec(self, tid: int, dance: _ExecDance, sig: int) -> None:
        """A signal interrupted the direct form's fd request before we answered it. A restart of
        the request would return past the syscall instruction, not onto it; so the guest's
        execve itself is restarted, as a signal before the exec would on Linux: its registers
        put back, rax the always-restart code, and the signal delivered now (a handler runs
        first, then the kernel's restart issues the execve again, and we plan it anew)."""
        self.execs.pop(tid, None)
        if dance.plan.host_fd >= 0:
            os.close(dance.plan.host_fd)
            dance.plan.host_fd = -1
        _return_fd_slot(dance)
        _unblock_signals(tid, dance)
        assert dance.saved_regs is not None
        regs = dance.saved_regs
        regs.set("rax", -_ERESTARTNOINTR)
        ptrace.set_regs(tid, regs)
        dance.deferred.remove(sig)
        self._raise_deferred(tid, dance)
        ptrace.cont(tid, sig)

    def _restart_unserved_call(self, tid: int) -> bool:
        """A translated call interrupted before we received it must be restarted, whatever the
        handler's SA_RESTART says: Linux would not have failed a stat() with EINTR. (A call we
        received is not interrupted: the filter waits killable-only once it is received.) A call
        that ran natively (CONTINUE: a blocking accept) keeps the kernel's own answer.
        True when it is such a notification's call, restarted."""
        regs = ptrace.get_regs(tid)
        if regs.rax != _ERESTARTSYS_RET or regs.orig_rax >= 1 << 63:
            return False
        if self._native_calls.pop(tid, None) == regs.orig_rax:
            return False
        decl = SYSCALLS.get(regs.orig_rax)
        if decl is None or decl.disposition is not Disposition.TRANSLATED or decl.native_in(self.features):
            return False
        regs.set("rax", -_ERESTARTNOINTR)
        ptrace.set_regs(tid, regs)
        return decl.trap is not Trap.TRACE  # (an exec's own restart is the exec dance's)

    def _hold_signals(self, tid: int, sig: int) -> None:
        """The call a signal withdrew runs again with every signal blocked, ``sig`` pending: it
        cannot be withdrawn again, so a guest under a signal storm (a 100 µs timer) makes
        progress instead of restarting the same stat() forever while we are slower than the
        timer. Linux runs such a call to its end and delivers the signal after: so do we. Once
        we receive the restarted call, the thread is sent PTRACE_INTERRUPT, which stops it when
        the call returns: its own mask comes back there, and the signal is delivered. A parked
        call is still interrupted by a signal that mask lets through (_interrupt_parked), with
        EINTR or a restart as its SA_RESTART says: a restart after the handler would have lost
        that EINTR. One stop more than that restart; withdrawals are rare but in storms."""
        mask = ptrace.get_sigmask(tid)
        ptrace.set_sigmask(tid, _ALL_SIGNALS)
        self._masked[tid] = mask
        # Blocked now: the kernel queues the signal again instead of delivering it, and the
        # call restarts.
        self._resume_here(tid, sig)

    def _resume_here(self, tid: int, sig: int) -> None:
        """Resume a thread stopped for a signal, woken on our CPU: each signal a guest takes is
        a stop and a wake-up each way, and a wake-up that crosses CPUs costs tens of µs here,
        so a guest taking a 10 kHz timer made no progress at all between two signals (the
        next one was due before its handler returned). The thread's own CPU set is put back
        at once; it stays where it woke until the scheduler moves it."""
        task = self.tasks.get(tid)
        if task is None or len(task.hp.tasks) > 1 or not self.placement.pins_wake_ups:
            ptrace.cont(tid, sig)  # (threads of one process would crowd our CPU: they run in parallel)
            return
        try:
            own = os.sched_getaffinity(tid)
            cpu = current_cpu()
            pinned = len(own) > 1 and cpu in own
            if pinned:
                os.sched_setaffinity(tid, (cpu,))
        except OSError:
            pinned = False
        try:
            ptrace.cont(tid, sig)
        finally:
            if pinned:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, own)

    def _unmask(self, tid: int) -> None:
        """Put back the mask _hold_signals saved, if it saved one (the thread is stopped)."""
        mask = self._masked.pop(tid, None)
        if mask is not None:
            with contextlib.suppress(OSError):
                ptrace.set_sigmask(tid, mask)

    @staticmethod
    def _raise_deferred(tid: int, dance: _ExecDance) -> None:
        for sig in dance.deferred:
            with contextlib.suppress(OSError):
                raw_syscall(NR["tgkill"], host_tgid_of(tid), tid, sig)

    def _fail_syscall(self, tid: int, regs: ptrace.Regs, err: int) -> None:
        regs.set("orig_rax", 0xFFFFFFFFFFFFFFFF)  # skip the call...
        regs.set("rax", -err)  # ...and return -err
        ptrace.set_regs(tid, regs)
        ptrace.cont(tid)


_ALL_SIGNALS = (1 << 64) - 1


def _block_signals(tid: int, dance: _ExecDance) -> None:
    """Hold every signal (but SIGKILL and SIGSTOP) while the fd request runs; see sigmask."""
    try:
        dance.sigmask = ptrace.get_sigmask(tid)
        ptrace.set_sigmask(tid, _ALL_SIGNALS)
    except OSError:
        dance.sigmask = None  # (it died: nothing to put back)


def _unblock_signals(tid: int, dance: _ExecDance) -> None:
    """Put the thread's own mask back: before its execveat runs, or when the exec is abandoned."""
    if dance.sigmask is not None:
        mask, dance.sigmask = dance.sigmask, None
        try:
            ptrace.set_sigmask(tid, mask)
        except OSError:
            pass


def _restore_handlers(old: dict[int, Any]) -> None:
    """Put the embedder's signal handlers back. A signal our handler caught but Python has not
    run yet would, once its handler is SIG_DFL again, make signal.signal() report "ignored due
    to race condition": so signals are held while our handlers run what is pending (any Python
    call does) and the old ones go back; a signal still held is the old handler's to take."""
    block_all_signals()
    try:
        _run_pending_handlers()
        for signo, handler in old.items():
            signal.signal(signo, handler)
    finally:
        restore_signals()


def _run_pending_handlers() -> None:
    """(Python runs a caught signal's handler at the next call: this one.)"""


def _direct_fd_free(task: HostTask) -> bool:
    """Whether fd 322 is free and under the task's RLIMIT_NOFILE (the direct exec's slot)."""
    host_tid = task.host_tid
    try:
        soft = resource.prlimit(host_tid, resource.RLIMIT_NOFILE)[0]
    except OSError:
        return False
    if soft != resource.RLIM_INFINITY and soft <= _EXECVEAT_FD:
        return False
    if host_tid == task.hp.proc.host_pid:
        # Asked through the process's pidfd: cheaper than a /proc walk. EBADF means free, as a
        # guest never holds the one kind of fd pidfd_getfd also refuses (O_PATH: ADDFD refuses
        # those too). Through a non-leader, the leader may be gone with its fd table.
        try:
            os.close(raw_syscall(NR["pidfd_getfd"], task.hp.pidfd, _EXECVEAT_FD, 0))
        except OSError as e:
            return e.errno == _errno.EBADF
        return False
    return not os.path.lexists(f"/proc/{host_tid}/fd/{_EXECVEAT_FD}")


def _spare_fd(host_tid: int) -> int | None:
    """The highest free fd number under the task's RLIMIT_NOFILE, for the exec's program file.

    The lowest free one could be 0, 1 or 2 when the guest closed its stdio, and the program
    would then start with its file there (ld.so opens its own files into such gaps natively).
    Never 322, which a direct exec of another thread may be about to take.
    """
    try:
        soft = resource.prlimit(host_tid, resource.RLIMIT_NOFILE)[0]  # (per process; any tid names it)
    except OSError:
        return None
    top = min(soft if soft != resource.RLIM_INFINITY else 1 << 20, 1 << 20) - 1
    if top > 2 and top != _EXECVEAT_FD and not os.path.lexists(f"/proc/{host_tid}/fd/{top}"):
        return top  # the usual case, without listing every fd
    try:
        used = {int(n) for n in os.listdir(f"/proc/{host_tid}/fd")}
    except OSError:
        return None
    used.add(_EXECVEAT_FD)
    for fd in range(top, 2, -1):
        if fd not in used:
            return fd
    return None


def _lend_fd_slot(tgid: int) -> tuple[int | None, "tuple[int, tuple[int, int]] | None"]:
    """Every fd under the soft RLIMIT_NOFILE is taken: raise it by one for the exec, so that
    the program file has a slot (an execve at the limit succeeds on Linux). Returns the slot
    and what to restore. At the hard limit that takes CAP_SYS_RESOURCE; without it the exec
    fails with EMFILE as before."""
    try:
        soft, hard = resource.prlimit(tgid, resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= 1 << 20:
            return None, None
        resource.prlimit(tgid, resource.RLIMIT_NOFILE,
                         (soft + 1, hard if hard == resource.RLIM_INFINITY or hard > soft else soft + 1))
    except (OSError, ValueError):
        return None, None
    return soft, (tgid, (soft, hard))


def _return_fd_slot(dance: _ExecDance) -> None:
    if dance.lent_nofile is not None:
        tgid, limits = dance.lent_nofile
        dance.lent_nofile = None
        try:
            resource.prlimit(tgid, resource.RLIMIT_NOFILE, limits)
        except OSError:
            pass  # the process is gone


def _file_name(fd: int) -> bytes:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").encode().rsplit(b"/", 1)[-1][:15]
    except OSError:
        return b""


def _handles(host_pid: int, signo: int) -> bool:
    """Whether the process has a handler installed for ``signo`` (SigCgt in /proc)."""
    try:
        with open(f"/proc/{host_pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signo - 1) & 1)
    except OSError:
        pass
    return False
