// Pipes and FIFOs: pipe, pipe2 flags, EOF/EPIPE/EAGAIN, pipe size, FIONREAD,
// named FIFOs created with mknod/mknodat.
// syscalls: pipe pipe2 mknod mknodat ioctl fcntl
#include "verdict.h"
#include <sys/ioctl.h>

static long sys_pipe(int p[2]) { return syscall(SYS_pipe, p); }
static long sys_mknod(const char *path, mode_t m, dev_t d) { return syscall(SYS_mknod, path, m, d); }

static void test_pipe(void)
{
    int p[2];
    CHECK_RET("pipe", sys_pipe(p));
    checkf("pipe_flags", "rd_accmode=%d wr_accmode=%d cloexec=%d",
           fcntl(p[0], F_GETFL) & O_ACCMODE, fcntl(p[1], F_GETFL) & O_ACCMODE,
           fcntl(p[0], F_GETFD));
    CHECK_RET("pipe_write", write(p[1], "hello", 5));
    int avail = -1;
    ioctl(p[0], FIONREAD, &avail);
    checkf("fionread", "bytes=%d", avail);
    char buf[16];
    long r = read(p[0], buf, 3);
    checkf("pipe_read_partial", "ret=%ld data=%s", r, qstr(buf, r));
    r = read(p[0], buf, sizeof buf);
    checkf("pipe_read_rest", "ret=%ld data=%s", r, qstr(buf, r));
    CHECK_RET("write_to_read_end", write(p[0], "x", 1));
    CHECK_RET("read_from_write_end", read(p[1], buf, 1));
    close(p[1]);
    CHECK_RET("read_eof_after_writer_closed", read(p[0], buf, sizeof buf));
    close(p[0]);

    sys_pipe(p);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    CHECK_RET("write_no_reader_epipe", write(p[1], "x", 1));
    signal(SIGPIPE, SIG_DFL);
    close(p[1]);

    sys_pipe(p);
    close(p[0]);
    IN_CHILD("sigpipe_ignored_child", {
        signal(SIGPIPE, SIG_IGN);
        CHECK_RET("sigpipe_ignored_in_child", write(p[1], "x", 1));
    });
    int st = 0;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        write(p[1], "x", 1);
        _exit(0);
    }
    waitpid(c, &st, 0);
    checkf("write_no_reader_kills_with_sigpipe", "%s", wstr(st));
    close(p[1]);
    CHECK_RET("pipe_bad_pointer", sys_pipe(BADPTR));
}

static void test_pipe2(void)
{
    int p[2];
    CHECK_RET("pipe2_cloexec", pipe2(p, O_CLOEXEC));
    checkf("pipe2_cloexec_flags", "rd=%d wr=%d", fcntl(p[0], F_GETFD), fcntl(p[1], F_GETFD));
    close(p[0]);
    close(p[1]);
    CHECK_RET("pipe2_nonblock", pipe2(p, O_NONBLOCK));
    checkf("pipe2_nonblock_flags", "rd=%d wr=%d", !!(fcntl(p[0], F_GETFL) & O_NONBLOCK),
           !!(fcntl(p[1], F_GETFL) & O_NONBLOCK));
    char buf[4];
    CHECK_RET("read_empty_nonblock", read(p[0], buf, sizeof buf));
    long size = fcntl(p[1], F_GETPIPE_SZ);
    checkf("default_pipe_size", "size=%ld", size);
    static char big[1 << 16];
    long total = 0, r;
    while ((r = write(p[1], big, sizeof big)) > 0)
        total += r;
    checkf("fill_pipe_nonblock", "total=%ld errno=%s", total, errname(errno));
    CHECK_RET("set_pipe_size", fcntl(p[1], F_SETPIPE_SZ, 4096 * 4));
    CHECK_RET("set_pipe_size_below_content", fcntl(p[1], F_SETPIPE_SZ, 4096));
    close(p[0]);
    close(p[1]);
    pipe2(p, 0);
    CHECK_RET("set_pipe_size_small", fcntl(p[1], F_SETPIPE_SZ, 1));
    checkf("set_pipe_size_small_rounded", "size=%ld", (long)fcntl(p[1], F_GETPIPE_SZ));
    close(p[0]);
    close(p[1]);
    CHECK_RET("pipe2_bad_flags", pipe2(p, O_RDWR | 0x4));
    CHECK_RET("pipe2_direct", pipe2(p, O_DIRECT));
    write(p[1], "ab", 2);
    write(p[1], "cd", 2);
    r = read(p[0], buf, sizeof buf);
    checkf("packet_mode_preserves_writes", "ret=%ld data=%s", r, qstr(buf, r));
    close(p[0]);
    close(p[1]);
    int fd = open(".", O_RDONLY);
    CHECK_RET("f_getpipe_sz_on_dir", fcntl(fd, F_GETPIPE_SZ));
    close(fd);
}

static void test_fifo(void)
{
    CHECK_RET("mknod_fifo", sys_mknod("fifo", S_IFIFO | 0640, 0));
    struct stat st;
    lstat("fifo", &st);
    checkf("mknod_fifo_stat", "mode=%s size=%lld", mstr(st.st_mode), (long long)st.st_size);
    CHECK_RET("mknod_existing", sys_mknod("fifo", S_IFIFO | 0640, 0));
    CHECK_RET("mknodat_fifo", mknodat(AT_FDCWD, "fifo2", S_IFIFO | 0600, 0));
    CHECK_RET("mknod_regular", sys_mknod("regular", S_IFREG | 0600, 0));
    lstat("regular", &st);
    checkf("mknod_regular_stat", "mode=%s", mstr(st.st_mode));
    CHECK_RET("mknod_bad_type", sys_mknod("bad", 0170000 | 0600, 0));
    CHECK_RET("mknod_directory_type", sys_mknod("dir", S_IFDIR | 0755, 0));
    CHECK_RET("open_fifo_wronly_nonblock_no_reader",
              open("fifo", O_WRONLY | O_NONBLOCK));
    int rd = CHECK_FD("open_fifo_rdonly_nonblock", open("fifo", O_RDONLY | O_NONBLOCK));
    int wr = CHECK_FD("open_fifo_wronly_with_reader", open("fifo", O_WRONLY | O_NONBLOCK));
    write(wr, "via fifo", 8);
    char buf[16];
    long r = read(rd, buf, sizeof buf);
    checkf("fifo_transfer", "ret=%ld data=%s", r, qstr(buf, r));
    close(wr);
    CHECK_RET("fifo_eof", read(rd, buf, sizeof buf));
    close(rd);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int w = open("fifo", O_WRONLY);
        write(w, "blocking open", 13);
        _exit(0);
    }
    rd = open("fifo", O_RDONLY);
    r = read(rd, buf, sizeof buf);
    int status;
    waitpid(c, &status, 0);
    checkf("fifo_blocking_open_rendezvous", "ret=%ld data=%s child=%s", r, qstr(buf, r),
           wstr(status));
    close(rd);
    rd = CHECK_FD("open_fifo_rdwr", open("fifo", O_RDWR | O_NONBLOCK));
    close(rd);
}

int main(void)
{
    vd_begin("pipe");
    test_pipe();
    test_pipe2();
    test_fifo();
    return vd_end();
}
