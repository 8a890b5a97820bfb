// Permission checks: access, faccessat, faccessat2, as root and as an
// unprivileged user (forked child after setuid).
// syscalls: access faccessat faccessat2 setuid setgid setreuid setgroups
#include "verdict.h"

#define NOBODY 65534

static long sys_access(const char *p, int mode) { return syscall(SYS_access, p, mode); }

static long sys_faccessat(int dfd, const char *p, int mode)
{
    return syscall(SYS_faccessat, dfd, p, mode);
}

static long sys_faccessat2(int dfd, const char *p, int mode, int flags)
{
    return syscall(SYS_faccessat2, dfd, p, mode, flags);
}

static void make(const char *path, mode_t mode)
{
    write_file(path, "data");
    chmod(path, mode);
}

static void setup(void)
{
    make("f644", 0644);
    make("f600", 0600);
    make("f444", 0444);
    make("f744", 0744);
    make("f001", 0001);
    make("f000", 0000);
    mkdir("d700", 0700);
    make("d700/inner", 0644);
    mkdir("d755", 0755);
    mkdir("sticky", 0755);
    chmod("sticky", 01777);
    make("sticky/rootfile", 0666);
    mkdir("open", 0755);
    chmod("open", 0777);
    symlink("missing", "dangle");
    symlink("f600", "lf600");
}

static void test_root(void)
{
    CHECK_RET("access_f_ok", sys_access("f644", F_OK));
    CHECK_RET("access_missing", sys_access("nope", F_OK));
    CHECK_RET("access_root_read_0000", sys_access("f000", R_OK));
    CHECK_RET("access_root_write_0444", sys_access("f444", W_OK));
    CHECK_RET("access_root_exec_0644", sys_access("f644", X_OK));
    CHECK_RET("access_root_exec_0744", sys_access("f744", X_OK));
    CHECK_RET("access_root_exec_0001", sys_access("f001", X_OK));
    CHECK_RET("access_root_exec_0000", sys_access("f000", X_OK));
    CHECK_RET("access_root_rwx_dir", sys_access("d700", R_OK | W_OK | X_OK));
    CHECK_RET("access_bad_mode", sys_access("f644", 8));
    CHECK_RET("access_dangling", sys_access("dangle", F_OK));
    CHECK_RET("access_file_as_dir", sys_access("f644/x", F_OK));
    CHECK_RET("access_bad_path_pointer", sys_access(BADPTR, F_OK));
    CHECK_RET("access_empty_path", sys_access("", F_OK));
    char longpath[5000];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    CHECK_RET("access_path_too_long", sys_access(longpath, F_OK));

    int dfd = open("d700", O_RDONLY | O_DIRECTORY);
    CHECK_RET("faccessat_dirfd", sys_faccessat(dfd, "inner", R_OK | W_OK));
    CHECK_RET("faccessat_cwd", sys_faccessat(AT_FDCWD, "f644", R_OK));
    CHECK_RET("faccessat_bad_dirfd", sys_faccessat(-7, "inner", R_OK));
    CHECK_RET("faccessat2_dirfd", sys_faccessat2(dfd, "inner", R_OK, 0));
    CHECK_RET("faccessat2_nofollow_dangling",
              sys_faccessat2(AT_FDCWD, "dangle", F_OK, AT_SYMLINK_NOFOLLOW));
    CHECK_RET("faccessat2_follow_dangling", sys_faccessat2(AT_FDCWD, "dangle", F_OK, 0));
    CHECK_RET("faccessat2_eaccess", sys_faccessat2(AT_FDCWD, "f644", R_OK, AT_EACCESS));
    CHECK_RET("faccessat2_empty_path", sys_faccessat2(dfd, "", R_OK | X_OK, AT_EMPTY_PATH));
    CHECK_RET("faccessat2_empty_path_without_flag", sys_faccessat2(dfd, "", R_OK, 0));
    CHECK_RET("faccessat2_bad_flags", sys_faccessat2(AT_FDCWD, "f644", R_OK, 0x40000000));
    CHECK_RET("faccessat2_bad_mode", sys_faccessat2(AT_FDCWD, "f644", 0x10, 0));
    close(dfd);
}

static void test_user(void)
{
    AS_USER("user_read_0644", NOBODY, sys_access("f644", R_OK));
    AS_USER("user_write_0644", NOBODY, sys_access("f644", W_OK));
    AS_USER("user_read_0600", NOBODY, sys_access("f600", R_OK));
    AS_USER("user_exec_0001", NOBODY, sys_access("f001", X_OK));
    AS_USER("user_read_via_symlink_0600", NOBODY, sys_access("lf600", R_OK));
    AS_USER("user_search_0700_dir", NOBODY, sys_access("d700/inner", F_OK));
    AS_USER("user_list_0700_dir", NOBODY, sys_access("d700", R_OK));
    AS_USER("user_open_0600", NOBODY, open("f600", O_RDONLY));
    AS_USER("user_open_0644_for_write", NOBODY, open("f644", O_WRONLY));
    AS_USER("user_creat_in_0755_dir", NOBODY, open("d755/new", O_CREAT | O_WRONLY, 0644));
    AS_USER("user_creat_in_0777_dir", NOBODY, open("open/new", O_CREAT | O_WRONLY, 0644));
    AS_USER("user_unlink_root_file_in_sticky", NOBODY, unlink("sticky/rootfile"));
    AS_USER("user_mkdir_in_0755_dir", NOBODY, mkdir("d755/sub", 0755));
    AS_USER("user_chmod_root_file", NOBODY, chmod("f644", 0666));
    struct stat st;
    if (stat("open/new", &st) < 0)
        checkf("user_created_file_owner", "errno=%s", errname(errno));
    else
        checkf("user_created_file_owner", "uid=%u gid=%u mode=%s", st.st_uid, st.st_gid,
               mstr(st.st_mode));
    AS_USER("user_unlink_own_file_in_sticky", NOBODY,
            (write_file("sticky/mine", "x") == 0 ? unlink("sticky/mine") : -1));
}

/* Real uid nobody, effective uid root: access() checks the real ids,
 * faccessat2(AT_EACCESS) the effective ones. */
static void test_real_vs_effective(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        if (setreuid(NOBODY, 0) < 0)
            _exit(255);
        int a = sys_access("f600", R_OK) < 0 ? errno : 0;
        int b = sys_faccessat2(AT_FDCWD, "f600", R_OK, AT_EACCESS) < 0 ? errno : 0;
        _exit(a * 16 + b);
    }
    int st = 0;
    waitpid(p, &st, 0);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    checkf("real_uid_access", "%s", code < 0 ? wstr(st) : code / 16 ? errname(code / 16) : "ok");
    checkf("effective_uid_eaccess", "%s",
           code < 0 ? wstr(st) : code % 16 ? errname(code % 16) : "ok");
}

int main(void)
{
    vd_begin("access");
    setup();
    test_root();
    test_user();
    test_real_vs_effective();
    return vd_end();
}
