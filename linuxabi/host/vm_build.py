"""Builds ``linuxabi.host._vm``, the hot path's compiled helpers (a cffi extension in API mode:
a direct C call, ~1 us cheaper than the same work through the ABI-mode libc bindings):

- ``vm_write``: guest memory writes with process_vm_writev (linuxabi/host/memory.py); a stat
  makes one;
- ``addfd_pinned``: the fd install of every translated open (linuxabi/host/notify.py): signals
  blocked, the guest kept on our CPU, SECCOMP_IOCTL_NOTIF_ADDFD, both undone; five system
  calls without a return to Python between them;
- ``fd_key``: the (st_dev, st_ino) behind a guest fd (pidfd_getfd, fstat, close), which is how
  fstat, fchdir, getdents and every dirfd-relative call find the fd's VFS location
  (linuxabi/host/task.py).

``make setup`` runs ``python -m linuxabi.host.vm_build``; without the module, the same steps run
through the ABI-mode bindings, with the same behaviour.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "linuxabi.host._vm"

CDEF = """
long vm_write(int pid, unsigned long addr, const char *data, unsigned long n);
long vm_read(int pid, unsigned long addr, char *data, unsigned long n);
long addfd_pinned(int listener, unsigned long request, char *addfd, int tid,
                  const char *all_cpus, unsigned long all_cpus_size);
int fd_key(int pidfd, int fd, unsigned long long *key);
"""

SOURCE = """
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/* The number of bytes moved, or -errno. */
static long vm_write(int pid, unsigned long addr, const char *data, unsigned long n)
{
    struct iovec local = {(void *)data, n}, remote = {(void *)addr, n};
    long put = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    return put < 0 ? -errno : put;
}

/* The number of bytes read, or -errno. */
static long vm_read(int pid, unsigned long addr, char *data, unsigned long n)
{
    struct iovec local = {(void *)data, n}, remote = {(void *)addr, n};
    long got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return got < 0 ? -errno : got;
}

/* ioctl(listener, request, addfd) with every signal blocked (with SEND, an interrupted wait
 * would leave the guest's call answered 0 and our fd never installed), and, when all_cpus is
 * given, thread tid restricted to this CPU meanwhile (ADDFD wakes it without the synchronous
 * hint: a cross-CPU wake-up each way). The new fd number, or -errno. */
static long addfd_pinned(int listener, unsigned long request, char *addfd, int tid,
                         const char *all_cpus, unsigned long all_cpus_size)
{
    sigset_t all, old;
    int pinned = 0, cpu, err = 0;
    long r;

    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    if (all_cpus_size && (cpu = sched_getcpu()) >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pinned = sched_setaffinity(tid, sizeof one, &one) == 0;
    }
    do
        r = ioctl(listener, request, addfd);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        err = errno;
    if (pinned)
        sched_setaffinity(tid, all_cpus_size, (const cpu_set_t *)all_cpus);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return r < 0 ? -err : r;
}

/* key[0], key[1] = st_dev, st_ino of the file behind fd `fd` of the process `pidfd` names;
 * 0, or -errno (EBADF: no such fd; pidfd_getfd also refuses O_PATH fds). */
static int fd_key(int pidfd, int fd, unsigned long long *key)
{
    struct stat st;
    int h = syscall(SYS_pidfd_getfd, pidfd, fd, 0), r, e;

    if (h < 0)
        return -errno;
    r = fstat(h, &st);
    e = errno;
    close(h);
    if (r < 0)
        return -e;
    key[0] = st.st_dev;
    key[1] = st.st_ino;
    return 0;
}
"""


def built() -> bool:
    """Whether a compiled module newer than this builder is in place."""
    mine = Path(__file__).stat().st_mtime
    return any(p.stat().st_mtime >= mine for p in HERE.glob("_vm.*.so"))


def build() -> None:
    from cffi import FFI

    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(MODULE, SOURCE)
    tmp = HERE.parent.parent / "build" / "cffi"
    so = builder.compile(tmpdir=str(tmp), verbose=False)
    target = HERE / Path(so).name
    Path(so).replace(target)


def main() -> int:
    if "--force" not in sys.argv and built():
        return 0
    try:
        build()
    except Exception as e:  # no compiler or no Python headers: the fallback works, slower
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        print(f"linuxabi: {MODULE} not built ({last[0]}); guest memory writes use the ABI-mode call",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
