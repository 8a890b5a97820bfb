// Directory creation and removal: mkdir, mkdirat, rmdir, unlinkat(AT_REMOVEDIR).
// Only one check (mkdirat_existing) gets EEXIST from mkdirat: the errno-swap
// test of the runner relies on that.
// syscalls: mkdir mkdirat rmdir unlinkat
#include "verdict.h"

static long sys_mkdir(const char *p, mode_t m) { return syscall(SYS_mkdir, p, m); }
static long sys_mkdirat(int d, const char *p, mode_t m) { return syscall(SYS_mkdirat, d, p, m); }
static long sys_rmdir(const char *p) { return syscall(SYS_rmdir, p); }

static const char *dstat(const char *path)
{
    static char buf[2][64];
    static int i;
    char *b = buf[i++ & 1];
    struct stat st;
    if (lstat(path, &st) < 0)
        snprintf(b, 64, "<%s>", errname(errno));
    else
        snprintf(b, 64, "mode=%s nlink=%lu uid=%u gid=%u", mstr(st.st_mode),
                 (unsigned long)st.st_nlink, st.st_uid, st.st_gid);
    return b;
}

static unsigned long nlink_of(const char *path)
{
    struct stat st;
    return stat(path, &st) < 0 ? 0 : (unsigned long)st.st_nlink;
}

static void test_mkdir(void)
{
    unsigned long before = nlink_of(".");
    CHECK_RET("mkdir_new", sys_mkdir("a", 0777));
    checkf("mkdir_new_stat", "%s", dstat("a"));
    checkf("mkdir_parent_nlink", "delta=%ld", (long)(nlink_of(".") - before));
    umask(027);
    sys_mkdir("b", 0777);
    umask(022);
    checkf("mkdir_umask", "%s", dstat("b"));
    sys_mkdir("c", 01777);
    checkf("mkdir_sticky_mode", "%s", dstat("c"));
    sys_mkdir("e", 07777);
    checkf("mkdir_setid_bits_dropped", "%s", dstat("e"));
    write_file("file", "x");
    symlink("nowhere", "dangle");
    symlink("a", "la");
    CHECK_RET("mkdir_existing_dir", sys_mkdir("a", 0755));
    CHECK_RET("mkdir_existing_file", sys_mkdir("file", 0755));
    CHECK_RET("mkdir_on_dangling_symlink", sys_mkdir("dangle", 0755));
    checkf("mkdir_on_dangling_symlink_target", "%s", dstat("nowhere"));
    CHECK_RET("mkdir_missing_parent", sys_mkdir("nope/x", 0755));
    CHECK_RET("mkdir_parent_is_file", sys_mkdir("file/x", 0755));
    CHECK_RET("mkdir_trailing_slash", sys_mkdir("ts/", 0755));
    CHECK_RET("mkdir_trailing_slashes", sys_mkdir("ts2///", 0755));
    CHECK_RET("mkdir_through_symlink_parent", sys_mkdir("la/sub", 0755));
    CHECK_RET("mkdir_dot", sys_mkdir(".", 0755));
    CHECK_RET("mkdir_dotdot", sys_mkdir("a/..", 0755));
    CHECK_RET("mkdir_empty", sys_mkdir("", 0755));
    CHECK_RET("mkdir_bad_pointer", sys_mkdir(BADPTR, 0755));
    char longname[300];
    memset(longname, 'm', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK_RET("mkdir_name_too_long", sys_mkdir(longname, 0755));
    longname[255] = 0;
    CHECK_RET("mkdir_name_255", sys_mkdir(longname, 0755));
    sys_rmdir(longname);
    sys_mkdir("sg", 0755);
    chmod("sg", 02755);
    sys_mkdir("sg/child", 0755);
    checkf("mkdir_inherits_setgid", "%s", dstat("sg/child"));
}

static void test_mkdirat(void)
{
    int dfd = open("a", O_RDONLY | O_DIRECTORY);
    CHECK_RET("mkdirat_dirfd", sys_mkdirat(dfd, "inner", 0700));
    checkf("mkdirat_dirfd_listing", "a=%s inner=%s", list_dir("a"), dstat("a/inner"));
    CHECK_RET("mkdirat_existing", sys_mkdirat(dfd, "inner", 0700));
    CHECK_RET("mkdirat_cwd", sys_mkdirat(AT_FDCWD, "viacwd", 0755));
    CHECK_RET("mkdirat_absolute_ignores_dirfd",
              sys_mkdirat(-7, "/tmp/conf-mkdir/abs", 0755));
    CHECK_RET("mkdirat_bad_dirfd", sys_mkdirat(-7, "rel", 0755));
    int ffd = open("file", O_RDONLY);
    CHECK_RET("mkdirat_file_dirfd", sys_mkdirat(ffd, "x", 0755));
    close(ffd);
    sys_mkdir("doomed", 0755);
    int gone = open("doomed", O_RDONLY | O_DIRECTORY);
    sys_rmdir("doomed");
    CHECK_RET("mkdirat_in_removed_dir", sys_mkdirat(gone, "x", 0755));
    close(gone);
    close(dfd);
}

static void test_rmdir(void)
{
    unsigned long before = nlink_of(".");
    sys_mkdir("r1", 0755);
    CHECK_RET("rmdir_empty", sys_rmdir("r1"));
    checkf("rmdir_parent_nlink", "delta=%ld gone=%s", (long)(nlink_of(".") - before),
           dstat("r1"));
    CHECK_RET("rmdir_nonempty", sys_rmdir("a"));
    CHECK_RET("rmdir_missing", sys_rmdir("r1"));
    CHECK_RET("rmdir_file", sys_rmdir("file"));
    CHECK_RET("rmdir_symlink_to_dir", sys_rmdir("la"));
    CHECK_RET("rmdir_dot", sys_rmdir("."));
    CHECK_RET("rmdir_trailing_dot", sys_rmdir("a/inner/."));
    CHECK_RET("rmdir_dotdot", sys_rmdir("a/inner/.."));
    CHECK_RET("rmdir_root", sys_rmdir("/"));
    sys_mkdir("r2", 0755);
    CHECK_RET("rmdir_trailing_slash", sys_rmdir("r2/"));
    CHECK_RET("rmdir_bad_pointer", sys_rmdir(BADPTR));

    sys_mkdir("r3", 0755);
    CHECK_RET("unlinkat_removedir", unlinkat(AT_FDCWD, "r3", AT_REMOVEDIR));
    sys_mkdir("r4", 0755);
    CHECK_RET("unlinkat_dir_without_flag", unlinkat(AT_FDCWD, "r4", 0));
    CHECK_RET("unlinkat_removedir_on_file", unlinkat(AT_FDCWD, "file", AT_REMOVEDIR));
    CHECK_RET("unlinkat_bad_flags", unlinkat(AT_FDCWD, "r4", 0x1000));
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_RET("unlinkat_removedir_dirfd", unlinkat(dfd, "r4", AT_REMOVEDIR));
    close(dfd);

    sys_mkdir("cwdgone", 0755);
    chdir("cwdgone");
    CHECK_RET("rmdir_own_cwd", sys_rmdir("/tmp/conf-mkdir/cwdgone"));
    CHECK_RET("create_in_removed_cwd", open("x", O_CREAT | O_WRONLY, 0644));
    CHECK_RET("mkdir_in_removed_cwd", sys_mkdir("x", 0755));
    chdir(vd_scratch);
    checkf("final_listing", "%s", list_dir("."));
}

int main(void)
{
    vd_begin("mkdir");
    test_mkdir();
    test_mkdirat();
    test_rmdir();
    return vd_end();
}
