/* linuxabi microbenchmark guest.
 *
 *   microbench OP [ITERS [MAX_SECONDS [PEER]]]
 *   microbench --echo PORT
 *
 * Runs one operation ITERS times after a warm-up and prints
 *   op=NAME iters=N ns_per_op=X
 * Timing uses clock_gettime(CLOCK_MONOTONIC) (vDSO: never trapped), and only the timed loop is
 * measured, so process start-up and set-up (creating files, forking the pipe peer) are excluded.
 * MAX_SECONDS (default: none) bounds the loop: a slow runner stops early and reports the
 * iterations it did, which keeps a whole benchmark run bounded in time whatever the slowdown.
 * Every operation checks its result: a failing call exits non-zero instead of timing an error.
 * PEER (A.B.C.D:PORT) is the far end of tcp_rtt_link: an echo peer across a network link, which
 * `microbench --echo PORT` is (it prints "ready" once it listens; one connection at a time).
 * Built with `gcc -O2 -static` by bench/build.py.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STAT_PATH "/etc/passwd"
#define IMAGE_FILE "/bin/busybox"
#define TMP_FILE "/tmp/bench_pread"
#define CHUNK 4096

extern char **environ;

static volatile long sink;        /* keeps results alive so the compiler cannot drop calls */
static char buf[65536] __attribute__((aligned(4096)));
static int fd = -1;               /* the fd an operation works on, opened by its set-up */
static int to_child[2], from_child[2];
static pid_t peer = -1;
static char dir_path[64];
static long dir_entries;

static void die(const char *what)
{
    fprintf(stderr, "microbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- operations: each does one iteration ------------------------------------------------ */

static void op_getpid(void) { sink += syscall(SYS_getpid); }

static void op_trapped_noop(void) { sink += umask(022); }

static void op_stat(void)
{
    struct stat st;
    if (stat(STAT_PATH, &st) != 0)
        die("stat");
    sink += st.st_size;
}

static void op_fstat(void)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    sink += st.st_size;
}

static void op_open_close(void)
{
    int f = open(STAT_PATH, O_RDONLY);
    if (f < 0)
        die("open");
    close(f);
}

static void op_pread(void)
{
    if (pread(fd, buf, CHUNK, 0) != CHUNK)
        die("pread");
}

static void op_write(void)
{
    if (write(fd, "x", 1) != 1)
        die("write");
}

static void op_getdents(void)
{
    int d = open(dir_path, O_RDONLY | O_DIRECTORY);
    long n = 0;
    if (d < 0)
        die("open dir");
    for (;;) {
        long r = syscall(SYS_getdents64, d, buf, sizeof buf);
        if (r < 0)
            die("getdents64");
        if (r == 0)
            break;
        for (long off = 0; off < r; n++)
            off += ((struct dirent *)(buf + off))->d_reclen;
    }
    close(d);
    if (n != dir_entries + 2) /* + "." and ".." */ {
        errno = EIO;
        die("getdents64: wrong entry count");
    }
}

static void op_pipe_pingpong(void)
{
    char c = 'p';
    if (write(to_child[1], &c, 1) != 1 || read(from_child[0], &c, 1) != 1)
        die("pipe round trip");
}

static void wait_ok(pid_t pid, const char *what)
{
    int st;
    if (pid < 0)
        die("fork");
    if (waitpid(pid, &st, 0) != pid)
        die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "microbench: %s (%s %d)\n", what, WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        exit(1);
    }
}

static void op_fork_exit_wait(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    wait_ok(pid, "child did not exit 0");
}

static void op_fork_exec_wait(void)
{
    static char *const argv[] = {"true", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        errno = 0;
        int r = execve(IMAGE_FILE, argv, environ);
        dprintf(2, "microbench: execve %s returned %d: %s\n", IMAGE_FILE, r, strerror(errno));
        _exit(127);
    }
    wait_ok(pid, "exec'd child did not exit 0");
}

static void op_mmap_munmap(void)
{
    void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    munmap(p, 65536);
}

/* ---- set-up and tear-down (not timed) --------------------------------------------------- */

static void open_fd(const char *path, int flags)
{
    fd = open(path, flags);
    if (fd < 0)
        die(path);
}

static void setup_fstat(void) { open_fd(STAT_PATH, O_RDONLY); }
static void setup_pread_image(void) { open_fd(IMAGE_FILE, O_RDONLY); }

static void setup_pread_tmpfs(void)
{
    memset(buf, 'b', CHUNK);
    open_fd(TMP_FILE, O_RDWR | O_CREAT | O_TRUNC);
    if (write(fd, buf, CHUNK) != CHUNK)
        die("write " TMP_FILE);
}

static void setup_devnull(void)
{
    struct stat st;
    open_fd("/dev/null", O_WRONLY);
    /* In a chroot without the device node the shell would have made a plain file. */
    if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode)) {
        errno = ENODEV;
        die("/dev/null is not a character device");
    }
}

/* The directory persists in a native image copy, so it is made once and reused. */
static void setup_dir(void)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/.complete", dir_path);
    if (stat(path, &st) == 0)
        return;
    if (mkdir(dir_path, 0755) != 0 && errno != EEXIST)
        die("mkdir");
    for (long i = 0; i < dir_entries - 1; i++) {
        snprintf(path, sizeof path, "%s/file%05ld", dir_path, i);
        int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (f < 0)
            die(path);
        close(f);
    }
    snprintf(path, sizeof path, "%s/.complete", dir_path);
    int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f < 0)
        die(path);
    close(f);
}

static void setup_pipe(void)
{
    if (pipe(to_child) || pipe(from_child))
        die("pipe");
    peer = fork();
    if (peer < 0)
        die("fork");
    if (peer == 0) {
        char c;
        close(to_child[1]);
        close(from_child[0]);
        while (read(to_child[0], &c, 1) == 1)
            if (write(from_child[1], &c, 1) != 1)
                break;
        _exit(0);
    }
    close(to_child[0]);
    close(from_child[1]);
}

static void teardown_pipe(void)
{
    close(to_child[1]);  /* EOF ends the peer's loop */
    close(from_child[0]);
    wait_ok(peer, "pipe peer did not exit 0");
}

/* TCP over the loopback: a listener on 127.0.0.1 (port chosen by the kernel) and a peer
 * process that echoes each byte (round trip) or accepts and closes (connect). The connect
 * loop can run ahead of the peer's accepts: with a backlog of 128 natively a few SYNs of a
 * 2000-connect run found the queue full and waited out the 1 s retransmission (3.6-4.6 ms a
 * connect on average, against ~15 us); SOMAXCONN (4096 since Linux 5.4) leaves room. */
static struct sockaddr_in tcp_addr;
static int tcp_listener = -1;

static void tcp_listen(void)
{
    tcp_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof tcp_addr;
    tcp_listener = socket(AF_INET, SOCK_STREAM, 0);
    if (tcp_listener < 0 || bind(tcp_listener, (void *)&tcp_addr, sizeof tcp_addr)
        || listen(tcp_listener, SOMAXCONN) || getsockname(tcp_listener, (void *)&tcp_addr, &len))
        die("tcp listen");
}

static int tcp_connect(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (s < 0 || connect(s, (void *)&tcp_addr, sizeof tcp_addr))
        die("tcp connect");
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

static void setup_tcp_rtt(void)
{
    tcp_listen();
    peer = fork();
    if (peer < 0)
        die("fork");
    if (peer == 0) {
        int c = accept(tcp_listener, NULL, NULL), one = 1;
        char ch;
        if (c < 0)
            _exit(1);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        while (read(c, &ch, 1) == 1)
            if (write(c, &ch, 1) != 1)
                break;
        _exit(0);
    }
    fd = tcp_connect();
    close(tcp_listener);
}

static void op_tcp_rtt(void)
{
    char c = 't';
    if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
        die("tcp round trip");
}

static void teardown_tcp_rtt(void)
{
    close(fd);  /* EOF ends the peer's loop */
    fd = -1;
    wait_ok(peer, "tcp peer did not exit 0");
}

static void setup_tcp_connect(void)
{
    tcp_listen();
    peer = fork();
    if (peer < 0)
        die("fork");
    if (peer == 0) {
        for (;;) {
            int c = accept(tcp_listener, NULL, NULL);
            if (c < 0)
                _exit(1);
            char ch;
            ssize_t n = read(c, &ch, 1);  /* the client's last one sends 'q' */
            close(c);
            if (n == 1 && ch == 'q')
                _exit(0);
        }
    }
}

/* tcp_rtt_link: 1-byte round trips with the echo peer named on the command line. */
static const char *link_peer;

static void setup_tcp_link(void)
{
    char host[64];
    const char *colon = link_peer ? strrchr(link_peer, ':') : NULL;
    struct sockaddr_in a = {.sin_family = AF_INET};
    int one = 1;
    if (!colon || colon - link_peer >= (long)sizeof host)
        die("tcp_rtt_link needs PEER (A.B.C.D:PORT)");
    memcpy(host, link_peer, colon - link_peer);
    host[colon - link_peer] = 0;
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("tcp_rtt_link: bad PEER address");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (void *)&a, sizeof a))
        die("tcp_rtt_link connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void teardown_fd_only(void)
{
    close(fd);
    fd = -1;
}

/* The echo peer: every byte back, one connection after another, until killed. */
static __attribute__((noreturn)) int echo_peer(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 16))
        die("echo listen");
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write(c, buf, (size_t)n) != n)
                break;
        close(c);
    }
}

static void op_tcp_connect(void)
{
    close(tcp_connect());
}

static void teardown_tcp_connect(void)
{
    int s = tcp_connect();
    if (write(s, "q", 1) != 1)
        die("tcp quit");
    close(s);
    close(tcp_listener);
    wait_ok(peer, "tcp accept peer did not exit 0");
}

static void teardown_fd(void)
{
    if (fd >= 0)
        close(fd);
    fd = -1;
}

/* ---- the table --------------------------------------------------------------------------- */

struct op {
    const char *name;
    long iters; /* default: ~0.2-1 s natively on a 2-core VM */
    void (*run)(void);
    void (*setup)(void);
    void (*teardown)(void);
};

static const struct op OPS[] = {
    {"getpid", 2000000, op_getpid, NULL, NULL},
    {"trapped_noop", 2000000, op_trapped_noop, NULL, NULL},
    {"stat", 500000, op_stat, NULL, NULL},
    {"fstat", 1000000, op_fstat, setup_fstat, teardown_fd},
    {"open_close", 200000, op_open_close, NULL, NULL},
    {"pread_tmpfs", 1000000, op_pread, setup_pread_tmpfs, teardown_fd},
    {"pread_image", 1000000, op_pread, setup_pread_image, teardown_fd},
    {"write_devnull", 2000000, op_write, setup_devnull, teardown_fd},
    {"getdents", 3000, op_getdents, setup_dir, NULL}, /* getdents_N: N entries, default 1000 */
    {"pipe_pingpong", 20000, op_pipe_pingpong, setup_pipe, teardown_pipe},
    {"fork_exit_wait", 3000, op_fork_exit_wait, NULL, NULL},
    {"fork_exec_wait_static", 1000, op_fork_exec_wait, NULL, NULL},
    {"mmap_munmap_64k", 200000, op_mmap_munmap, NULL, NULL},
    {"tcp_rtt_loopback", 50000, op_tcp_rtt, setup_tcp_rtt, teardown_tcp_rtt},
    {"tcp_connect_loopback", 5000, op_tcp_connect, setup_tcp_connect, teardown_tcp_connect},
    {"tcp_rtt_link", 20000, op_tcp_rtt, setup_tcp_link, teardown_fd_only},
};

static const struct op *find_op(const char *name)
{
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
        if (OPS[i].run != op_getdents && strcmp(name, OPS[i].name) == 0)
            return &OPS[i];
        if (OPS[i].run == op_getdents && strncmp(name, "getdents_", 9) == 0) {
            char *end;
            dir_entries = strtol(name + 9, &end, 10);
            if (*end || dir_entries < 1 || dir_entries > 100000)
                return NULL;
            snprintf(dir_path, sizeof dir_path, "/tmp/bench_dir_%ld", dir_entries);
            return &OPS[i];
        }
    }
    return NULL;
}

/* Runs n iterations, or fewer once `deadline` (0: none) has passed; returns the count done.
 * The clock is read every `stride` iterations so that it adds well under 1 ns to cheap ops. */
static long run_loop(void (*run)(void), long n, uint64_t deadline, long stride)
{
    long i = 0, countdown = stride;
    while (i < n) {
        run();
        i++;
        if (deadline && --countdown == 0) {
            if (now_ns() > deadline)
                break;
            countdown = stride;
        }
    }
    return i;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--echo") == 0)
        return echo_peer(atoi(argv[2]));
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: microbench OP [ITERS [MAX_SECONDS [PEER]]] | --echo PORT\nops:");
        for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
            fprintf(stderr, " %s%s", OPS[i].name, strcmp(OPS[i].name, "getdents") ? "" : "_1000");
        fprintf(stderr, "\n");
        return 2;
    }
    const struct op *op = find_op(argv[1]);
    if (!op) {
        fprintf(stderr, "microbench: unknown op %s\n", argv[1]);
        return 2;
    }
    long iters = argc > 2 ? strtol(argv[2], NULL, 10) : op->iters;
    double max_s = argc > 3 ? strtod(argv[3], NULL) : 0;
    link_peer = argc > 4 ? argv[4] : NULL;
    if (iters < 1) {
        fprintf(stderr, "microbench: ITERS must be >= 1\n");
        return 2;
    }
    if (op->setup)
        op->setup();
    /* Warm-up (caches, page tables, the translator's lookup paths): 5% of the run, which also
     * tells how often the loop can afford to read the clock (about every 100 us). */
    uint64_t budget = max_s > 0 ? (uint64_t)(max_s * 1e9) : 0;
    uint64_t w0 = now_ns();
    long warm = run_loop(op->run, iters / 20 + 1, budget ? w0 + budget / 20 : 0, 1);
    double warm_ns = (double)(now_ns() - w0) / warm;
    long stride = warm_ns > 0 ? (long)(100000 / warm_ns) : 64;
    stride = stride < 1 ? 1 : stride > 64 ? 64 : stride;
    uint64_t t0 = now_ns();
    long done = run_loop(op->run, iters, budget ? t0 + budget : 0, stride);
    uint64_t t1 = now_ns();
    if (op->teardown)
        op->teardown();
    printf("op=%s iters=%ld ns_per_op=%.1f\n", argv[1], done, (double)(t1 - t0) / done);
    return 0;
}
