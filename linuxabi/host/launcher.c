/* linuxabi-launcher: the guest's first process, from its new namespaces to its exec.
 *
 * linuxabi/host/launch.py clones a child into new user, pid, mount, net, ipc and uts
 * namespaces; once its id maps are written and the tracer has seized it, the child execs this
 * program, which does what the same module's Python launcher does: it makes an empty tmpfs its
 * root, brings up loopback, says "r" on SOCK, and waits there for what to run. Then it becomes
 * the caller's (fds 0-2, resource limits, umask, CPUs, nice value), installs the seccomp filter
 * it was given, reports the filter's listener (and with a terminal, its master) on STATUS, and
 * execs the guest, which traps: the supervisor carries every exec out from its VFS.
 *
 * Why a program of its own: the child of a Python translator is a copy of a ~100 MB process,
 * and an exec from it spends ~0.6 ms undoing that; this program's exec happens while a warm
 * server's spare waits for its client, and the guest's own exec starts from a small process.
 *
 * usage: linuxabi-launcher SOCK STATUS SCRATCH
 *   SOCK: a stream socket to the translator; STATUS: the status pipe's write end (close-on-exec
 *   from here on: EOF there tells the translator the guest's exec went through); SCRATCH: an
 *   empty directory to mount the new root on.
 * The request on SOCK: a 4-byte little-endian length, then length-prefixed fields (as
 * linuxabi/entry.py's pack_fields): path, argc, argv..., envc, env..., the filter program, tty
 * (0/1), limits ("which,soft,hard;..."), umask, CPUs ("0,1,..."), nice, and which of fds 0-2
 * come with it as SCM_RIGHTS ("0,1,2", in that order). Failures before the exec are reported
 * on STATUS as a negative errno (4 bytes), an exec that fails as its errno.
 *
 * Built by `make setup` (linuxabi/host/launcher_build.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define FILTER_FLAGS (SECCOMP_FILTER_FLAG_NEW_LISTENER | 0x20 /* SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV */)
#define PTS_DIR "pts"
#define MAX_REQUEST (64u << 20)

static int status_fd = -1;

/* Say why on STATUS (as the Python launcher does: -errno) and end. */
static void fail(int err)
{
    int32_t code = -(err ? err : EIO);
    (void)!write(status_fd, &code, sizeof code);
    _exit(126);
}

static void check(long r)
{
    if (r < 0)
        fail(errno);
}

static void enter_root(const char *scratch)
{
    check(prctl(PR_SET_PDEATHSIG, SIGKILL)); /* a launcher whose maker goes away goes too */
    check(mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL));
    check(mount("linuxabi", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=0755"));
    check(chdir(scratch));
    check(syscall(SYS_pivot_root, ".", "."));
    check(umount2(".", MNT_DETACH));
    check(chdir("/"));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* loopback up, nothing else */
    check(fd);
    struct ifreq req;
    memset(&req, 0, sizeof req);
    strcpy(req.ifr_name, "lo");
    check(ioctl(fd, SIOCGIFFLAGS, &req));
    req.ifr_flags |= IFF_UP;
    check(ioctl(fd, SIOCSIFFLAGS, &req));
    close(fd);
}

struct request {
    char *data;
    size_t len, at;
    int fds[3];
    int n_fds;
};

static int read_full(int fd, char *buf, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The request, or _exit(0) when none comes (our maker went away while we waited). */
static void receive(int sock, struct request *req)
{
    unsigned char head[4];
    char control[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {head, sizeof head};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    ssize_t got;
    do
        got = recvmsg(sock, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC);
    while (got < 0 && errno == EINTR);
    if (got < (ssize_t)sizeof head)
        _exit(0);
    req->n_fds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < n && req->n_fds < 3; i++)
                memcpy(&req->fds[req->n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    uint32_t size = head[0] | head[1] << 8 | head[2] << 16 | (uint32_t)head[3] << 24;
    if (size > MAX_REQUEST)
        fail(E2BIG);
    req->data = malloc(size + 1);
    if (req->data == NULL)
        fail(ENOMEM);
    if (read_full(sock, req->data, size) < 0)
        _exit(0);
    req->len = size;
    req->at = 0;
}

/* The next field, NUL-terminated in place (each field's length prefix makes the room). */
static char *field(struct request *req, size_t *len)
{
    if (req->len - req->at < 4)
        fail(EPROTO);
    unsigned char *p = (unsigned char *)req->data + req->at;
    uint32_t n = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
    if (n > req->len - req->at - 4)
        fail(EPROTO);
    char *start = req->data + req->at + 4;
    memmove(start - 1, start, n); /* over the length's last byte: room for the NUL */
    start[n - 1] = '\0';
    req->at += 4 + n;
    if (len != NULL)
        *len = n;
    return start - 1;
}

static long long number(struct request *req)
{
    return strtoll(field(req, NULL), NULL, 10);
}

static char **strings(struct request *req)
{
    long long n = number(req);
    if (n < 0 || n > 1 << 20)
        fail(EPROTO);
    char **out = calloc((size_t)n + 1, sizeof *out);
    if (out == NULL)
        fail(ENOMEM);
    for (long long i = 0; i < n; i++)
        out[i] = field(req, NULL);
    return out;
}

static void take_std(struct request *req, const char *which)
{
    int given[3] = {0, 0, 0};
    int i = 0;
    for (const char *p = which; *p != '\0'; p++) {
        if (*p < '0' || *p > '2')
            continue;
        if (i >= req->n_fds)
            fail(EPROTO);
        int target = *p - '0';
        if (req->fds[i] != target)
            check(dup2(req->fds[i], target)); /* (dup2 clears close-on-exec) */
        given[target] = 1;
        i++;
    }
    for (int fd = 0; fd < 3; fd++)
        if (!given[fd])
            close(fd);
    for (int j = 0; j < req->n_fds; j++)
        if (req->fds[j] > 2)
            close(req->fds[j]);
}

static void take_limits(char *text)
{
    for (char *item = strtok(text, ";"); item != NULL; item = strtok(NULL, ";")) {
        char *end;
        int which = (int)strtol(item, &end, 10);
        struct rlimit lim;
        /* (Python's resource module says -1 for RLIM_INFINITY: strtoull reads it as such) */
        lim.rlim_cur = strtoull(end + 1, &end, 10);
        lim.rlim_max = strtoull(end + 1, &end, 10);
        (void)setrlimit(which, &lim); /* as the Python launcher: what cannot be had is left */
    }
}

static void take_cpus(char *text)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (char *item = strtok(text, ","); item != NULL; item = strtok(NULL, ","))
        CPU_SET(atoi(item), &set);
    check(sched_setaffinity(0, sizeof set, &set));
}

/* A private devpts instance; stdio becomes a new pty's slave and the controlling terminal
 * (we lead a new session). Returns the master (close-on-exec). */
static int setup_tty(void)
{
    check(mkdir(PTS_DIR, 0755));
    check(mount("devpts", "/" PTS_DIR, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"));
    int master = open("/" PTS_DIR "/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    check(master);
    int unlock = 0;
    unsigned int num;
    check(ioctl(master, TIOCSPTLCK, &unlock));
    check(ioctl(master, TIOCGPTN, &num));
    char path[64];
    snprintf(path, sizeof path, "/" PTS_DIR "/%u", num);
    int slave = open(path, O_RDWR | O_NOCTTY);
    check(slave);
    check(ioctl(slave, TIOCSCTTY, 0));
    for (int fd = 0; fd < 3; fd++)
        check(dup2(slave, fd));
    if (slave > 2)
        close(slave);
    return master;
}

static void close_others(int keep_a, int keep_b)
{
    int keep[2] = {keep_a < keep_b ? keep_a : keep_b, keep_a < keep_b ? keep_b : keep_a};
    unsigned int lo = 3;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < (int)lo)
            continue;
        if (keep[i] > (int)lo)
            syscall(SYS_close_range, lo, (unsigned int)keep[i] - 1, 0);
        lo = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0u, 0);
}

static const int defaults[] = {SIGPIPE, SIGXFSZ, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU};

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int sock = atoi(argv[1]);
    status_fd = atoi(argv[2]);
    fcntl(sock, F_SETFD, FD_CLOEXEC);
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    enter_root(argv[3]);
    if (write(sock, "r", 1) != 1)
        _exit(0);

    struct request req;
    receive(sock, &req);
    char *path = field(&req, NULL);
    char **args = strings(&req);
    char **env = strings(&req);
    size_t prog_len;
    char *prog = field(&req, &prog_len);
    int tty = (int)number(&req);
    char *limits = field(&req, NULL);
    mode_t mask = (mode_t)number(&req);
    char *cpus = field(&req, NULL);
    int nice = (int)number(&req);
    char *std = field(&req, NULL);
    close(sock);

    take_std(&req, std);
    take_limits(limits);
    umask(mask);
    take_cpus(cpus);
    (void)setpriority(PRIO_PROCESS, 0, nice); /* (lower than ours needs a privilege) */

    /* Its own process group: a guest's kill(0, sig) must not reach the CLI's. Its own session
     * only with a terminal: a new session is a new scheduler autogroup, and wake-ups across
     * groups made every trapped call ~2x slower. */
    int master = -1;
    if (tty) {
        check(setsid());
        master = setup_tty();
    } else {
        check(setpgid(0, 0));
    }
    check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        signal(defaults[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    close_others(status_fd, master);

    struct sock_fprog fprog = {.len = (unsigned short)(prog_len / sizeof(struct sock_filter)),
                               .filter = (struct sock_filter *)malloc(prog_len)};
    if (fprog.filter == NULL)
        fail(ENOMEM);
    memcpy(fprog.filter, prog, prog_len);
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, FILTER_FLAGS, &fprog);
    check(listener);
    int32_t report[2] = {(int32_t)listener, master};
    if (write(status_fd, report, sizeof report) != (ssize_t)sizeof report)
        _exit(126);
    execve(path, args, env); /* traps; the supervisor execs from the VFS */
    int32_t err = errno;
    (void)!write(status_fd, &err, sizeof err);
    _exit(127);
}
