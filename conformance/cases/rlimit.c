// Resource limits: getrlimit/setrlimit/prlimit64, RLIMIT_NOFILE honoured by every way of
// getting an fd (translated opens included) and not in the way of execve, RLIMIT_FSIZE on
// writes and truncation, limits inherited across fork and exec.
// syscalls: getrlimit setrlimit prlimit64 openat dup fcntl pipe2 execve truncate ftruncate write
#include "verdict.h"
#include <sys/resource.h>

#define SELF "/conformance/rlimit"

extern char **environ;

static int helper(int argc, char **argv)
{
    (void)argc;
    if (!strcmp(argv[1], "limits")) {
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        printf("nofile=%lu/%lu\n", (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max);
        return 0;
    }
    if (!strcmp(argv[1], "ok")) {
        printf("exec_ok\n");
        return 0;
    }
    return 99;
}

/* the result of a call just made: arguments are evaluated before the call to res */
static const char *res(long r)
{
    return rstr(r, errno);
}

static long nofile_cur(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

static void call(void *fn)
{
    ((void (*)(void))fn)();
}

/* Run fn in a child with stdout on a pipe; prints the captured output and status. */
static void capture(const char *name, void (*fn)(void))
{
    char buf[512];
    long total;
    int st = vd_capture(call, (void *)fn, buf, sizeof buf, &total);
    checkf(name, "out=%s status=%s", qstr(buf, total), wstr(st));
}

/* fill the fd table with dups of 0 up to the soft limit */
static int fill_fds(void)
{
    int n = 0;
    while (dup(0) >= 0)
        n++;
    return n;
}

static void child_nofile(void)
{
    struct rlimit rl = {16, 16};
    setrlimit(RLIMIT_NOFILE, &rl);
    write_file("f", "x");
    int first = -1, last = -1, n = 0, fd;
    while ((fd = open("f", O_RDONLY)) >= 0) {
        if (first < 0)
            first = fd;
        last = fd;
        n++;
        if (n > 64)
            break;
    }
    printf("open: opened_up_to_limit=%d last_is_limit_minus_1=%d errno=%s\n",
           last - first + 1 == n, last == 15, errname(errno));
    errno = 0;
    printf("openat: %s\n", res(openat(AT_FDCWD, "f", O_RDONLY)));
    errno = 0;
    printf("creat: %s\n", res(creat("g", 0644)));
    errno = 0;
    printf("dup: %s\n", res(dup(0)));
    int p[2];
    errno = 0;
    printf("pipe: %s\n", res(pipe(p)));
    close(last);
    errno = 0;
    fd = open("f", O_RDONLY);
    printf("after_close: fd_is_15=%d\n", fd == 15);
    close(fd);
    errno = 0;
    printf("dup2_above: %s\n", res(dup2(0, 20)));
    errno = 0;
    printf("f_dupfd_above: %s\n", res(fcntl(0, F_DUPFD, 20)));
    errno = 0;
    printf("open_dir_at_limit: %s\n", res(open(".", O_RDONLY | O_DIRECTORY)));
}

/* every fd under the soft limit taken, then exec SELF with `arg` */
static void exec_with_fds_full(rlim_t soft, rlim_t hard, char *arg)
{
    struct rlimit rl = {soft, hard};
    setrlimit(RLIMIT_NOFILE, &rl);
    fill_fds();
    fflush(stdout);
    execve(SELF, (char *[]){"rlimit", arg, NULL}, environ);
    printf("exec=%s\n", errname(errno));
}

static void child_exec_at_limit(void)
{
    exec_with_fds_full(16, 16, "ok");
}

static void child_exec_at_soft_limit(void)
{
    exec_with_fds_full(16, 32, "limits");
}

static void child_exec_limits(void)
{
    struct rlimit rl = {40, 50};
    setrlimit(RLIMIT_NOFILE, &rl);
    fflush(stdout);
    execve(SELF, (char *[]){"rlimit", "limits", NULL}, environ);
    printf("exec=%s\n", errname(errno));
}

static void child_lower_raise(void)
{
    struct rlimit rl = {64, 64}, big = {64, 128}, got;
    printf("lower_hard=%s\n", res(setrlimit(RLIMIT_NOFILE, &rl)));
    errno = 0;
    printf("raise_hard=%s\n", res(setrlimit(RLIMIT_NOFILE, &big)));
    getrlimit(RLIMIT_NOFILE, &got);
    printf("now=%lu/%lu\n", (unsigned long)got.rlim_cur, (unsigned long)got.rlim_max);
    struct rlimit inv = {100, 50};
    errno = 0;
    printf("soft_above_hard=%s\n", res(setrlimit(RLIMIT_NOFILE, &inv)));
    struct rlimit huge = {1UL << 40, 1UL << 40};
    errno = 0;
    printf("above_nr_open=%s\n", res(setrlimit(RLIMIT_NOFILE, &huge)));
}

static void child_fsize(void)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1000, 1000};
    setrlimit(RLIMIT_FSIZE, &rl);
    int fd = open("big", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char buf[1500];
    memset(buf, 'x', sizeof buf);
    errno = 0;
    printf("write_partial=%s\n", res(write(fd, buf, sizeof buf)));
    errno = 0;
    printf("write_at_limit=%s\n", res(write(fd, buf, 10)));
    errno = 0;
    printf("ftruncate_beyond=%s\n", res(ftruncate(fd, 5000)));
    errno = 0;
    printf("truncate_beyond=%s\n", res(truncate("big", 5000)));
    errno = 0;
    printf("truncate_within=%s\n", res(truncate("big", 500)));
    struct stat st;
    fstat(fd, &st);
    printf("size=%ld\n", (long)st.st_size);
    close(fd);
}

static void child_fsize_signal(void)
{
    struct rlimit rl = {100, 100};
    setrlimit(RLIMIT_FSIZE, &rl);
    write_file("sig", "");
    fflush(stdout);
    truncate("sig", 5000);
    printf("survived\n");
}

static void test_basic(void)
{
    struct rlimit rl, old;
    CHECK_RET("getrlimit_nofile", getrlimit(RLIMIT_NOFILE, &rl));
    checkf("nofile_sane", "soft_le_hard=%d soft_at_least_64=%d", rl.rlim_cur <= rl.rlim_max,
           rl.rlim_cur >= 64);
    CHECK_RET("getrlimit_bad_resource", getrlimit(99, &rl));
    CHECK_RET("prlimit_query_self", prlimit(0, RLIMIT_NOFILE, NULL, &old));
    checkf("prlimit_matches_getrlimit", "same=%d", old.rlim_cur == rl.rlim_cur &&
           old.rlim_max == rl.rlim_max);
    CHECK_RET("prlimit_missing_pid", prlimit(999999, RLIMIT_NOFILE, NULL, &old));
    CHECK_RET("getrlimit_bad_pointer", syscall(SYS_getrlimit, RLIMIT_NOFILE, BADPTR));

    /* prlimit on a child: it sees the new limit */
    int p[2], q[2];
    pipe(p);
    pipe(q);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char ch;
        read(p[0], &ch, 1);
        long cur = nofile_cur();
        write(q[1], &cur, sizeof cur);
        _exit(0);
    }
    struct rlimit set = {32, rl.rlim_max};
    CHECK_RET("prlimit_set_child", prlimit(c, RLIMIT_NOFILE, &set, &old));
    write(p[1], "g", 1);
    long cur = -1;
    read(q[0], &cur, sizeof cur);
    waitpid(c, NULL, 0);
    checkf("prlimit_child_sees", "cur=%ld", cur);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return helper(argc, argv);
    alarm(20);
    vd_begin("rlimit");
    test_basic();
    capture("nofile_limits_fds", child_nofile);
    capture("execve_at_nofile_limit", child_exec_at_limit);
    capture("execve_at_soft_nofile_limit", child_exec_at_soft_limit);
    capture("limits_inherited_by_exec", child_exec_limits);
    capture("lower_then_raise_hard", child_lower_raise);
    capture("fsize_limit", child_fsize);
    capture("fsize_truncate_sigxfsz", child_fsize_signal);
    return vd_end();
}
