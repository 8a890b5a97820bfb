// read/write and their positioned and vectored forms, lseek.
// syscalls: read write pread64 pwrite64 readv writev preadv pwritev preadv2 pwritev2 lseek
#include "verdict.h"
#include <sys/uio.h>

static char buf[256];

static void test_basic(void)
{
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK_RET("write_basic", write(fd, "hello world", 11));
    CHECK_RET("write_zero_len", write(fd, "", 0));
    checkf("offset_after_write", "pos=%ld", (long)lseek(fd, 0, SEEK_CUR));
    CHECK_RET("read_at_eof", read(fd, buf, sizeof buf));
    CHECK_RET("lseek_set", lseek(fd, 6, SEEK_SET));
    long r = read(fd, buf, sizeof buf);
    checkf("read_after_lseek", "ret=%ld data=%s", r, qstr(buf, r));
    CHECK_RET("lseek_cur_back", lseek(fd, -5, SEEK_CUR));
    r = read(fd, buf, 2);
    checkf("read_partial_request", "ret=%ld data=%s", r, qstr(buf, r));
    CHECK_RET("lseek_end", lseek(fd, 0, SEEK_END));
    CHECK_RET("lseek_end_negative", lseek(fd, -3, SEEK_END));
    CHECK_RET("lseek_before_start", lseek(fd, -100, SEEK_SET));
    CHECK_RET("lseek_cur_before_start", lseek(fd, -100, SEEK_END));
    CHECK_RET("lseek_bad_whence", lseek(fd, 0, 17));
    checkf("offset_unchanged_by_failed_lseek", "pos=%ld", (long)lseek(fd, 0, SEEK_CUR));
    CHECK_RET("read_zero_len", read(fd, buf, 0));
    CHECK_RET("lseek_past_eof", lseek(fd, 20, SEEK_SET));
    CHECK_RET("read_past_eof", read(fd, buf, 4));
    CHECK_RET("write_past_eof", write(fd, "end", 3));
    lseek(fd, 0, SEEK_SET);
    r = read(fd, buf, sizeof buf);
    checkf("hole_reads_zeros", "ret=%ld data=%s", r, qstr(buf, r));
    CHECK_RET("lseek_huge", lseek(fd, 1LL << 40, SEEK_SET));
    close(fd);
}

static void test_positioned(void)
{
    int fd = open("p", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, "0123456789", 10);
    lseek(fd, 2, SEEK_SET);
    long r = pread(fd, buf, 4, 5);
    checkf("pread", "ret=%ld data=%s", r, qstr(buf, r));
    checkf("pread_keeps_offset", "pos=%ld", (long)lseek(fd, 0, SEEK_CUR));
    CHECK_RET("pwrite", pwrite(fd, "AB", 2, 8));
    checkf("pwrite_keeps_offset", "pos=%ld", (long)lseek(fd, 0, SEEK_CUR));
    checkf("pwrite_content", "%s", file_str("p"));
    CHECK_RET("pwrite_extends", pwrite(fd, "Z", 1, 12));
    checkf("pwrite_extends_content", "%s", file_str("p"));
    CHECK_RET("pread_at_eof", pread(fd, buf, 4, 13));
    CHECK_RET("pread_negative_offset", pread(fd, buf, 4, -1));
    CHECK_RET("pwrite_negative_offset", pwrite(fd, "x", 1, -1));
    close(fd);
}

static void test_vectored(void)
{
    int fd = open("v", O_RDWR | O_CREAT | O_TRUNC, 0644);
    struct iovec w[3] = {{"abc", 3}, {"", 0}, {"defgh", 5}};
    CHECK_RET("writev", writev(fd, w, 3));
    checkf("writev_content", "%s", file_str("v"));
    char a[2], b[4];
    struct iovec rv[2] = {{a, sizeof a}, {b, sizeof b}};
    lseek(fd, 0, SEEK_SET);
    long r = readv(fd, rv, 2);
    checkf("readv_scatter", "ret=%ld a=%s b=%s", r, qstr(a, 2), qstr(b, 4));
    checkf("readv_offset", "pos=%ld", (long)lseek(fd, 0, SEEK_CUR));
    CHECK_RET("writev_zero_iov", writev(fd, w, 0));
    CHECK_RET("writev_negative_iovcnt", writev(fd, w, (int)OPAQUE(-1)));
    CHECK_RET("writev_too_many_iov", writev(fd, w, (int)OPAQUE(1025)));
    r = preadv(fd, rv, 2, 1);
    checkf("preadv", "ret=%ld a=%s b=%s", r, qstr(a, 2), qstr(b, 4));
    struct iovec w2[2] = {{"XY", 2}, {"Z", 1}};
    CHECK_RET("pwritev", pwritev(fd, w2, 2, 2));
    checkf("pwritev_content", "%s", file_str("v"));
    lseek(fd, 1, SEEK_SET);
    r = preadv2(fd, rv, 1, -1, 0);
    checkf("preadv2_current_offset", "ret=%ld a=%s pos=%ld", r, qstr(a, 2),
           (long)lseek(fd, 0, SEEK_CUR));
    CHECK_RET("preadv2_bad_flags", preadv2(fd, rv, 1, 0, 0x40000000));
    CHECK_RET("pwritev2_append", pwritev2(fd, w2, 1, 0, RWF_APPEND));
    checkf("pwritev2_append_content", "%s", file_str("v"));
    struct iovec bad[1] = {{BADPTR, 4}};
    CHECK_RET("readv_bad_buffer", readv(fd, bad, 1));
    CHECK_RET("writev_bad_iov_array", writev(fd, BADPTR, 1));
    close(fd);
}

static void test_errors(void)
{
    int fd = open("f", O_RDWR);
    CHECK_RET("read_bad_buffer", read(fd, BADPTR, 4));
    CHECK_RET("write_bad_buffer", write(fd, BADPTR, 4));
    close(fd);
    CHECK_RET("read_closed_fd", read(fd, buf, 4));
    CHECK_RET("write_negative_fd", write(-1, "x", 1));
    CHECK_RET("lseek_closed_fd", lseek(fd, 0, SEEK_SET));

    int p[2];
    pipe(p);
    CHECK_RET("lseek_pipe", lseek(p[0], 0, SEEK_SET));
    CHECK_RET("pread_pipe", pread(p[0], buf, 1, 0));
    CHECK_RET("pwrite_pipe", pwrite(p[1], "x", 1, 0));
    write(p[1], "abc", 3);
    long r = read(p[0], buf, sizeof buf);
    checkf("pipe_short_read", "ret=%ld data=%s", r, qstr(buf, r));
    close(p[0]);
    close(p[1]);

    int d = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_RET("lseek_directory_start", lseek(d, 0, SEEK_SET));
    CHECK_RET("write_directory", write(d, "x", 1));
    close(d);
}

int main(void)
{
    vd_begin("rw");
    test_basic();
    test_positioned();
    test_vectored();
    test_errors();
    return vd_end();
}
