"""HostScratch: a translator-owned host directory holding shadow objects.

Every VFS object the guest can hold an fd on must be a host object whose (st_dev, st_ino)
names it. Objects with no host counterpart of their own (tmpfs directories, fifos, symlinks
opened with O_PATH) get an empty "shadow" created here on first open. The guest never
reaches this directory by path (its host mount namespace is empty); it only ever holds fds.
"""
from __future__ import annotations

import fcntl
import itertools
import os

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _shm() -> str | None:
    # /dev/shm keeps shadows off the disk; fall back to $TMPDIR.
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def default_parent() -> str:
    """Where scratch directories go."""
    return _shm() or tmp_dir()


def tmp_dir() -> str:
    return os.environ.get("TMPDIR") or "/tmp"


def make_private_dir(parent: str, prefix: str) -> str:
    """A new 0700 directory with an unguessable name (mkdir never follows an attacker's
    symlink; a taken name is retried). tempfile.mkdtemp does the same, for ~4 ms of imports
    on every start."""
    while True:
        path = os.path.join(parent, f"{prefix}{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # whatever the umask
        return path


_PREFIX = "linuxabi-vfs-"


def _sweep(parent: str) -> None:
    """Remove the scratch directories of translators that died without closing theirs (a
    SIGKILL): a live one holds a lock on its directory for as long as it runs, and the kernel
    drops the lock with its last fd. (A lock rather than a pid: a pid may belong to another
    pid namespace, or to a new process.)"""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        try:
            fd = os.open(os.path.join(parent, name), _DIR_FLAGS | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, or another user's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its translator is running
        finally:
            os.close(fd)
        import shutil

        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


class HostScratch:
    """A temporary host directory; ``close()`` removes it and everything in it. Scratch
    directories left by translators that were killed are removed when the next one starts."""

    def __init__(self, parent: str | None = None) -> None:
        parent = parent or default_parent()
        _sweep(parent)
        # Made and locked under a name the sweep ignores, then renamed: a sweep never finds
        # it unlocked.
        new = make_private_dir(parent, ".linuxabi-new-")
        self.fd = os.open(new, _DIR_FLAGS)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # held while we run: see _sweep
        self.path = os.path.join(parent, _PREFIX + os.path.basename(new).removeprefix(".linuxabi-new-"))
        os.rename(new, self.path)
        self._names = itertools.count(1)
        self._subdirs: dict[str, int] = {}

    def _name(self) -> str:
        return f"s{next(self._names)}"

    def make_dir(self) -> str:
        name = self._name()
        os.mkdir(name, 0o700, dir_fd=self.fd)
        return name

    def make_fifo(self) -> str:
        name = self._name()
        os.mkfifo(name, 0o600, dir_fd=self.fd)
        return name

    def make_symlink(self) -> str:
        name = self._name()
        os.symlink("shadow", name, dir_fd=self.fd)
        return name

    def make_file(self) -> str:
        name = self._name()
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.fd))
        return name

    def subdir(self, name: str) -> int:
        """A directory fd (owned by the scratch) on subdirectory ``name`` (not an "s" name: those
        are shadows), made on first use: a work area on the scratch's own filesystem."""
        fd = self._subdirs.get(name)
        if fd is None:
            try:
                os.mkdir(name, 0o700, dir_fd=self.fd)
            except FileExistsError:
                pass
            fd = self._subdirs[name] = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd)
        return fd

    def adopt(self, dir_fd: int, name: bytes) -> str:
        """Move the host object ``name`` (relative to ``dir_fd``, on the scratch's filesystem)
        into the scratch as a new shadow; returns the shadow's name."""
        shadow = self._name()
        os.rename(name, shadow, src_dir_fd=dir_fd, dst_dir_fd=self.fd)
        return shadow

    def open(self, name: str, flags: int) -> int:
        return os.open(name, flags | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self.fd)

    def remove(self, name: str) -> None:
        """Drop a shadow (an fd the guest still holds keeps working)."""
        try:
            if os.path.isdir(os.path.join(self.path, name)) and not os.path.islink(os.path.join(self.path, name)):
                os.rmdir(name, dir_fd=self.fd)
            else:
                os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def close(self) -> None:
        for fd in self._subdirs.values():
            os.close(fd)
        self._subdirs.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            try:
                os.rmdir(self.path)  # the usual case: nothing was left in it
            except OSError:
                import shutil

                shutil.rmtree(self.path, ignore_errors=True)
