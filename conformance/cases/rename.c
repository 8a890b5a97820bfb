// rename, renameat, renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE).
// syscalls: rename renameat renameat2
#include "verdict.h"
#include <linux/fs.h>

static long sys_rename(const char *a, const char *b) { return syscall(SYS_rename, a, b); }

static long sys_renameat(int da, const char *a, int db, const char *b)
{
    return syscall(SYS_renameat, da, a, db, b);
}

static long sys_renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
    return syscall(SYS_renameat2, da, a, db, b, flags);
}

static ino_t ino(const char *path)
{
    struct stat st;
    return lstat(path, &st) < 0 ? 0 : st.st_ino;
}

static void test_rename(void)
{
    write_file("a", "AAA");
    ino_t ia = ino("a");
    CHECK_RET("rename_file", sys_rename("a", "b"));
    checkf("rename_file_result", "a=%s b=%s same_ino=%d", file_str("a"), file_str("b"),
           ino("b") == ia);
    write_file("c", "CCC");
    CHECK_RET("rename_over_file", sys_rename("b", "c"));
    checkf("rename_over_file_result", "b=%s c=%s", file_str("b"), file_str("c"));
    CHECK_RET("rename_missing", sys_rename("nope", "x"));
    CHECK_RET("rename_to_missing_dir", sys_rename("c", "nodir/x"));
    mkdir("d1", 0755);
    mkdir("d2", 0755);
    mkdir("full", 0755);
    write_file("full/inner", "i");
    CHECK_RET("rename_file_over_dir", sys_rename("c", "d1"));
    CHECK_RET("rename_dir_over_file", sys_rename("d1", "c"));
    CHECK_RET("rename_dir_over_empty_dir", sys_rename("d1", "d2"));
    checkf("rename_dir_over_empty_dir_result", "%s", list_dir("."));
    mkdir("d3", 0755);
    CHECK_RET("rename_dir_over_nonempty_dir", sys_rename("d3", "full"));
    CHECK_RET("rename_dir_into_itself", sys_rename("full", "full/sub"));
    CHECK_RET("rename_dir_into_descendant", (mkdir("full/deeper", 0755),
                                             sys_rename("full", "full/deeper/x")));
    CHECK_RET("rename_dir_trailing_slash", sys_rename("d3/", "d4/"));
    CHECK_RET("rename_file_trailing_slash", sys_rename("c/", "e"));
    CHECK_RET("rename_dot", sys_rename(".", "x"));
    CHECK_RET("rename_to_dot", sys_rename("d4", "."));
    CHECK_RET("rename_dotdot", sys_rename("d4/..", "x"));
    link("c", "c_hard");
    CHECK_RET("rename_hardlinks_same_inode", sys_rename("c", "c_hard"));
    checkf("rename_hardlinks_both_kept", "c=%s c_hard=%s", file_str("c"), file_str("c_hard"));
    CHECK_RET("rename_same_name", sys_rename("c", "c"));
    symlink("c", "sl");
    CHECK_RET("rename_symlink_itself", sys_rename("sl", "sl2"));
    char buf[16];
    long r = readlink("sl2", buf, sizeof buf);
    checkf("rename_symlink_result", "target=%s target_kept=%s", qstr(buf, r), file_str("c"));
    CHECK_RET("rename_bad_pointer", sys_rename(BADPTR, "x"));
    CHECK_RET("rename_empty_source", sys_rename("", "x"));
    int fd = open("c", O_RDONLY);
    sys_rename("c", "d2/moved");
    r = read(fd, buf, sizeof buf);
    checkf("rename_open_file_still_readable", "%s", qstr(buf, r));
    close(fd);
}

static void test_renameat(void)
{
    int d2 = open("d2", O_RDONLY | O_DIRECTORY);
    int d4 = open("d4", O_RDONLY | O_DIRECTORY);
    CHECK_RET("renameat_between_dirfds", sys_renameat(d2, "moved", d4, "there"));
    checkf("renameat_between_dirfds_result", "d2=%s d4=%s", list_dir("d2"), list_dir("d4"));
    CHECK_RET("renameat_cwd_to_dirfd", sys_renameat(AT_FDCWD, "c_hard", d2, "ch"));
    CHECK_RET("renameat_bad_dirfd", sys_renameat(-7, "x", d2, "y"));
    close(d2);
    close(d4);
}

static void test_renameat2(void)
{
    write_file("p", "PPP");
    write_file("q", "QQQ");
    CHECK_RET("noreplace_existing", sys_renameat2(AT_FDCWD, "p", AT_FDCWD, "q", RENAME_NOREPLACE));
    checkf("noreplace_existing_untouched", "p=%s q=%s", file_str("p"), file_str("q"));
    CHECK_RET("noreplace_new", sys_renameat2(AT_FDCWD, "p", AT_FDCWD, "p2", RENAME_NOREPLACE));
    ino_t ip = ino("p2"), iq = ino("q");
    CHECK_RET("exchange_files", sys_renameat2(AT_FDCWD, "p2", AT_FDCWD, "q", RENAME_EXCHANGE));
    checkf("exchange_files_result", "p2=%s q=%s inodes_swapped=%d", file_str("p2"),
           file_str("q"), ino("q") == ip && ino("p2") == iq);
    mkdir("xd", 0755);
    write_file("xd/in", "in");
    CHECK_RET("exchange_file_and_dir", sys_renameat2(AT_FDCWD, "q", AT_FDCWD, "xd",
                                                      RENAME_EXCHANGE));
    checkf("exchange_file_and_dir_result", "xd=%s q=%s", file_str("xd"), list_dir("q"));
    CHECK_RET("exchange_missing_target",
              sys_renameat2(AT_FDCWD, "p2", AT_FDCWD, "absent", RENAME_EXCHANGE));
    CHECK_RET("exchange_with_noreplace", sys_renameat2(AT_FDCWD, "p2", AT_FDCWD, "q",
                                                        RENAME_EXCHANGE | RENAME_NOREPLACE));
    CHECK_RET("renameat2_bad_flags", sys_renameat2(AT_FDCWD, "p2", AT_FDCWD, "z", 0x100));
    CHECK_RET("renameat2_zero_flags", sys_renameat2(AT_FDCWD, "p2", AT_FDCWD, "p3", 0));
    CHECK_RET("exchange_into_own_child",
              sys_renameat2(AT_FDCWD, "q", AT_FDCWD, "q/in", RENAME_EXCHANGE));
    checkf("final_listing", "%s", list_dir("."));
}

int main(void)
{
    vd_begin("rename");
    test_rename();
    test_renameat();
    test_renameat2();
    return vd_end();
}
