// The stat family: stat, lstat, fstat, newfstatat and statx.
// syscalls: stat lstat fstat newfstatat statx
#include "verdict.h"
#include <pthread.h>
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

/* Repeats: one thread stats the same absolute path (or fd) again and again, with a change
 * between some of them. Each answer must be the state after the change; the translator may
 * answer a repeat from a cache, and these are the changes that must empty it. */
static void rep(const char *name, const char *path, int flags)
{
    SHOW(name, sys_fstatat(AT_FDCWD, path, &st_, flags));
}

static void rep_fd(const char *name, int fd)
{
    SHOW(name, sys_fstatat(fd, "", &st_, AT_EMPTY_PATH));
}

static void rep_mtime(const char *name, const char *path)
{
    struct stat st;
    long r = sys_stat(path, &st);
    checkf(name, "ret=%ld mtime=%lld.%09ld", r, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static void *chmod_group_600(void *arg)
{
    (void)arg;
    chmod("/etc/group", 0600);
    return NULL;
}

static void test_repeat(void)
{
    char cwd[512], dir[600], sub[640], lnk[600], priv[600], inner[640];
    struct stat orig;
    if (!getcwd(cwd, sizeof cwd))
        return;
    snprintf(dir, sizeof dir, "%s/rd", cwd);
    snprintf(sub, sizeof sub, "%s/rd/sub", cwd);
    snprintf(lnk, sizeof lnk, "%s/rl", cwd);

    mkdir(dir, 0755);
    rep("repeat_dir_1", dir, 0);
    rep("repeat_dir_2", dir, 0);
    mkdir(sub, 0755);
    rep("repeat_dir_after_mkdir", dir, 0);
    chmod(dir, 0711);
    rep("repeat_dir_after_chmod", dir, 0);
    rmdir(sub);
    rep("repeat_dir_after_rmdir", dir, 0);
    rep("repeat_sub_after_rmdir", sub, 0);

    symlink("/etc/group", lnk);
    rep("repeat_link_follow_1", lnk, 0);
    rep("repeat_link_nofollow_1", lnk, AT_SYMLINK_NOFOLLOW);
    rep("repeat_link_follow_2", lnk, 0);
    rep("repeat_link_nofollow_2", lnk, AT_SYMLINK_NOFOLLOW);
    unlink(lnk);
    symlink("/etc/no-such-file-here", lnk);
    rep("repeat_link_nofollow_after_replace", lnk, AT_SYMLINK_NOFOLLOW);
    rep("repeat_link_follow_after_replace", lnk, 0);

    /* An image file (the translator's overlay copies it up on the first write). */
    if (stat("/etc/group", &orig) < 0)
        return;
    rep("repeat_image_1", "/etc/group", 0);
    rep("repeat_image_2", "/etc/group", 0);
    chmod("/etc/group", 0600);
    rep("repeat_image_after_chmod", "/etc/group", 0);
    chmod("/etc/group", orig.st_mode & 07777);
    rep("repeat_image_after_chmod_back", "/etc/group", 0);
    pthread_t t;
    if (pthread_create(&t, NULL, chmod_group_600, NULL) == 0 && pthread_join(t, NULL) == 0)
        rep("repeat_image_after_chmod_by_thread", "/etc/group", 0);
    chmod("/etc/group", orig.st_mode & 07777);
    struct timespec ts[2] = {{1000000000, 5}, {1100000000, 7}};
    utimensat(AT_FDCWD, "/etc/group", ts, 0);
    rep_mtime("repeat_image_mtime_after_utimensat", "/etc/group");
    link("/etc/group", "/etc/group.repeat");
    rep("repeat_image_after_link", "/etc/group", 0);
    unlink("/etc/group.repeat");
    rep("repeat_image_after_unlink", "/etc/group", 0);
    int w = open("/etc/group", O_WRONLY | O_APPEND);
    rep("repeat_image_opened_for_write", "/etc/group", 0);
    if (write(w, "x:1:\n", 5) != 5)
        checkf("repeat_image_write", "short");
    rep("repeat_image_after_write", "/etc/group", 0);
    if (w >= 0 && ftruncate(w, orig.st_size) == 0)
        close(w);
    rep("repeat_image_after_truncate", "/etc/group", 0);

    /* fstat of one fd number: the fd table changes without the translator seeing it. */
    struct stat pw;
    int a = open("/etc/group", O_RDONLY), b = open("/etc/passwd", O_RDONLY);
    fstat(b, &pw);
    rep_fd("repeat_fstat_1", a);
    rep_fd("repeat_fstat_2", a);
    dup2(b, a);
    rep_fd("repeat_fstat_after_dup2", a);
    chmod("/etc/passwd", 0600);
    rep_fd("repeat_fstat_after_chmod", a);
    chmod("/etc/passwd", pw.st_mode & 07777);
    close(a);
    rep_fd("repeat_fstat_after_close", a);
    close(b);

    /* fstat of a file in RAM (/tmp): native writes change its size and times. */
    int m = open("rm", O_RDWR | O_CREAT | O_TRUNC, 0644);
    struct timespec mt[2] = {{1000000000, 11}, {1200000000, 13}};
    struct stat ms;
    rep_fd("repeat_fstat_ram_1", m);
    rep_fd("repeat_fstat_ram_2", m);
    if (write(m, "12345", 5) != 5)
        checkf("repeat_fstat_ram_write", "short");
    rep_fd("repeat_fstat_ram_after_write", m);
    rep_fd("repeat_fstat_ram_after_write_2", m);
    futimens(m, mt);
    for (int i = 0; i < 2; i++) {
        long r = sys_fstatat(m, "", &ms, AT_EMPTY_PATH);
        checkf(i ? "repeat_fstat_ram_times_2" : "repeat_fstat_ram_times_1", "ret=%ld atime=%lld.%09ld mtime=%lld.%09ld", r,
               (long long)ms.st_atim.tv_sec, ms.st_atim.tv_nsec, (long long)ms.st_mtim.tv_sec, ms.st_mtim.tv_nsec);
    }
    if (pwrite(m, "x", 1, 9) != 1)
        checkf("repeat_fstat_ram_pwrite", "short");
    sys_fstatat(m, "", &ms, AT_EMPTY_PATH);
    checkf("repeat_fstat_ram_after_pwrite", "size=%lld mtime_moved=%d", (long long)ms.st_size,
           ms.st_mtim.tv_sec != 1200000000);
    if (ftruncate(m, 2) == 0)
        rep_fd("repeat_fstat_ram_after_truncate", m);
    fchmod(m, 0600);
    rep_fd("repeat_fstat_ram_after_fchmod", m);
    fchmod(m, 04755);
    rep_fd("repeat_fstat_ram_setuid_1", m);
    rep_fd("repeat_fstat_ram_setuid_2", m);
    close(m);

    /* A path that does not resolve, then does. */
    char miss[600], misslink[600];
    snprintf(miss, sizeof miss, "%s/not-yet", cwd);
    snprintf(misslink, sizeof misslink, "%s/not-yet-link", cwd);
    rep("repeat_missing_1", miss, 0);
    rep("repeat_missing_2", miss, 0);
    rep("repeat_missing_lstat", misslink, AT_SYMLINK_NOFOLLOW);
    rep("repeat_missing_under_file", "/etc/group/x", 0);
    rep("repeat_missing_under_file_2", "/etc/group/x", 0);
    write_file(miss, "abc");
    rep("repeat_missing_after_create", miss, 0);
    symlink("not-yet", misslink);
    rep("repeat_missing_lstat_after_symlink", misslink, AT_SYMLINK_NOFOLLOW);
    unlink(miss);
    rep("repeat_missing_after_unlink", miss, 0);
    rep("repeat_missing_after_unlink_2", miss, 0);
    mkdir(miss, 0700);
    rep("repeat_missing_after_mkdir", miss, 0);
    rmdir(miss);
    unlink(misslink);

    /* A bad buffer for an answer given before. */
    rep("repeat_image_3", "/etc/group", 0);
    CHECK_RET("repeat_stat_null_buffer", sys_stat("/etc/group", NULL));
    CHECK_RET("repeat_stat_code_buffer", sys_stat("/etc/group", (struct stat *)(void *)test_repeat));

    /* The root moves: the same absolute path names something else. */
    int root = open("/", O_RDONLY | O_DIRECTORY);
    rep("repeat_before_chroot", "/etc/group", 0);
    if (chroot(cwd) == 0) {
        rep("repeat_in_chroot", "/etc/group", 0);
        rep("repeat_in_chroot_dir", "/rd", 0);
        if (fchdir(root) == 0 && chroot(".") == 0 && chdir(cwd) == 0)
            rep("repeat_after_chroot", "/etc/group", 0);
    }
    close(root);

    /* The credentials change: a directory only root may search. */
    snprintf(priv, sizeof priv, "%s/priv", cwd);
    snprintf(inner, sizeof inner, "%s/priv/in", cwd);
    mkdir(priv, 0700);
    mkdir(inner, 0755);
    IN_CHILD("repeat_creds",
             rep("repeat_creds_root_1", inner, 0);
             rep("repeat_creds_root_2", inner, 0);
             if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
                 checkf("repeat_creds_setuid", "failed errno=%s", errname(errno));
             rep("repeat_creds_nobody", inner, 0));
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
    test_repeat();
    return vd_end();
}
