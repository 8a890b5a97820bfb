// Credentials inside the sandbox: getuid/geteuid/getgroups, setgroups/setresuid/setresgid
// and their effect on translated permission checks, per process (glibc's setuid changes
// every thread) and per thread (a raw setresuid changes only the caller).
// syscalls: getuid geteuid getgid getgroups setgroups setresuid setresgid getresuid openat
#include "verdict.h"
#include <grp.h>
#include <pthread.h>

static void test_ids(void)
{
    checkf("initial_ids", "uid=%d euid=%d gid=%d egid=%d", getuid(), geteuid(), getgid(),
           getegid());
    gid_t g[64];
    int n = getgroups(64, g);
    checkf("getgroups_count_query", "same=%d", getgroups(0, NULL) == n);
    CHECK_RET("getgroups_too_small", n > 0 ? getgroups(OPAQUE(0) + (n > 1 ? 1 : 0), g) : -2);
    IN_CHILD("child_setgroups", {
        gid_t set[3] = {10, 20, 30};
        CHECK_RET("setgroups", setgroups(3, set));
        gid_t got[8];
        int k = getgroups(8, got);
        checkf("getgroups_after", "n=%d g=%d,%d,%d", k, got[0], got[1], got[2]);
        CHECK_RET("setresgid", setresgid(40, 41, 42));
        gid_t r, e, s;
        getresgid(&r, &e, &s);
        checkf("getresgid_after", "r=%d e=%d s=%d", r, e, s);
        CHECK_RET("setresuid", setresuid(1000, 1001, 1002));
        uid_t ru, eu, su;
        getresuid(&ru, &eu, &su);
        checkf("getresuid_after", "r=%d e=%d s=%d", ru, eu, su);
        CHECK_RET("setresuid_back_to_root", setresuid(0, 0, 0));
        CHECK_RET("setuid_to_saved", setuid(1002));
        CHECK_RET("setgroups_unprivileged", setgroups(0, NULL));
    });
}

/* translated opens follow the caller's credentials */
static void test_checks(void)
{
    write_file("secret", "s");
    chmod("secret", 0600);
    write_file("group_file", "g");
    chown("group_file", 0, 20);
    chmod("group_file", 0640);
    IN_CHILD("child_groups_checks", {
        gid_t set[1] = {20};
        setgroups(1, set);
        setresgid(100, 100, 100);
        setresuid(100, 100, 100);
        CHECK_RET("open_root_file_as_user", open("secret", O_RDONLY));
        CHECK_FD("open_via_supplementary_group", open("group_file", O_RDONLY));
    });
    IN_CHILD("child_euid_only", {
        setresuid(0, 100, 0);
        CHECK_RET("open_with_euid_100", open("secret", O_RDONLY));
        CHECK_RET("seteuid_back", seteuid(0));
        CHECK_FD("open_with_euid_0", open("secret", O_RDONLY));
    });
}

static pthread_barrier_t bar;
static char thread_result[64];

static void *raw_setuid_thread(void *arg)
{
    (void)arg;
    /* the raw call changes this thread only (glibc's setresuid would change all) */
    syscall(SYS_setresuid, 100, 100, 100);
    pthread_barrier_wait(&bar); /* 1: main opens as root */
    pthread_barrier_wait(&bar); /* 2 */
    errno = 0;
    int fd = open("secret", O_RDONLY);
    snprintf(thread_result, sizeof thread_result, "%s", fd >= 0 ? "ret=fd" : rstr(-1, errno));
    return NULL;
}

static void *glibc_setuid_thread(void *arg)
{
    (void)arg;
    setresuid(100, 100, 100);
    return NULL;
}

static void test_threads(void)
{
    IN_CHILD("child_per_thread_creds", {
        pthread_barrier_init(&bar, NULL, 2);
        pthread_t t;
        pthread_create(&t, NULL, raw_setuid_thread, NULL);
        pthread_barrier_wait(&bar);
        checkf("main_thread_keeps_uid", "uid=%d", (int)syscall(SYS_getuid));
        CHECK_FD("main_thread_opens_as_root", open("secret", O_RDONLY));
        pthread_barrier_wait(&bar);
        pthread_join(t, NULL);
        checkf("raw_setuid_thread_open", "%s", thread_result);
        CHECK_FD("main_thread_opens_as_root_again", open("secret", O_RDONLY));
    });
    IN_CHILD("child_process_wide_setuid", {
        pthread_t t;
        pthread_create(&t, NULL, glibc_setuid_thread, NULL);
        pthread_join(t, NULL);
        checkf("main_after_glibc_setuid", "uid=%d", (int)syscall(SYS_getuid));
        CHECK_RET("main_open_after_glibc_setuid", open("secret", O_RDONLY));
    });
}

int main(void)
{
    alarm(20);
    vd_begin("creds");
    test_ids();
    test_checks();
    test_threads();
    return vd_end();
}
