// Process groups and sessions: getpgrp/getpgid/setpgid/getsid/setsid as the program
// started (its own session leader), kill(0)/kill(-pgid), orphans reparented (with and
// without a child subreaper) and getppid after the parent's exit, SIGHUP+SIGCONT to a
// stopped process group that becomes orphaned.
// syscalls: getpgrp getpgid setpgid getsid setsid kill getppid prctl wait4 execve
#include "verdict.h"
#include <poll.h>
#include <sys/prctl.h>

#define SELF "/conformance/session"

static int helper(int argc, char **argv)
{
    (void)argc;
    if (!strcmp(argv[1], "wait")) { /* blocks until stdin closes */
        char c;
        while (read(0, &c, 1) > 0)
            ;
        return 0;
    }
    return 99;
}

static volatile sig_atomic_t hits, foreign;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    hits++;
    if (si->si_pid != getpid())
        foreign++;
}

static void wait_ms(int ms)
{
    poll(NULL, 0, ms);
}

/* The run starts the program as the leader of a new session (setsid before exec). */
static void test_initial(void)
{
    pid_t me = getpid();
    checkf("initial_pgrp", "pgrp_is_pid=%d pgid0_is_pid=%d", getpgrp() == me, getpgid(0) == me);
    checkf("initial_sid", "sid_is_pid=%d", getsid(0) == me);

    /* kill(0) reaches exactly our process group: here, only us */
    struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    CHECK_RET("kill_zero", kill(0, SIGUSR1));
    for (int i = 0; i < 10 && hits < 2; i++)
        wait_ms(10);
    checkf("kill_zero_delivered", "hits=%d foreign=%d", (int)hits, (int)foreign);
    CHECK_RET("kill_own_pgrp_probe", kill(-getpgrp(), 0));

    CHECK_RET("setsid_as_group_leader", setsid() < 0 ? -1 : 0);
    CHECK_RET("setpgid_self_as_session_leader", setpgid(0, 0));
    checkf("pgrp_after", "pgrp_is_pid=%d sid_is_pid=%d", getpgrp() == me, getsid(0) == me);
}

static void test_groups(void)
{
    pid_t me = getpid();
    IN_CHILD("child_setsid", {
        pid_t self = getpid();
        checkf("child_inherits_pgrp", "pgrp_is_parent=%d sid_is_parent=%d", getpgrp() == me,
               getsid(0) == me);
        long r = setsid();
        checkf("setsid_in_child", "sid_is_pid=%d pgrp_is_pid=%d", r == self, getpgrp() == self);
        CHECK_RET("setsid_twice", setsid());
        CHECK_RET("setpgid_into_other_session", setpgid(0, me));
        CHECK_RET("getsid_of_parent_other_session", getsid(me) == me ? 0 : -1);
    });

    /* the parent moves a child into a new group; not once it has exec'd */
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        char ch;
        read(p[0], &ch, 1);
        _exit(0);
    }
    CHECK_RET("setpgid_child_by_parent", setpgid(c, c));
    checkf("getpgid_child", "pgid_is_child=%d", getpgid(c) == c);
    CHECK_RET("setpgid_child_back", setpgid(c, me));
    CHECK_RET("setpgid_missing_group", setpgid(c, 999999));
    CHECK_RET("setpgid_negative", setpgid(c, -1));
    close(p[1]);
    close(p[0]);
    waitpid(c, NULL, 0);
    CHECK_RET("setpgid_reaped_child", setpgid(c, c));
    CHECK_RET("getpgid_missing", getpgid(999999));
    CHECK_RET("getsid_missing", getsid(999999));

    int q[2];
    pipe(q);
    fflush(stdout);
    c = fork();
    if (c == 0) {
        dup2(q[0], 0);
        close(q[0]);
        close(q[1]);
        execl(SELF, "session", "wait", (char *)NULL);
        _exit(127);
    }
    close(q[0]);
    /* wait until the child has exec'd: /proc/PID/cmdline shows the new argv */
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/%d/cmdline", c);
    for (int i = 0; i < 100; i++) {
        long n = read_file(path, buf, sizeof buf);
        if (n > 8 && !strcmp(buf + strlen(buf) + 1, "wait"))
            break;
        wait_ms(2);
    }
    CHECK_RET("setpgid_after_exec", setpgid(c, c));
    close(q[1]);
    waitpid(c, NULL, 0);
}

static volatile sig_atomic_t terms;
static void on_term(int sig) { (void)sig; terms++; }

static void test_kill_group(void)
{
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t leader = fork();
    if (leader == 0) {
        close(p[0]);
        setpgid(0, 0);
        pid_t kids[2];
        for (int i = 0; i < 2; i++) {
            kids[i] = fork();
            if (kids[i] == 0) {
                alarm(5);
                for (;;)
                    pause();
            }
        }
        signal(SIGTERM, on_term);
        write(p[1], "r", 1);
        char out[128];
        int st0 = 0, st1 = 0;
        while (waitpid(kids[0], &st0, 0) < 0 && errno == EINTR)
            ;
        while (waitpid(kids[1], &st1, 0) < 0 && errno == EINTR)
            ;
        int n = snprintf(out, sizeof out, "a=%s b=%s leader_terms=%d", wstr(st0), wstr(st1),
                         (int)terms);
        write(p[1], out, (size_t)n);
        _exit(0);
    }
    close(p[1]);
    char ch;
    read(p[0], &ch, 1);
    CHECK_RET("kill_negative_pgid", kill(-leader, SIGTERM));
    char buf[128];
    long n = read(p[0], buf, sizeof buf);
    close(p[0]);
    int st;
    waitpid(leader, &st, 0);
    checkf("kill_pgrp_result", "%.*s leader=%s", (int)(n > 0 ? n : 0), buf, wstr(st));
    CHECK_RET("kill_pgrp_gone", kill(-leader, 0));
    CHECK_RET("kill_missing_pgrp", kill(-999999, SIGTERM));
}

/* A forks B and exits; B reports getppid() relations through the pipe. */
static void orphan(const char *name)
{
    pid_t me = getpid();
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        pid_t before = getpid();
        pid_t b = fork();
        if (b == 0) {
            close(p[0]);
            for (int i = 0; i < 100 && getppid() == before; i++)
                wait_ms(2);
            int rel[2] = {getppid() != before, getppid() == me};
            write(p[1], rel, sizeof rel);
            _exit(0);
        }
        _exit(0);
    }
    close(p[1]);
    waitpid(a, NULL, 0);
    int rel[2] = {-1, -1};
    read(p[0], rel, sizeof rel);
    close(p[0]);
    checkf(name, "ppid_changed=%d ppid_is_us=%d", rel[0], rel[1]);
}

static void test_orphans(void)
{
    orphan("orphan_reparented");
    /* B was not our child: a wait for any child finds none */
    int st;
    long r = waitpid(-1, &st, 0);
    checkf("wait_any_after_foreign_orphan", "%s", rstr(r < 0 ? -1 : 0, errno));

    CHECK_RET("set_child_subreaper", prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
    orphan("orphan_to_subreaper");
    r = waitpid(-1, &st, 0);
    checkf("subreaper_reaps_orphan", "%s %s", rstr(r < 0 ? -1 : 0, errno), r > 0 ? wstr(st) : "");
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

static void on_hup(int sig) { (void)sig; }

/* A makes its own group, B (in it) stops; A exits: the group is orphaned with a stopped
 * member, so the kernel sends it SIGHUP then SIGCONT. */
static void test_orphaned_pgrp(void)
{
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        pid_t b = fork();
        if (b == 0) {
            close(p[0]);
            struct sigaction sa = {.sa_handler = on_hup};
            sigemptyset(&sa.sa_mask);
            sigaction(SIGHUP, &sa, NULL);
            alarm(3);
            raise(SIGSTOP);
            write(p[1], "continued", 9);
            _exit(0);
        }
        int st;
        waitpid(b, &st, WUNTRACED);
        write(p[1], &b, sizeof b);
        _exit(0);
    }
    close(p[1]);
    pid_t b = 0;
    read(p[0], &b, sizeof b);
    waitpid(a, NULL, 0);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    char buf[32];
    long n = poll(&pf, 1, 100) == 1 ? read(p[0], buf, sizeof buf) : 0;
    checkf("orphaned_stopped_group_sighup_sigcont", "out=%s", qstr(buf, n));
    if (b > 0)
        kill(b, SIGKILL);
    close(p[0]);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return helper(argc, argv);
    alarm(20);
    vd_begin("session");
    test_initial();
    test_groups();
    test_kill_group();
    test_orphans();
    test_orphaned_pgrp();
    return vd_end();
}
