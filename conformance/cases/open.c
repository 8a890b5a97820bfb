// open, openat, creat, openat2 and their flags.
// syscalls: open openat creat openat2 close fcntl linkat
#include "verdict.h"
#include <linux/openat2.h>

static long sys_open(const char *p, int flags, mode_t mode)
{
    return syscall(SYS_open, p, flags, mode);
}

static long sys_creat(const char *p, mode_t mode)
{
    return syscall(SYS_creat, p, mode);
}

static long sys_openat2(int dfd, const char *p, struct open_how *how, size_t size)
{
    return syscall(SYS_openat2, dfd, p, how, size);
}

/* "mode=f0644 size=N nlink=N" of a path (lstat) or "<ERRNO>". */
static const char *pstat(const char *path)
{
    static char buf[2][96];
    static int i;
    char *b = buf[i++ & 1];
    struct stat st;
    if (lstat(path, &st) < 0)
        snprintf(b, 96, "<%s>", errname(errno));
    else
        snprintf(b, 96, "mode=%s size=%lld nlink=%lu", mstr(st.st_mode),
                 (long long)st.st_size, (unsigned long)st.st_nlink);
    return b;
}

static const char *fdstat(int fd)
{
    static char b[96];
    struct stat st;
    if (fstat(fd, &st) < 0)
        snprintf(b, sizeof b, "<%s>", errname(errno));
    else
        snprintf(b, sizeof b, "mode=%s size=%lld nlink=%lu", mstr(st.st_mode),
                 (long long)st.st_size, (unsigned long)st.st_nlink);
    return b;
}

static void test_creat(void)
{
    int fd = CHECK_FD("creat_new", sys_creat("c1", 0640));
    checkf("creat_new_stat", "%s", pstat("c1"));
    errno = 0;
    long r = read(fd, (char[4]){0}, 4);
    checkf("creat_is_write_only", "read %s", rstr(r, errno));
    r = write(fd, "hello", 5);
    checkf("creat_write", "%s", rstr(r, errno));
    close(fd);

    fd = (int)sys_creat("c1", 0600);
    checkf("creat_truncates_existing", "%s content=%s", pstat("c1"), file_str("c1"));
    close(fd);

    umask(077);
    fd = (int)sys_creat("c2", 0666);
    umask(022);
    checkf("creat_honours_umask", "%s", pstat("c2"));
    close(fd);

    CHECK_RET("creat_in_missing_dir", sys_creat("nodir/c3", 0644));
    CHECK_RET("creat_on_directory", sys_creat(".", 0644));
}

static void test_open_creat_excl(void)
{
    CHECK_RET("open_missing", sys_open("missing", O_RDONLY, 0));
    CHECK_RET("open_empty_path", sys_open("", O_RDONLY, 0));
    int fd = CHECK_FD("o_creat_new", sys_open("o1", O_CREAT | O_WRONLY, 0604));
    checkf("o_creat_new_stat", "%s", pstat("o1"));
    close(fd);

    fd = (int)sys_open("o1", O_CREAT | O_WRONLY, 0777);
    checkf("o_creat_existing_keeps_mode", "%s", pstat("o1"));
    close(fd);

    CHECK_RET("o_excl_existing", sys_open("o1", O_CREAT | O_EXCL | O_WRONLY, 0644));
    fd = CHECK_FD("o_excl_new", sys_open("o2", O_CREAT | O_EXCL | O_RDWR, 0644));
    close(fd);

    symlink("dangling-target", "dangle");
    CHECK_RET("o_excl_on_dangling_symlink",
              sys_open("dangle", O_CREAT | O_EXCL | O_WRONLY, 0644));
    fd = (int)sys_open("dangle", O_CREAT | O_WRONLY, 0644);
    checkf("o_creat_through_dangling_symlink", "%s target=%s",
           rstr(fd < 0 ? -1 : 0, errno), pstat("dangling-target"));
    if (fd >= 0)
        close(fd);

    CHECK_RET("o_creat_in_missing_dir", sys_open("nodir/x", O_CREAT | O_WRONLY, 0644));
    CHECK_RET("o_creat_trailing_slash", sys_open("newdir/", O_CREAT | O_WRONLY, 0644));
    CHECK_RET("open_file_trailing_slash", sys_open("o1/", O_RDONLY, 0));
    CHECK_RET("open_file_as_dir_component", sys_open("o1/x", O_RDONLY, 0));
}

static void test_trunc_append(void)
{
    write_file("t1", "abcdef");
    int fd = (int)sys_open("t1", O_WRONLY | O_TRUNC, 0);
    checkf("o_trunc", "%s", pstat("t1"));
    close(fd);

    write_file("t2", "abcdef");
    fd = (int)sys_open("t2", O_RDONLY | O_TRUNC, 0);
    checkf("o_trunc_with_rdonly", "%s", pstat("t2"));
    close(fd);

    write_file("a1", "abc");
    fd = (int)sys_open("a1", O_WRONLY | O_APPEND, 0);
    lseek(fd, 0, SEEK_SET);
    errno = 0;
    long r = write(fd, "XY", 2);
    checkf("o_append_write_at_end", "%s content=%s", rstr(r, errno), file_str("a1"));
    errno = 0;
    r = pwrite(fd, "Z", 1, 0);
    checkf("o_append_pwrite_appends", "%s content=%s", rstr(r, errno), file_str("a1"));
    checkf("o_append_offset_after", "pos=%ld", (long)lseek(fd, 0, SEEK_CUR));
    close(fd);
}

static void test_directory_flags(void)
{
    mkdir("d", 0755);
    write_file("d/inner", "in");
    symlink("d", "ld");
    symlink("o1", "lf");

    CHECK_RET("o_directory_on_file", sys_open("o1", O_RDONLY | O_DIRECTORY, 0));
    int fd = CHECK_FD("o_directory_on_dir", sys_open("d", O_RDONLY | O_DIRECTORY, 0));
    errno = 0;
    long r = read(fd, (char[8]){0}, 8);
    checkf("read_on_directory", "%s", rstr(r, errno));
    close(fd);
    CHECK_RET("o_directory_with_o_creat",
              sys_open("newd", O_RDONLY | O_DIRECTORY | O_CREAT, 0644));
    checkf("o_directory_with_o_creat_created", "%s", pstat("newd"));
    CHECK_RET("open_dir_wronly", sys_open("d", O_WRONLY, 0));
    CHECK_RET("open_dir_rdwr", sys_open("d", O_RDWR, 0));
    CHECK_RET("o_nofollow_final_symlink", sys_open("lf", O_RDONLY | O_NOFOLLOW, 0));
    fd = CHECK_FD("o_nofollow_intermediate_symlink",
                  sys_open("ld/inner", O_RDONLY | O_NOFOLLOW, 0));
    close(fd);
    fd = CHECK_FD("o_directory_via_symlink", sys_open("ld", O_RDONLY | O_DIRECTORY, 0));
    close(fd);
    fd = (int)sys_open("lf", O_PATH | O_NOFOLLOW, 0);
    checkf("o_path_nofollow_symlink", "%s", fdstat(fd));
    errno = 0;
    r = read(fd, (char[4]){0}, 4);
    checkf("o_path_read", "%s", rstr(r, errno));
    close(fd);
}

static void test_modes_cloexec(void)
{
    int fd = (int)sys_open("o1", O_RDONLY, 0);
    errno = 0;
    long r = write(fd, "x", 1);
    checkf("o_rdonly_write", "%s", rstr(r, errno));
    checkf("o_rdonly_getfl", "accmode=%d", fcntl(fd, F_GETFL) & O_ACCMODE);
    checkf("no_cloexec_by_default", "fd_flags=%d", fcntl(fd, F_GETFD));
    close(fd);

    fd = (int)sys_open("o1", O_WRONLY, 0);
    errno = 0;
    r = read(fd, (char[4]){0}, 4);
    checkf("o_wronly_read", "%s", rstr(r, errno));
    close(fd);

    fd = (int)sys_open("o1", O_RDONLY | O_CLOEXEC, 0);
    checkf("o_cloexec", "fd_flags=%d", fcntl(fd, F_GETFD));
    close(fd);

    int a = (int)sys_open("o1", O_RDONLY, 0);
    close(a);
    int b = (int)sys_open("o1", O_RDONLY, 0);
    checkf("lowest_fd_reused", "same_fd=%d", a == b);
    close(b);
}

static void test_tmpfile(void)
{
    int fd = CHECK_FD("o_tmpfile", openat(AT_FDCWD, ".", O_TMPFILE | O_RDWR, 0600));
    checkf("o_tmpfile_stat", "%s", fdstat(fd));
    write(fd, "anon", 4);
    checkf("o_tmpfile_not_listed", "listing=%s", list_dir("."));
    CHECK_RET("o_tmpfile_linkat", linkat(fd, "", AT_FDCWD, "linked", AT_EMPTY_PATH));
    checkf("o_tmpfile_linked", "%s content=%s", pstat("linked"), file_str("linked"));
    close(fd);

    fd = (int)openat(AT_FDCWD, ".", O_TMPFILE | O_RDWR | O_EXCL, 0600);
    CHECK_RET("o_tmpfile_excl_linkat", linkat(fd, "", AT_FDCWD, "linked2", AT_EMPTY_PATH));
    close(fd);
    CHECK_RET("o_tmpfile_rdonly", openat(AT_FDCWD, ".", O_TMPFILE | O_RDONLY, 0600));
    CHECK_RET("o_tmpfile_on_file", openat(AT_FDCWD, "o1", O_TMPFILE | O_RDWR, 0600));
    CHECK_RET("o_tmpfile_missing_dir", openat(AT_FDCWD, "nodir", O_TMPFILE | O_RDWR, 0600));
}

static void test_openat(void)
{
    write_file("d/f", "in-d");
    int dfd = (int)openat(AT_FDCWD, "d", O_RDONLY | O_DIRECTORY);
    int fd = CHECK_FD("openat_dirfd", openat(dfd, "f", O_RDONLY));
    char buf[16] = {0};
    checkf("openat_dirfd_content", "%s", qstr(buf, read(fd, buf, sizeof buf)));
    close(fd);
    fd = CHECK_FD("openat_creat_in_dirfd", openat(dfd, "g", O_CREAT | O_WRONLY, 0644));
    close(fd);
    checkf("openat_creat_in_dirfd_listing", "d=%s", list_dir("d"));
    fd = CHECK_FD("openat_absolute_ignores_dirfd", openat(-7, "/tmp/conf-open/o1", O_RDONLY));
    close(fd);
    CHECK_RET("openat_bad_dirfd", openat(-7, "f", O_RDONLY));
    CHECK_RET("openat_closed_dirfd", openat(900, "f", O_RDONLY));
    int ffd = (int)open("o1", O_RDONLY);
    CHECK_RET("openat_file_as_dirfd", openat(ffd, "f", O_RDONLY));
    close(ffd);
    CHECK_RET("open_bad_path_pointer", sys_open(BADPTR, O_RDONLY, 0));

    struct open_how how = {.flags = O_RDONLY, .resolve = RESOLVE_BENEATH};
    fd = CHECK_FD("openat2_beneath_ok", sys_openat2(dfd, "f", &how, sizeof how));
    close(fd);
    CHECK_RET("openat2_beneath_escape", sys_openat2(dfd, "../o1", &how, sizeof how));
    CHECK_RET("openat2_beneath_absolute", sys_openat2(dfd, "/tmp", &how, sizeof how));
    how.resolve = RESOLVE_NO_SYMLINKS;
    CHECK_RET("openat2_no_symlinks", sys_openat2(AT_FDCWD, "ld/f", &how, sizeof how));
    how.resolve = RESOLVE_BENEATH;
    CHECK_RET("openat2_beneath_dotdot_out_and_back", sys_openat2(dfd, "../d/f", &how, sizeof how));
    mkdir("d/sub", 0755);
    fd = CHECK_FD("openat2_beneath_dotdot_inside", sys_openat2(dfd, "sub/../f", &how, sizeof how));
    close(fd);
    symlink("/tmp/conf-open/d/f", "d/abs");
    symlink("f", "d/rel");
    CHECK_RET("openat2_beneath_absolute_symlink", sys_openat2(dfd, "abs", &how, sizeof how));
    fd = CHECK_FD("openat2_beneath_relative_symlink", sys_openat2(dfd, "rel", &how, sizeof how));
    close(fd);
    how.resolve = RESOLVE_IN_ROOT;
    fd = CHECK_FD("openat2_in_root_absolute", sys_openat2(dfd, "/f", &how, sizeof how));
    close(fd);
    fd = CHECK_FD("openat2_in_root_dotdot_stays", sys_openat2(dfd, "../../../f", &how, sizeof how));
    close(fd);
    CHECK_RET("openat2_in_root_absolute_symlink", sys_openat2(dfd, "abs", &how, sizeof how));
    how.resolve = RESOLVE_BENEATH | RESOLVE_IN_ROOT;
    CHECK_RET("openat2_beneath_and_in_root", sys_openat2(dfd, "f", &how, sizeof how));
    how.resolve = RESOLVE_NO_XDEV;
    CHECK_RET("openat2_no_xdev_into_proc", sys_openat2(AT_FDCWD, "/proc/self/status", &how, sizeof how));
    CHECK_RET("openat2_no_xdev_absolute", sys_openat2(AT_FDCWD, "/tmp/conf-open/o1", &how, sizeof how));
    fd = CHECK_FD("openat2_no_xdev_same_mount", sys_openat2(AT_FDCWD, "d/f", &how, sizeof how));
    close(fd);
    CHECK_RET("openat2_no_xdev_dotdot_out_of_mount", sys_openat2(AT_FDCWD, "../../etc/passwd", &how, sizeof how));
    char magic[64];
    snprintf(magic, sizeof magic, "/proc/self/fd/%d", dfd);
    how.resolve = RESOLVE_NO_MAGICLINKS;
    CHECK_RET("openat2_no_magiclinks", sys_openat2(AT_FDCWD, magic, &how, sizeof how));
    how.resolve = 0;
    fd = CHECK_FD("openat2_magiclink_allowed", sys_openat2(AT_FDCWD, magic, &how, sizeof how));
    close(fd);
    how.resolve = RESOLVE_NO_SYMLINKS;
    how.flags = O_PATH | O_NOFOLLOW;
    fd = CHECK_FD("openat2_no_symlinks_final_nofollow", sys_openat2(AT_FDCWD, "lf", &how, sizeof how));
    close(fd);
    how.flags = O_RDONLY;
    CHECK_RET("openat2_no_symlinks_final", sys_openat2(AT_FDCWD, "lf", &how, sizeof how));
    how.resolve = RESOLVE_CACHED;
    how.flags = O_RDWR | O_CREAT;
    how.mode = 0644;
    CHECK_RET("openat2_cached_creat", sys_openat2(AT_FDCWD, "o1", &how, sizeof how));
    how.flags = O_RDONLY;
    how.mode = 0;
    how.resolve = 1ULL << 40;
    CHECK_RET("openat2_unknown_resolve", sys_openat2(AT_FDCWD, "o1", &how, sizeof how));
    how.resolve = 0;
    CHECK_RET("openat2_small_size", sys_openat2(AT_FDCWD, "o1", &how, 8));
    how.mode = 0644;
    CHECK_RET("openat2_mode_without_creat", sys_openat2(AT_FDCWD, "o1", &how, sizeof how));
    close(dfd);
}

/* Repeats: one thread opens the same image file read-only again and again, with a change
 * between some of them. Each open must see the state after the change; the translator may
 * answer a repeat by reopening what it found before. */
static void repeat_open(const char *name, const char *path, int flags)
{
    char buf[64];
    errno = 0;
    int fd = open(path, flags);
    if (fd < 0) {
        checkf(name, "ret=-1 errno=%s", errname(errno));
        return;
    }
    long n = read(fd, buf, sizeof buf);
    checkf(name, "ret=fd data=%s", qstr(buf, n < 0 ? 0 : n));
    close(fd);
}

static void test_repeat(void)
{
    char orig[512], link[64], got[64];
    long n = read_file("/etc/group", orig, sizeof orig);
    if (n < 0)
        return;
    repeat_open("repeat_1", "/etc/group", O_RDONLY);
    repeat_open("repeat_2", "/etc/group", O_RDONLY);
    repeat_open("repeat_3", "/etc/group", O_RDONLY);

    int a = open("/etc/group", O_RDONLY | O_CLOEXEC), b = open("/etc/group", O_RDONLY);
    int c = open("/etc/group", O_RDONLY | O_CLOEXEC);
    checkf("repeat_cloexec", "a=%d b=%d c=%d", fcntl(a, F_GETFD), fcntl(b, F_GETFD), fcntl(c, F_GETFD));
    checkf("repeat_fd_numbers", "b=a+1:%d c=b+1:%d", b == a + 1, c == b + 1);
    checkf("repeat_offsets", "a=%ld b=%ld", (long)read(a, got, 3), (long)lseek(b, 0, SEEK_CUR));
    snprintf(link, sizeof link, "/proc/self/fd/%d", c);
    n = readlink(link, got, sizeof got - 1);
    checkf("repeat_fd_link", "%s", qstr(got, n < 0 ? 0 : n));
    checkf("repeat_flags", "%#o", fcntl(c, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK));
    close(a);
    close(b);
    close(c);
    repeat_open("repeat_nonblock_1", "/etc/group", O_RDONLY | O_NONBLOCK);
    repeat_open("repeat_nonblock_2", "/etc/group", O_RDONLY | O_NONBLOCK);

    int w = open("/etc/group", O_WRONLY | O_TRUNC);
    if (w >= 0) {
        write(w, "changed\n", 8);
        close(w);
    }
    repeat_open("repeat_after_write", "/etc/group", O_RDONLY);
    w = open("/etc/group", O_WRONLY | O_TRUNC);
    if (w >= 0) {
        write(w, orig, strlen(orig));
        close(w);
    }
    repeat_open("repeat_after_restore", "/etc/group", O_RDONLY);
    rename("/etc/group", "/etc/group.away");
    repeat_open("repeat_after_rename_away", "/etc/group", O_RDONLY);
    repeat_open("repeat_renamed", "/etc/group.away", O_RDONLY);
    rename("/etc/group.away", "/etc/group");
    repeat_open("repeat_after_rename_back", "/etc/group", O_RDONLY);

    struct stat st;
    stat("/etc/group", &st);
    /* A file in RAM (/tmp): another fd's writes are what the next open reads. */
    int r = open("ram", O_RDWR | O_CREAT | O_TRUNC, 0644);
    repeat_open("repeat_ram_1", "/tmp/conf-open/ram", O_RDONLY);
    write(r, "abc", 3);
    repeat_open("repeat_ram_after_write", "/tmp/conf-open/ram", O_RDONLY);
    repeat_open("repeat_ram_2", "/tmp/conf-open/ram", O_RDONLY);
    pwrite(r, "Z", 1, 0);
    repeat_open("repeat_ram_after_pwrite", "/tmp/conf-open/ram", O_RDONLY);
    ftruncate(r, 1);
    repeat_open("repeat_ram_after_truncate", "/tmp/conf-open/ram", O_RDONLY);
    close(r);
    unlink("ram");
    repeat_open("repeat_ram_after_unlink", "/tmp/conf-open/ram", O_RDONLY);

    /* A path that does not resolve, then does (ls -l opens a missing /etc/localtime per file). */
    repeat_open("repeat_missing_1", "/tmp/conf-open/later", O_RDONLY | O_CLOEXEC);
    repeat_open("repeat_missing_2", "/tmp/conf-open/later", O_RDONLY | O_CLOEXEC);
    repeat_open("repeat_missing_nofollow", "/tmp/conf-open/later", O_RDONLY | O_NOFOLLOW);
    write_file("later", "now");
    repeat_open("repeat_missing_after_create", "/tmp/conf-open/later", O_RDONLY | O_CLOEXEC);
    repeat_open("repeat_missing_nofollow_after_create", "/tmp/conf-open/later", O_RDONLY | O_NOFOLLOW);
    rename("later", "later2");
    repeat_open("repeat_missing_after_rename", "/tmp/conf-open/later", O_RDONLY | O_CLOEXEC);
    symlink("later2", "later");
    repeat_open("repeat_missing_after_symlink", "/tmp/conf-open/later", O_RDONLY | O_CLOEXEC);
    repeat_open("repeat_missing_nofollow_symlink", "/tmp/conf-open/later", O_RDONLY | O_NOFOLLOW);
    unlink("later");
    unlink("later2");

    chmod("/etc/group", 0600);
    IN_CHILD("repeat_creds",
             repeat_open("repeat_creds_root_1", "/etc/group", O_RDONLY);
             repeat_open("repeat_creds_root_2", "/etc/group", O_RDONLY);
             if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
                 checkf("repeat_creds_setuid", "failed errno=%s", errname(errno));
             repeat_open("repeat_creds_nobody", "/etc/group", O_RDONLY));
    chmod("/etc/group", st.st_mode & 07777);
}

int main(void)
{
    vd_begin("open");
    test_creat();
    test_open_creat_excl();
    test_trunc_append();
    test_directory_flags();
    test_modes_cloexec();
    test_tmpfile();
    test_openat();
    test_repeat();
    return vd_end();
}
