// In-kernel copies: sendfile, copy_file_range, splice, tee, vmsplice.
// syscalls: sendfile copy_file_range splice tee vmsplice
#include "verdict.h"
#include <sys/sendfile.h>
#include <sys/uio.h>

static const char *contents(int fd)
{
    static char buf[256];
    long r = pread(fd, buf, sizeof buf, 0);
    return qstr(buf, r);
}

static void test_sendfile(void)
{
    write_file("src", "0123456789");
    int in = open("src", O_RDONLY);
    int out = open("dst", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK_RET("sendfile_file_to_file", sendfile(out, in, NULL, 4));
    checkf("sendfile_moves_in_offset", "in_pos=%ld out_pos=%ld data=%s",
           (long)lseek(in, 0, SEEK_CUR), (long)lseek(out, 0, SEEK_CUR), contents(out));
    off_t off = 6;
    CHECK_RET("sendfile_with_offset", sendfile(out, in, &off, 100));
    checkf("sendfile_with_offset_result", "off=%ld in_pos=%ld data=%s", (long)off,
           (long)lseek(in, 0, SEEK_CUR), contents(out));
    CHECK_RET("sendfile_at_eof", sendfile(out, in, &off, 10));
    int p[2];
    pipe(p);
    CHECK_RET("sendfile_file_to_pipe", sendfile(p[1], in, NULL, 3));
    char buf[16];
    long r = read(p[0], buf, sizeof buf);
    checkf("sendfile_pipe_data", "%s", qstr(buf, r));
    CHECK_RET("sendfile_source_at_eof", sendfile(p[1], out, NULL, 1));
    int ro = open("src", O_RDONLY);
    CHECK_RET("sendfile_to_rdonly", sendfile(ro, in, NULL, 1));
    CHECK_RET("sendfile_bad_fd", sendfile(out, 999, NULL, 1));
    off = -1;
    CHECK_RET("sendfile_negative_offset", sendfile(out, in, &off, 1));
    close(ro);
    close(p[0]);
    close(p[1]);
    close(in);
    close(out);
}

static void test_copy_file_range(void)
{
    int in = open("src", O_RDONLY);
    int out = open("cfr", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK_RET("copy_file_range", copy_file_range(in, NULL, out, NULL, 5, 0));
    checkf("copy_file_range_offsets", "in_pos=%ld out_pos=%ld data=%s",
           (long)lseek(in, 0, SEEK_CUR), (long)lseek(out, 0, SEEK_CUR), contents(out));
    off_t ioff = 8, ooff = 20;
    CHECK_RET("copy_file_range_explicit", copy_file_range(in, &ioff, out, &ooff, 10, 0));
    checkf("copy_file_range_explicit_result", "ioff=%ld ooff=%ld data=%s", (long)ioff,
           (long)ooff, contents(out));
    CHECK_RET("copy_file_range_bad_flags", copy_file_range(in, NULL, out, NULL, 1, 1));
    ioff = 0;
    ooff = 2;
    CHECK_RET("copy_file_range_overlap_same_file", copy_file_range(out, &ioff, out, &ooff, 4, 0));
    int p[2];
    pipe(p);
    CHECK_RET("copy_file_range_pipe", copy_file_range(in, NULL, p[1], NULL, 1, 0));
    close(p[0]);
    close(p[1]);
    int d = open(".", O_RDONLY);
    CHECK_RET("copy_file_range_directory", copy_file_range(d, NULL, out, NULL, 1, 0));
    close(d);
    CHECK_RET("copy_file_range_wrong_modes", copy_file_range(out, NULL, in, NULL, 1, 0));
    close(in);
    close(out);
}

static void test_splice(void)
{
    int in = open("src", O_RDONLY);
    int p[2], q[2];
    pipe(p);
    pipe(q);
    CHECK_RET("splice_file_to_pipe", splice(in, NULL, p[1], NULL, 6, 0));
    checkf("splice_moves_file_offset", "pos=%ld", (long)lseek(in, 0, SEEK_CUR));
    CHECK_RET("tee_pipe_to_pipe", tee(p[0], q[1], 3, 0));
    char buf[16];
    long r = read(q[0], buf, sizeof buf);
    checkf("tee_copy", "%s", qstr(buf, r));
    int out = open("spl", O_RDWR | O_CREAT | O_TRUNC, 0644);
    loff_t off = 2;
    CHECK_RET("splice_pipe_to_file_offset", splice(p[0], NULL, out, &off, 100, 0));
    checkf("splice_pipe_to_file_result", "off=%ld pos=%ld data=%s", (long)off,
           (long)lseek(out, 0, SEEK_CUR), contents(out));
    CHECK_RET("splice_no_pipe", splice(in, NULL, out, NULL, 1, 0));
    CHECK_RET("splice_offset_on_pipe", splice(p[0], &off, out, NULL, 1, 0));
    CHECK_RET("splice_empty_pipe_nonblock", splice(p[0], NULL, out, NULL, 1, SPLICE_F_NONBLOCK));
    CHECK_RET("tee_same_pipe", tee(q[0], q[1], 1, 0));
    CHECK_RET("tee_not_pipe", tee(in, q[1], 1, 0));
    CHECK_RET("splice_bad_flags", splice(in, NULL, p[1], NULL, 1, 0x100));
    struct iovec iov = {"vmsplice!", 9};
    CHECK_RET("vmsplice", vmsplice(p[1], &iov, 1, 0));
    r = read(p[0], buf, sizeof buf);
    checkf("vmsplice_data", "%s", qstr(buf, r));
    CHECK_RET("vmsplice_not_pipe", vmsplice(out, &iov, 1, 0));
    close(out);
    close(in);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

int main(void)
{
    vd_begin("copy");
    test_sendfile();
    test_copy_file_range();
    test_splice();
    return vd_end();
}
