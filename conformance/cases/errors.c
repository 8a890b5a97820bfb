// Error paths across the path and fd syscalls: ENAMETOOLONG (PATH_MAX and
// NAME_MAX boundaries), ELOOP (the 40-link limit), EFAULT for bad pointers,
// EBADF for bad fds, ENOTDIR for file components; and the sync family.
// syscalls: open stat lstat mkdir unlink rmdir rename link symlink readlink chdir access truncate chmod chown fsync fdatasync sync syncfs sync_file_range
#include "verdict.h"
#include <sys/mman.h>

#define NSYS(name) syscall(SYS_##name

/* One path-taking syscall applied to a path (and a fixed second operand). */
static long apply(const char *op, const char *p)
{
    char buf[64];
    struct stat st;
    if (!strcmp(op, "open")) return syscall(SYS_open, p, O_RDONLY);
    if (!strcmp(op, "creat")) return syscall(SYS_open, p, O_CREAT | O_WRONLY, 0644);
    if (!strcmp(op, "stat")) return syscall(SYS_stat, p, &st);
    if (!strcmp(op, "lstat")) return syscall(SYS_lstat, p, &st);
    if (!strcmp(op, "mkdir")) return syscall(SYS_mkdir, p, 0755);
    if (!strcmp(op, "unlink")) return syscall(SYS_unlink, p);
    if (!strcmp(op, "rmdir")) return syscall(SYS_rmdir, p);
    if (!strcmp(op, "rename_from")) return syscall(SYS_rename, p, "target");
    if (!strcmp(op, "rename_to")) return syscall(SYS_rename, "file", p);
    if (!strcmp(op, "link_to")) return syscall(SYS_link, "file", p);
    if (!strcmp(op, "symlink_at")) return syscall(SYS_symlink, "file", p);
    if (!strcmp(op, "readlink")) return syscall(SYS_readlink, p, buf, sizeof buf);
    if (!strcmp(op, "chdir")) return syscall(SYS_chdir, p);
    if (!strcmp(op, "access")) return syscall(SYS_access, p, F_OK);
    if (!strcmp(op, "truncate")) return syscall(SYS_truncate, p, 0);
    if (!strcmp(op, "chmod")) return syscall(SYS_chmod, p, 0644);
    if (!strcmp(op, "chown")) return syscall(SYS_chown, p, 0, 0);
    return -2;
}

static const char *const ops[] = {
    "open", "creat", "stat", "lstat", "mkdir", "unlink", "rmdir", "rename_from", "rename_to",
    "link_to", "symlink_at", "readlink", "chdir", "access", "truncate", "chmod", "chown",
};
#define NOPS (sizeof ops / sizeof ops[0])

/* Ops have side effects (rename_to moves "file"): rebuild the fixtures. */
static void reset_fixtures(void)
{
    chdir(vd_scratch);
    unlink("target");
    rmdir("self");
    unlink("self");
    unlink("file");
    write_file("file", "x");
    symlink("self", "self");
}

/* For every op: "check errors.<prefix>_<op>: ret=... errno=..." */
static void each_op(const char *prefix, const char *path)
{
    char name[96];
    for (size_t i = 0; i < NOPS; i++) {
        reset_fixtures();
        snprintf(name, sizeof name, "%s_%s", prefix, ops[i]);
        errno = 0;
        long r = apply(ops[i], path);
        checkf(name, "%s", r < 0 ? rstr(r, errno) : "ret=ok");
    }
    reset_fixtures();
}

static char long_path[8192];

static void test_name_lengths(void)
{
    reset_fixtures();
    memset(long_path, 'p', 4096);
    long_path[4096] = 0;
    each_op("path_4096", long_path);
    memset(long_path, 'c', 256);
    long_path[256] = 0;
    each_op("component_256", long_path);
    memset(long_path, 'c', 255);
    long_path[255] = 0;
    CHECK_OK("component_255_creat", apply("creat", long_path));
    CHECK_RET("component_255_unlink", apply("unlink", long_path));
    /* A 4095-byte path is within PATH_MAX: ./././.../missing fails with ENOENT. */
    size_t n = 0;
    while (n + 2 < 4095 - 7) {
        memcpy(long_path + n, "./", 2);
        n += 2;
    }
    memcpy(long_path + n, "missing", 7);
    long_path[n + 7] = 0;
    errno = 0;
    long r = apply("stat", long_path);
    checkf("path_4095_is_ok_length", "len=%zu %s", strlen(long_path), rstr(r, errno));
    char target[5000];
    memset(target, 't', 4096);
    target[4096] = 0;
    CHECK_RET("symlink_target_4096", syscall(SYS_symlink, target, "ltarget"));
    target[4095] = 0;
    CHECK_RET("symlink_target_4095", syscall(SYS_symlink, target, "ltarget"));
    char buf[5000];
    CHECK_RET("readlink_long_target", syscall(SYS_readlink, "ltarget", buf, sizeof buf));
}

static void test_loops(void)
{
    char name[32], next[32];
    write_file("end", "end of chain");
    for (int i = 0; i <= 41; i++) {
        snprintf(name, sizeof name, "chain%02d", i);
        if (i == 0)
            snprintf(next, sizeof next, "end");
        else
            snprintf(next, sizeof next, "chain%02d", i - 1);
        symlink(next, name);
    }
    checkf("symlink_chain_40", "%s", file_str("chain39"));
    checkf("symlink_chain_41", "%s", file_str("chain40"));
    each_op("self_loop", "self");
    symlink("loopdir/x", "loopdir");
    CHECK_RET("loop_in_middle_component", apply("stat", "loopdir/file"));
    mkdir("d", 0755);
    symlink("..", "d/up");
    CHECK_RET("dotdot_symlink_cycle_resolves", apply("stat", "d/up/d/up/d/up/file"));
    CHECK_RET("o_nofollow_on_loop", syscall(SYS_open, "self", O_RDONLY | O_NOFOLLOW));
    CHECK_RET("o_path_nofollow_on_loop", (long)({
        long fd_ = syscall(SYS_open, "self", O_PATH | O_NOFOLLOW);
        if (fd_ >= 0)
            close((int)fd_);
        fd_ < 0 ? fd_ : 0;
    }));
}

static void test_pointers(void)
{
    each_op("efault", BADPTR);
    CHECK_RET("efault_rename_second", syscall(SYS_rename, "file", BADPTR));
    CHECK_RET("efault_link_second", syscall(SYS_link, "file", BADPTR));
    CHECK_RET("efault_symlink_target", syscall(SYS_symlink, BADPTR, "s"));
    struct stat st;
    CHECK_RET("efault_fstat_buffer", syscall(SYS_fstat, 0, BADPTR));
    CHECK_RET("efault_stat_buffer", syscall(SYS_stat, "file", BADPTR));
    (void)st;
    CHECK_RET("efault_pipe", syscall(SYS_pipe, BADPTR));
    CHECK_RET("efault_high_address", syscall(SYS_open, (char *)0xffff800000000000UL, O_RDONLY));
    CHECK_RET("efault_null_path", syscall(SYS_open, NULL, O_RDONLY));

    /* Mapped memory the caller may not write (or read): the kernel's copies fault there too. */
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_RET("efault_stat_into_readonly", syscall(SYS_stat, "file", ro));
    checkf("readonly_page_untouched", "first=%d", ro[0]);
    CHECK_RET("efault_stat_into_code", syscall(SYS_stat, "file", (void *)test_pointers));
    CHECK_RET("efault_stat_into_prot_none", syscall(SYS_stat, "file", none));
    CHECK_RET("efault_getcwd_into_readonly", syscall(SYS_getcwd, ro, 256));
    CHECK_RET("efault_readlink_into_readonly", syscall(SYS_readlink, "self", ro, 64));
    CHECK_RET("efault_path_in_prot_none", syscall(SYS_open, none, O_RDONLY));
    munmap(ro, 4096);
    munmap(none, 4096);
}

static void test_bad_fds(void)
{
    static const int fds[] = {-1, 999};
    char name[64], buf[8];
    struct stat st;
    for (int i = 0; i < 2; i++) {
        int fd = fds[i];
        const char *tag = fd < 0 ? "negative" : "closed";
#define BADFD(op, expr)                                    \
        snprintf(name, sizeof name, "ebadf_%s_%s", op, tag); \
        CHECK_RET(name, expr)
        BADFD("read", read(fd, buf, 1));
        BADFD("write", write(fd, buf, 1));
        BADFD("close", close(fd));
        BADFD("fstat", fstat(fd, &st));
        BADFD("lseek", lseek(fd, 0, SEEK_SET));
        BADFD("fchdir", fchdir(fd));
        BADFD("fchmod", fchmod(fd, 0644));
        BADFD("fchown", fchown(fd, 0, 0));
        BADFD("ftruncate", ftruncate(fd, 0));
        BADFD("fsync", fsync(fd));
        BADFD("dup", dup(fd));
        BADFD("openat", openat(fd, "file", O_RDONLY));
        BADFD("getdents64", syscall(SYS_getdents64, fd, buf, sizeof buf));
#undef BADFD
    }
}

static void test_sync(void)
{
    int fd = open("file", O_RDWR);
    CHECK_RET("fsync_file", fsync(fd));
    CHECK_RET("fdatasync_file", fdatasync(fd));
    CHECK_RET("syncfs", syncfs(fd));
    CHECK_RET("sync_file_range", sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE));
    CHECK_RET("sync_file_range_bad_flags", sync_file_range(fd, 0, 0, 0x100));
    CHECK_RET("sync_file_range_negative", sync_file_range(fd, -1, 0, SYNC_FILE_RANGE_WRITE));
    close(fd);
    syscall(SYS_sync);
    checkf("sync", "returned=1");
    int p[2];
    pipe(p);
    CHECK_RET("fsync_pipe", fsync(p[0]));
    CHECK_RET("sync_file_range_pipe", sync_file_range(p[0], 0, 0, SYNC_FILE_RANGE_WRITE));
    close(p[0]);
    close(p[1]);
    fd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_RET("fsync_directory", fsync(fd));
    close(fd);
}

static void test_notdir(void)
{
    each_op("enotdir", "file/sub");
}

int main(void)
{
    vd_begin("errors");
    test_name_lengths();
    test_loops();
    test_pointers();
    test_bad_fds();
    test_sync();
    test_notdir();
    return vd_end();
}
