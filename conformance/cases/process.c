// Processes: fork/vfork/clone, wait4/waitid, exit status, execve/execveat of a
// static helper and of #! scripts, process groups and sessions.
// syscalls: fork vfork clone wait4 waitid exit_group execve execveat getpid getppid kill setsid getsid setpgid getpgid
#include "verdict.h"
#include <sys/mman.h>
#include <sys/resource.h>

#define HELPER "/conformance/_exec_helper"

extern char **environ;

#define NO_EXECVEAT (-1000)

/* fork + exec, stdout captured; prints one check line: out="..." status=exit=N,
 * or exec=ERRNO when the exec failed.  at_dirfd == NO_EXECVEAT uses execve,
 * anything else execveat(at_dirfd, path, argv, envp, at_flags). */
static void exec_capture(const char *name, int at_dirfd, const char *path, char *const argv[],
                         char *const envp[], int at_flags)
{
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        if (at_dirfd != NO_EXECVEAT)
            syscall(SYS_execveat, at_dirfd, path, argv, envp, at_flags);
        else
            syscall(SYS_execve, path, argv, envp);
        printf("exec=%s", errname(errno));
        fflush(stdout);
        _exit(127);
    }
    close(p[1]);
    char buf[1024];
    long total = 0, r;
    while (total < (long)sizeof buf && (r = read(p[0], buf + total, sizeof buf - total)) > 0)
        total += r;
    close(p[0]);
    int st = 0;
    waitpid(c, &st, 0);
    if (total > 0 && buf[total - 1] == '\n')
        total--;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && !strncmp(buf, "exec=", 5))
        checkf(name, "%.*s", (int)total, buf);
    else
        checkf(name, "out=%s status=%s", qstr(buf, total), wstr(st));
}

static void run_capture(const char *name, const char *path, char *const argv[],
                        char *const envp[])
{
    exec_capture(name, NO_EXECVEAT, path, argv, envp, 0);
}

#define ARGV(...) ((char *const[]){__VA_ARGS__, NULL})

static void on_signal(int sig) { (void)sig; }

static char *const plain_env[] = {"CONF_VAR=hello", "PATH=/bin", NULL};

static void test_fork_wait(void)
{
    pid_t me = getpid();
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int rel[2] = {getppid() == me, getpid() != me};
        write(p[1], rel, sizeof rel);
        _exit(42);
    }
    int rel[2] = {-1, -1};
    read(p[0], rel, sizeof rel);
    int st;
    pid_t w = waitpid(c, &st, 0);
    checkf("fork_child_relations", "ppid_is_parent=%d own_pid=%d child_pid_positive=%d",
           rel[0], rel[1], c > 0);
    checkf("wait_exit_status", "same_pid=%d %s", w == c, wstr(st));
    CHECK_RET("wait_no_children", waitpid(-1, &st, 0));
    CHECK_RET("wait_reaped_child", waitpid(c, &st, 0));
    CHECK_RET("kill_reaped_child", kill(c, 0));
    CHECK_RET("getpgid_reaped_child", getpgid(c));

    c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    CHECK_RET("waitpid_wnohang_running", waitpid(c, &st, WNOHANG));
    CHECK_RET("kill_child_probe", kill(c, 0));
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    checkf("wait_killed_child", "%s core=%d", wstr(st), WCOREDUMP(st) != 0);

    c = fork();
    if (c == 0)
        _exit(256 + 3);
    waitpid(c, &st, 0);
    checkf("exit_status_truncated", "%s", wstr(st));

    c = fork();
    if (c == 0)
        _exit(9);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK_RET("waitid_nowait", waitid(P_PID, c, &si, WEXITED | WNOWAIT));
    checkf("waitid_info", "code=%s status=%d pid_match=%d",
           si.si_code == CLD_EXITED ? "CLD_EXITED" : "other", si.si_status, si.si_pid == c);
    struct rusage ru;
    CHECK_RET("wait4_after_nowait", wait4(c, &st, 0, &ru) == c);
    CHECK_RET("waitid_bad_options", waitid(P_ALL, 0, &si, 0));

    c = fork();
    if (c == 0) {
        for (;;)
            pause();
    }
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    checkf("wait_stopped_child", "%s", wstr(st));
    kill(c, SIGCONT);
    waitpid(c, &st, WCONTINUED);
    checkf("wait_continued_child", "continued=%d", WIFCONTINUED(st));
    kill(c, SIGTERM);
    waitpid(c, &st, 0);
    checkf("wait_terminated_child", "%s", wstr(st));

    volatile int shared = 0;
    c = vfork();
    if (c == 0) {
        shared = 1;
        _exit(7);
    }
    waitpid(c, &st, 0);
    checkf("vfork_shares_memory_until_exit", "shared=%d %s", shared, wstr(st));

    c = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (c == 0)
        _exit(5);
    waitpid(c, &st, 0);
    checkf("clone_as_fork", "%s", wstr(st));
}

static void test_sessions(void)
{
    IN_CHILD("child_session", {
        pid_t self = getpid();
        long sid = setsid();
        checkf("setsid_in_child", "ok=%d sid_is_pid=%d getsid=%d", sid >= 0, sid == self,
               getsid(0) == self);
        CHECK_RET("setsid_when_leader", setsid());
        checkf("pgid_after_setsid", "pgid_is_pid=%d", getpgid(0) == self);
    });
    IN_CHILD("child_pgid", {
        pid_t self = getpid();
        CHECK_RET("setpgid_self", setpgid(0, 0));
        checkf("setpgid_result", "pgrp_is_pid=%d", getpgrp() == self);
        CHECK_RET("setpgid_negative", setpgid(0, -1));
    });
}

/* A program the guest made itself (a memfd holding a copy of the helper): by fd and through
 * /proc/self/fd; and one without exec permission. */
static void test_exec_memfd(void)
{
    int mfd = memfd_create("conf-prog", 0), src = open(HELPER, O_RDONLY);
    char buf[65536], path[64];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        write(mfd, buf, n);
    close(src);
    exec_capture("execveat_memfd", mfd, "", ARGV("h", "exe"), plain_env, AT_EMPTY_PATH);
    snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
    exec_capture("execve_memfd_via_proc_fd", NO_EXECVEAT, path, ARGV("h", "argv", "m"), plain_env, 0);
    fchmod(mfd, 0644);
    exec_capture("execveat_memfd_without_x", mfd, "", ARGV("h"), plain_env, AT_EMPTY_PATH);
    close(mfd);
    int script = memfd_create("conf-data", 0);
    write(script, "#!" HELPER " fromscript\n", strlen("#!" HELPER " fromscript\n"));
    exec_capture("execveat_memfd_script", script, "", ARGV("s", "argv"), plain_env, AT_EMPTY_PATH);
    close(script);
    /* A script named through a close-on-exec fd: its interpreter could not open it. */
    script = memfd_create("conf-data", MFD_CLOEXEC);
    write(script, "#!" HELPER "\n", strlen("#!" HELPER "\n"));
    exec_capture("execveat_cloexec_memfd_script", script, "", ARGV("s"), plain_env, AT_EMPTY_PATH);
    close(script);
    write_file("script_at", "#!" HELPER "\n");
    chmod("script_at", 0755);
    int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    exec_capture("execveat_cloexec_dirfd_script", dfd, "script_at", ARGV("s"), plain_env, 0);
    close(dfd);
    dfd = open(".", O_RDONLY | O_DIRECTORY);
    exec_capture("execveat_dirfd_script", dfd, "script_at", ARGV("s"), plain_env, 0);
    close(dfd);
    dfd = open("/conformance", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    exec_capture("execveat_cloexec_dirfd_elf", dfd, "_exec_helper", ARGV("h", "argv", "ok"), plain_env, 0);
    close(dfd);
}

static void test_exec(void)
{
    run_capture("execve_argv", HELPER, ARGV("helper", "argv", "a b", ""), plain_env);
    run_capture("execve_env", HELPER, ARGV("helper", "env", "CONF_VAR"), plain_env);
    run_capture("execve_empty_env", HELPER, ARGV("helper", "env", "CONF_VAR"),
                (char *const[]){NULL});
    mkdir("wd", 0755);
    chdir("wd");
    run_capture("execve_keeps_cwd", HELPER, ARGV("helper", "cwd"), plain_env);
    chdir(vd_scratch);

    int keep = open(".", O_RDONLY);
    int drop = open(".", O_RDONLY | O_CLOEXEC);
    char a[8], b[8];
    snprintf(a, sizeof a, "%d", keep);
    snprintf(b, sizeof b, "%d", drop);
    run_capture("execve_cloexec", HELPER, ARGV("helper", "fd", a, b), plain_env);
    close(keep);
    close(drop);

    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, on_signal);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    run_capture("execve_signal_state", HELPER, ARGV("helper", "signals"), plain_env);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);

    run_capture("execve_exit_status", HELPER, ARGV("helper", "exit", "33"), plain_env);
    run_capture("execve_missing", "/conformance/nope", ARGV("x"), plain_env);
    write_file("noexec", "#!/bin/sh\necho hi\n");
    run_capture("execve_not_executable", "noexec", ARGV("x"), plain_env);
    run_capture("execve_directory", ".", ARGV("x"), plain_env);
    write_file("garbage", "this is not an executable\n");
    chmod("garbage", 0755);
    run_capture("execve_garbage", "garbage", ARGV("x"), plain_env);
    write_file("empty", "");
    chmod("empty", 0755);
    run_capture("execve_empty_file", "empty", ARGV("x"), plain_env);
    run_capture("execve_bad_path_pointer", BADPTR, ARGV("x"), plain_env);
    symlink(HELPER, "helper_link");
    run_capture("execve_via_symlink", "helper_link", ARGV("hl", "argv"), plain_env);

    write_file("script_helper", "#!" HELPER " optarg\nignored body\n");
    chmod("script_helper", 0755);
    run_capture("shebang_helper_argv", "script_helper", ARGV("script_helper", "x", "y"),
                plain_env);
    write_file("script_noarg", "#!" HELPER "\n");
    chmod("script_noarg", 0755);
    run_capture("shebang_no_arg", "./script_noarg", ARGV("whatever", "z"), plain_env);
    write_file("script_sh", "#!/bin/sh\necho \"sh says $1 $CONF_VAR\"\nexit 4\n");
    chmod("script_sh", 0755);
    run_capture("shebang_sh", "script_sh", ARGV("script_sh", "arg1"), plain_env);
    write_file("script_missing", "#!/conformance/no-such-interpreter\n");
    chmod("script_missing", 0755);
    run_capture("shebang_missing_interpreter", "script_missing", ARGV("s"), plain_env);

    int dfd = open("/conformance", O_RDONLY | O_DIRECTORY);
    exec_capture("execveat_dirfd", dfd, "_exec_helper", ARGV("h", "argv", "at"), plain_env, 0);
    exec_capture("execveat_bad_flags", dfd, "_exec_helper", ARGV("h"), plain_env, 0x4);
    close(dfd);
    int hfd = open(HELPER, O_RDONLY);
    exec_capture("execveat_empty_path", hfd, "", ARGV("h", "argv", "fd"), plain_env,
                 AT_EMPTY_PATH);
    exec_capture("execveat_empty_path_without_flag", hfd, "", ARGV("h"), plain_env, 0);
    close(hfd);
    hfd = open(HELPER, O_PATH);
    exec_capture("execveat_empty_path_o_path", hfd, "", ARGV("h", "argv", "opath"), plain_env,
                 AT_EMPTY_PATH);
    close(hfd);
    symlink(HELPER, "hl2");
    exec_capture("execveat_nofollow_symlink", AT_FDCWD, "hl2", ARGV("h"), plain_env,
                 AT_SYMLINK_NOFOLLOW);
    test_exec_memfd();
}

int main(void)
{
    vd_begin("process");
    test_fork_wait();
    test_sessions();
    test_exec();
    return vd_end();
}
