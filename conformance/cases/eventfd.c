// Special fds: eventfd/eventfd2, timerfd_create/settime/gettime, signalfd/signalfd4.
// syscalls: eventfd eventfd2 timerfd_create timerfd_settime timerfd_gettime signalfd signalfd4
#include "verdict.h"
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

static const char *read_u64(int fd)
{
    static char buf[64];
    uint64_t v = 0;
    errno = 0;
    long r = read(fd, &v, sizeof v);
    if (r < 0)
        snprintf(buf, sizeof buf, "ret=-1 errno=%s", errname(errno));
    else
        snprintf(buf, sizeof buf, "ret=%ld value=%llu", r, (unsigned long long)v);
    return buf;
}

static long write_u64(int fd, uint64_t v) { return write(fd, &v, sizeof v); }

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_eventfd(void)
{
    int fd = CHECK_FD("eventfd_legacy", syscall(SYS_eventfd, 3));
    checkf("eventfd_initial_value", "%s", read_u64(fd));
    close(fd);
    fd = CHECK_FD("eventfd2_nonblock", eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    checkf("eventfd2_flags", "nonblock=%d cloexec=%d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK),
           fcntl(fd, F_GETFD));
    checkf("eventfd_read_zero_nonblock", "%s", read_u64(fd));
    checkf("eventfd_not_readable_at_zero", "readable=%d", readable(fd));
    CHECK_RET("eventfd_write", write_u64(fd, 5));
    CHECK_RET("eventfd_write_again", write_u64(fd, 7));
    checkf("eventfd_readable", "readable=%d", readable(fd));
    checkf("eventfd_read_sum", "%s", read_u64(fd));
    CHECK_RET("eventfd_write_max_invalid", write_u64(fd, UINT64_MAX));
    CHECK_RET("eventfd_write_near_max", write_u64(fd, UINT64_MAX - 1));
    CHECK_RET("eventfd_write_overflow_nonblock", write_u64(fd, 1));
    checkf("eventfd_read_near_max", "%s", read_u64(fd));
    uint32_t small = 1;
    CHECK_RET("eventfd_short_write", write(fd, &small, sizeof small));
    write_u64(fd, 1);
    CHECK_RET("eventfd_short_read", read(fd, &small, sizeof small));
    close(fd);

    fd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    checkf("semaphore_read_1", "%s", read_u64(fd));
    checkf("semaphore_read_2", "%s", read_u64(fd));
    checkf("semaphore_read_3", "%s", read_u64(fd));
    checkf("semaphore_read_empty", "%s", read_u64(fd));
    close(fd);
    CHECK_RET("eventfd2_bad_flags", eventfd(0, 0x4));
}

static void test_timerfd(void)
{
    int fd = CHECK_FD("timerfd_create", timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK));
    CHECK_RET("timerfd_create_bad_clock", timerfd_create(12345, 0));
    CHECK_RET("timerfd_create_bad_flags", timerfd_create(CLOCK_MONOTONIC, 0x4));
    struct itimerspec cur;
    CHECK_RET("timerfd_gettime_disarmed", timerfd_gettime(fd, &cur));
    checkf("timerfd_disarmed_value", "value_zero=%d interval_zero=%d",
           cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0,
           cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 0);
    checkf("timerfd_read_disarmed", "%s", read_u64(fd));
    struct itimerspec its = {.it_value = {0, 20000000}};
    CHECK_RET("timerfd_settime_relative", timerfd_settime(fd, 0, &its, NULL));
    timerfd_gettime(fd, &cur);
    checkf("timerfd_gettime_armed", "remaining_positive=%d within=%d",
           cur.it_value.tv_nsec > 0, cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec <= 20000000);
    nanosleep(&(struct timespec){0, 60000000}, NULL);
    checkf("timerfd_expired_once", "%s", read_u64(fd));
    checkf("timerfd_read_after_consume", "%s", read_u64(fd));

    struct itimerspec periodic = {.it_value = {0, 10000000}, .it_interval = {0, 10000000}};
    timerfd_settime(fd, 0, &periodic, NULL);
    nanosleep(&(struct timespec){0, 55000000}, NULL);
    uint64_t n = 0;
    read(fd, &n, sizeof n);
    checkf("timerfd_periodic_counts", "at_least_3=%d", n >= 3);
    struct itimerspec old, off = {0};
    CHECK_RET("timerfd_disarm", timerfd_settime(fd, 0, &off, &old));
    checkf("timerfd_disarm_returns_old", "interval_ns=%ld", old.it_interval.tv_nsec);

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct itimerspec past = {.it_value = {now.tv_sec - 1, 0}};
    if (past.it_value.tv_sec <= 0)
        past.it_value.tv_nsec = 1;
    CHECK_RET("timerfd_abstime_past", timerfd_settime(fd, TFD_TIMER_ABSTIME, &past, NULL));
    checkf("timerfd_abstime_past_fires", "%s", read_u64(fd));
    struct itimerspec bad = {.it_value = {0, 1000000000}};
    CHECK_RET("timerfd_settime_bad_nsec", timerfd_settime(fd, 0, &bad, NULL));
    CHECK_RET("timerfd_settime_bad_flags", timerfd_settime(fd, 0x100, &its, NULL));
    int p[2];
    pipe(p);
    CHECK_RET("timerfd_settime_not_timerfd", timerfd_settime(p[0], 0, &its, NULL));
    close(p[0]);
    close(p[1]);
    close(fd);
    fd = timerfd_create(CLOCK_REALTIME, 0);
    CHECK_RET("timerfd_short_read", read(fd, &now, 4));
    close(fd);
}

static void test_signalfd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int fd = CHECK_FD("signalfd4", signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    struct signalfd_siginfo si;
    CHECK_RET("signalfd_read_nothing", read(fd, &si, sizeof si));
    kill(getpid(), SIGUSR1);
    checkf("signalfd_readable", "readable=%d", readable(fd));
    memset(&si, 0, sizeof si);
    long r = read(fd, &si, sizeof si);
    checkf("signalfd_read", "ret=%ld signo=%u code=%d pid_is_self=%d", r, si.ssi_signo,
           si.ssi_code, si.ssi_pid == (uint32_t)getpid());
    CHECK_RET("signalfd_short_read", read(fd, &si, 8));
    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    errno = 0;
    r = signalfd(fd, &only2, 0);
    checkf("signalfd_update_mask", "%s", r == fd ? "ret=same_fd" : rstr(r, errno));
    kill(getpid(), SIGUSR1);
    checkf("signalfd_masked_out", "readable=%d", readable(fd));
    kill(getpid(), SIGUSR2);
    r = read(fd, &si, sizeof si);
    checkf("signalfd_after_update", "ret=%ld signo=%u", r, si.ssi_signo);
    sigset_t pend;
    sigpending(&pend);
    checkf("other_signal_still_pending", "usr1=%d", sigismember(&pend, SIGUSR1));
    siginfo_t drain;
    struct timespec zero = {0, 0};
    sigtimedwait(&set, &drain, &zero);
    int legacy = CHECK_FD("signalfd_legacy", syscall(SYS_signalfd, -1, &set, 8));
    close(legacy);
    CHECK_RET("signalfd_bad_flags", signalfd(-1, &set, 0x4));
    CHECK_RET("signalfd_bad_sigsetsize", syscall(SYS_signalfd4, -1, &set, 4, 0));
    int p[2];
    pipe(p);
    CHECK_RET("signalfd_not_signalfd", signalfd(p[0], &set, 0));
    close(p[0]);
    close(p[1]);
    close(fd);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int main(void)
{
    vd_begin("eventfd");
    test_eventfd();
    test_timerfd();
    test_signalfd();
    return vd_end();
}
