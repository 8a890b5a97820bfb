// The stat family: stat, lstat, fstat, newfstatat and statx.
// syscalls: stat lstat fstat newfstatat statx
#include "verdict.h"
#include <sys/sysmacros.h>
#include <time.h>

static long sys_stat(const char *p, struct stat *st) { return syscall(SYS_stat, p, st); }
static long sys_lstat(const char *p, struct stat *st) { return syscall(SYS_lstat, p, st); }
static long sys_fstat(int fd, struct stat *st) { return syscall(SYS_fstat, fd, st); }

static long sys_fstatat(int dfd, const char *p, struct stat *st, int flags)
{
    return syscall(SYS_newfstatat, dfd, p, st, flags);
}

static long sys_statx(int dfd, const char *p, int flags, unsigned mask, struct statx *sx)
{
    return syscall(SYS_statx, dfd, p, flags, mask, sx);
}

/* A directory's size is filesystem-specific: not printed. */
static const char *size_str(mode_t mode, long long size)
{
    static char buf[2][32];
    static int i;
    char *b = buf[i++ & 1];
    if (S_ISDIR(mode))
        return "-";
    snprintf(b, 32, "%lld", size);
    return b;
}

/* Print a stat result: mode size nlink uid gid, or the errno. */
static void show(const char *name, long r, const struct stat *st)
{
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "ret=%ld mode=%s size=%s nlink=%lu uid=%u gid=%u", r,
               mstr(st->st_mode), size_str(st->st_mode, (long long)st->st_size),
               (unsigned long)st->st_nlink, st->st_uid, st->st_gid);
}

#define SHOW(name, expr)                 \
    do {                                 \
        struct stat st_;                 \
        memset(&st_, 0, sizeof st_);     \
        errno = 0;                       \
        long r_ = (long)(expr);          \
        show(name, r_, &st_);            \
    } while (0)

static void showx(const char *name, long r, const struct statx *sx)
{
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "ret=%ld basic=%d mode=%s size=%s nlink=%u uid=%u gid=%u", r,
               (sx->stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS,
               mstr(sx->stx_mode), size_str(sx->stx_mode, (long long)sx->stx_size),
               sx->stx_nlink, sx->stx_uid, sx->stx_gid);
}

#define SHOWX(name, dfd, path, flags, mask)                              \
    do {                                                                 \
        struct statx sx_;                                                \
        memset(&sx_, 0, sizeof sx_);                                     \
        errno = 0;                                                       \
        long r_ = sys_statx(dfd, path, flags, mask, &sx_);               \
        showx(name, r_, &sx_);                                           \
    } while (0)

static int same_ino(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
        return -1;
    return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static void setup(void)
{
    write_file("f", "hello");
    mkdir("d", 0750);
    symlink("f", "lf");
    symlink("d", "ld");
    symlink("missing", "dangle");
    link("f", "hard");
}

static void test_stat_lstat(void)
{
    SHOW("stat_file", sys_stat("f", &st_));
    SHOW("stat_dir", sys_stat("d", &st_));
    mkdir("d/s1", 0755);
    mkdir("d/s2", 0755);
    SHOW("stat_dir_with_subdirs", sys_stat("d", &st_));
    SHOW("stat_follows_symlink", sys_stat("lf", &st_));
    SHOW("lstat_symlink", sys_lstat("lf", &st_));
    SHOW("lstat_file", sys_lstat("f", &st_));
    SHOW("stat_dangling_symlink", sys_stat("dangle", &st_));
    SHOW("lstat_dangling_symlink", sys_lstat("dangle", &st_));
    SHOW("stat_missing", sys_stat("nope", &st_));
    SHOW("stat_file_as_dir", sys_stat("f/x", &st_));
    SHOW("stat_file_trailing_slash", sys_stat("f/", &st_));
    SHOW("stat_dir_trailing_slash", sys_stat("d/", &st_));
    SHOW("lstat_symlink_to_dir_trailing_slash", sys_lstat("ld/", &st_));
    SHOW("stat_hardlink", sys_stat("hard", &st_));
    checkf("hardlink_same_ino", "same_ino=%d", same_ino("f", "hard"));
    checkf("symlink_same_ino_as_target", "same_ino=%d", same_ino("lf", "f"));
    checkf("dot_same_ino_as_scratch", "same_ino=%d", same_ino(".", vd_scratch));
    checkf("root_dotdot_is_root", "same_ino=%d", same_ino("/..", "/"));
    checkf("dir_dotdot_is_parent", "same_ino=%d", same_ino("d/..", "."));
    SHOW("stat_empty_path", sys_stat("", &st_));
    SHOW("stat_bad_path_pointer", sys_stat(BADPTR, &st_));
    SHOW("stat_bad_buffer", sys_stat("f", BADPTR));
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    SHOW("stat_name_too_long", sys_stat(longname, &st_));
}

static void test_fstat(void)
{
    struct stat a, b;
    int fd = open("f", O_RDONLY);
    SHOW("fstat_file", sys_fstat(fd, &st_));
    fstat(fd, &a);
    stat("f", &b);
    checkf("fstat_same_ino_as_stat", "same_ino=%d same_dev=%d", a.st_ino == b.st_ino,
           a.st_dev == b.st_dev);
    close(fd);
    SHOW("fstat_closed_fd", sys_fstat(fd, &st_));
    SHOW("fstat_negative_fd", sys_fstat(-1, &st_));
    int p[2];
    pipe(p);
    SHOW("fstat_pipe", sys_fstat(p[0], &st_));
    close(p[0]);
    close(p[1]);
    fd = open("lf", O_PATH | O_NOFOLLOW);
    SHOW("fstat_o_path_symlink", sys_fstat(fd, &st_));
    close(fd);

    fd = open("big", O_WRONLY | O_CREAT, 0644);
    char chunk[5000];
    memset(chunk, 'b', sizeof chunk);
    write(fd, chunk, sizeof chunk);
    fstat(fd, &a);
    checkf("fstat_blocks_cover_size", "size=%lld covered=%d blksize_positive=%d",
           (long long)a.st_size, a.st_blocks * 512 >= a.st_size, a.st_blksize > 0);
    close(fd);
}

static void test_fstatat(void)
{
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    write_file("d/in", "inside");
    SHOW("fstatat_dirfd", sys_fstatat(dfd, "in", &st_, 0));
    SHOW("fstatat_cwd", sys_fstatat(AT_FDCWD, "f", &st_, 0));
    SHOW("fstatat_symlink_follow", sys_fstatat(AT_FDCWD, "lf", &st_, 0));
    SHOW("fstatat_symlink_nofollow", sys_fstatat(AT_FDCWD, "lf", &st_, AT_SYMLINK_NOFOLLOW));
    SHOW("fstatat_empty_path_dirfd", sys_fstatat(dfd, "", &st_, AT_EMPTY_PATH));
    SHOW("fstatat_empty_path_without_flag", sys_fstatat(dfd, "", &st_, 0));
    int fd = open("lf", O_PATH | O_NOFOLLOW);
    SHOW("fstatat_empty_path_o_path_symlink", sys_fstatat(fd, "", &st_, AT_EMPTY_PATH));
    close(fd);
    SHOW("fstatat_bad_flags", sys_fstatat(AT_FDCWD, "f", &st_, 0x40000000));
    SHOW("fstatat_bad_dirfd", sys_fstatat(-7, "f", &st_, 0));
    SHOW("fstatat_file_as_dirfd", sys_fstatat(open("f", O_RDONLY), "x", &st_, 0));
    close(dfd);
}

static void test_statx(void)
{
    SHOWX("statx_file", AT_FDCWD, "f", 0, STATX_BASIC_STATS);
    SHOWX("statx_symlink_follow", AT_FDCWD, "lf", 0, STATX_BASIC_STATS);
    SHOWX("statx_symlink_nofollow", AT_FDCWD, "lf", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS);
    SHOWX("statx_dir", AT_FDCWD, "d", 0, STATX_BASIC_STATS);
    int fd = open("f", O_RDONLY);
    SHOWX("statx_empty_path", fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS);
    close(fd);
    SHOWX("statx_mask_zero", AT_FDCWD, "f", 0, 0);
    SHOWX("statx_sync_as_stat", AT_FDCWD, "f", AT_STATX_SYNC_AS_STAT, STATX_ALL);
    SHOWX("statx_reserved_mask", AT_FDCWD, "f", 0, 0x80000000u);
    SHOWX("statx_bad_flags", AT_FDCWD, "f", 0x40000000, STATX_BASIC_STATS);
    SHOWX("statx_force_and_dont_sync", AT_FDCWD, "f",
          AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC, STATX_BASIC_STATS);
    SHOWX("statx_missing", AT_FDCWD, "nope", 0, STATX_BASIC_STATS);
    SHOWX("statx_bad_path_pointer", AT_FDCWD, BADPTR, 0, STATX_BASIC_STATS);
    errno = 0;
    CHECK_RET("statx_bad_buffer", sys_statx(AT_FDCWD, "f", 0, STATX_BASIC_STATS, BADPTR));

    /* Which time fields come back for a narrow mask (Linux 6.13+ leaves mtime/ctime, which go
     * together, and btime out, zeroed, unless asked for; older kernels report them anyway). */
    static const unsigned narrow[] = {STATX_SIZE, STATX_MTIME, STATX_CTIME, STATX_BTIME, STATX_ATIME};
    for (unsigned i = 0; i < sizeof narrow / sizeof *narrow; i++) {
        struct statx nx;
        memset(&nx, 0, sizeof nx);
        char name[40];
        snprintf(name, sizeof name, "statx_times_for_mask_%#x", narrow[i]);
        long r = sys_statx(AT_FDCWD, "f", 0, narrow[i], &nx);
        checkf(name, "ret=%ld m=%d c=%d b=%d mtime_set=%d ctime_set=%d", r,
               !!(nx.stx_mask & STATX_MTIME), !!(nx.stx_mask & STATX_CTIME), !!(nx.stx_mask & STATX_BTIME),
               nx.stx_mtime.tv_sec != 0, nx.stx_ctime.tv_sec != 0);
    }

    struct statx sx;
    struct stat st;
    sys_statx(AT_FDCWD, "f", 0, STATX_BASIC_STATS, &sx);
    stat("f", &st);
    checkf("statx_same_ino_as_stat", "same_ino=%d same_dev=%d", sx.stx_ino == st.st_ino,
           makedev(sx.stx_dev_major, sx.stx_dev_minor) == st.st_dev);
}

static void test_times(void)
{
    struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
    utimensat(AT_FDCWD, "f", ts, 0);
    struct stat st;
    stat("f", &st);
    checkf("stat_times_exact", "atime=%lld.%09ld mtime=%lld.%09ld",
           (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct statx sx;
    sys_statx(AT_FDCWD, "f", 0, STATX_BASIC_STATS, &sx);
    checkf("statx_times_exact", "atime=%lld.%09u mtime=%lld.%09u",
           (long long)sx.stx_atime.tv_sec, sx.stx_atime.tv_nsec,
           (long long)sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec);

    struct timespec before;
    clock_gettime(CLOCK_REALTIME_COARSE, &before);
    chmod("f", 0600);
    stat("f", &st);
    checkf("chmod_updates_ctime", "ctime_not_before=%d mtime_unchanged=%d",
           st.st_ctim.tv_sec > before.tv_sec ||
               (st.st_ctim.tv_sec == before.tv_sec && st.st_ctim.tv_nsec >= before.tv_nsec),
           st.st_mtim.tv_sec == 1200000000);
    int fd = open("f", O_WRONLY | O_APPEND);
    write(fd, "!", 1);
    fstat(fd, &st);
    close(fd);
    checkf("write_updates_mtime", "mtime_changed=%d size=%lld",
           st.st_mtim.tv_sec != 1200000000, (long long)st.st_size);
}

int main(void)
{
    vd_begin("stat");
    setup();
    test_stat_lstat();
    test_fstat();
    test_fstatat();
    test_statx();
    test_times();
    return vd_end();
}
