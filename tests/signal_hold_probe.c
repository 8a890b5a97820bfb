// A signal that arrives while a translated call waits to be received (the supervisor is made to
// sleep first: see test_signal_hold.py). Prints what the guest saw: the call's result, the
// handler's siginfo, and the signal mask after. "stat": a call that does not block; "fifo": an
// open of a FIFO with no writer, which blocks until the signal interrupts it (no SA_RESTART).
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile int hits, code, value;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    hits++;
    code = si->si_code;
    value = si->si_value.sival_int;
    access("/tmp/in-handler", F_OK);  // a translated call: the supervisor sees when the handler ran
}

static void on_alarm(int sig)
{
    (void)sig;
    _exit(9);  // (a handler: as the sandbox's init, a default action would not kill us)
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fifo = !strcmp(argv[1], "fifo");
    signal(SIGALRM, on_alarm);
    alarm(10);  // a call that never returns fails the test instead of hanging it
    struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    if (fifo && mkfifo("/tmp/fifo", 0600) < 0)
        return 3;

    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    sev.sigev_value.sival_int = 42;
    timer_t t;
    struct itimerspec its = {{0, 0}, {0, 50 * 1000 * 1000}};
    if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0 || timer_settime(t, 0, &its, NULL) < 0)
        return 4;
    int arm = open("/tmp/arm", O_CREAT | O_WRONLY, 0600);  // the supervisor sleeps after this one
    close(arm);
    struct stat st;
    errno = 0;
    int r = fifo ? open("/tmp/fifo", O_RDONLY) : stat("/etc/passwd", &st);
    int err = errno;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("ret=%s errno=%s hits=%d code=%s value=%d usr2_blocked=%d usr1_blocked=%d\n",
           r < 0 ? "-1" : fifo ? "fd" : "0", r < 0 ? strerrorname_np(err) : "0", hits,
           code == SI_TIMER ? "SI_TIMER" : "other", value, sigismember(&now, SIGUSR2),
           sigismember(&now, SIGUSR1));
    return 0;
}
