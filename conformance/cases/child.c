// Child processes: fork/vfork/posix_spawn with _exit and exec, wait4/waitid with
// WNOHANG/WUNTRACED/WCONTINUED/WEXITED/WNOWAIT and P_PID/P_PGID/P_ALL/P_PIDFD, rusage,
// non-SIGCHLD exit signals, and what a failed execve leaves behind.
// syscalls: fork vfork clone wait4 waitid execve getrusage kill pidfd_open setpgid
#include "verdict.h"
#include <spawn.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

#define SELF "/conformance/child"
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

static int helper(int argc, char **argv)
{
    if (!strcmp(argv[1], "exit") && argc > 2)
        return atoi(argv[2]);
    if (!strcmp(argv[1], "cwd")) {
        char buf[256];
        printf("%s\n", getcwd(buf, sizeof buf) ? buf : "<error>");
        return 0;
    }
    if (!strcmp(argv[1], "fds")) {
        /* the lowest free fd: what the exec'd image inherited */
        int fd = dup(0);
        printf("lowest_free=%d\n", fd);
        return 0;
    }
    return 99;
}

static const char *code_name(int c)
{
    switch (c) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    case CLD_TRAPPED: return "CLD_TRAPPED";
    default: return "other";
    }
}

static volatile sig_atomic_t usr1_hits;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_hits++;
}

static pid_t spawn_pause(void)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        alarm(5);
        for (;;)
            pause();
    }
    return c;
}

static void burn_cpu_ms(long ms)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (;;) {
        for (volatile int i = 0; i < 100000; i++)
            ;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= ms)
            return;
    }
}

static void test_wait_options(void)
{
    int st;
    siginfo_t si;
    pid_t c = spawn_pause();
    CHECK_RET("wait4_wnohang_running", wait4(c, &st, WNOHANG, NULL));
    memset(&si, 0xff, sizeof si);
    CHECK_RET("waitid_wnohang_running", waitid(P_PID, c, &si, WEXITED | WNOHANG));
    checkf("waitid_wnohang_running_info", "si_pid=%d si_signo=%d", si.si_pid, si.si_signo);

    kill(c, SIGSTOP);
    memset(&si, 0, sizeof si);
    CHECK_RET("waitid_wstopped", waitid(P_PID, c, &si, WSTOPPED));
    checkf("waitid_wstopped_info", "code=%s status=%s pid_match=%d", code_name(si.si_code),
           sigabbrev_np(si.si_status), si.si_pid == c);
    CHECK_RET("waitid_wstopped_consumed", waitid(P_PID, c, &si, WSTOPPED | WNOHANG));
    checkf("waitid_wstopped_consumed_info", "si_pid=%d", si.si_pid);
    kill(c, SIGCONT);
    memset(&si, 0, sizeof si);
    CHECK_RET("waitid_wcontinued", waitid(P_PID, c, &si, WCONTINUED));
    checkf("waitid_wcontinued_info", "code=%s status=%s", code_name(si.si_code),
           sigabbrev_np(si.si_status));
    kill(c, SIGSTOP);
    st = 0;
    long r = wait4(c, &st, WUNTRACED, NULL);
    checkf("wait4_wuntraced", "same=%d %s", r == c, wstr(st));
    kill(c, SIGCONT);
    st = 0;
    r = wait4(c, &st, WCONTINUED, NULL);
    checkf("wait4_wcontinued", "same=%d continued=%d", r == c, WIFCONTINUED(st));
    CHECK_RET("wait4_wcontinued_consumed", wait4(c, &st, WCONTINUED | WNOHANG, NULL));
    kill(c, SIGKILL);
    memset(&si, 0, sizeof si);
    CHECK_RET("waitid_killed_nowait", waitid(P_PID, c, &si, WEXITED | WNOWAIT));
    checkf("waitid_killed_info", "code=%s status=%s", code_name(si.si_code),
           sigabbrev_np(si.si_status));
    r = wait4(c, &st, 0, NULL);
    checkf("wait4_after_nowait", "same=%d %s", r == c, wstr(st));

    CHECK_RET("waitid_no_options", waitid(P_PID, c, &si, 0));
    CHECK_RET("waitid_bad_idtype", waitid((idtype_t)42, 0, &si, WEXITED));
    CHECK_RET("wait4_bad_options", wait4(-1, &st, 0x40000000, NULL));
    CHECK_RET("waitid_p_all_no_children", waitid(P_ALL, 0, &si, WEXITED));
    CHECK_RET("wait4_pid_not_child", wait4(getpid(), &st, 0, NULL));
}

static void test_wait_selectors(void)
{
    int st;
    siginfo_t si;
    /* two children in a new process group, one in ours */
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        usleep(20000);
        _exit(11);
    }
    setpgid(a, a);
    pid_t b = fork();
    if (b == 0) {
        setpgid(0, a);
        usleep(20000);
        _exit(12);
    }
    setpgid(b, a);
    pid_t mine = fork();
    if (mine == 0) {
        usleep(5000);
        _exit(13);
    }
    int seen = 0, codes = 0;
    for (int i = 0; i < 2; i++) {
        memset(&si, 0, sizeof si);
        if (waitid(P_PGID, a, &si, WEXITED) == 0) {
            seen += si.si_pid == a || si.si_pid == b;
            codes += si.si_status;
        }
    }
    checkf("waitid_p_pgid", "seen=%d status_sum=%d", seen, codes);
    CHECK_RET("waitid_p_pgid_done", waitid(P_PGID, a, &si, WEXITED));
    long r = waitpid(0, &st, 0);
    checkf("waitpid_own_group", "is_mine=%d %s", r == mine, wstr(st));

    pid_t c = fork();
    if (c == 0)
        _exit(14);
    memset(&si, 0, sizeof si);
    r = waitid(P_ALL, 0, &si, WEXITED);
    checkf("waitid_p_all", "%s pid_match=%d status=%d", rstr(r, errno), si.si_pid == c,
           si.si_status);

    c = fork();
    if (c == 0)
        _exit(15);
    int pfd = (int)syscall(SYS_pidfd_open, c, 0);
    memset(&si, 0, sizeof si);
    r = waitid(P_PIDFD, pfd, &si, WEXITED);
    checkf("waitid_p_pidfd", "%s pid_match=%d status=%d", rstr(r, errno), si.si_pid == c,
           si.si_status);
    close(pfd);

    /* a clone child with no exit signal is only seen with __WCLONE or __WALL */
    c = (pid_t)syscall(SYS_clone, 0, 0, 0, 0, 0);
    if (c == 0)
        _exit(16);
    usleep(10000);
    CHECK_RET("wait_clone_child_without_wclone", waitpid(c, &st, WNOHANG));
    r = waitpid(c, &st, __WCLONE);
    checkf("wait_clone_child_wclone", "same=%d %s", r == c, wstr(st));
    signal(SIGUSR1, on_usr1);
    c = (pid_t)syscall(SYS_clone, SIGUSR1, 0, 0, 0, 0);
    if (c == 0)
        _exit(17);
    r = waitpid(c, &st, __WALL);
    checkf("wait_exit_signal_usr1_wall", "same=%d %s usr1_hits=%d", r == c, wstr(st),
           (int)usr1_hits);
    signal(SIGUSR1, SIG_DFL);
}

static void test_rusage(void)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        burn_cpu_ms(30);
        _exit(0);
    }
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    int st;
    long r = wait4(c, &st, 0, &ru);
    long cpu_us = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1000000L
                  + ru.ru_stime.tv_usec;
    checkf("wait4_rusage", "same=%d cpu_at_least_20ms=%d maxrss_positive=%d", r == c,
           cpu_us >= 20000, ru.ru_maxrss > 0);
    struct rusage ch;
    CHECK_RET("getrusage_children", getrusage(RUSAGE_CHILDREN, &ch));
    long ch_us = ch.ru_utime.tv_sec * 1000000L + ch.ru_utime.tv_usec + ch.ru_stime.tv_sec * 1000000L
                 + ch.ru_stime.tv_usec;
    checkf("getrusage_children_accumulated", "cpu_at_least_20ms=%d", ch_us >= 20000);
    CHECK_RET("getrusage_bad_who", getrusage(42, &ch));
    CHECK_RET("getrusage_thread", getrusage(RUSAGE_THREAD, &ch));
}

static void test_spawn(void)
{
    volatile int shared = 0;
    int st;
    fflush(stdout);
    pid_t c = vfork();
    if (c == 0) {
        shared = 1;
        execve(SELF, (char *[]){"child", "exit", "21", NULL}, environ);
        _exit(127);
    }
    waitpid(c, &st, 0);
    checkf("vfork_exec", "shared=%d %s", shared, wstr(st));

    pid_t pid = 0;
    int r = posix_spawn(&pid, SELF, NULL, NULL, (char *[]){"child", "exit", "22", NULL}, environ);
    st = 0;
    if (r == 0)
        waitpid(pid, &st, 0);
    checkf("posix_spawn", "ret=%d %s", r, wstr(st));
    r = posix_spawn(&pid, "/conformance/none", NULL, NULL, (char *[]){"x", NULL}, environ);
    checkf("posix_spawn_missing", "ret=%s", errname(r));

    mkdir("spawn_dir", 0755);
    int p[2];
    pipe(p);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    posix_spawn_file_actions_addchdir_np(&fa, "spawn_dir");
    r = posix_spawn(&pid, SELF, &fa, NULL, (char *[]){"child", "cwd", NULL}, environ);
    close(p[1]);
    char buf[256];
    long n = read(p[0], buf, sizeof buf);
    close(p[0]);
    if (r == 0)
        waitpid(pid, &st, 0);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    checkf("posix_spawn_chdir", "ret=%d out=%s", r, qstr(buf, n));
    posix_spawn_file_actions_destroy(&fa);
    char cwd[256];
    checkf("posix_spawn_chdir_parent_cwd", "cwd=%s", getcwd(cwd, sizeof cwd) ? cwd : "?");
}

/* Run an execve expected to fail in a child; report its errno and the lowest free fd after it
 * (a failed execve must leave the fd table as it was). */
/* vd_capture's child: run this program again with argv (a NULL-terminated char *[]) */
static void exec_self(void *argv)
{
    execve(SELF, (char *const *)argv, environ);
    _exit(127);
}

static void failed_exec(const char *name, char *const argv[], char *const envp[])
{
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        int before = dup(0);
        close(before);
        errno = 0;
        long r = syscall(SYS_execve, SELF, argv, envp);
        int e = errno;
        int after = dup(0);
        char out[128];
        int len = snprintf(out, sizeof out, "%s fd_table_unchanged=%d", rstr(r, e), after == before);
        write(p[1], out, (size_t)len);
        _exit(0);
    }
    close(p[1]);
    char buf[256];
    long n = read(p[0], buf, sizeof buf);
    close(p[0]);
    int st;
    waitpid(c, &st, 0);
    checkf(name, "%.*s", (int)(n > 0 ? n : 0), buf);
}

static void test_exec_failures(void)
{
    size_t big = 200 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = 0;
    failed_exec("execve_e2big_leaves_no_fd", (char *[]){"child", huge, NULL}, (char *[]){NULL});
    free(huge);
    failed_exec("execve_bad_argv_leaves_no_fd", (char *const *)BADPTR, (char *[]){NULL});
    failed_exec("execve_bad_envp_leaves_no_fd", (char *[]){"child", NULL}, (char *const *)BADPTR);

    /* the exec'd image starts with the same fds as its parent had */
    char buf[64];
    long n;
    vd_capture(exec_self, (char *[]){"child", "fds", NULL}, buf, sizeof buf, &n);
    checkf("exec_fd_table", "out=%s", qstr(buf, n));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return helper(argc, argv);
    alarm(20);
    vd_begin("child");
    test_wait_options();
    test_wait_selectors();
    test_rusage();
    test_spawn();
    test_exec_failures();
    return vd_end();
}
