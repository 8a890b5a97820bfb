"""AF_UNIX sockets named in the filesystem: bind/connect/sendto on a guest path.

The name is the VFS's: bind makes a socket inode at the guest's path with Linux's checks and
errnos (as mknod would, EEXIST being EADDRINUSE; capability CREATE as mknod), connect and sendto
resolve the path in the VFS (search permission on the way, write permission on the socket; a
capability to WRITE it). The socket is the host's, so data, readiness, accept, SCM_RIGHTS and
credentials stay native, and the kernel itself reports names (getsockname, getpeername,
accept, recvfrom). For those to be the guest's own, the kernel must have recorded the very
string the guest passed: a bind by path records the path as given. So the host bind is made
with "/" and "." both a scaffold directory (in the VFS's host scratch, see vfs/scratch.py), by
a short-lived helper: a thread of ours with its own root and cwd (unshare(CLONE_FS), then
chroot), or where the translator may not chroot, a forked child that chroots in a user
namespace of its own. It binds the guest's socket with the guest's exact sockaddr bytes, as
read once from its memory (never read again). The scaffold holds just the directories that
string walks through (made for it, real directories only, so the kernel's walk there is the
lexical one computed here, ".." stopping at the scaffold as at a root); the new host socket
file is then moved out of the scaffold into the scratch under a short name of its own, which
becomes the socket inode's shadow (vfs/tmpfs.py MemSocket). A bound socket keeps its recorded
name wherever its file moves, the scaffold is emptied again after every bind (no two binds can
collide there), and connect/sendto reach the file by a short translator-side path
(/proc/self/fd/SCRATCHFD/NAME, always within sun_path's 108 bytes) whatever the guest's path.

The host files live in the translator's scratch, not in the guest's host root (the tmpfs the
translator stages ELF interpreters in): the guest never reaches the scratch by any path, so a
call that runs natively with an address (sendmsg) cannot reach a socket past the VFS's
permission and capability checks.

Renames and links of the socket inode need nothing: connect maps the inode to its host file.
When the inode loses its last name, ``released`` removes the host file, so a connect through an
unlinked name fails as on Linux (ENOENT: the name is gone).

A socket inode that is not a guest's bound socket (mknod S_IFSOCK, a socket file in the image)
refuses with ECONNREFUSED, as Linux does when nothing is bound there.

bind_path/connect_path: the caller closes ``g``; sendto_path owns ``g`` and closes it.
"""
from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import threading
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from vfs.tmpfs import MemSocket

from .base import Park, Result
from .fsutil import err

if TYPE_CHECKING:
    from vfs import HostScratch

    from .base import Task
    from .sockutil import GuestSocket

_SOCKADDR_UN = 110  # sizeof(struct sockaddr_un): longer addresses are EINVAL (unix_validate_addr)
_SCAFFOLD = "unix-bind"
_CLONE_NEWUSER = 0x10000000
_POLLOUT = select.POLLOUT

_libc = ctypes.CDLL(None, use_errno=True)


def _guest_path(raw: bytes) -> bytes:
    """The path a sockaddr_un names, as the kernel reads it (unix_mkname_bsd): sun_path up to
    its first NUL within the address length."""
    if len(raw) > _SOCKADDR_UN:
        raise err(E.EINVAL)
    return raw[2:].split(b"\0", 1)[0]


# ---- bind -------------------------------------------------------------------------------------


def bind_path(task: "Task", g: "GuestSocket", raw: bytes) -> Result:
    path = _guest_path(raw)
    vfs = task.kernel.vfs
    fs = task.process.fs
    try:
        vfs.bind_socket(fs, fs.cwd, path, lambda: _host_bind(vfs.scratch, g.fd, raw, path))
    except OSError as e:
        if e.errno == E.EEXIST:
            raise err(E.EADDRINUSE) from None
        raise
    return 0


def _host_bind(scratch: "HostScratch", sock_fd: int, raw: bytes, path: bytes) -> str:
    """Bind host socket ``sock_fd`` with the guest's address ``raw`` (naming ``path``) so that
    the kernel records the guest's string; returns the host file's shadow name."""
    scaffold = scratch.subdir(_SCAFFOLD)
    target, made = _scaffold(scaffold, path)
    try:
        code = _bind_in_helper(scaffold, sock_fd, raw)
        if code:
            raise err(code)
        return scratch.adopt(scaffold, target)
    finally:
        for d in reversed(made):
            try:
                os.rmdir(d, dir_fd=scaffold)
            except OSError:
                pass


def _scaffold(scaffold: int, path: bytes) -> tuple[bytes, list[bytes]]:
    """Make the directories the kernel walks through for ``path`` inside the scaffold, where
    both "/" and the current directory are the scaffold itself (".." stops there, as at a
    root). Returns where the socket's file will be, relative to the scaffold, and the
    directories made (parents first)."""
    parts = path.split(b"/")
    last = parts.pop()
    if last in (b"", b".", b".."):  # the VFS refused these already (EEXIST, ENOENT)
        raise err(E.EINVAL)
    stack: list[bytes] = []
    made: list[bytes] = []
    for part in parts:
        if part in (b"", b"."):
            continue
        if part == b"..":
            if stack:
                stack.pop()
            continue
        stack.append(part)
        rel = b"/".join(stack)
        try:
            os.mkdir(rel, 0o700, dir_fd=scaffold)
            made.append(rel)
        except FileExistsError:
            pass
    target = b"/".join([*stack, last])
    try:  # nothing stays in the scaffold; a leftover of a crashed bind must not make EADDRINUSE
        os.unlink(target, dir_fd=scaffold)
    except OSError:
        pass
    return target, made


def _bind_in_helper(root_fd: int, sock_fd: int, raw: bytes) -> int:
    """bind(sock_fd, raw) with "/" and "." being ``root_fd``: 0 or the errno. In a thread of
    ours with its own root and cwd (unshare(CLONE_FS)) where we may chroot, else in a forked
    child (which may chroot in a user namespace of its own). Neither can block."""
    global _threads_chroot
    if _threads_chroot:
        code = _bind_in_thread(root_fd, sock_fd, raw)
        if code is not None:
            return code
        _threads_chroot = False
    return _bind_in_child(root_fd, sock_fd, raw)


_threads_chroot = True  # until a thread's chroot is refused: then forked children do it
_CLONE_FS = 0x200


def _bind_in_thread(root_fd: int, sock_fd: int, raw: bytes) -> int | None:
    """None when this thread may not chroot (an unprivileged translator)."""
    out: list[int | None] = [E.EIO]

    def run() -> None:
        try:
            if _libc.unshare(_CLONE_FS) != 0:  # root and cwd of this thread only, from now on
                out[0] = None
                return
            os.fchdir(root_fd)
            try:
                os.chroot(".")
            except PermissionError:
                out[0] = None
                return
            out[0] = 0 if _libc.bind(sock_fd, raw, len(raw)) == 0 else ctypes.get_errno()
        except OSError as e:
            out[0] = e.errno or E.EIO
        # the thread ends here, and its chrooted root and cwd with it

    t = threading.Thread(target=run, name="linuxabi-unix-bind", daemon=True)
    t.start()
    t.join()
    return out[0]


def _bind_in_child(root_fd: int, sock_fd: int, raw: bytes) -> int:
    """The same in a forked child: a child of ours that nothing else waits for while we do
    (the supervisor reaps only in its own loop, which is not running now)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = E.EIO
        try:
            os.fchdir(root_fd)
            try:
                os.chroot(".")
            except PermissionError:  # an unprivileged translator: chroot in a user namespace
                if _libc.unshare(_CLONE_NEWUSER) != 0:
                    raise
                os.chroot(".")
            code = 0 if _libc.bind(sock_fd, raw, len(raw)) == 0 else ctypes.get_errno()
        except OSError as e:
            code = e.errno or E.EIO
        except BaseException:  # noqa: BLE001 - nothing may escape the child
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return E.EIO


# ---- connect and sendto -----------------------------------------------------------------------


def _host_address(task: "Task", raw: bytes) -> bytes:
    """The host address of the socket the guest's AF_UNIX address names (the lookup and
    permission errors as Linux's unix_find_bsd gives them)."""
    path = _guest_path(raw)
    vfs = task.kernel.vfs
    fs = task.process.fs
    inode = vfs.socket_location(fs, fs.cwd, path).inode
    scratch = vfs.scratch
    if not isinstance(inode, MemSocket) or inode.shadow is None or scratch.fd < 0:
        raise err(E.ECONNREFUSED)  # a socket inode nothing is bound to, or not a socket
    return struct.pack("=H", F.AF_UNIX) + b"/proc/self/fd/%d/%s\0" % (scratch.fd, inode.shadow.encode())


def _refused(code: int) -> int:
    """A host file gone under a name the VFS still has (cannot happen but by a race with the
    end of the sandbox) is a socket nothing is bound to."""
    return E.ECONNREFUSED if code in (E.ENOENT, E.ENOTDIR) else code


def connect_path(task: "Task", g: "GuestSocket", raw: bytes) -> Result:
    addr = _host_address(task, raw)
    # As a non-blocking caller: a stream listener with a full backlog is EAGAIN (Linux would
    # make a blocking caller wait), never a wait of ours.
    blocking = os.get_blocking(g.fd)
    if blocking:
        os.set_blocking(g.fd, False)
    try:
        r = _libc.connect(g.fd, addr, len(addr))
        code = ctypes.get_errno() if r < 0 else 0
    finally:
        if blocking:
            os.set_blocking(g.fd, True)
    return -_refused(code)


def sendto_path(task: "Task", g: "GuestSocket", raw: bytes, data: bytes, flags: int) -> Result:
    try:
        if g.type != F.SOCK_DGRAM:
            # A stream socket refuses any address (EISCONN/EOPNOTSUPP) and a seqpacket one
            # ignores it, both without looking it up: the kernel's own answer, as for any name.
            from .sockutil import send_now

            return send_now(task, g, data, flags, raw)
        addr = _host_address(task, raw)
    except BaseException:
        g.close()
        raise
    return _send_dgram(task, g, data, flags, addr)


def _send_dgram(task: "Task", g: "GuestSocket", data: bytes, flags: int, addr: bytes) -> Result:
    r = _libc.sendto(g.fd, data, len(data), flags | F.MSG_DONTWAIT | F.MSG_NOSIGNAL, addr, len(addr))
    code = ctypes.get_errno() if r < 0 else 0
    if code == E.EAGAIN and not flags & F.MSG_DONTWAIT and os.get_blocking(g.fd):
        return _park_for_room(task, g, data, flags, addr)
    g.close()
    return -_refused(code) if code else r


def _park_for_room(task: "Task", g: "GuestSocket", data: bytes, flags: int, addr: bytes) -> Result:
    """A blocking sender without room waits, parked. The room missing is the receiver's queue
    (its length limit) or the sender's own buffer: an unconnected sender's POLLOUT says only
    the latter, so the former is waited for on a probe socket connected to the receiver, which
    the kernel makes writable when the receiver's queue drains (unix_dgram_peer_wake_me)."""
    wait_fd = g.fd
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if _libc.connect(probe.fileno(), addr, len(addr)) == 0:
            p = select.poll()
            p.register(probe.fileno(), _POLLOUT)
            if not p.poll(0):
                wait_fd = probe.detach()
    finally:
        probe.close()

    def drop_probe() -> None:
        if wait_fd != g.fd:
            os.close(wait_fd)

    def again() -> Result:
        drop_probe()
        return _send_dgram(task, g, data, flags, addr)

    def cancel() -> None:  # the guest was interrupted (it restarts the call) or exited
        drop_probe()
        g.close()

    return Park(wait_fd, again, events=_POLLOUT, cancel=cancel)
