// File size and space: truncate, ftruncate, fallocate, lseek SEEK_DATA/SEEK_HOLE.
// syscalls: truncate ftruncate fallocate lseek
#include "verdict.h"
#include <linux/falloc.h>

#define PAGE 4096

static long sys_truncate(const char *p, off_t n) { return syscall(SYS_truncate, p, n); }

static long fsize(const char *path)
{
    struct stat st;
    return stat(path, &st) < 0 ? -1 : (long)st.st_size;
}

static long fdsize(int fd)
{
    struct stat st;
    return fstat(fd, &st) < 0 ? -1 : (long)st.st_size;
}

static void test_truncate(void)
{
    write_file("t", "0123456789");
    CHECK_RET("truncate_shrink", sys_truncate("t", 4));
    checkf("truncate_shrink_result", "size=%ld content=%s", fsize("t"), file_str("t"));
    CHECK_RET("truncate_grow", sys_truncate("t", 8));
    checkf("truncate_grow_result", "size=%ld content=%s", fsize("t"), file_str("t"));
    CHECK_RET("truncate_negative", sys_truncate("t", -1));
    CHECK_RET("truncate_missing", sys_truncate("nope", 0));
    mkdir("d", 0755);
    CHECK_RET("truncate_directory", sys_truncate("d", 0));
    symlink("t", "lt");
    CHECK_RET("truncate_follows_symlink", sys_truncate("lt", 2));
    checkf("truncate_follows_symlink_result", "size=%ld", fsize("t"));
    CHECK_RET("truncate_bad_pointer", sys_truncate(BADPTR, 0));
    CHECK_RET("truncate_huge", sys_truncate("t", 1LL << 40));
    checkf("truncate_huge_result", "size=%ld", fsize("t"));
    sys_truncate("t", 0);

    int fd = open("t", O_RDWR);
    write(fd, "abcdef", 6);
    CHECK_RET("ftruncate_shrink", ftruncate(fd, 3));
    checkf("ftruncate_offset_unchanged", "pos=%ld size=%ld", (long)lseek(fd, 0, SEEK_CUR),
           fdsize(fd));
    write(fd, "Z", 1);
    checkf("write_after_shrink_makes_hole", "content=%s", file_str("t"));
    CHECK_RET("ftruncate_negative", ftruncate(fd, -5));
    close(fd);
    fd = open("t", O_RDONLY);
    CHECK_RET("ftruncate_read_only_fd", ftruncate(fd, 0));
    close(fd);
    CHECK_RET("ftruncate_closed_fd", ftruncate(fd, 0));
    int p[2];
    pipe(p);
    CHECK_RET("ftruncate_pipe", ftruncate(p[1], 0));
    close(p[0]);
    close(p[1]);
    fd = open("t", O_RDWR | O_APPEND);
    CHECK_RET("ftruncate_append_fd", ftruncate(fd, 1));
    close(fd);
}

static void test_fallocate(void)
{
    int fd = open("fa", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK_RET("fallocate_extend", fallocate(fd, 0, 0, 3 * PAGE));
    checkf("fallocate_extend_size", "size=%ld", fdsize(fd));
    CHECK_RET("fallocate_keep_size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 8 * PAGE));
    checkf("fallocate_keep_size_size", "size=%ld", fdsize(fd));
    char buf[3 * PAGE];
    memset(buf, 'x', sizeof buf);
    pwrite(fd, buf, sizeof buf, 0);
    CHECK_RET("punch_hole", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PAGE, PAGE));
    long r = pread(fd, buf, sizeof buf, 0);
    int zeros = 1, xs = 1;
    for (int i = 0; i < PAGE; i++) {
        zeros &= buf[PAGE + i] == 0;
        xs &= buf[i] == 'x' && buf[2 * PAGE + i] == 'x';
    }
    checkf("punch_hole_result", "read=%ld hole_zero=%d rest_kept=%d size=%ld", r, zeros, xs,
           fdsize(fd));
    CHECK_RET("punch_hole_without_keep_size", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, PAGE));
    CHECK_RET("fallocate_zero_len", fallocate(fd, 0, 0, 0));
    CHECK_RET("fallocate_negative_offset", fallocate(fd, 0, -1, PAGE));
    CHECK_RET("fallocate_bad_mode", fallocate(fd, 0x4000, 0, PAGE));
    close(fd);
    fd = open("fa", O_RDONLY);
    CHECK_RET("fallocate_read_only_fd", fallocate(fd, 0, 0, PAGE));
    close(fd);
    int p[2];
    pipe(p);
    CHECK_RET("fallocate_pipe", fallocate(p[1], 0, 0, PAGE));
    close(p[0]);
    close(p[1]);
    fd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK_RET("fallocate_directory", fallocate(fd, 0, 0, PAGE));
    close(fd);
}

static void test_seek_data(void)
{
    int fd = open("sparse", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char page[PAGE];
    memset(page, 'd', sizeof page);
    pwrite(fd, page, PAGE, 0);
    pwrite(fd, page, PAGE, 16 * PAGE);
    ftruncate(fd, 32 * PAGE);
    CHECK_RET("seek_data_at_start", lseek(fd, 0, SEEK_DATA));
    CHECK_RET("seek_hole_at_start", lseek(fd, 0, SEEK_HOLE));
    CHECK_RET("seek_data_in_hole", lseek(fd, PAGE + 10, SEEK_DATA));
    CHECK_RET("seek_hole_in_second_extent", lseek(fd, 16 * PAGE + 1, SEEK_HOLE));
    CHECK_RET("seek_data_in_trailing_hole", lseek(fd, 20 * PAGE, SEEK_DATA));
    CHECK_RET("seek_hole_in_trailing_hole", lseek(fd, 20 * PAGE, SEEK_HOLE));
    CHECK_RET("seek_data_at_eof", lseek(fd, 32 * PAGE, SEEK_DATA));
    CHECK_RET("seek_hole_at_eof", lseek(fd, 32 * PAGE, SEEK_HOLE));
    CHECK_RET("seek_hole_past_eof", lseek(fd, 40 * PAGE, SEEK_HOLE));
    CHECK_RET("seek_data_negative", lseek(fd, -1, SEEK_DATA));
    close(fd);

    fd = open("dense", O_RDWR | O_CREAT | O_TRUNC, 0644);
    pwrite(fd, "abc", 3, 0);
    CHECK_RET("seek_hole_dense_file", lseek(fd, 0, SEEK_HOLE));
    CHECK_RET("seek_data_dense_file", lseek(fd, 1, SEEK_DATA));
    close(fd);
    fd = open("empty", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK_RET("seek_data_empty_file", lseek(fd, 0, SEEK_DATA));
    CHECK_RET("seek_hole_empty_file", lseek(fd, 0, SEEK_HOLE));
    close(fd);
}

int main(void)
{
    vd_begin("space");
    test_truncate();
    test_fallocate();
    test_seek_data();
    return vd_end();
}
