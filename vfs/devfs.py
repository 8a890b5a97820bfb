"""DevFs: /dev. A tmpfs (so /dev/shm and anything the guest makes there just work) holding
the character devices a program expects, each opened as the host's own device."""
from __future__ import annotations

import os

from .errors import E, fail
from .filesystem import FileSystem
from .inode import PASS_FLAGS, S_IFCHR, S_IFDIR, S_IFLNK, Dentry, Inode
from .synthetic import DynamicDir
from .tmpfs import MemDir, MemSymlink, TmpFs

PTY_SLAVE_MAJOR = 136

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


class PtsDir(DynamicDir):
    """/dev/pts: the sandbox's own devpts instance (empty until one is attached), so a guest
    sees and opens its ptys only, never the host's."""

    __slots__ = ("host_dir", "_nodes")

    def __init__(self, fs: FileSystem, ino: int) -> None:
        super().__init__(fs, ino, mode=0o755)
        self.host_dir: str | None = None
        self._nodes: dict[bytes, DeviceInode] = {}

    def _exists(self, name: bytes) -> bool:
        return self.host_dir is not None and os.path.exists(os.path.join(self.host_dir, name.decode()))

    def generate(self, name: bytes) -> Inode | None:
        if not (name.isdigit() or name == b"ptmx") or not self._exists(name):
            self._nodes.pop(name, None)
            return None
        node = self._nodes.get(name)
        if node is None:
            major, minor = (5, 2) if name == b"ptmx" else (PTY_SLAVE_MAJOR, int(name))
            node = DeviceInode(self.fs, self.fs.new_ino(), f"{self.host_dir}/{name.decode()}", major, minor)
            if name == b"ptmx":
                node.mode = S_IFCHR  # as devpts has it: /dev/ptmx is the one to open
            else:
                node.mode = S_IFCHR | 0o620
            self._nodes[name] = node
        return node

    def names(self) -> list[bytes]:
        if self.host_dir is None:
            return []
        try:
            entries = os.listdir(self.host_dir)
        except OSError:
            return []
        return sorted((n.encode() for n in entries if n.isdigit() or n == "ptmx"), key=lambda n: (len(n), n))


class _TtyAlias(DeviceInode):
    """/dev/tty opening the guest's terminal: the same host object as /dev/pts/0, which
    stays the name fds of it resolve to (ttyname, /proc/PID/fd)."""

    __slots__ = ()
    ephemeral_host = True


class DevFs(TmpFs):
    stable_names = False  # /dev/pts follows the host's ptys

    def __init__(self) -> None:
        super().__init__(mode=0o755)

    def attach_pts(self, host_dir: str) -> None:
        """Serve /dev/pts and /dev/ptmx from a private devpts instance (reached at
        ``host_dir``), and make /dev/tty the guest's terminal there (slave 0)."""
        root = self.root.inode
        pts = root.lookup(b"pts").inode  # type: ignore[union-attr]
        assert isinstance(pts, PtsDir)
        pts.host_dir = host_dir
        ptmx = DeviceInode(self, self.new_ino(), f"{host_dir}/ptmx", 5, 2)
        root.insert(b"ptmx", ptmx, root.mtime_ns)  # type: ignore[attr-defined]
        tty = root.lookup(b"tty").inode  # type: ignore[union-attr]
        if isinstance(tty, DeviceInode):
            root.insert(b"tty", _TtyAlias(self, tty.ino, f"{host_dir}/0", 5, 0), root.mtime_ns)  # type: ignore[attr-defined]


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
        root.insert(b"pts", PtsDir(self, self.new_ino()), t)
        root.insert(b"shm", self.new_dir(S_IFDIR | 0o1777, 0, 0), t)
