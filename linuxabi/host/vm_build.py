"""Builds ``linuxabi.host._vm``, the hot path's compiled helpers (a cffi extension in API mode:
a direct C call, ~1 us cheaper than the same work through the ABI-mode libc bindings):

- ``vm_write``: guest memory writes with process_vm_writev (linuxabi/host/memory.py); a stat
  makes one;
- ``addfd_pinned``: the fd install of every translated open (linuxabi/host/notify.py): signals
  blocked, the guest kept on our CPU, SECCOMP_IOCTL_NOTIF_ADDFD, both undone; five system
  calls without a return to Python between them;
- ``fd_key``: the (st_dev, st_ino) behind a guest fd (pidfd_getfd, fstat, close), which is how
  fstat, fchdir, getdents and every dirfd-relative call find the fd's VFS location
  (linuxabi/host/task.py);
- ``answers_serve``: the notification loop's receive, which answers by itself the calls the
  answer cache (linuxabi/host/answers.py) holds: a repeated stat of the same path, an fstat of
  the same file, a read-only open of the same image file (reopened and installed), and the
  same stat or open of a path that does not resolve (its errno), and a program's readlink of its
  /proc/self/exe and prctl(PR_GET_NAME) (what its exec made them). Everything else comes back
  to Python as before.

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

#define ANSWER_PATH_MAX 192
#define ANSWER_STAT_SIZE 144
struct answers;
struct answers *answers_new(void);
void answers_free(struct answers *a);
void answers_flush(struct answers *a);
void answers_admit(struct answers *a, int tid, int pidfd);
void answers_put_path(struct answers *a, int tid, int follow, const char *path, unsigned long len,
                      const char *stat);
void answers_put_open(struct answers *a, int tid, int flags, const char *path, unsigned long len,
                      int dirfd, const char *rel, int host_flags);
void answers_put_error(struct answers *a, int tid, int kind, int flags, const char *path, unsigned long len,
                       int error);
#define ANSWER_LSTAT 0
#define ANSWER_STAT 1
#define ANSWER_OPEN 2
void answers_put_fd(struct answers *a, unsigned long long dev, unsigned long long ino, const char *stat,
                    int live);
void answers_put_value(struct answers *a, int tid, int kind, const char *key, unsigned long len,
                       const char *value, unsigned long value_len);
#define ANSWER_READLINK 3
#define ANSWER_NAME 4
unsigned long long answers_hits(struct answers *a);
unsigned long long answers_installs(struct answers *a);
int answers_serve(int listener, char *notif, struct answers *a, int wake);
"""

SOURCE = """
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

/* ---- the answer cache (linuxabi/host/answers.py says what it may hold and when it empties) --
 * Direct-mapped tables: a new answer replaces whatever hashed to its slot. An entry is valid
 * while its generation is the cache's; answers_flush makes every entry stale at once. */
#define ANSWER_PATH_MAX 192
#define ANSWER_STAT_SIZE 144
#define ANSWER_SLOTS 2048
#define ANSWER_TIDS 512
#define ANSWER_RUN 64 /* answers in a row before Python runs (its signal handlers wait on that) */

#define ANSWER_LSTAT 0 /* a path answer's call */
#define ANSWER_STAT 1
#define ANSWER_OPEN 2
#define ANSWER_READLINK 3 /* readlink(path): the link's target (the value) */
#define ANSWER_NAME 4     /* prctl(PR_GET_NAME): the thread's name, 16 bytes (key NAME_KEY) */
#define NAME_KEY "/proc/self/comm"

struct answer {
    unsigned gen;
    int tid;     /* a path answer: the thread it holds for (credentials, root); 0: an fd answer */
    int kind;    /* a path answer's call: ANSWER_* */
    int flags;   /* ANSWER_OPEN: the guest's open flags */
    int error;   /* a path answer that is an errno (the path does not resolve) */
    unsigned len;
    int dirfd, host_flags; /* ANSWER_OPEN: openat(dirfd, stat, host_flags) reopens the file */
    int live;    /* an fd answer: size, blocks and times come from the host file at each call */
    unsigned value_len; /* ANSWER_READLINK, ANSWER_NAME: the bytes of stat that are the answer */
    unsigned long long dev, ino;
    char path[ANSWER_PATH_MAX];
    char stat[ANSWER_STAT_SIZE]; /* ANSWER_OPEN: the path to reopen, NUL-terminated */
};

struct answer_tid {
    unsigned gen;
    int tid;
    int pidfd;
    /* per call (0 stat, 1 open): lookups missed in a row; calls not looked up from now on */
    unsigned misses[2], skip[2];
};

/* A thread whose lookups of one call keep missing (a program that stats each file once: ls -l,
 * tar) does not have them looked up for a while: a miss costs a read of the path here and
 * another in Python. (Per call: ls -l stats each file once, and opens /etc/localtime for each.) */
#define ANSWER_MISSES 8
#define ANSWER_SKIP 64

struct answers {
    unsigned gen;
    unsigned long long hits, installs; /* calls answered; of them, opens (an fd installed) */
    struct answer slot[ANSWER_SLOTS];
    struct answer_tid tids[ANSWER_TIDS];
};

/* mmap, not calloc (~1 MB): a slot's page is zero until its first answer touches it; calloc's
 * zeroing touched every page of it in each new sandbox (~1 ms of page faults on this VM). */
static struct answers *answers_new(void)
{
    struct answers *a = mmap(NULL, sizeof *a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED)
        return NULL;
    a->gen = 1;
    return a;
}

static void answers_free(struct answers *a) { munmap(a, sizeof *a); }

static void answers_flush(struct answers *a)
{
    if (++a->gen == 0) /* 0 is the generation of a never-used slot */
        a->gen = 1;
}

static unsigned long long mix(unsigned long long h, const void *data, unsigned long n)
{
    const unsigned char *p = data;
    while (n--)
        h = (h ^ *p++) * 1099511628211ULL; /* FNV-1a */
    return h;
}

static struct answer *path_slot(struct answers *a, int tid, int kind, int flags, const char *path,
                                unsigned long len)
{
    unsigned long long h = mix(14695981039346656037ULL, &tid, sizeof tid);
    h = mix(h, &kind, sizeof kind);
    h = mix(h, &flags, sizeof flags);
    return &a->slot[mix(h, path, len) % ANSWER_SLOTS];
}

static struct answer *path_put(struct answers *a, int tid, int kind, int flags, const char *path,
                               unsigned long len)
{
    struct answer *e;
    if (len == 0 || len >= ANSWER_PATH_MAX)
        return NULL;
    e = path_slot(a, tid, kind, flags, path, len);
    e->gen = a->gen;
    e->tid = tid;
    e->kind = kind;
    e->flags = flags;
    e->error = 0;
    e->len = len;
    memcpy(e->path, path, len);
    return e;
}

static struct answer *fd_slot(struct answers *a, unsigned long long dev, unsigned long long ino)
{
    unsigned long long h = mix(14695981039346656037ULL, &dev, sizeof dev);
    return &a->slot[mix(h, &ino, sizeof ino) % ANSWER_SLOTS];
}

static void answers_admit(struct answers *a, int tid, int pidfd)
{
    struct answer_tid *t = &a->tids[(unsigned)tid % ANSWER_TIDS];
    if (t->tid != tid) { /* (its record of misses outlives flushes) */
        memset(t->misses, 0, sizeof t->misses);
        memset(t->skip, 0, sizeof t->skip);
    }
    t->gen = a->gen;
    t->tid = tid;
    t->pidfd = pidfd;
}

static void answers_put_path(struct answers *a, int tid, int follow, const char *path, unsigned long len,
                             const char *stat)
{
    struct answer *e = path_put(a, tid, follow ? ANSWER_STAT : ANSWER_LSTAT, 0, path, len);
    if (e)
        memcpy(e->stat, stat, ANSWER_STAT_SIZE);
}

static void answers_put_error(struct answers *a, int tid, int kind, int flags, const char *path, unsigned long len,
                              int error)
{
    struct answer *e = path_put(a, tid, kind, flags, path, len);
    if (e)
        e->error = error;
}

static void answers_put_open(struct answers *a, int tid, int flags, const char *path, unsigned long len,
                             int dirfd, const char *rel, int host_flags)
{
    struct answer *e;
    if (strlen(rel) >= ANSWER_STAT_SIZE)
        return;
    e = path_put(a, tid, ANSWER_OPEN, flags, path, len);
    if (!e)
        return;
    e->dirfd = dirfd;
    e->host_flags = host_flags;
    strcpy(e->stat, rel);
}

static void answers_put_fd(struct answers *a, unsigned long long dev, unsigned long long ino, const char *stat,
                           int live)
{
    struct answer *e = fd_slot(a, dev, ino);
    e->gen = a->gen;
    e->tid = 0;
    e->len = 0;
    e->live = live;
    e->dev = dev;
    e->ino = ino;
    memcpy(e->stat, stat, ANSWER_STAT_SIZE);
}

static void answers_put_value(struct answers *a, int tid, int kind, const char *key, unsigned long len,
                              const char *value, unsigned long value_len)
{
    struct answer *e;
    if (value_len > ANSWER_STAT_SIZE)
        return;
    e = path_put(a, tid, kind, 0, key, len);
    if (!e)
        return;
    memcpy(e->stat, value, value_len);
    e->value_len = value_len;
}

static unsigned long long answers_hits(struct answers *a) { return a->hits; }
static unsigned long long answers_installs(struct answers *a) { return a->installs; }

/* The guest path argument of notification n (at addr) in path: its length, or -1 when it cannot
 * be read in one go (unmapped, or longer than a cached path). */
static long read_path(const struct seccomp_notif *n, unsigned long addr, char *path)
{
    unsigned long chunk = 4096 - addr % 4096;
    const char *nul;
    long got;

    if (chunk > ANSWER_PATH_MAX)
        chunk = ANSWER_PATH_MAX;
    got = vm_read(n->pid, addr, path, chunk);
    if (got <= 0 || !(nul = memchr(path, 0, got)))
        return -1;
    return nul - path;
}

static struct answer *path_hit(struct answers *a, int tid, int kind, int flags, const char *path, long len)
{
    struct answer *e;
    if (len <= 0 || path[0] != '/')
        return NULL; /* relative: what it names depends on the fd table, which changes natively */
    e = path_slot(a, tid, kind, flags, path, len);
    if (e->gen != a->gen || e->tid != tid || e->kind != kind || e->flags != flags || e->len != len ||
        memcmp(e->path, path, len) != 0)
        return NULL;
    return e;
}

/* The thread's record if its calls of kind `call` (0 stat, 1 open) are to be looked up:
 * admitted since the last flush, and not skipped after a run of misses. */
static struct answer_tid *admitted(struct answers *a, int tid, int call)
{
    struct answer_tid *t = &a->tids[(unsigned)tid % ANSWER_TIDS];
    if (t->gen != a->gen || t->tid != tid)
        return NULL;
    if (t->skip[call]) {
        t->skip[call]--;
        return NULL;
    }
    return t;
}

static void *missed(struct answer_tid *t, int call)
{
    if (++t->misses[call] >= ANSWER_MISSES) {
        t->misses[call] = 0;
        t->skip[call] = ANSWER_SKIP;
    }
    return NULL;
}

/* The struct stat of the file behind fd `fd` of the process `pidfd` names (pidfd_getfd, fstat):
 * 0, or -errno. */
static int fd_stat(int pidfd, int fd, struct stat *st)
{
    int h = syscall(SYS_pidfd_getfd, pidfd, fd, 0), r, e;

    if (h < 0)
        return -errno;
    r = fstat(h, st);
    e = errno;
    close(h);
    return r < 0 ? -e : 0;
}

static void reply_value(int listener, unsigned long long id, long long val, int error)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    resp.val = val;
    resp.error = error;
    while (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno == EINTR)
        ; /* ENOENT: the thread is gone (killed meanwhile); nobody to answer */
}

static void reply(int listener, unsigned long long id, int error) { reply_value(listener, id, 0, error); }

/* The struct stat that answers newfstatat notification n, if the cache holds it, else NULL;
 * *error: the answer when it is an errno (then NULL too). out: room for a live answer (a
 * memfd-backed file: its data's figures are the host's). */
static const char *stat_answer(struct answers *a, const struct seccomp_notif *n, struct stat *out, int *error)
{
    struct answer_tid *t;
    unsigned flags = (unsigned)n->data.args[3];
    char path[ANSWER_PATH_MAX];
    struct answer *e;
    long len;

    if (flags & ~(unsigned)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT) || !(t = admitted(a, n->pid, 0)))
        return NULL;
    if ((len = read_path(n, n->data.args[1], path)) < 0)
        return missed(t, 0);
    if (len == 0) { /* fstat: the file behind the fd */
        struct stat host;
        int fd = (int)n->data.args[0];
        if (!(flags & AT_EMPTY_PATH) || fd < 0 || fd_stat(t->pidfd, fd, &host) != 0)
            return missed(t, 0);
        e = fd_slot(a, host.st_dev, host.st_ino);
        if (e->gen != a->gen || e->tid != 0 || e->dev != host.st_dev || e->ino != host.st_ino)
            return missed(t, 0);
        t->misses[0] = 0;
        if (!e->live)
            return e->stat;
        /* as MemFile.data_stat: the VFS's metadata, the memfd's size, blocks and times (the
         * change time the later of the two) */
        memcpy(out, e->stat, sizeof *out);
        out->st_size = host.st_size;
        out->st_blocks = host.st_blocks;
        out->st_atim = host.st_atim;
        out->st_mtim = host.st_mtim;
        if (host.st_ctim.tv_sec > out->st_ctim.tv_sec ||
            (host.st_ctim.tv_sec == out->st_ctim.tv_sec && host.st_ctim.tv_nsec > out->st_ctim.tv_nsec))
            out->st_ctim = host.st_ctim;
        return (const char *)out;
    }
    e = path_hit(a, n->pid, flags & AT_SYMLINK_NOFOLLOW ? ANSWER_LSTAT : ANSWER_STAT, 0, path, len);
    if (!e)
        return missed(t, 0);
    t->misses[0] = 0;
    *error = e->error;
    return e->error ? NULL : e->stat;
}

/* Answer openat notification n from the cache: 1 if answered with an fd, 2 with an errno, 0 if
 * Python must. */
static int open_answer(int listener, struct answers *a, const struct seccomp_notif *n)
{
    struct answer_tid *t;
    char path[ANSWER_PATH_MAX];
    struct seccomp_notif_addfd add;
    struct answer *e;
    long len, r;
    int fd, flags = (int)n->data.args[2];

    if (!(t = admitted(a, n->pid, 1)))
        return 0;
    if ((len = read_path(n, n->data.args[1], path)) < 0 || !(e = path_hit(a, n->pid, ANSWER_OPEN, flags, path, len))) {
        missed(t, 1);
        return 0;
    }
    t->misses[1] = 0;
    if (e->error) {
        reply(listener, n->id, -e->error);
        return 2;
    }
    fd = openat(e->dirfd, e->stat, e->host_flags);
    if (fd < 0 && errno == EPERM && e->host_flags & O_NOATIME) /* a file not ours (ImageFs.open_rel) */
        fd = openat(e->dirfd, e->stat, e->host_flags & ~O_NOATIME);
    if (fd < 0)
        return 0;
    memset(&add, 0, sizeof add);
    add.id = n->id;
    add.flags = SECCOMP_ADDFD_FLAG_SEND;
    add.srcfd = fd;
    add.newfd_flags = flags & O_CLOEXEC;
    r = addfd_pinned(listener, SECCOMP_IOCTL_NOTIF_ADDFD, (char *)&add, 0, NULL, 0);
    close(fd);
    if (r < 0 && r != -ENOENT && r != -EINPROGRESS) /* EMFILE...: the guest's error */
        reply(listener, n->id, (int)r);
    return 1;
}

/* Answer readlink notification n from the cache (the program's own /proc/self/exe, kept at its
 * exec): 1 if answered, 0 if Python must (a size the call refuses, a buffer it cannot write). */
static int link_answer(int listener, struct answers *a, const struct seccomp_notif *n)
{
    char path[ANSWER_PATH_MAX];
    struct answer *e;
    long len, size = (int)n->data.args[2];
    unsigned long put;

    if (size <= 0 || (len = read_path(n, n->data.args[0], path)) < 0 ||
        !(e = path_hit(a, n->pid, ANSWER_READLINK, 0, path, len)))
        return 0;
    put = e->value_len < (unsigned long)size ? e->value_len : (unsigned long)size;
    if (vm_write(n->pid, n->data.args[1], e->stat, put) != (long)put)
        return 0;
    reply_value(listener, n->id, (long long)put, 0);
    return 1;
}

/* Answer prctl(PR_GET_NAME) notification n from the cache (the name its exec gave the thread):
 * 1 if answered, 0 if Python must. */
static int name_answer(int listener, struct answers *a, const struct seccomp_notif *n)
{
    struct answer *e = path_hit(a, n->pid, ANSWER_NAME, 0, NAME_KEY, sizeof NAME_KEY - 1);

    if (!e || vm_write(n->pid, n->data.args[1], e->stat, 16) != 16)
        return 0;
    reply(listener, n->id, 0);
    return 1;
}

/* Wait until a notification can be received (1) or the interpreter has taken a signal (0: its
 * C-level handler wrote to `wake`, emptied here), or -errno. A signal that comes while we answer
 * (SIGCHLD: the guest our answer woke has exited) is taken by that handler and breaks no RECV:
 * waiting in RECV alone, its Python handler would wait for the next call or the 50 ms tick. */
static int wait_ready(int listener, int wake)
{
    struct pollfd p[2] = {{listener, POLLIN, 0}, {wake, POLLIN, 0}};
    char drain[64];

    if (poll(p, 2, -1) < 0)
        return -errno;
    if (p[1].revents) {
        while (read(wake, drain, sizeof drain) > 0)
            ;
        return 0;
    }
    return 1; /* (a hang-up too: RECV then says ENOENT, no task left) */
}

/* RECV notifications into notif and answer those the cache holds: 1 if notif holds one for
 * Python. A cached answer whose stat buffer cannot be written goes to Python too, which answers
 * EFAULT. */
static int answers_run(int listener, struct seccomp_notif *n, struct answers *a, int wake)
{
    const char *stat;
    struct stat live;
    int run, error, opened, ready;

    for (run = 0; run < ANSWER_RUN; run++) {
        if ((ready = wait_ready(listener, wake)) <= 0)
            return ready;
        memset(n, 0, sizeof *n); /* the kernel requires it */
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, n) < 0)
            return -errno;
        if (n->data.nr == SYS_openat) {
            if (!(opened = open_answer(listener, a, n)))
                return 1;
            a->hits++;
            a->installs += opened == 1;
            continue;
        }
        if (n->data.nr == SYS_readlink || (n->data.nr == SYS_prctl && (int)n->data.args[0] == PR_GET_NAME)) {
            if (!(n->data.nr == SYS_readlink ? link_answer(listener, a, n) : name_answer(listener, a, n)))
                return 1;
            a->hits++;
            continue;
        }
        if (n->data.nr != SYS_newfstatat)
            return 1;
        error = 0;
        stat = stat_answer(a, n, &live, &error);
        if (!stat && !error)
            return 1;
        if (stat && vm_write(n->pid, n->data.args[2], stat, ANSWER_STAT_SIZE) != ANSWER_STAT_SIZE)
            return 1;
        reply(listener, n->id, -error);
        a->hits++;
    }
    return 0;
}

/* answers_run: 1 when notif holds a notification for Python; 0 after ANSWER_RUN answers in a
 * row, none for Python, or when the interpreter took a signal (so that its handlers get to run);
 * -errno if the wait or RECV failed (EINTR: a signal). Whatever else it returns, notif is left
 * all zeros: a signal handler that breaks the caller's wait reads the buffer back
 * (Supervisor._recv_interruptible), and a call answered here, served again, would have its
 * answer written into a stack the guest has moved on from. */
static int answers_serve(int listener, char *notif, struct answers *a, int wake)
{
    struct seccomp_notif *n = (struct seccomp_notif *)notif;
    int r = answers_run(listener, n, a, wake);

    if (r != 1)
        memset(n, 0, sizeof *n);
    return r;
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
