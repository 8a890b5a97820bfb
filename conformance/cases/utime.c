// File times: utimensat, futimens (utimensat on an fd), utimes, utime, futimesat.
// syscalls: utimensat utimes utime futimesat
#include "verdict.h"
#include <sys/time.h>
#include <time.h>
#include <utime.h>

#define NOBODY 65534

static const char *times_of(const char *path, int nofollow)
{
    static char buf[2][96];
    static int i;
    char *b = buf[i++ & 1];
    struct stat st;
    if ((nofollow ? lstat(path, &st) : stat(path, &st)) < 0)
        snprintf(b, 96, "<%s>", errname(errno));
    else
        snprintf(b, 96, "atime=%lld.%09ld mtime=%lld.%09ld", (long long)st.st_atim.tv_sec,
                 st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    return b;
}

static int recent(const struct timespec *t, const struct timespec *before)
{
    return t->tv_sec > before->tv_sec ||
           (t->tv_sec == before->tv_sec && t->tv_nsec >= before->tv_nsec);
}

static void test_utimensat(void)
{
    write_file("f", "x");
    struct timespec ts[2] = {{1000000000, 1}, {1100000000, 999999999}};
    CHECK_RET("utimensat_exact", utimensat(AT_FDCWD, "f", ts, 0));
    checkf("utimensat_exact_result", "%s", times_of("f", 0));
    struct timespec omit[2] = {{0, UTIME_OMIT}, {1200000000, 5}};
    CHECK_RET("utimensat_omit_atime", utimensat(AT_FDCWD, "f", omit, 0));
    checkf("utimensat_omit_atime_result", "%s", times_of("f", 0));
    struct timespec before;
    clock_gettime(CLOCK_REALTIME_COARSE, &before);
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    CHECK_RET("utimensat_now_atime", utimensat(AT_FDCWD, "f", now, 0));
    struct stat st;
    stat("f", &st);
    checkf("utimensat_now_atime_result", "atime_recent=%d mtime=%lld.%09ld",
           recent(&st.st_atim, &before), (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    CHECK_RET("utimensat_null_sets_now", utimensat(AT_FDCWD, "f", NULL, 0));
    stat("f", &st);
    checkf("utimensat_null_result", "atime_recent=%d mtime_recent=%d",
           recent(&st.st_atim, &before), recent(&st.st_mtim, &before));
    struct timespec badns[2] = {{0, 1000000000}, {0, 0}};
    CHECK_RET("utimensat_bad_nsec", utimensat(AT_FDCWD, "f", badns, 0));
    struct timespec negns[2] = {{0, -5}, {0, 0}};
    CHECK_RET("utimensat_negative_nsec", utimensat(AT_FDCWD, "f", negns, 0));
    CHECK_RET("utimensat_bad_flags", utimensat(AT_FDCWD, "f", ts, 0x40000000));
    CHECK_RET("utimensat_missing", utimensat(AT_FDCWD, "nope", ts, 0));
    CHECK_RET("utimensat_bad_times_pointer",
              syscall(SYS_utimensat, AT_FDCWD, "f", BADPTR, 0));
    struct timespec old[2] = {{-1000, 0}, {0, 0}};
    CHECK_RET("utimensat_before_epoch", utimensat(AT_FDCWD, "f", old, 0));
    checkf("utimensat_before_epoch_result", "%s", times_of("f", 0));

    symlink("f", "lf");
    struct timespec lts[2] = {{1300000000, 0}, {1300000001, 0}};
    CHECK_RET("utimensat_nofollow", utimensat(AT_FDCWD, "lf", lts, AT_SYMLINK_NOFOLLOW));
    checkf("utimensat_nofollow_result", "link=%s target=%s", times_of("lf", 1),
           times_of("f", 0));
    int fd = open("f", O_RDONLY);
    struct timespec fts[2] = {{1400000000, 0}, {1400000000, 42}};
    CHECK_RET("futimens", futimens(fd, fts));
    checkf("futimens_result", "%s", times_of("f", 0));
    CHECK_RET("utimensat_fd_null_path", syscall(SYS_utimensat, fd, NULL, ts, 0));
    checkf("utimensat_fd_null_path_result", "%s", times_of("f", 0));
    CHECK_RET("utimensat_empty_path", utimensat(fd, "", lts, AT_EMPTY_PATH));
    checkf("utimensat_empty_path_result", "%s", times_of("f", 0));
    close(fd);
    CHECK_RET("futimens_closed_fd", futimens(fd, fts));
}

static void test_legacy(void)
{
    struct timeval tv[2] = {{1500000000, 250000}, {1500000001, 750000}};
    CHECK_RET("utimes", syscall(SYS_utimes, "f", tv));
    checkf("utimes_result", "%s", times_of("f", 0));
    struct timeval badtv[2] = {{0, 1000000}, {0, 0}};
    CHECK_RET("utimes_bad_usec", syscall(SYS_utimes, "f", badtv));
    struct utimbuf ub = {1600000000, 1600000002};
    CHECK_RET("utime", syscall(SYS_utime, "f", &ub));
    checkf("utime_result", "%s", times_of("f", 0));
    CHECK_RET("utime_missing", syscall(SYS_utime, "nope", &ub));
    mkdir("d", 0755);
    write_file("d/g", "g");
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK_RET("futimesat_dirfd", syscall(SYS_futimesat, dfd, "g", tv));
    checkf("futimesat_dirfd_result", "%s", times_of("d/g", 0));
    close(dfd);
}

static void test_permissions(void)
{
    write_file("rootfile", "x");
    chmod("rootfile", 0666);
    write_file("ro", "x");
    struct timespec ts[2] = {{1000, 0}, {1000, 0}};
    AS_USER("user_set_explicit_times_foreign_file", NOBODY,
            utimensat(AT_FDCWD, "rootfile", ts, 0));
    AS_USER("user_set_now_writable_foreign_file", NOBODY,
            utimensat(AT_FDCWD, "rootfile", NULL, 0));
    AS_USER("user_set_now_readonly_foreign_file", NOBODY,
            utimensat(AT_FDCWD, "ro", NULL, 0));
}

int main(void)
{
    vd_begin("utime");
    test_utimensat();
    test_legacy();
    test_permissions();
    return vd_end();
}
