// Working directory and root: chdir, fchdir, getcwd, chroot; inheritance over fork.
// syscalls: chdir fchdir getcwd chroot
#include "verdict.h"

static long sys_getcwd(char *buf, size_t n) { return syscall(SYS_getcwd, buf, n); }

/* getcwd as a verdict value: the path, or the errno. */
static const char *cwd(void)
{
    static char buf[2][4096];
    static int i;
    char *b = buf[i++ & 1];
    errno = 0;
    if (sys_getcwd(b, 4096) < 0)
        snprintf(b, 4096, "<%s>", errname(errno));
    return b;
}

static void test_chdir(void)
{
    mkdir("a", 0755);
    mkdir("a/b", 0755);
    write_file("file", "x");
    symlink("a/b", "lb");
    checkf("getcwd_initial", "%s", cwd());
    char buf[4096];
    long r = sys_getcwd(buf, sizeof buf);
    checkf("getcwd_returns_length", "ret=%ld strlen_plus_1=%ld", r, (long)strlen(buf) + 1);
    CHECK_RET("chdir_relative", chdir("a"));
    checkf("chdir_relative_cwd", "%s", cwd());
    CHECK_RET("chdir_dotdot", chdir(".."));
    checkf("chdir_dotdot_cwd", "%s", cwd());
    CHECK_RET("chdir_via_symlink", chdir("lb"));
    checkf("chdir_via_symlink_cwd", "%s", cwd());
    CHECK_RET("chdir_absolute", chdir(vd_scratch));
    CHECK_RET("chdir_missing", chdir("nope"));
    CHECK_RET("chdir_file", chdir("file"));
    CHECK_RET("chdir_empty", chdir(""));
    CHECK_RET("chdir_bad_pointer", chdir(BADPTR));
    checkf("cwd_unchanged_after_errors", "%s", cwd());
    CHECK_RET("chdir_root_dotdot", chdir("/.."));
    checkf("root_dotdot_is_root", "%s", cwd());
    chdir(vd_scratch);

    int fd = open("a/b", O_RDONLY | O_DIRECTORY);
    CHECK_RET("fchdir", fchdir(fd));
    checkf("fchdir_cwd", "%s", cwd());
    close(fd);
    CHECK_RET("fchdir_closed_fd", fchdir(fd));
    fd = open(vd_scratch, O_RDONLY);
    fchdir(fd);
    close(fd);
    fd = open("file", O_RDONLY);
    CHECK_RET("fchdir_on_file", fchdir(fd));
    close(fd);
    fd = open("a", O_PATH);
    CHECK_RET("fchdir_o_path_dir", fchdir(fd));
    checkf("fchdir_o_path_dir_cwd", "%s", cwd());
    close(fd);
    chdir(vd_scratch);
}

static void test_getcwd_errors(void)
{
    char small[8];
    CHECK_RET("getcwd_buffer_too_small", sys_getcwd(small, sizeof small));
    CHECK_RET("getcwd_zero_size", sys_getcwd(small, 0));
    CHECK_RET("getcwd_bad_buffer", sys_getcwd(BADPTR, 4096));

    mkdir("moving", 0755);
    chdir("moving");
    rename("../moving", "../moved");
    checkf("getcwd_after_rename", "%s", cwd());
    chdir(vd_scratch);

    mkdir("doomed", 0755);
    chdir("doomed");
    rmdir("../doomed");
    checkf("getcwd_after_rmdir", "%s", cwd());
    CHECK_RET("chdir_dotdot_from_removed", chdir(".."));
    checkf("chdir_dotdot_from_removed_cwd", "%s", cwd());
    chdir(vd_scratch);
}

static void test_fork_and_chroot(void)
{
    chdir("a");
    IN_CHILD("child_cwd", {
        checkf("child_inherits_cwd", "%s", cwd());
        chdir("b");
    });
    checkf("child_chdir_not_seen_by_parent", "%s", cwd());
    chdir(vd_scratch);

    mkdir("jail", 0755);
    mkdir("jail/inside", 0755);
    write_file("jail/marker", "jailed");
    IN_CHILD("child_chroot", {
        CHECK_RET("chroot", chroot("jail"));
        checkf("chroot_cwd_outside_root", "unreachable_prefix=%d",
               !strncmp(cwd(), "(unreachable)", 13));
        CHECK_RET("chroot_chdir_root", chdir("/"));
        checkf("chroot_cwd", "%s", cwd());
        checkf("chroot_sees_marker", "%s", file_str("/marker"));
        checkf("chroot_dotdot_stays", "%s", list_dir("/.."));
        chdir("/inside");
        checkf("chroot_cwd_inside", "%s", cwd());
        CHECK_RET("chroot_missing", chroot("/nope"));
        CHECK_RET("chroot_file", chroot("/marker"));
    });
    checkf("parent_root_unchanged", "%s", file_str("jail/marker"));
    AS_USER("user_chroot", 65534, chroot("jail"));
}

int main(void)
{
    vd_begin("cwd");
    test_chdir();
    test_getcwd_errors();
    test_fork_and_chroot();
    return vd_end();
}
