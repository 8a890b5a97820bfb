// Signals: rt_sigaction flags, kill/tgkill/tkill/rt_sigqueueinfo, masks and
// pending sets, sigtimedwait, sigsuspend, sigaltstack, EINTR vs SA_RESTART,
// SIGCHLD, alarm and interval timers.
// syscalls: rt_sigaction rt_sigprocmask rt_sigpending rt_sigtimedwait rt_sigsuspend rt_sigqueueinfo sigaltstack kill tgkill tkill alarm setitimer getitimer gettid
#include "verdict.h"
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t hits[65];
static volatile int last_code, last_value, last_pid_is_self, last_status, on_alt;
static char altstack[65536];

static void count(int sig) { hits[sig]++; }

static void info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    hits[sig]++;
    last_code = si->si_code;
    last_value = si->si_value.sival_int;
    last_pid_is_self = si->si_pid == getpid();
    last_status = si->si_status;
}

static void alt(int sig)
{
    int local;
    hits[sig]++;
    on_alt = (char *)&local >= altstack && (char *)&local < altstack + sizeof altstack;
}

static const char *code_name(int c)
{
    switch (c) {
    case SI_USER: return "SI_USER";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_TKILL: return "SI_TKILL";
    case SI_KERNEL: return "SI_KERNEL";
    case CLD_EXITED: return "CLD_EXITED";
    default: return "other";
    }
}

static int install(int sig, void (*h)(int), int flags)
{
    struct sigaction sa = {.sa_handler = h, .sa_flags = flags};
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

static int install_info(int sig, int flags)
{
    struct sigaction sa = {.sa_sigaction = info, .sa_flags = SA_SIGINFO | flags};
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

static void mask(int how, int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(how, &s, NULL);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void test_actions(void)
{
    CHECK_RET("sigaction_install", install(SIGUSR1, count, 0));
    CHECK_RET("kill_self", kill(getpid(), SIGUSR1));
    checkf("handler_ran", "hits=%d", (int)hits[SIGUSR1]);
    struct sigaction old;
    sigaction(SIGUSR1, NULL, &old);
    checkf("sigaction_query", "same_handler=%d", old.sa_handler == count);
    CHECK_RET("sigaction_sigkill", install(SIGKILL, count, 0));
    CHECK_RET("sigaction_sigstop", install(SIGSTOP, count, 0));
    CHECK_RET("sigaction_signal_zero", install(0, count, 0));
    CHECK_RET("sigaction_signal_65", syscall(SYS_rt_sigaction, 65, NULL, &old, 8));
    CHECK_RET("rt_sigaction_bad_sigsetsize", syscall(SYS_rt_sigaction, SIGUSR1, NULL, &old, 4));
    CHECK_RET("sigaction_query_sigkill", sigaction(SIGKILL, NULL, &old));

    install_info(SIGUSR2, 0);
    kill(getpid(), SIGUSR2);
    checkf("siginfo_kill", "hits=%d code=%s pid_is_self=%d", (int)hits[SIGUSR2],
           code_name(last_code), last_pid_is_self);
    siginfo_t si = {.si_code = SI_QUEUE, .si_pid = getpid(), .si_uid = getuid()};
    si.si_value.sival_int = 1234;
    si.si_signo = SIGUSR2;
    CHECK_RET("rt_sigqueueinfo", syscall(SYS_rt_sigqueueinfo, getpid(), SIGUSR2, &si));
    checkf("siginfo_queue", "hits=%d code=%s value=%d", (int)hits[SIGUSR2],
           code_name(last_code), last_value);
    si.si_code = SI_KERNEL;
    CHECK_RET("rt_sigqueueinfo_kernel_code", syscall(SYS_rt_sigqueueinfo, getpid(), SIGUSR2, &si));
    CHECK_RET("tgkill_self", syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2));
    checkf("siginfo_tgkill", "code=%s", code_name(last_code));
    CHECK_RET("tkill_self", syscall(SYS_tkill, gettid(), SIGUSR2));
    CHECK_RET("tgkill_wrong_tgid", syscall(SYS_tgkill, 999999, gettid(), SIGUSR2));
    CHECK_RET("kill_bad_signal", kill(getpid(), 999));
    CHECK_RET("kill_probe_self", kill(getpid(), 0));

    install(SIGUSR1, count, SA_RESETHAND);
    hits[SIGUSR1] = 0;
    kill(getpid(), SIGUSR1);
    sigaction(SIGUSR1, NULL, &old);
    checkf("sa_resethand", "hits=%d now_default=%d", (int)hits[SIGUSR1],
           old.sa_handler == SIG_DFL);
    CHECK_RET("raise_ignored_by_default", kill(getpid(), SIGWINCH));
    signal(SIGUSR1, SIG_IGN);
    CHECK_RET("raise_explicitly_ignored", kill(getpid(), SIGUSR1));
}

static void test_masks(void)
{
    install(SIGUSR1, count, 0);
    hits[SIGUSR1] = 0;
    mask(SIG_BLOCK, SIGUSR1);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);
    sigset_t pend;
    sigemptyset(&pend);
    CHECK_RET("rt_sigpending", sigpending(&pend));
    checkf("blocked_signal_pending", "hits=%d pending=%d", (int)hits[SIGUSR1],
           sigismember(&pend, SIGUSR1));
    mask(SIG_UNBLOCK, SIGUSR1);
    checkf("standard_signals_coalesce", "hits=%d", (int)hits[SIGUSR1]);

    int rt = SIGRTMIN + 1;
    install(rt, count, 0);
    mask(SIG_BLOCK, rt);
    for (int i = 0; i < 3; i++)
        kill(getpid(), rt);
    mask(SIG_UNBLOCK, rt);
    checkf("realtime_signals_queue", "hits=%d", (int)hits[rt]);

    sigset_t all, cur;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    sigprocmask(SIG_SETMASK, NULL, &cur);
    checkf("cannot_block_kill_stop", "kill=%d stop=%d usr1=%d", sigismember(&cur, SIGKILL),
           sigismember(&cur, SIGSTOP), sigismember(&cur, SIGUSR1));
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    CHECK_RET("sigprocmask_bad_how", syscall(SYS_rt_sigprocmask, 99, &all, NULL, 8));
    CHECK_RET("sigprocmask_bad_size", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 4));
    CHECK_RET("sigprocmask_bad_pointer", syscall(SYS_rt_sigprocmask, SIG_BLOCK, BADPTR, NULL, 8));

    mask(SIG_BLOCK, SIGUSR2);
    kill(getpid(), SIGUSR2);
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGUSR2);
    siginfo_t si;
    struct timespec zero = {0, 0}, short_wait = {0, 20000000};
    long r = sigtimedwait(&w, &si, &zero);
    checkf("sigtimedwait_pending", "ret_is_sig=%d code=%s", r == SIGUSR2, code_name(si.si_code));
    CHECK_RET("sigtimedwait_timeout", sigtimedwait(&w, &si, &short_wait));
    struct timespec bad = {0, 2000000000};
    CHECK_RET("sigtimedwait_bad_timeout", sigtimedwait(&w, &si, &bad));
    mask(SIG_UNBLOCK, SIGUSR2);

    install(SIGUSR1, count, 0);
    hits[SIGUSR1] = 0;
    mask(SIG_BLOCK, SIGUSR1);
    pid_t parent = getpid();
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        sleep_ms(50);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    sigset_t none;
    sigemptyset(&none);
    CHECK_RET("sigsuspend", sigsuspend(&none));
    sigprocmask(SIG_SETMASK, NULL, &cur);
    checkf("sigsuspend_result", "hits=%d mask_restored=%d", (int)hits[SIGUSR1],
           sigismember(&cur, SIGUSR1));
    waitpid(c, NULL, 0);
    mask(SIG_UNBLOCK, SIGUSR1);
}

static void test_altstack(void)
{
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    CHECK_RET("sigaltstack_set", sigaltstack(&ss, NULL));
    stack_t q;
    sigaltstack(NULL, &q);
    checkf("sigaltstack_query", "size=%zu flags=%d same_sp=%d", q.ss_size, q.ss_flags,
           q.ss_sp == altstack);
    install(SIGUSR2, alt, SA_ONSTACK);
    kill(getpid(), SIGUSR2);
    checkf("handler_on_altstack", "on_alt=%d", on_alt);
    stack_t tiny = {.ss_sp = altstack, .ss_size = 16};
    CHECK_RET("sigaltstack_too_small", sigaltstack(&tiny, NULL));
    stack_t badflags = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0x77};
    CHECK_RET("sigaltstack_bad_flags", sigaltstack(&badflags, NULL));
    stack_t off = {.ss_flags = SS_DISABLE};
    CHECK_RET("sigaltstack_disable", sigaltstack(&off, NULL));
    sigaltstack(NULL, &q);
    checkf("sigaltstack_disabled", "flags=%d", q.ss_flags);
}

static void test_interrupts(void)
{
    int p[2];
    pipe(p);
    install(SIGALRM, count, 0);
    struct itimerval it = {{0, 0}, {0, 30000}};
    CHECK_RET("setitimer", setitimer(ITIMER_REAL, &it, NULL));
    char buf[8];
    CHECK_RET("read_interrupted_eintr", read(p[0], buf, sizeof buf));

    install(SIGALRM, count, SA_RESTART);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        sleep_ms(400);
        write(p[1], "late", 4);
        _exit(0);
    }
    setitimer(ITIMER_REAL, &it, NULL);
    hits[SIGALRM] = 0;
    long r = read(p[0], buf, sizeof buf);
    checkf("read_restarted_sa_restart", "ret=%ld alarm_hits=%d", r, (int)hits[SIGALRM]);
    waitpid(c, NULL, 0);

    struct itimerval long_it = {{0, 0}, {100, 0}}, cur;
    setitimer(ITIMER_REAL, &long_it, NULL);
    CHECK_RET("getitimer", getitimer(ITIMER_REAL, &cur));
    checkf("getitimer_remaining", "armed=%d interval_zero=%d", cur.it_value.tv_sec > 90,
           cur.it_interval.tv_sec == 0 && cur.it_interval.tv_usec == 0);
    CHECK_RET("setitimer_bad_which", setitimer(99, &long_it, NULL));
    checkf("alarm_replaces_itimer", "remaining_positive=%d", alarm(50) > 90);
    checkf("alarm_cancel", "remaining=%u", alarm(0));
    CHECK_RET("alarm_none_pending", alarm(0));
}

static void test_children(void)
{
    install_info(SIGCHLD, 0);
    hits[SIGCHLD] = 0;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(6);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR)
        ;
    checkf("sigchld_delivered", "hits=%d code=%s status=%d", (int)hits[SIGCHLD],
           code_name(last_code), last_status);
    install(SIGCHLD, SIG_DFL, SA_NOCLDWAIT);
    c = fork();
    if (c == 0)
        _exit(0);
    long r;
    while ((r = waitpid(c, &st, 0)) < 0 && errno == EINTR)
        ;
    checkf("sa_nocldwait_autoreap", "%s", rstr(r < 0 ? -1 : 0, errno));
    install(SIGCHLD, SIG_DFL, 0);

    c = fork();
    if (c == 0) {
        signal(SIGTERM, SIG_IGN);
        for (;;)
            pause();
    }
    sleep_ms(30);
    kill(c, SIGTERM);
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    checkf("ignored_sigterm_then_sigkill", "%s", wstr(st));
    AS_USER("user_kill_root_process", 65534, kill(getppid(), SIGUSR1));
}

int main(void)
{
    vd_begin("signal");
    test_actions();
    test_masks();
    test_altstack();
    test_interrupts();
    test_children();
    return vd_end();
}
