"""DevFs: /dev. A tmpfs (so /dev/shm and anything the guest makes there just work) holding
the character devices a program expects, each opened as the host's own device."""
from __future__ import annotations

import os

from .errors import E, fail
from .filesystem import FileSystem
from .inode import PASS_FLAGS, S_IFCHR, S_IFDIR, S_IFLNK, Dentry, Inode
from .tmpfs import MemDir, MemSymlink, TmpFs

# name -> (major, minor, host device)
DEVICES: dict[bytes, tuple[int, int, str]] = {
    b"null": (1, 3, "/dev/null"),
    b"zero": (1, 5, "/dev/zero"),
    b"full": (1, 7, "/dev/full"),
    b"random": (1, 8, "/dev/random"),
    b"urandom": (1, 9, "/dev/urandom"),
    b"tty": (5, 0, "/dev/tty"),
}
LINKS: dict[bytes, bytes] = {
    b"fd": b"/proc/self/fd",
    b"stdin": b"/proc/self/fd/0",
    b"stdout": b"/proc/self/fd/1",
    b"stderr": b"/proc/self/fd/2",
}


class DeviceInode(Inode):
    """A character device backed by the host device of the same name."""

    __slots__ = ("host_path",)

    def __init__(self, fs: FileSystem, ino: int, host_path: str, major: int, minor: int) -> None:
        super().__init__(fs, ino, S_IFCHR | 0o666, 0, 0, nlink=0, rdev=os.makedev(major, minor))
        self.host_path = host_path

    def open_host(self, flags: int) -> int:
        try:
            # O_NOCTTY: opening a tty must never make it the translator's controlling tty.
            return os.open(self.host_path, (flags & PASS_FLAGS) | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            if e.errno in (E.ENOENT, E.ENODEV, E.EIO):
                fail(E.ENXIO)
            raise

    def open_path(self) -> int:
        return os.open(self.host_path, os.O_PATH | os.O_CLOEXEC)


class DevFs(TmpFs):
    def __init__(self) -> None:
        super().__init__(mode=0o755)

    def make_root(self) -> Inode:
        root = MemDir(self, 1, S_IFDIR | 0o755, 0, 0, nlink=2)
        return root

    @property
    def root(self) -> Dentry:
        fresh = self._root is None
        d = super().root
        if fresh:
            self._populate(d.inode)  # type: ignore[arg-type]
        return d

    def _populate(self, root: MemDir) -> None:
        t = root.mtime_ns
        for name, (major, minor, host) in DEVICES.items():
            root.insert(name, DeviceInode(self, self.new_ino(), host, major, minor), t)
        for name, target in LINKS.items():
            root.insert(name, MemSymlink(self, self.new_ino(), S_IFLNK | 0o777, 0, 0, nlink=0, target=target), t)
        root.insert(b"pts", self.new_dir(S_IFDIR | 0o755, 0, 0), t)
        root.insert(b"shm", self.new_dir(S_IFDIR | 0o1777, 0, 0), t)
