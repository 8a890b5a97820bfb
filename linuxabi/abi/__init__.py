"""Linux ABI data (syscall numbers, errno, flag constants, struct layouts) generated from the
kernel uapi headers by tools/gen_abi.py; `python3 tools/gen_abi.py --check` verifies it."""
from . import aarch64, errno, flags, structs, x86_64

__all__ = ["aarch64", "errno", "flags", "structs", "x86_64"]
