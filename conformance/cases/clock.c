// Time: clock_gettime/clock_getres (as syscalls, not the vDSO), gettimeofday,
// time, nanosleep, clock_nanosleep, times.  Only relations are printed.
// syscalls: clock_gettime clock_getres clock_nanosleep clock_settime gettimeofday time nanosleep times
#include "verdict.h"
#include <sys/time.h>
#include <sys/times.h>
#include <time.h>

static long sys_gettime(clockid_t c, struct timespec *t) { return syscall(SYS_clock_gettime, c, t); }
static long sys_getres(clockid_t c, struct timespec *t) { return syscall(SYS_clock_getres, c, t); }

static long sys_clock_nanosleep(clockid_t c, int flags, const struct timespec *t,
                                struct timespec *rem)
{
    return syscall(SYS_clock_nanosleep, c, flags, t, rem);
}

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static long long mono_ns(void)
{
    struct timespec t;
    sys_gettime(CLOCK_MONOTONIC, &t);
    return ns(&t);
}

static void on_alarm(int sig) { (void)sig; }

static void test_clocks(void)
{
    static const struct { const char *name; clockid_t id; } clocks[] = {
        {"realtime", CLOCK_REALTIME}, {"monotonic", CLOCK_MONOTONIC},
        {"boottime", CLOCK_BOOTTIME}, {"monotonic_raw", CLOCK_MONOTONIC_RAW},
        {"realtime_coarse", CLOCK_REALTIME_COARSE}, {"monotonic_coarse", CLOCK_MONOTONIC_COARSE},
        {"process_cputime", CLOCK_PROCESS_CPUTIME_ID}, {"thread_cputime", CLOCK_THREAD_CPUTIME_ID},
    };
    char name[64];
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        struct timespec t = {-1, -1};
        errno = 0;
        long r = sys_gettime(clocks[i].id, &t);
        snprintf(name, sizeof name, "gettime_%s", clocks[i].name);
        checkf(name, "%s nsec_valid=%d", rstr(r, errno), t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
        struct timespec res = {0, 0};
        r = sys_getres(clocks[i].id, &res);
        snprintf(name, sizeof name, "getres_%s", clocks[i].name);
        checkf(name, "%s positive=%d at_most_10ms=%d", rstr(r, errno), ns(&res) > 0,
               ns(&res) <= 10000000);
    }
    struct timespec t;
    CHECK_RET("gettime_bad_clock", sys_gettime(12345, &t));
    CHECK_RET("gettime_bad_pointer", sys_gettime(CLOCK_MONOTONIC, BADPTR));
    CHECK_RET("getres_bad_clock", sys_getres(12345, &t));
    CHECK_RET("getres_null", sys_getres(CLOCK_MONOTONIC, NULL));

    int monotonic = 1;
    long long prev = mono_ns();
    for (int i = 0; i < 1000; i++) {
        long long now = mono_ns();
        monotonic &= now >= prev;
        prev = now;
    }
    checkf("monotonic_never_goes_back", "ok=%d", monotonic);

    struct timespec rt;
    struct timeval tv;
    sys_gettime(CLOCK_REALTIME, &rt);
    CHECK_RET("gettimeofday", syscall(SYS_gettimeofday, &tv, NULL));
    long long diff = tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL - ns(&rt);
    checkf("gettimeofday_matches_realtime", "within_1s=%d usec_valid=%d",
           diff > -1000000000LL && diff < 1000000000LL, tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    time_t tt = 0;
    long r = syscall(SYS_time, &tt);
    /* time() reads the coarse clock, which may still show the previous second */
    checkf("time_matches_realtime", "same_value=%d within_2s=%d", r == tt,
           tt - rt.tv_sec >= -1 && tt - rt.tv_sec <= 2);
    checkf("realtime_after_2020", "ok=%d", rt.tv_sec > 1577836800);
    CHECK_RET("clock_settime_monotonic", syscall(SYS_clock_settime, CLOCK_MONOTONIC, &rt));

    struct timespec c0, c1;
    sys_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    volatile unsigned long spin = 0;
    for (unsigned long i = 0; i < 20000000; i++)
        spin += i;
    sys_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    checkf("cputime_advances", "ok=%d", ns(&c1) > ns(&c0));
    struct tms tm;
    errno = 0;
    r = syscall(SYS_times, &tm);
    checkf("times", "ok=%d user_ticks_nonnegative=%d", r != -1, tm.tms_utime >= 0);
}

static void test_sleep(void)
{
    long long t0 = mono_ns();
    CHECK_RET("nanosleep_20ms", nanosleep(&(struct timespec){0, 20000000}, NULL));
    checkf("nanosleep_elapsed", "at_least_20ms=%d", mono_ns() - t0 >= 20000000);
    CHECK_RET("nanosleep_zero", nanosleep(&(struct timespec){0, 0}, NULL));
    CHECK_RET("nanosleep_bad_nsec", nanosleep(&(struct timespec){0, 1000000000}, NULL));
    CHECK_RET("nanosleep_negative_sec", nanosleep(&(struct timespec){-1, 0}, NULL));
    CHECK_RET("nanosleep_bad_pointer", syscall(SYS_nanosleep, BADPTR, NULL));

    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec rem = {0, 0};
    CHECK_RET("nanosleep_interrupted", syscall(SYS_nanosleep, &(struct timespec){5, 0}, &rem));
    checkf("nanosleep_interrupted_remaining", "positive=%d below_request=%d", ns(&rem) > 0,
           ns(&rem) < 5000000000LL);

    t0 = mono_ns();
    CHECK_RET("clock_nanosleep_relative",
              sys_clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){0, 10000000}, NULL));
    checkf("clock_nanosleep_elapsed", "at_least_10ms=%d", mono_ns() - t0 >= 10000000);
    struct timespec now;
    sys_gettime(CLOCK_MONOTONIC, &now);
    struct timespec target = {now.tv_sec, now.tv_nsec};
    target.tv_nsec += 15000000;
    if (target.tv_nsec >= 1000000000) {
        target.tv_sec++;
        target.tv_nsec -= 1000000000;
    }
    CHECK_RET("clock_nanosleep_abstime", sys_clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
                                                            &target, NULL));
    checkf("clock_nanosleep_abstime_reached", "ok=%d", mono_ns() >= ns(&target));
    struct timespec past = {1, 0};
    t0 = mono_ns();
    CHECK_RET("clock_nanosleep_abstime_past",
              sys_clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &past, NULL));
    checkf("clock_nanosleep_past_immediate", "under_5ms=%d", mono_ns() - t0 < 5000000);
    CHECK_RET("clock_nanosleep_realtime",
              sys_clock_nanosleep(CLOCK_REALTIME, 0, &(struct timespec){0, 1000000}, NULL));
    CHECK_RET("clock_nanosleep_thread_cputime", sys_clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0,
                                                   &(struct timespec){0, 1000}, NULL));
    CHECK_RET("clock_nanosleep_bad_clock",
              sys_clock_nanosleep(12345, 0, &(struct timespec){0, 1000}, NULL));
    CHECK_RET("clock_nanosleep_bad_nsec",
              sys_clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){0, -1}, NULL));
}

int main(void)
{
    vd_begin("clock");
    test_clocks();
    test_sleep();
    return vd_end();
}
