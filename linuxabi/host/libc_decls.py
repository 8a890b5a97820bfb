"""The C declarations linuxabi.host.libc calls, and the generator of their compiled form.

cffi's in-line ABI mode parses C declarations with pycparser on every start (~30 ms of the
CLI's start-up, mostly building pycparser's lexer); the out-of-line ABI mode parses them once,
here, into ``_libc_cffi.py``, which only needs cffi's backend at run time. The generated module
is committed; ``python -m linuxabi.host.libc_decls`` rewrites it, and a test checks that it
matches these declarations.
"""
from __future__ import annotations

import sys
from pathlib import Path

DECLARATIONS = """
    long syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);
    int *__errno_location(void);
    int sched_getcpu(void);
    struct iovec { void *iov_base; size_t iov_len; };
    ssize_t process_vm_writev(int pid, const struct iovec *local, unsigned long liovcnt,
                              const struct iovec *remote, unsigned long riovcnt, unsigned long flags);
    ssize_t process_vm_readv(int pid, const struct iovec *local, unsigned long liovcnt,
                             const struct iovec *remote, unsigned long riovcnt, unsigned long flags);
"""
MODULE = "_libc_cffi"
GENERATED = Path(__file__).with_name(MODULE + ".py")


def generate(target: Path) -> None:
    from cffi import FFI

    builder = FFI()
    builder.cdef(DECLARATIONS)
    builder.set_source(MODULE, None)
    builder.emit_python_code(str(target))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else GENERATED)
