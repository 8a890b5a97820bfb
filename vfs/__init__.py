"""The guest's filesystem: path walk with Linux's rules, and the filesystems under it.

Every guest fd is a host object the VFS made (a memfd, a read-only image file, a shadow
directory, a host device), so reads and writes never trap. Modules, one job each:

- ``vfs.py``       Vfs: the operations the syscall handlers call (errno order as fs/namei.c)
- ``walk.py``      path resolution (symlinks, ``..``, mounts, roots, limits)
- ``mount.py``     mounts and the mount table
- ``inode.py``     Inode / Dentry / DirInode / SymlinkInode base classes
- ``perm.py``      permission checks against an FsContext's fs credentials
- ``imagefs.py``   read-only host directory (the image)
- ``tmpfs.py``     RAM filesystem, memfd-backed files (also the overlay's upper layer)
- ``overlay.py``   writable RAM layer over an ImageFs (copy-up, whiteouts, opaque dirs)
- ``devfs.py``     /dev
- ``special.py``   fifos, sockets, device nodes found on a filesystem
- ``synthetic.py`` the extension point for generated filesystems (procfs)
- ``scratch.py``   the host scratch directory holding shadow objects
"""
from .devfs import DevFs
from .filesystem import FileSystem
from .imagefs import ImageFs
from .inode import Dentry, DirInode, Inode
from .mount import Mount
from .overlay import OverlayFs
from .scratch import HostScratch
from .synthetic import DynamicDir, DynamicSymlink, MagicLink, SyntheticFile, SyntheticFs
from .tmpfs import TmpFs
from .types import DirEntry, FsContext, Location, Opened, StatResult
from .vfs import Vfs

__all__ = [
    "Vfs", "FsContext", "Location", "StatResult", "DirEntry", "Opened", "FileSystem", "ImageFs",
    "TmpFs", "OverlayFs", "DevFs", "Inode", "HostScratch", "Dentry", "DirInode", "Mount",
    "DynamicDir", "DynamicSymlink", "MagicLink", "SyntheticFile", "SyntheticFs",
]
