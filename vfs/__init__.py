"""The guest's filesystem: path walk with Linux's rules, and the filesystems under it.

Every guest fd is a host object the VFS made (a memfd, a read-only image file, a shadow
directory, a host device), so reads and writes never trap; see inode.py and vfs.py.
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
