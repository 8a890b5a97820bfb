"""Stage ELF interpreters into the guest's host root, where the kernel looks for them.

The kernel execs the guest's program from a translator-opened fd, but it resolves the
program's PT_INTERP (e.g. /lib64/ld-linux-x86-64.so.2) itself, by path, from the calling
task's host root. That root is the sandbox's private tmpfs, empty at launch and written only
by the translator (every guest path syscall is trapped, so the guest cannot touch it): before
an exec, the interpreter the VFS resolved and checked is copied there at the PT_INTERP path.
The guest's image supplies its own ld.so; the host's is never reachable.
"""
from __future__ import annotations

import os

# (host root identity, PT_INTERP path) -> identity of the file staged there
_staged: dict[tuple[int, int, bytes], tuple[int, int, int, int]] = {}


def _present(path: bytes, size: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return st.st_size == size


def _relative(interp: bytes) -> bytes:
    """PT_INTERP as a path below the root; the guest's kernel-level cwd is always "/"."""
    parts = [p for p in interp.split(b"/") if p not in (b"", b".")]
    if not parts or b".." in parts:
        raise OSError(2, "interpreter path not stageable")  # ENOENT, as for a missing interp
    return b"/".join(parts)


def stage_interpreter(host_tid: int, interp: bytes, src_fd: int) -> None:
    """Make ``interp`` (a PT_INTERP string) name a copy of ``src_fd`` in ``host_tid``'s root."""
    stage_into(f"/proc/{host_tid}/root".encode(), interp, src_fd)


def stage_into(root: bytes, interp: bytes, src_fd: int) -> None:
    rst = os.stat(root)
    sst = os.fstat(src_fd)
    key = (rst.st_dev, rst.st_ino, interp)
    ident = (sst.st_dev, sst.st_ino, sst.st_size, sst.st_mtime_ns)
    rel = _relative(interp)
    if _staged.get(key) == ident and _present(root + b"/" + rel, sst.st_size):
        return
    # (A hit alone is not enough: a later sandbox's root tmpfs can reuse a finished one's device
    # number, and its root inode number is always the same.)
    parent, _, name = rel.rpartition(b"/")
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parent.split(b"/") if parent else []:
            try:
                os.mkdir(part, 0o755, dir_fd=dfd)
            except FileExistsError:
                pass
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        tmp = b".staging-" + name
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755, dir_fd=dfd)
        try:
            offset = 0
            while offset < sst.st_size:
                n = os.sendfile(out, src_fd, offset, sst.st_size - offset)
                if n == 0:
                    break
                offset += n
            os.fchmod(out, 0o755)
        finally:
            os.close(out)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)
    _staged[key] = ident
