// System and identity: uname, rlimits (getrlimit/setrlimit/prlimit64 and their
// effects), getrusage, credentials, getrandom, sysinfo, prctl names,
// scheduling niceness, affinity.
// syscalls: uname getrlimit setrlimit prlimit64 getrusage getuid geteuid getgid getegid getresuid getresgid setresuid getrandom sysinfo prctl getpriority setpriority sched_getaffinity sched_setaffinity sched_yield getcpu personality
#include "verdict.h"
#include <sched.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>

#define NOBODY 65534

static void test_affinity(const cpu_set_t *all);

static void test_uname(void)
{
    struct utsname u;
    CHECK_RET("uname", syscall(SYS_uname, &u));
    checkf("uname_fields", "sysname=%s machine=%s release_nonempty=%d version_nonempty=%d "
           "nodename_nonempty=%d", u.sysname, u.machine, u.release[0] != 0, u.version[0] != 0,
           u.nodename[0] != 0);
    int major = 0, minor = 0;
    sscanf(u.release, "%d.%d", &major, &minor);
    checkf("uname_release_at_least_5", "ok=%d", major >= 5);
    CHECK_RET("uname_bad_pointer", syscall(SYS_uname, BADPTR));
    CHECK_RET("personality_query", syscall(SYS_personality, 0xffffffff));
}

static void test_rlimits(void)
{
    struct rlimit rl;
    CHECK_RET("getrlimit_nofile", syscall(SYS_getrlimit, RLIMIT_NOFILE, &rl));
    checkf("getrlimit_nofile_sane", "soft_le_hard=%d soft_at_least_64=%d",
           rl.rlim_cur <= rl.rlim_max, rl.rlim_cur >= 64);
    CHECK_RET("getrlimit_bad_resource", syscall(SYS_getrlimit, 999, &rl));
    CHECK_RET("getrlimit_bad_pointer", syscall(SYS_getrlimit, RLIMIT_NOFILE, BADPTR));
    struct rlimit inverted = {.rlim_cur = 100, .rlim_max = 50};
    CHECK_RET("setrlimit_soft_above_hard", syscall(SYS_setrlimit, RLIMIT_NOFILE, &inverted));
    struct rlimit old;
    CHECK_RET("prlimit64_get_self", syscall(SYS_prlimit64, 0, RLIMIT_STACK, NULL, &old));
    CHECK_RET("prlimit64_missing_pid", syscall(SYS_prlimit64, 999999, RLIMIT_STACK, NULL, &old));

    IN_CHILD("child_nofile", {
        struct rlimit lim = {.rlim_cur = 16, .rlim_max = 16};
        CHECK_RET("setrlimit_nofile", syscall(SYS_setrlimit, RLIMIT_NOFILE, &lim));
        struct rlimit got;
        syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &got);
        checkf("prlimit64_reads_back", "cur=%lu max=%lu", (unsigned long)got.rlim_cur,
               (unsigned long)got.rlim_max);
        CHECK_RET("dup2_beyond_nofile", dup2(0, 16));
        CHECK_RET("fcntl_dupfd_beyond_nofile", fcntl(0, F_DUPFD, 16));
        long r;
        do
            r = open("/", O_RDONLY);
        while (r >= 0);
        checkf("open_until_emfile", "errno=%s", errname(errno));
        struct rlimit raise = {.rlim_cur = 16, .rlim_max = 32};
        CHECK_RET("setrlimit_raise_hard_as_root", syscall(SYS_setrlimit, RLIMIT_NOFILE, &raise));
    });
    /* The soft limit is restored before printing: stdout may be a file. */
    IN_CHILD("child_fsize", {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit saved, lim;
        getrlimit(RLIMIT_FSIZE, &saved);
        lim = saved;
        lim.rlim_cur = 10;
        int fd = open("big", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        setrlimit(RLIMIT_FSIZE, &lim);
        long r1 = write(fd, "0123456789abcdef", 16);
        errno = 0;
        long r2 = write(fd, "x", 1);
        int e2 = errno;
        errno = 0;
        long r3 = ftruncate(fd, 100);
        int e3 = errno;
        setrlimit(RLIMIT_FSIZE, &saved);
        close(fd);
        checkf("fsize_partial_write", "ret=%ld", r1);
        checkf("fsize_write_at_limit", "%s", rstr(r2, e2));
        checkf("fsize_truncate_beyond", "%s", rstr(r3, e3));
    });
    int fd = open("big2", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    fflush(stdout);
    pid_t g = fork();
    if (g == 0) {
        struct rlimit lim;
        getrlimit(RLIMIT_FSIZE, &lim);
        lim.rlim_cur = 4;
        setrlimit(RLIMIT_FSIZE, &lim);
        write(fd, "0123456789", 10);
        write(fd, "x", 1);
        _exit(0);
    }
    int st;
    waitpid(g, &st, 0);
    checkf("fsize_exceeded_sigxfsz", "%s", wstr(st));
    close(fd);
    AS_USER("user_raise_hard_limit", NOBODY,
            ({ struct rlimit l_; getrlimit(RLIMIT_NOFILE, &l_); l_.rlim_max += 1;
               setrlimit(RLIMIT_NOFILE, &l_); }));
    AS_USER("user_lower_hard_limit", NOBODY,
            ({ struct rlimit l_; getrlimit(RLIMIT_NOFILE, &l_); l_.rlim_max = l_.rlim_cur;
               setrlimit(RLIMIT_NOFILE, &l_); }));
}

static void test_usage_ids(void)
{
    struct rusage ru;
    CHECK_RET("getrusage_self", getrusage(RUSAGE_SELF, &ru));
    checkf("getrusage_maxrss_positive", "ok=%d", ru.ru_maxrss > 0);
    CHECK_RET("getrusage_children", getrusage(RUSAGE_CHILDREN, &ru));
    CHECK_RET("getrusage_thread", getrusage(RUSAGE_THREAD, &ru));
    CHECK_RET("getrusage_bad_who", getrusage(42, &ru));
    checkf("ids_root", "uid=%ld euid=%ld gid=%ld egid=%ld", syscall(SYS_getuid),
           syscall(SYS_geteuid), syscall(SYS_getgid), syscall(SYS_getegid));
    uid_t r, e, s;
    CHECK_RET("getresuid", getresuid(&r, &e, &s));
    checkf("getresuid_values", "r=%u e=%u s=%u", r, e, s);
    gid_t gr, ge, gs;
    CHECK_RET("getresgid", getresgid(&gr, &ge, &gs));
    checkf("main_thread_tid_is_pid", "same=%d", gettid() == getpid());
    IN_CHILD("child_setresuid", {
        CHECK_RET("setresuid_drop_effective", setresuid(0, NOBODY, 0));
        checkf("after_setresuid", "uid=%d euid=%d", (int)getuid(), (int)geteuid());
        CHECK_RET("seteuid_back_to_saved_root", seteuid(0));
        CHECK_RET("setresuid_all_nobody", setresuid(NOBODY, NOBODY, NOBODY));
        CHECK_RET("setuid_root_after_drop", setuid(0));
        CHECK_RET("setresuid_keep_all", setresuid(-1, -1, -1));
    });
}

static void test_misc(void)
{
    unsigned char a[16], b[16];
    CHECK_RET("getrandom", syscall(SYS_getrandom, a, sizeof a, 0));
    syscall(SYS_getrandom, b, sizeof b, 0);
    checkf("getrandom_differs", "differs=%d", memcmp(a, b, sizeof a) != 0);
    CHECK_RET("getrandom_nonblock", syscall(SYS_getrandom, a, sizeof a, GRND_NONBLOCK));
    CHECK_RET("getrandom_bad_flags", syscall(SYS_getrandom, a, sizeof a, 0x100));
    CHECK_RET("getrandom_bad_buffer", syscall(SYS_getrandom, BADPTR, 16, 0));
    CHECK_RET("getrandom_zero", syscall(SYS_getrandom, a, 0, 0));

    struct sysinfo si;
    CHECK_RET("sysinfo", sysinfo(&si));
    checkf("sysinfo_values", "uptime_positive=%d ram_positive=%d procs_positive=%d",
           si.uptime > 0, si.totalram > 0, si.procs > 0);

    char name[32] = "";
    CHECK_RET("prctl_set_name", prctl(PR_SET_NAME, "conf-system-long-name"));
    CHECK_RET("prctl_get_name", prctl(PR_GET_NAME, name));
    checkf("prctl_name_truncated", "%s", qstr(name, (long)strlen(name)));
    CHECK_RET("prctl_bad_option", prctl(0x7fffffff, 0, 0, 0, 0));
    CHECK_RET("prctl_get_pdeathsig", prctl(PR_GET_PDEATHSIG, (unsigned long)&(int){0}));

    IN_CHILD("child_nice", {
        CHECK_RET("setpriority_nice_19", setpriority(PRIO_PROCESS, 0, 19));
        CHECK_RET("getpriority_raw", syscall(SYS_getpriority, PRIO_PROCESS, 0));
        CHECK_RET("setpriority_bad_which", setpriority(42, 0, 0));
        CHECK_RET("getpriority_missing_pid", syscall(SYS_getpriority, PRIO_PROCESS, 999999));
    });
    AS_USER("user_lower_nice", NOBODY, setpriority(PRIO_PROCESS, 0, -5));

    cpu_set_t set;
    CPU_ZERO(&set);
    long r = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
    checkf("sched_getaffinity", "ret_positive=%d cpus_at_least_1=%d", r > 0, CPU_COUNT(&set) >= 1);
    CHECK_RET("sched_getaffinity_small_buffer", syscall(SYS_sched_getaffinity, 0, 1, &set));
    CHECK_RET("sched_yield", sched_yield());
    unsigned cpu = 99999, node = 99999;
    CHECK_RET("getcpu", syscall(SYS_getcpu, &cpu, &node, NULL));
    checkf("getcpu_in_affinity", "ok=%d", cpu < 99999 && CPU_ISSET(cpu, &set));
    test_affinity(&set);
}

// The CPU set a thread sees is its own: what it set, inherited by its children, the
// whole set again when it asks; the count matches the host's (the same CPUs here).
static void test_affinity(const cpu_set_t *all)
{
    cpu_set_t set, got;
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, all))
        first++;
    checkf("affinity_count", "cpus=%d", CPU_COUNT(all));
    CHECK_RET("sched_getaffinity_unaligned_len", syscall(SYS_sched_getaffinity, 0, 12, &got));
    CHECK_RET("sched_getaffinity_bad_pointer", syscall(SYS_sched_getaffinity, 0, sizeof got, BADPTR));
    CHECK_RET("sched_getaffinity_missing_pid", syscall(SYS_sched_getaffinity, 999999, sizeof got, &got));
    CPU_ZERO(&set);
    CHECK_RET("sched_setaffinity_empty", syscall(SYS_sched_setaffinity, 0, sizeof set, &set));
    CHECK_RET("sched_setaffinity_bad_pointer", syscall(SYS_sched_setaffinity, 0, sizeof set, BADPTR));
    CPU_SET(first, &set);
    CHECK_RET("sched_setaffinity_missing_pid", syscall(SYS_sched_setaffinity, 999999, sizeof set, &set));
    IN_CHILD("child_affinity", {
        CHECK_RET("sched_setaffinity_one", syscall(SYS_sched_setaffinity, 0, sizeof set, &set));
        CPU_ZERO(&got);
        long n = syscall(SYS_sched_getaffinity, 0, sizeof got, &got);
        checkf("sched_getaffinity_after_set", "ret_positive=%d count=%d has_first=%d", n > 0,
               CPU_COUNT(&got), CPU_ISSET(first, &got));
        pid_t kid = fork();
        if (kid == 0) {
            CPU_ZERO(&got);
            syscall(SYS_sched_getaffinity, 0, sizeof got, &got);
            _exit(CPU_COUNT(&got));
        }
        int status = 0;
        waitpid(kid, &status, 0);
        checkf("affinity_inherited_by_fork", "count=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        CHECK_RET("sched_setaffinity_all_again", syscall(SYS_sched_setaffinity, 0, sizeof *all, all));
        CPU_ZERO(&got);
        syscall(SYS_sched_getaffinity, 0, sizeof got, &got);
        checkf("affinity_all_again", "count=%d", CPU_COUNT(&got));
        unsigned long word = ~0UL;  // a shorter mask than the kernel's: the rest reads as 0
        CHECK_RET("sched_setaffinity_short_len", syscall(SYS_sched_setaffinity, 0, sizeof word, &word));
        CPU_ZERO(&got);
        syscall(SYS_sched_getaffinity, 0, sizeof got, &got);
        checkf("affinity_after_short_len", "count=%d", CPU_COUNT(&got));
    });
}

int main(void)
{
    vd_begin("system");
    test_uname();
    test_rlimits();
    test_usage_ids();
    test_misc();
    return vd_end();
}
