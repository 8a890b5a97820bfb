/*
 * verdict.h - shared helpers for linuxabi conformance cases.
 *
 * A case prints one verdict line per check:
 *     check FAMILY.NAME: key=value key=value ...
 * recording what happened (never what was expected).  Lines must be
 * deterministic: no inode numbers, pids, addresses or absolute times; print
 * relations instead (same_ino=1, mtime_changed=1).
 *
 * Usage:
 *     int main(void) {
 *         vd_begin("open");              // scratch dir /tmp/conf-open, cwd
 *         CHECK_RET("missing", open("nope", O_RDONLY));
 *         return vd_end();               // removes the scratch dir
 *     }
 */
#ifndef LINUXABI_VERDICT_H
#define LINUXABI_VERDICT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* An address that is never mapped: the classic EFAULT probe.  Read through a
 * volatile so that gcc's static buffer-size warnings do not fire on it. */
static void *volatile vd_badptr = (void *)1;
#define BADPTR (vd_badptr)

/* A value gcc cannot see through (deliberately bad counts and sizes). */
static volatile long vd_opaque_slot;
#define OPAQUE(v) (vd_opaque_slot = (v), vd_opaque_slot)

/* Every helper is static; not every case uses every one. */
#define VD_FN static __attribute__((unused))

static const char *vd_family = "?";
static char vd_scratch[256];

VD_FN const char *errname(int e)
{
    static char other[32];
    switch (e) {
    case 0: return "0";
#define VD_E(x) case x: return #x;
    VD_E(EPERM) VD_E(ENOENT) VD_E(ESRCH) VD_E(EINTR) VD_E(EIO) VD_E(ENXIO)
    VD_E(E2BIG) VD_E(ENOEXEC) VD_E(EBADF) VD_E(ECHILD) VD_E(EAGAIN)
    VD_E(ENOMEM) VD_E(EACCES) VD_E(EFAULT) VD_E(ENOTBLK) VD_E(EBUSY)
    VD_E(EEXIST) VD_E(EXDEV) VD_E(ENODEV) VD_E(ENOTDIR) VD_E(EISDIR)
    VD_E(EINVAL) VD_E(ENFILE) VD_E(EMFILE) VD_E(ENOTTY) VD_E(ETXTBSY)
    VD_E(EFBIG) VD_E(ENOSPC) VD_E(ESPIPE) VD_E(EROFS) VD_E(EMLINK)
    VD_E(EPIPE) VD_E(EDOM) VD_E(ERANGE) VD_E(EDEADLK) VD_E(ENAMETOOLONG)
    VD_E(ENOLCK) VD_E(ENOSYS) VD_E(ENOTEMPTY) VD_E(ELOOP) VD_E(ENOMSG)
    VD_E(ENODATA) VD_E(ETIME) VD_E(EOVERFLOW) VD_E(EBADFD) VD_E(ENOTSOCK)
    VD_E(EDESTADDRREQ) VD_E(EMSGSIZE) VD_E(EPROTOTYPE) VD_E(ENOPROTOOPT)
    VD_E(EPROTONOSUPPORT) VD_E(EOPNOTSUPP) VD_E(EAFNOSUPPORT)
    VD_E(EADDRINUSE) VD_E(EADDRNOTAVAIL) VD_E(ECONNREFUSED)
    VD_E(ECONNRESET) VD_E(EISCONN) VD_E(ENOTCONN) VD_E(ETIMEDOUT)
    VD_E(EALREADY) VD_E(EINPROGRESS) VD_E(ESTALE) VD_E(EDQUOT)
    VD_E(ECANCELED) VD_E(EOWNERDEAD) VD_E(ENOTRECOVERABLE)
#undef VD_E
    default:
        snprintf(other, sizeof other, "E#%d", e);
        return other;
    }
}

VD_FN void vd_vline(const char *name, const char *fmt, va_list ap)
{
    printf("check %s.%s: ", vd_family, name);
    vprintf(fmt, ap);
    putchar('\n');
}

/* checkf("name", "fmt", ...): a free-form verdict line. */
__attribute__((format(printf, 2, 3)))
VD_FN void checkf(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vd_vline(name, fmt, ap);
    va_end(ap);
}

/* Prints ret=VALUE, or ret=-1 errno=NAME; returns r with errno preserved. */
VD_FN long check_ret(const char *name, long r)
{
    int e = errno;
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(e));
    else
        checkf(name, "ret=%ld", r);
    errno = e;
    return r;
}

/* Like check_ret, but a non-negative result (an fd, a size that may vary)
 * prints as `ret=ok`. */
VD_FN long check_ok(const char *name, long r)
{
    int e = errno;
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(e));
    else
        checkf(name, "ret=ok");
    errno = e;
    return r;
}

#define CHECK_RET(name, expr) (errno = 0, check_ret((name), (long)(expr)))
#define CHECK_OK(name, expr) (errno = 0, check_ok((name), (long)(expr)))
/* An fd-returning call: prints ret=fd on success. */
#define CHECK_FD(name, expr) (errno = 0, check_fd((name), (long)(expr)))

VD_FN int check_fd(const char *name, long r)
{
    int e = errno;
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(e));
    else
        checkf(name, "ret=fd");
    errno = e;
    return (int)r;
}

/* "ret=-1 errno=X" or "ret=N" as a string, for composing lines. */
VD_FN const char *rstr(long r, int e)
{
    static char buf[4][64];
    static int i;
    char *b = buf[i++ & 3];
    if (r < 0)
        snprintf(b, 64, "ret=-1 errno=%s", errname(e));
    else
        snprintf(b, 64, "ret=%ld", r);
    return b;
}

/* Quote bytes for a verdict line: "abc\n" -> "abc\\n" in double quotes. */
VD_FN const char *qstr(const void *data, long n)
{
    static char buf[4][1024];
    static int i;
    char *b = buf[i++ & 3], *o = b;
    const unsigned char *s = data;
    if (n < 0)
        return "<error>";
    *o++ = '"';
    for (long k = 0; k < n && o < b + sizeof buf[0] - 8; k++) {
        unsigned c = s[k];
        if (c == '\\' || c == '"') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c >= 32 && c < 127) {
            *o++ = (char)c;
        } else {
            o += sprintf(o, "\\x%02x", c);
        }
    }
    *o++ = '"';
    *o = 0;
    return b;
}

/* File type letter and permission bits: "f0644", "d0755", "l0777". */
VD_FN const char *mstr(mode_t m)
{
    static char buf[4][16];
    static int i;
    char *b = buf[i++ & 3];
    char t = S_ISREG(m) ? 'f' : S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l'
           : S_ISFIFO(m) ? 'p' : S_ISCHR(m) ? 'c' : S_ISBLK(m) ? 'b'
           : S_ISSOCK(m) ? 's' : '?';
    snprintf(b, 16, "%c%04o", t, (unsigned)(m & 07777));
    return b;
}

/* ---- small file helpers (setup only: they do not print) ---- */

VD_FN int write_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    size_t n = strlen(content);
    ssize_t w = write(fd, content, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

/* Reads up to cap-1 bytes into buf (NUL-terminated); returns length or -1. */
VD_FN long read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    long total = 0;
    for (;;) {
        ssize_t r = read(fd, buf + total, cap - 1 - (size_t)total);
        if (r <= 0)
            break;
        total += r;
    }
    buf[total] = 0;
    close(fd);
    return total;
}

/* Content of a file as a quoted string, or the errno of opening it. */
VD_FN const char *file_str(const char *path)
{
    char buf[512];
    errno = 0;
    long n = read_file(path, buf, sizeof buf);
    if (n < 0)
        return errname(errno);
    return qstr(buf, n);
}

VD_FN int vd_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, comma-separated entries of a directory without "." and "..";
 * "<ERRNO>" if it cannot be opened. */
VD_FN const char *list_dir(const char *path)
{
    static char bufs[2][4096];
    static int which;
    char *out = bufs[which++ & 1];
    const size_t cap = sizeof bufs[0];
    char *names[512];
    int n = 0;
    DIR *d = opendir(path);
    if (!d) {
        snprintf(out, cap, "<%s>", errname(errno));
        return out;
    }
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], vd_cmp);
    out[0] = 0;
    size_t len = 0;
    for (int k = 0; k < n; k++) {
        if (len < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", k ? "," : "", names[k]);
        free(names[k]);
    }
    return out;
}

VD_FN void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0755);
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            char sub[4096];
            while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                    continue;
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Wait for a child; returns "exit=N" or "signal=NAME"-style text. */
VD_FN const char *wstr(int status)
{
    static char buf[4][48];
    static int i;
    char *b = buf[i++ & 3];
    if (WIFEXITED(status))
        snprintf(b, 48, "exit=%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(b, 48, "signal=%s", sigabbrev_np(WTERMSIG(status)));
    else if (WIFSTOPPED(status))
        snprintf(b, 48, "stopped=%s", sigabbrev_np(WSTOPSIG(status)));
    else
        snprintf(b, 48, "status=%#x", status);
    return b;
}

/*
 * Run `expr` in a forked child whose credentials are uid/gid (an
 * unprivileged user), and print ret=ok or ret=-1 errno=NAME.
 * The child reports through its exit status: 0 = success, else errno.
 */
#define AS_USER(name, uid, expr)                                           \
    do {                                                                   \
        fflush(stdout);                                                    \
        pid_t vd_p = fork();                                               \
        if (vd_p == 0) {                                                   \
            if (setgroups(0, NULL) || setgid(uid) || setuid(uid))          \
                _exit(255);                                                \
            errno = 0;                                                     \
            long vd_r = (long)(expr);                                      \
            _exit(vd_r < 0 ? (errno & 0x7f) : 0);                          \
        }                                                                  \
        int vd_st = 0;                                                     \
        waitpid(vd_p, &vd_st, 0);                                          \
        if (!WIFEXITED(vd_st) || WEXITSTATUS(vd_st) == 255)                \
            checkf(name, "child %s", wstr(vd_st));                         \
        else if (WEXITSTATUS(vd_st) == 0)                                  \
            checkf(name, "ret=ok");                                        \
        else                                                               \
            checkf(name, "ret=-1 errno=%s", errname(WEXITSTATUS(vd_st)));  \
    } while (0)

int setgroups(size_t size, const gid_t *list);

/*
 * Run a block in a forked child that prints its own verdict lines; the
 * parent waits for it, so output order stays deterministic.  If the child
 * dies abnormally the parent prints "check FAMILY.NAME: child signal=..."
 */
#define IN_CHILD(name, ...)                                                \
    do {                                                                   \
        fflush(stdout);                                                    \
        pid_t vd_c = fork();                                               \
        if (vd_c == 0) {                                                   \
            __VA_ARGS__;                                                   \
            fflush(stdout);                                                \
            _exit(0);                                                      \
        }                                                                  \
        int vd_cs = 0;                                                     \
        waitpid(vd_c, &vd_cs, 0);                                          \
        if (!WIFEXITED(vd_cs) || WEXITSTATUS(vd_cs) != 0)                  \
            checkf(name, "child %s", wstr(vd_cs));                         \
    } while (0)

/* Run fn(arg) in a child whose stdout is a pipe (it may exec: the new program's output counts).
 * What it printed goes to buf (NUL-terminated, one final newline dropped) and its length to
 * *len; returns the child's wait status. A fn that returns ends the child with exit status 0. */
VD_FN int vd_capture(void (*fn)(void *), void *arg, char *buf, long cap, long *len)
{
    int p[2];
    long total = 0, r;
    int st = 0;
    buf[0] = 0;
    *len = 0;
    if (pipe(p) < 0)
        return -1;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    close(p[1]);
    while (total < cap - 1 && (r = read(p[0], buf + total, (size_t)(cap - 1 - total))) > 0)
        total += r;
    close(p[0]);
    waitpid(c, &st, 0);
    if (total > 0 && buf[total - 1] == '\n')
        total--;
    buf[total] = 0;
    *len = total;
    return st;
}

/* Start a case: line-buffered stdout, umask 022, fresh scratch dir as cwd. */
VD_FN void vd_begin(const char *family)
{
    vd_family = family;
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(022);
    snprintf(vd_scratch, sizeof vd_scratch, "/tmp/conf-%s", family);
    rm_rf(vd_scratch);
    if (mkdir(vd_scratch, 0755) < 0 || chdir(vd_scratch) < 0) {
        printf("fatal: cannot create scratch dir %s: %s\n", vd_scratch,
               strerror(errno));
        exit(2);
    }
}

VD_FN int vd_end(void)
{
    if (chdir("/") == 0)
        rm_rf(vd_scratch);
    fflush(stdout);
    return 0;
}

/* poll/epoll event bits as text (IN|OUT...), "none" for 0; four results may be live at once. */
static inline const char *poll_events(int e)
{
    static char buf[4][80];
    static int i;
    char *b = buf[i++ & 3];
    b[0] = 0;
    if (e & POLLIN) strcat(b, "IN|");
    if (e & POLLPRI) strcat(b, "PRI|");
    if (e & POLLOUT) strcat(b, "OUT|");
    if (e & POLLRDHUP) strcat(b, "RDHUP|");
    if (e & POLLERR) strcat(b, "ERR|");
    if (e & POLLHUP) strcat(b, "HUP|");
    if (e & POLLNVAL) strcat(b, "NVAL|");
    size_t n = strlen(b);
    if (n)
        b[n - 1] = 0;
    else
        strcpy(b, "none");
    return b;
}


#endif
