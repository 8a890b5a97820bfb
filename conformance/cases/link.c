// Names: link, linkat, symlink, symlinkat, readlink, readlinkat, unlink, unlinkat.
// syscalls: link linkat symlink symlinkat readlink readlinkat unlink unlinkat
#include "verdict.h"

static long sys_link(const char *a, const char *b) { return syscall(SYS_link, a, b); }
static long sys_symlink(const char *a, const char *b) { return syscall(SYS_symlink, a, b); }
static long sys_unlink(const char *p) { return syscall(SYS_unlink, p); }

static long sys_readlink(const char *p, char *buf, size_t n)
{
    return syscall(SYS_readlink, p, buf, n);
}

static unsigned long nlink(const char *path)
{
    struct stat st;
    return lstat(path, &st) < 0 ? 0 : (unsigned long)st.st_nlink;
}

static int same_ino(const char *a, const char *b)
{
    struct stat sa, sb;
    if (lstat(a, &sa) < 0 || lstat(b, &sb) < 0)
        return -1;
    return sa.st_ino == sb.st_ino;
}

/* readlink into a buffer of size n; prints ret and the bytes returned. */
static void show_readlink(const char *name, const char *path, size_t n)
{
    char buf[512];
    memset(buf, '#', sizeof buf);
    errno = 0;
    long r = sys_readlink(path, buf, n);
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "ret=%ld target=%s", r, qstr(buf, r));
}

static void test_link(void)
{
    write_file("f", "content");
    mkdir("d", 0755);
    CHECK_RET("link_new", sys_link("f", "f2"));
    checkf("link_nlink", "f=%lu f2=%lu same_ino=%d", nlink("f"), nlink("f2"), same_ino("f", "f2"));
    checkf("link_content", "%s", file_str("f2"));
    CHECK_RET("link_existing_target", sys_link("f", "f2"));
    CHECK_RET("link_missing_source", sys_link("nope", "x"));
    CHECK_RET("link_directory", sys_link("d", "d2"));
    CHECK_RET("link_into_missing_dir", sys_link("f", "nodir/x"));
    CHECK_RET("link_trailing_slash_target", sys_link("f", "newname/"));
    CHECK_RET("link_into_subdir", sys_link("f", "d/f3"));
    checkf("link_into_subdir_nlink", "nlink=%lu", nlink("f"));
    sys_symlink("f", "sl");
    CHECK_RET("link_to_symlink_no_follow", sys_link("sl", "sl_hard"));
    checkf("link_to_symlink_result", "same_ino_as_symlink=%d same_ino_as_target=%d",
           same_ino("sl", "sl_hard"), same_ino("f", "sl_hard"));
    CHECK_RET("linkat_follow", linkat(AT_FDCWD, "sl", AT_FDCWD, "sl_follow", AT_SYMLINK_FOLLOW));
    checkf("linkat_follow_result", "same_ino_as_target=%d", same_ino("f", "sl_follow"));
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK_RET("linkat_dirfds", linkat(AT_FDCWD, "f", dfd, "viadirfd", 0));
    checkf("linkat_dirfds_listing", "d=%s", list_dir("d"));
    CHECK_RET("linkat_bad_flags", linkat(AT_FDCWD, "f", AT_FDCWD, "bad", 0x8000));
    CHECK_RET("linkat_empty_path_without_flag", linkat(dfd, "", AT_FDCWD, "e", 0));
    int fd = open("f", O_RDONLY);
    CHECK_RET("linkat_empty_path_fd", linkat(fd, "", AT_FDCWD, "from_fd", AT_EMPTY_PATH));
    checkf("linkat_empty_path_result", "same_ino=%d", same_ino("f", "from_fd"));
    close(fd);
    CHECK_RET("linkat_bad_dirfd", linkat(-7, "f", AT_FDCWD, "x", 0));
    close(dfd);
}

static void test_symlink(void)
{
    CHECK_RET("symlink_new", sys_symlink("f", "s1"));
    show_readlink("readlink", "s1", 512);
    CHECK_RET("symlink_dangling", sys_symlink("does/not/exist", "s2"));
    show_readlink("readlink_dangling", "s2", 512);
    show_readlink("readlink_truncated", "s2", 4);
    CHECK_RET("symlink_existing", sys_symlink("f", "s1"));
    CHECK_RET("symlink_over_file", sys_symlink("x", "f"));
    CHECK_RET("symlink_empty_target", sys_symlink("", "s3"));
    CHECK_RET("symlink_absolute", sys_symlink("/tmp/conf-link/f", "s4"));
    checkf("symlink_absolute_follows", "%s", file_str("s4"));
    CHECK_RET("symlink_relative_to_link_dir", sys_symlink("../f", "d/up"));
    checkf("symlink_relative_follows", "%s", file_str("d/up"));
    show_readlink("readlink_not_symlink", "f", 512);
    show_readlink("readlink_missing", "nope", 512);
    show_readlink("readlink_zero_size", "s1", 0);
    CHECK_RET("readlink_bad_buffer", sys_readlink("s1", BADPTR, 64));
    struct stat st;
    lstat("s2", &st);
    checkf("symlink_lstat", "mode=%s size=%lld", mstr(st.st_mode), (long long)st.st_size);
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK_RET("symlinkat_dirfd", symlinkat("../f", dfd, "up2"));
    char buf[64];
    long r = readlinkat(dfd, "up2", buf, sizeof buf);
    checkf("readlinkat_dirfd", "%s", qstr(buf, r));
    int lfd = open("s1", O_PATH | O_NOFOLLOW);
    r = readlinkat(lfd, "", buf, sizeof buf);
    checkf("readlinkat_empty_path_o_path", "%s", r < 0 ? errname(errno) : qstr(buf, r));
    close(lfd);
    CHECK_RET("readlinkat_empty_path_on_dir", readlinkat(dfd, "", buf, sizeof buf));
    close(dfd);
    char longtarget[5000];
    memset(longtarget, 't', sizeof longtarget - 1);
    longtarget[sizeof longtarget - 1] = 0;
    CHECK_RET("symlink_target_too_long", sys_symlink(longtarget, "s5"));
    sys_symlink("loop2", "loop1");
    sys_symlink("loop1", "loop2");
    CHECK_RET("open_symlink_loop", open("loop1", O_RDONLY));
    show_readlink("readlink_loop_member", "loop1", 512);
}

static void test_unlink(void)
{
    write_file("u1", "still readable");
    int fd = open("u1", O_RDONLY);
    CHECK_RET("unlink_open_file", sys_unlink("u1"));
    char buf[64];
    long r = read(fd, buf, sizeof buf);
    struct stat st;
    fstat(fd, &st);
    checkf("unlinked_file_still_readable", "data=%s nlink=%lu", qstr(buf, r),
           (unsigned long)st.st_nlink);
    close(fd);
    CHECK_RET("unlink_missing", sys_unlink("u1"));
    CHECK_RET("unlink_directory", sys_unlink("d"));
    CHECK_RET("unlink_symlink_not_target", sys_unlink("s1"));
    checkf("unlink_symlink_target_kept", "%s", file_str("f"));
    unsigned long before = nlink("f");
    CHECK_RET("unlink_hardlink", sys_unlink("f2"));
    checkf("unlink_hardlink_nlink", "before=%lu after=%lu", before, nlink("f"));
    CHECK_RET("unlink_trailing_slash", sys_unlink("f/"));
    CHECK_RET("unlink_dangling_symlink", sys_unlink("s2"));
    CHECK_RET("unlink_bad_pointer", sys_unlink(BADPTR));
    CHECK_RET("unlink_empty", sys_unlink(""));
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK_RET("unlinkat_dirfd", unlinkat(dfd, "up", 0));
    CHECK_RET("unlinkat_file_dirfd", unlinkat(open("f", O_RDONLY), "x", 0));
    close(dfd);
    checkf("final_listing", "top=%s d=%s", list_dir("."), list_dir("d"));
}

int main(void)
{
    vd_begin("link");
    test_link();
    test_symlink();
    test_unlink();
    return vd_end();
}
