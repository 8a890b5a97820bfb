/* linuxabi-run: `linuxabi run ARGS...` through the warm server that LINUXABI_SERVER names,
 * without starting a Python interpreter (~12 ms of every warm run's client).
 *
 * It speaks linuxabi/entry.py's protocol, byte for byte: a 4-byte little-endian length, then
 * length-prefixed fields (argv, environment, umask, resource limits, CPU affinity, nice
 * value, which of fds 0-2 are open), with fds 0-2 that are open and the working directory
 * (O_PATH) as SCM_RIGHTS. The server answers READY ('R') once it has taken the run on, then
 * one byte, the exit status. Until READY nothing has run: without a server, or without
 * READY, this program becomes the cold `linuxabi run` (the interpreter it was built for).
 * Signals (INT TERM HUP QUIT USR1 USR2 WINCH CONT) are forwarded as bytes; one that would
 * end a process ends this one if it comes before READY.
 *
 * Built by `make setup` (linuxabi/client_build.py), which fixes LINUXABI_PYTHON.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef LINUXABI_PYTHON
#error "LINUXABI_PYTHON: the interpreter of the cold run (set by linuxabi/client_build.py)"
#endif

#define READY 'R'
#define NO_STATUS 256
#define N_RLIMITS 16 /* RLIMIT_CPU .. RLIMIT_RTTIME */

extern char **environ;

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
static const int ending[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

static int conn = -1;
static volatile sig_atomic_t ready, last_forwarded;

struct buf {
    char *data;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            perror("linuxabi-run");
            exit(70);
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void put_field(struct buf *b, const void *data, size_t n)
{
    uint8_t len[4] = {n & 0xff, n >> 8 & 0xff, n >> 16 & 0xff, n >> 24 & 0xff};
    put(b, len, 4);
    put(b, data, n);
}

static void put_text(struct buf *b, const char *fmt, long long v)
{
    char text[32];
    int n = snprintf(text, sizeof text, fmt, v);
    put_field(b, text, (size_t)n);
}

static int is_ending(int signo)
{
    for (size_t i = 0; i < sizeof ending / sizeof ending[0]; i++)
        if (ending[i] == signo)
            return 1;
    return 0;
}

static void end_by(int signo)
{
    signal(signo, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(signo);
    _exit(128 + signo); /* (if it was held: the status a shell would show) */
}

static void on_signal(int signo)
{
    if (!ready && is_ending(signo))
        end_by(signo); /* the server has not taken the run on: nothing runs for us yet */
    last_forwarded = signo;
    unsigned char byte = (unsigned char)signo;
    int saved = errno;
    (void)!send(conn, &byte, 1, MSG_NOSIGNAL);
    errno = saved;
}

/* The cold run: the full CLI, in the interpreter this client was built for (the CLI's own
 * entry, not linuxabi.entry's: that would ask the server again). */
static void run_cold(int argc, char **argv)
{
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL) {
        perror("linuxabi-run");
        exit(70);
    }
    args[0] = LINUXABI_PYTHON;
    args[1] = "-c";
    args[2] = "import sys; sys.argv[0] = 'linuxabi'; from linuxabi.cli import entry; entry()";
    args[3] = "run";
    for (int i = 1; i < argc; i++)
        args[3 + i] = argv[i];
    execv(LINUXABI_PYTHON, args);
    fprintf(stderr, "linuxabi-run: cannot start %s: %s\n", LINUXABI_PYTHON, strerror(errno));
    exit(70);
}

static void restore_signals(void)
{
    for (size_t i = 0; i < N_FORWARDED; i++)
        signal(forwarded[i], SIG_DFL);
}

/* The request's fields, as entry.request_fields makes them. */
static void request(struct buf *body, int argc, char **argv, int open_mask)
{
    put_text(body, "%lld", argc); /* "run" and the arguments */
    put_field(body, "run", 3);
    for (int i = 1; i < argc; i++)
        put_field(body, argv[i], strlen(argv[i]));
    long long n_env = 0;
    for (char **e = environ; *e != NULL; e++)
        n_env++;
    put_text(body, "%lld", n_env);
    for (char **e = environ; *e != NULL; e++)
        put_field(body, *e, strlen(*e));
    mode_t mask = umask(0);
    umask(mask);
    put_text(body, "%lld", (long long)mask);
    struct buf limits = {0};
    for (int r = 0; r < N_RLIMITS; r++) {
        struct rlimit lim;
        if (getrlimit(r, &lim) != 0)
            continue;
        char item[80];
        long long soft = lim.rlim_cur == RLIM_INFINITY ? -1 : (long long)lim.rlim_cur;
        long long hard = lim.rlim_max == RLIM_INFINITY ? -1 : (long long)lim.rlim_max;
        int n = snprintf(item, sizeof item, "%s%d,%lld,%lld", limits.len ? ";" : "", r, soft, hard);
        put(&limits, item, (size_t)n);
    }
    put_field(body, limits.data, limits.len);
    free(limits.data);
    cpu_set_t cpus;
    struct buf list = {0};
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &cpus)) {
                char item[16];
                int n = snprintf(item, sizeof item, "%s%d", list.len ? "," : "", c);
                put(&list, item, (size_t)n);
            }
    put_field(body, list.data, list.len);
    free(list.data);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    put_text(body, "%lld", errno ? 0 : nice);
    put_text(body, "%lld", open_mask);
}

static int send_request(const struct buf *body, const int *fds, int n_fds)
{
    uint8_t len[4] = {body->len & 0xff, body->len >> 8 & 0xff, body->len >> 16 & 0xff, body->len >> 24 & 0xff};
    struct iovec iov[2] = {{len, 4}, {body->data, body->len}};
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE((size_t)n_fds * sizeof(int))};
    memset(control.buf, 0, sizeof control.buf);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN((size_t)n_fds * sizeof(int));
    memcpy(CMSG_DATA(cmsg), fds, (size_t)n_fds * sizeof(int));
    ssize_t sent;
    do
        sent = sendmsg(conn, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        return -1;
    size_t total = 4 + body->len, done = (size_t)sent;
    while (done < total) { /* the rest of a large environment, without the fds */
        ssize_t n = send(conn, body->data + (done - 4), total - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static int read_byte(void)
{
    unsigned char byte;
    for (;;) {
        ssize_t n = recv(conn, &byte, 1, 0);
        if (n == 1)
            return byte;
        if (n < 0 && errno == EINTR)
            continue;
        return NO_STATUS;
    }
}

int main(int argc, char **argv)
{
    const char *path = getenv("LINUXABI_SERVER");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (path == NULL || *path == '\0' || strlen(path) >= sizeof addr.sun_path)
        run_cold(argc, argv);
    strcpy(addr.sun_path, path);
    int fds[4], n_fds = 0, open_mask = 0;
    for (int fd = 0; fd < 3; fd++) /* before our own fds can take a free number */
        if (fcntl(fd, F_GETFD) != -1) {
            open_mask |= 1 << fd;
            fds[n_fds++] = fd;
        }
    conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, (struct sockaddr *)&addr, sizeof addr) != 0)
        run_cold(argc, argv);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FORWARDED; i++)
        sigaction(forwarded[i], &sa, NULL);
    struct buf body = {0};
    request(&body, argc, argv, open_mask);
    int cwd = open(".", O_PATH | O_CLOEXEC);
    int reply = NO_STATUS;
    if (cwd >= 0) {
        fds[n_fds++] = cwd;
        if (send_request(&body, fds, n_fds) == 0)
            reply = read_byte();
        close(cwd);
    }
    free(body.data);
    if (reply != READY) { /* not a server of ours, or it went away before it took the run on */
        close(conn);
        restore_signals();
        run_cold(argc, argv);
    }
    ready = 1;
    int status = read_byte(); /* as soon as it comes: the translator's own exit is not waited for */
    if (status == NO_STATUS) {
        if (last_forwarded)
            end_by(last_forwarded); /* ended by the signal we passed on: end the same way */
        fputs("linuxabi: the warm server's translator ended without an exit status\n", stderr);
        return 70;
    }
    return status;
}
