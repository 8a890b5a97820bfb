// Ownership and modes: chmod, fchmod, fchmodat, fchmodat2, chown, fchown,
// lchown, fchownat, umask; set-id bit clearing; non-root EPERM.
// syscalls: chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat umask
#include "verdict.h"
#include <sys/mman.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

#define NOBODY 65534

static long sys_chmod(const char *p, mode_t m) { return syscall(SYS_chmod, p, m); }
static long sys_chown(const char *p, int u, int g) { return syscall(SYS_chown, p, u, g); }
static long sys_lchown(const char *p, int u, int g) { return syscall(SYS_lchown, p, u, g); }

static long sys_fchmodat2(int d, const char *p, mode_t m, int flags)
{
    return syscall(SYS_fchmodat2, d, p, m, flags);
}

static const char *owner(const char *path)
{
    static char buf[2][64];
    static int i;
    char *b = buf[i++ & 1];
    struct stat st;
    if (lstat(path, &st) < 0)
        snprintf(b, 64, "<%s>", errname(errno));
    else
        snprintf(b, 64, "mode=%s uid=%u gid=%u", mstr(st.st_mode), st.st_uid, st.st_gid);
    return b;
}

static void test_chmod(void)
{
    write_file("f", "x");
    CHECK_RET("chmod", sys_chmod("f", 0600));
    checkf("chmod_result", "%s", owner("f"));
    CHECK_RET("chmod_all_bits", sys_chmod("f", 07777));
    checkf("chmod_all_bits_result", "%s", owner("f"));
    CHECK_RET("chmod_type_bits_ignored", sys_chmod("f", S_IFDIR | 0640));
    checkf("chmod_type_bits_ignored_result", "%s", owner("f"));
    symlink("f", "lf");
    CHECK_RET("chmod_follows_symlink", sys_chmod("lf", 0604));
    checkf("chmod_follows_symlink_result", "f=%s lf=%s", owner("f"), owner("lf"));
    CHECK_RET("chmod_missing", sys_chmod("nope", 0644));
    CHECK_RET("chmod_bad_pointer", sys_chmod(BADPTR, 0644));
    int fd = open("f", O_RDONLY);
    CHECK_RET("fchmod", fchmod(fd, 0640));
    checkf("fchmod_result", "%s", owner("f"));
    close(fd);
    CHECK_RET("fchmod_closed_fd", fchmod(fd, 0640));
    fd = open("f", O_PATH);
    CHECK_RET("fchmod_o_path_fd", fchmod(fd, 0640));
    close(fd);
    mkdir("d", 0755);
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    write_file("d/g", "g");
    CHECK_RET("fchmodat_dirfd", syscall(SYS_fchmodat, dfd, "g", 0611));
    checkf("fchmodat_dirfd_result", "%s", owner("d/g"));
    CHECK_RET("fchmodat2_nofollow_on_symlink",
              sys_fchmodat2(AT_FDCWD, "lf", 0600, AT_SYMLINK_NOFOLLOW));
    CHECK_RET("fchmodat2_nofollow_on_file",
              sys_fchmodat2(AT_FDCWD, "f", 0644, AT_SYMLINK_NOFOLLOW));
    checkf("fchmodat2_nofollow_on_file_result", "%s", owner("f"));
    CHECK_RET("fchmodat2_bad_flags", sys_fchmodat2(AT_FDCWD, "f", 0644, 0x40000000));
    CHECK_RET("fchmodat2_empty_path", sys_fchmodat2(dfd, "", 0750, AT_EMPTY_PATH));
    checkf("fchmodat2_empty_path_result", "%s", owner("d"));
    close(dfd);
}

static void test_chown(void)
{
    write_file("o", "x");
    CHECK_RET("chown", sys_chown("o", 1000, 2000));
    checkf("chown_result", "%s", owner("o"));
    CHECK_RET("chown_keep_uid", sys_chown("o", -1, 3000));
    checkf("chown_keep_uid_result", "%s", owner("o"));
    CHECK_RET("chown_keep_both", sys_chown("o", -1, -1));
    checkf("chown_keep_both_result", "%s", owner("o"));
    symlink("o", "lo");
    CHECK_RET("lchown_symlink", sys_lchown("lo", 4000, 4000));
    checkf("lchown_symlink_result", "o=%s lo=%s", owner("o"), owner("lo"));
    CHECK_RET("chown_follows_symlink", sys_chown("lo", 5000, 5000));
    checkf("chown_follows_symlink_result", "o=%s lo=%s", owner("o"), owner("lo"));
    int fd = open("o", O_RDONLY);
    CHECK_RET("fchown", fchown(fd, 6000, 6000));
    checkf("fchown_result", "%s", owner("o"));
    close(fd);
    CHECK_RET("fchown_closed_fd", fchown(fd, 0, 0));
    CHECK_RET("fchownat_nofollow", fchownat(AT_FDCWD, "lo", 7000, 7000, AT_SYMLINK_NOFOLLOW));
    checkf("fchownat_nofollow_result", "lo=%s", owner("lo"));
    CHECK_RET("fchownat_bad_flags", fchownat(AT_FDCWD, "o", 0, 0, 0x40000000));
    fd = open("o", O_RDONLY);
    CHECK_RET("fchownat_empty_path", fchownat(fd, "", 8000, 8000, AT_EMPTY_PATH));
    checkf("fchownat_empty_path_result", "%s", owner("o"));
    close(fd);
    CHECK_RET("chown_missing", sys_chown("nope", 0, 0));

    write_file("suid", "x");
    chmod("suid", 06755);
    sys_chown("suid", 0, 0);
    checkf("chown_clears_setid_bits", "%s", owner("suid"));
    write_file("sgid_noexec", "x");
    chmod("sgid_noexec", 02644);
    sys_chown("sgid_noexec", 0, 0);
    checkf("chown_keeps_sgid_without_group_exec", "%s", owner("sgid_noexec"));
}

static void test_umask(void)
{
    mode_t old = umask(0077);
    checkf("umask_returns_previous", "old=%04o", (unsigned)old);
    checkf("umask_second_call", "old=%04o", (unsigned)umask(0));
    write_file("um0", "x");
    checkf("umask_zero_create", "%s", owner("um0"));
    umask(017777);
    mode_t now = umask(022);
    checkf("umask_ignores_high_bits", "stored=%04o", (unsigned)now);
}

static void test_as_user(void)
{
    write_file("rootfile", "x");
    write_file("userfile", "x");
    chown("userfile", NOBODY, NOBODY);
    AS_USER("user_chmod_other_file", NOBODY, sys_chmod("rootfile", 0777));
    AS_USER("user_chmod_own_file", NOBODY, sys_chmod("userfile", 0640));
    checkf("user_chmod_own_file_result", "%s", owner("userfile"));
    AS_USER("user_chown_own_file_to_root", NOBODY, sys_chown("userfile", 0, -1));
    AS_USER("user_chown_own_file_noop", NOBODY, sys_chown("userfile", NOBODY, NOBODY));
    AS_USER("user_chgrp_to_foreign_group", NOBODY, sys_chown("userfile", -1, 0));
    AS_USER("user_chmod_setgid_own_group", NOBODY,
            (sys_chown("userfile", -1, -1), sys_chmod("userfile", 02755)));
    checkf("user_chmod_setgid_result", "%s", owner("userfile"));
    chown("userfile", NOBODY, 0);
    AS_USER("user_setgid_not_member", NOBODY, sys_chmod("userfile", 02755));
    checkf("user_setgid_not_member_result", "%s", owner("userfile"));
    chmod("userfile", 04777);
    AS_USER("user_write_clears_setuid", NOBODY,
            ({ int fd_ = open("userfile", O_WRONLY | O_APPEND);
               fd_ < 0 ? -1 : write(fd_, "y", 1); }));
    checkf("user_write_clears_setuid_result", "%s", owner("userfile"));
}

/* fchmod/fchown on objects outside any directory: a memfd and a pipe. */
static void test_fd_only_objects(void)
{
    struct stat s;
    int m = memfd_create("perm-memfd", 0), p[2];
    errno = 0;
    long r = fchmod(m, 0640);
    fstat(m, &s);
    checkf("fchmod_memfd", "ret=%ld errno=%s mode=%04o", r, errname(errno), (unsigned)(s.st_mode & 07777));
    errno = 0;
    r = fchown(m, -1, -1);
    checkf("fchown_memfd_noop", "ret=%ld errno=%s", r, errname(errno));
    close(m);
    pipe(p);
    errno = 0;
    r = fchmod(p[0], 0600);
    fstat(p[0], &s);
    checkf("fchmod_pipe", "ret=%ld errno=%s mode=%04o", r, errname(errno), (unsigned)(s.st_mode & 07777));
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    vd_begin("perm");
    test_chmod();
    test_chown();
    test_umask();
    test_as_user();
    test_fd_only_objects();
    return vd_end();
}
