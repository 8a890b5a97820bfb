// Signal delivery around processes: translated calls under a signal storm (never EINTR),
// a blocking FIFO open interrupted (EINTR) or restarted (SA_RESTART), wait4 interrupted,
// SIGCHLD details via sigwaitinfo and signalfd (exit, kill, stop, continue), SIGPIPE and
// SIGSEGV deaths, SIGSEGV handler on an alternate stack, setitimer and POSIX timers,
// rt_sigtimedwait timeouts, masks/dispositions/pending signals across fork and exec.
// syscalls: rt_sigaction rt_sigprocmask rt_sigtimedwait signalfd4 setitimer timer_create timer_settime timer_getoverrun timer_delete wait4 openat newfstatat mknodat execve kill sigaltstack
#include "verdict.h"
#include <poll.h>
#include <setjmp.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <time.h>

#define SELF "/conformance/sigdeliver"

extern char **environ;

static int helper(int argc, char **argv)
{
    (void)argc;
    if (!strcmp(argv[1], "state")) {
        sigset_t mask, pend;
        sigprocmask(SIG_BLOCK, NULL, &mask);
        sigpending(&pend);
        struct sigaction a, b;
        sigaction(SIGUSR1, NULL, &a);
        sigaction(SIGUSR2, NULL, &b);
        stack_t ss;
        sigaltstack(NULL, &ss);
        printf("usr2_blocked=%d usr2_pending=%d usr1=%s usr2=%s altstack_disabled=%d\n",
               sigismember(&mask, SIGUSR2), sigismember(&pend, SIGUSR2),
               a.sa_handler == SIG_IGN ? "ign" : a.sa_handler == SIG_DFL ? "dfl" : "handler",
               b.sa_handler == SIG_IGN ? "ign" : b.sa_handler == SIG_DFL ? "dfl" : "handler",
               (ss.ss_flags & SS_DISABLE) != 0);
        return 0;
    }
    return 99;
}

static volatile sig_atomic_t hits;
static void count(int sig) { (void)sig; hits++; }

static int install(int sig, void (*h)(int), int flags)
{
    struct sigaction sa = {.sa_handler = h, .sa_flags = flags};
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

static void block(int how, int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(how, &s, NULL);
}

static void itimer_us(long first, long every)
{
    struct itimerval it = {{every / 1000000, every % 1000000}, {first / 1000000, first % 1000000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static const char *code_name(int c)
{
    switch (c) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    case SI_TIMER: return "SI_TIMER";
    case SI_USER: return "SI_USER";
    case SI_TKILL: return "SI_TKILL";
    case SI_KERNEL: return "SI_KERNEL";
    default: return "other";
    }
}

/* ---- translated calls and interruption ---- */

static void storm(const char *name, int flags)
{
    install(SIGALRM, count, flags);
    write_file("target", "x");
    hits = 0;
    itimer_us(100, 100);
    int eintr = 0, other = 0;
    struct stat st;
    for (int i = 0; i < 400; i++) {
        if (stat("target", &st) < 0)
            errno == EINTR ? eintr++ : other++;
        int fd = open("target", O_RDONLY);
        if (fd < 0)
            errno == EINTR ? eintr++ : other++;
        else
            close(fd);
        if (access("target", R_OK) < 0)
            errno == EINTR ? eintr++ : other++;
    }
    itimer_us(0, 0);
    checkf(name, "eintr=%d other_errors=%d signals_arrived=%d", eintr, other, hits > 0);
}

static void test_interrupts(void)
{
    storm("translated_calls_in_storm_no_restart", 0);
    storm("translated_calls_in_storm_sa_restart", SA_RESTART);

    /* open of a FIFO for reading blocks until a writer comes */
    mkfifo("fifo", 0644);
    install(SIGALRM, count, 0);
    hits = 0;
    itimer_us(30000, 0);
    errno = 0;
    int fd = open("fifo", O_RDONLY);
    checkf("fifo_open_interrupted", "%s alarm_hits=%d", fd >= 0 ? "ret=fd" : rstr(-1, errno),
           (int)hits);
    if (fd >= 0)
        close(fd);
    itimer_us(0, 0);

    install(SIGALRM, count, SA_RESTART);
    hits = 0;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        poll(NULL, 0, 80);
        int w = open("fifo", O_WRONLY);
        write(w, "w", 1);
        _exit(0);
    }
    itimer_us(30000, 0);
    errno = 0;
    fd = open("fifo", O_RDONLY);
    checkf("fifo_open_restarted", "%s alarm_hits=%d", fd >= 0 ? "ret=fd" : rstr(-1, errno),
           (int)hits);
    if (fd >= 0)
        close(fd);
    waitpid(c, NULL, 0);
    itimer_us(0, 0);

    /* wait4 for a child that outlives the alarm */
    install(SIGALRM, count, 0);
    c = fork();
    if (c == 0) {
        poll(NULL, 0, 80);
        _exit(3);
    }
    itimer_us(20000, 0);
    int st;
    errno = 0;
    CHECK_RET("wait4_interrupted", wait4(c, &st, 0, NULL) == c ? 0 : -1);
    install(SIGALRM, count, SA_RESTART);
    hits = 0;
    itimer_us(10000, 0);
    st = 0;
    long r = wait4(c, &st, 0, NULL);
    checkf("wait4_restarted", "same=%d %s alarm_hits=%d", r == c, wstr(st), (int)hits);
    install(SIGALRM, SIG_DFL, 0);
}

/* ---- SIGCHLD ---- */

static void test_sigchld(void)
{
    block(SIG_BLOCK, SIGCHLD);
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGCHLD);
    struct timespec limit = {2, 0};
    siginfo_t si;

    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(3);
    memset(&si, 0, sizeof si);
    long r = sigtimedwait(&w, &si, &limit);
    checkf("sigchld_exit", "sig=%d code=%s status=%d pid_match=%d", r == SIGCHLD,
           code_name(si.si_code), si.si_status, si.si_pid == c);
    waitpid(c, NULL, 0);

    c = fork();
    if (c == 0) {
        for (;;)
            pause();
    }
    kill(c, SIGKILL);
    memset(&si, 0, sizeof si);
    r = sigtimedwait(&w, &si, &limit);
    checkf("sigchld_killed", "sig=%d code=%s status=%s", r == SIGCHLD, code_name(si.si_code),
           sigabbrev_np(si.si_status));
    waitpid(c, NULL, 0);

    int sfd = signalfd(-1, &w, SFD_CLOEXEC);
    c = fork();
    if (c == 0) {
        alarm(5);
        for (;;)
            pause();
    }
    struct signalfd_siginfo fi;
    struct pollfd pf = {.fd = sfd, .events = POLLIN};
    kill(c, SIGSTOP);
    memset(&fi, 0, sizeof fi);
    long n = poll(&pf, 1, 2000) == 1 ? read(sfd, &fi, sizeof fi) : -1;
    checkf("signalfd_sigchld_stopped", "size_ok=%d code=%s status=%s pid_match=%d",
           n == (long)sizeof fi, code_name(fi.ssi_code), sigabbrev_np(fi.ssi_status),
           (pid_t)fi.ssi_pid == c);
    int st;
    waitpid(c, &st, WUNTRACED);
    kill(c, SIGCONT);
    memset(&fi, 0, sizeof fi);
    n = poll(&pf, 1, 2000) == 1 ? read(sfd, &fi, sizeof fi) : -1;
    checkf("signalfd_sigchld_continued", "code=%s status=%s", code_name(fi.ssi_code),
           sigabbrev_np(fi.ssi_status));
    kill(c, SIGTERM);
    memset(&fi, 0, sizeof fi);
    n = poll(&pf, 1, 2000) == 1 ? read(sfd, &fi, sizeof fi) : -1;
    checkf("signalfd_sigchld_terminated", "code=%s status=%s", code_name(fi.ssi_code),
           sigabbrev_np(fi.ssi_status));
    waitpid(c, &st, 0);
    close(sfd);

    /* SA_NOCLDSTOP: no SIGCHLD for a stop */
    block(SIG_UNBLOCK, SIGCHLD);
    install(SIGCHLD, count, SA_NOCLDSTOP);
    hits = 0;
    c = fork();
    if (c == 0) {
        alarm(5);
        for (;;)
            pause();
    }
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    poll(NULL, 0, 10);
    int after_stop = hits;
    kill(c, SIGKILL);
    while (waitpid(c, &st, 0) < 0 && errno == EINTR)
        ;
    checkf("sa_nocldstop", "hits_after_stop=%d hits_after_exit=%d", after_stop, (int)hits);
    install(SIGCHLD, SIG_DFL, 0);
}

/* ---- deaths ---- */

static void test_deaths(void)
{
    int st;
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        write(p[1], "x", 1);
        _exit(0);
    }
    close(p[1]);
    close(p[0]);
    waitpid(c, &st, 0);
    pipe(p);
    close(p[0]);
    c = fork();
    if (c == 0) {
        write(p[1], "x", 1);
        _exit(0);
    }
    waitpid(c, &st, 0);
    checkf("sigpipe_kills_writer", "%s core=%d", wstr(st), WCOREDUMP(st) != 0);
    signal(SIGPIPE, SIG_IGN);
    errno = 0;
    CHECK_RET("sigpipe_ignored_epipe", write(p[1], "x", 1));
    signal(SIGPIPE, SIG_DFL);
    close(p[1]);

    c = fork();
    if (c == 0) {
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        *(volatile int *)BADPTR = 1;
        _exit(0);
    }
    waitpid(c, &st, 0);
    checkf("sigsegv_kills", "%s core=%d", wstr(st), WCOREDUMP(st) != 0);

    c = fork();
    if (c == 0) {
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        abort();
    }
    waitpid(c, &st, 0);
    checkf("abort_kills", "%s core=%d", wstr(st), WCOREDUMP(st) != 0);

    c = fork();
    if (c == 0) {
        block(SIG_BLOCK, SIGSEGV);
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        *(volatile int *)BADPTR = 1;
        _exit(0);
    }
    waitpid(c, &st, 0);
    checkf("sigsegv_blocked_still_kills", "%s", wstr(st));
}

static sigjmp_buf jb;
static volatile int segv_code, segv_addr_ok, segv_on_alt;
static char altstack[65536];

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int local;
    segv_code = si->si_code;
    segv_addr_ok = si->si_addr == BADPTR;
    segv_on_alt = (char *)&local >= altstack && (char *)&local < altstack + sizeof altstack;
    siglongjmp(jb, 1);
}

static int depth(int n)
{
    volatile char pad[4096];
    pad[0] = (char)n;
    if (n > OPAQUE(1 << 30))
        return n;
    return n + depth(n + 1) + pad[0];
}

static void test_segv_handler(void)
{
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    if (!sigsetjmp(jb, 1))
        *(volatile int *)BADPTR = 1;
    checkf("sigsegv_handler_siginfo", "code=%s addr_ok=%d on_alt=%d",
           segv_code == SEGV_MAPERR ? "SEGV_MAPERR" : "other",
           segv_addr_ok, segv_on_alt);
    IN_CHILD("child_stack_overflow", {
        struct rlimit rl = {1 << 20, 1 << 20};
        setrlimit(RLIMIT_STACK, &rl);
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
        sigaltstack(&ss, NULL);
        segv_on_alt = 0;
        if (!sigsetjmp(jb, 1))
            depth(0);
        checkf("stack_overflow_on_altstack", "on_alt=%d", segv_on_alt);
    });
    signal(SIGSEGV, SIG_DFL);
}

/* ---- timers ---- */

static volatile int timer_value, timer_code;
static void on_timer(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    hits++;
    timer_value = si->si_value.sival_int;
    timer_code = si->si_code;
}

static void test_timers(void)
{
    install(SIGALRM, count, 0);
    hits = 0;
    itimer_us(5000, 5000);
    sigset_t none;
    sigemptyset(&none);
    block(SIG_BLOCK, SIGALRM);
    for (int i = 0; i < 3; i++)
        sigsuspend(&none);
    itimer_us(0, 0);
    block(SIG_UNBLOCK, SIGALRM);
    checkf("itimer_real_interval", "hits=%d", (int)hits);

    struct itimerval prof = {{0, 5000}, {0, 5000}};
    install(SIGPROF, count, 0);
    hits = 0;
    setitimer(ITIMER_PROF, &prof, NULL);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        for (volatile int i = 0; i < 10000; i++)
            ;
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while (hits < 2 && (b.tv_sec - a.tv_sec) < 2);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    checkf("itimer_prof", "at_least_2=%d", hits >= 2);

    struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN, &sa, NULL);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN};
    sev.sigev_value.sival_int = 77;
    timer_t t;
    CHECK_RET("timer_create_monotonic", timer_create(CLOCK_MONOTONIC, &sev, &t));
    struct itimerspec its = {{0, 0}, {0, 10000000}};
    hits = 0;
    CHECK_RET("timer_settime", timer_settime(t, 0, &its, NULL));
    block(SIG_BLOCK, SIGRTMIN);
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    struct timespec limit = {2, 0};
    long r = sigtimedwait(&w, &si, &limit);
    checkf("timer_signal", "sig_ok=%d code=%s value=%d", r == SIGRTMIN, code_name(si.si_code),
           si.si_value.sival_int);

    struct itimerspec fast = {{0, 1000000}, {0, 1000000}};
    timer_settime(t, 0, &fast, NULL);
    poll(NULL, 0, 30);
    r = sigtimedwait(&w, &si, &limit);
    checkf("timer_overrun", "sig_ok=%d overrun_positive=%d", r == SIGRTMIN,
           timer_getoverrun(t) > 0 || si.si_overrun > 0);
    CHECK_RET("timer_delete", timer_delete(t));
    struct timespec zero = {0, 0};
    while (sigtimedwait(&w, &si, &zero) > 0)
        ;
    block(SIG_UNBLOCK, SIGRTMIN);
    CHECK_RET("timer_delete_again", timer_delete(t));
    CHECK_RET("timer_create_bad_clock", timer_create((clockid_t)99, &sev, &t));

    sigemptyset(&w);
    sigaddset(&w, SIGUSR1);
    block(SIG_BLOCK, SIGUSR1);
    struct timespec ten = {0, 10000000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    errno = 0;
    r = sigtimedwait(&w, &si, &ten);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long el = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
    checkf("sigtimedwait_timeout", "%s waited_10ms=%d", rstr(r, errno), el >= 10000000);
    block(SIG_UNBLOCK, SIGUSR1);
}

/* ---- inheritance ---- */

static void exec_self(void *argv)
{
    execve(SELF, (char *const *)argv, environ);
    _exit(127);
}

static void capture_exec(const char *name)
{
    char buf[256];
    long n;
    int st = vd_capture(exec_self, (char *[]){"sigdeliver", "state", NULL}, buf, sizeof buf, &n);
    checkf(name, "out=%s %s", qstr(buf, n), wstr(st));
}

static void test_inheritance(void)
{
    install(SIGUSR1, SIG_IGN, 0);
    install(SIGUSR2, count, 0);
    block(SIG_BLOCK, SIGUSR2);
    kill(getpid(), SIGUSR2);
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    IN_CHILD("child_fork_state", {
        sigset_t m, p;
        sigprocmask(SIG_BLOCK, NULL, &m);
        sigpending(&p);
        stack_t q;
        sigaltstack(NULL, &q);
        struct sigaction a;
        sigaction(SIGUSR2, NULL, &a);
        checkf("fork_inherits", "usr2_blocked=%d usr2_pending=%d handler_kept=%d altstack=%d",
               sigismember(&m, SIGUSR2), sigismember(&p, SIGUSR2), a.sa_handler == count,
               !(q.ss_flags & SS_DISABLE));
    });
    capture_exec("exec_keeps_mask_and_pending");
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGUSR2);
    struct timespec zero = {0, 0};
    sigtimedwait(&w, NULL, &zero);
    block(SIG_UNBLOCK, SIGUSR2);
    install(SIGUSR1, SIG_DFL, 0);
    install(SIGUSR2, SIG_DFL, 0);
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return helper(argc, argv);
    alarm(25);
    vd_begin("sigdeliver");
    test_interrupts();
    alarm(20);
    test_sigchld();
    test_deaths();
    test_segv_handler();
    test_timers();
    alarm(20);
    test_inheritance();
    return vd_end();
}
