// File descriptor table: dup, dup2, dup3, fcntl (F_DUPFD*, F_GETFD/SETFD,
// F_GETFL/SETFL), close, close_range.
// syscalls: dup dup2 dup3 fcntl close close_range
#include "verdict.h"
#include <linux/close_range.h>

static long sys_dup2(int a, int b) { return syscall(SYS_dup2, a, b); }

static long sys_close_range(unsigned a, unsigned b, unsigned flags)
{
    return syscall(SYS_close_range, a, b, flags);
}

static int is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static void test_dup(void)
{
    write_file("f", "0123456789");
    int fd = open("f", O_RDONLY);
    int d = (int)dup(fd);
    checkf("dup", "ok=%d is_next_fd=%d", d >= 0, d == fd + 1);
    char c;
    read(fd, &c, 1);
    read(d, &c, 1);
    checkf("dup_shares_offset", "pos=%ld byte=%c", (long)lseek(fd, 0, SEEK_CUR), c);
    close(fd);
    checkf("dup_survives_close_of_original", "pos=%ld", (long)lseek(d, 0, SEEK_CUR));
    int e = (int)dup(d);
    checkf("dup_reuses_lowest_fd", "same_as_closed=%d", e == fd);
    close(e);
    CHECK_RET("dup_closed_fd", dup(fd));
    CHECK_RET("dup_negative_fd", dup(-1));

    int target = 50;
    CHECK_RET("dup2_to_chosen_fd", sys_dup2(d, target));
    checkf("dup2_shares_offset", "pos=%ld", (long)lseek(target, 0, SEEK_CUR));
    int other = open("f", O_RDONLY);
    CHECK_RET("dup2_replaces_open_fd", sys_dup2(other, target));
    checkf("dup2_replaced_offset", "pos=%ld", (long)lseek(target, 0, SEEK_CUR));
    CHECK_RET("dup2_same_fd", sys_dup2(target, target));
    CHECK_RET("dup2_same_closed_fd", sys_dup2(77, 77));
    CHECK_RET("dup2_closed_source", sys_dup2(77, 51));
    checkf("dup2_closed_source_keeps_target", "target_open=%d", is_open(51));
    CHECK_RET("dup2_negative_target", sys_dup2(d, -1));
    CHECK_RET("dup2_target_beyond_limit", sys_dup2(d, 1 << 30));
    fcntl(other, F_SETFD, FD_CLOEXEC);
    sys_dup2(other, 52);
    checkf("dup2_clears_cloexec", "fd_flags=%d", fcntl(52, F_GETFD));

    CHECK_RET("dup3_cloexec", dup3(d, 53, O_CLOEXEC));
    checkf("dup3_cloexec_flag", "fd_flags=%d", fcntl(53, F_GETFD));
    CHECK_RET("dup3_same_fd", dup3(d, d, 0));
    CHECK_RET("dup3_bad_flags", dup3(d, 54, O_NONBLOCK));
    CHECK_RET("dup3_closed_source", dup3(77, 54, 0));
    close(50);
    close(52);
    close(53);
    close(other);
    close(d);
}

static void test_fcntl(void)
{
    int fd = open("f", O_RDONLY);
    CHECK_RET("f_dupfd_min", fcntl(fd, F_DUPFD, 60));
    CHECK_RET("f_dupfd_min_taken", fcntl(fd, F_DUPFD, 60));
    checkf("f_dupfd_no_cloexec", "fd_flags=%d", fcntl(60, F_GETFD));
    CHECK_RET("f_dupfd_cloexec", fcntl(fd, F_DUPFD_CLOEXEC, 70));
    checkf("f_dupfd_cloexec_flag", "fd_flags=%d", fcntl(70, F_GETFD));
    CHECK_RET("f_dupfd_negative_min", fcntl(fd, F_DUPFD, -1));
    CHECK_RET("f_dupfd_min_beyond_limit", fcntl(fd, F_DUPFD, 1 << 30));
    CHECK_RET("f_setfd", fcntl(fd, F_SETFD, FD_CLOEXEC));
    CHECK_RET("f_getfd", fcntl(fd, F_GETFD));
    checkf("f_setfd_not_shared_with_dup", "dup_flags=%d", fcntl(60, F_GETFD));
    close(60);
    close(70);
    close(fd);

    fd = open("f", O_RDWR | O_APPEND);
    int fl = fcntl(fd, F_GETFL);
    checkf("f_getfl", "accmode=%d append=%d nonblock=%d cloexec_not_in_fl=%d",
           fl & O_ACCMODE, !!(fl & O_APPEND), !!(fl & O_NONBLOCK), !(fl & O_CLOEXEC));
    CHECK_RET("f_setfl_nonblock", fcntl(fd, F_SETFL, O_NONBLOCK));
    fl = fcntl(fd, F_GETFL);
    checkf("f_setfl_result", "accmode=%d append=%d nonblock=%d", fl & O_ACCMODE,
           !!(fl & O_APPEND), !!(fl & O_NONBLOCK));
    CHECK_RET("f_setfl_ignores_accmode", fcntl(fd, F_SETFL, O_RDONLY | O_APPEND));
    fl = fcntl(fd, F_GETFL);
    checkf("f_setfl_ignores_accmode_result", "accmode=%d append=%d", fl & O_ACCMODE,
           !!(fl & O_APPEND));
    int d = dup(fd);
    fcntl(fd, F_SETFL, 0);
    checkf("f_setfl_shared_with_dup", "dup_append=%d", !!(fcntl(d, F_GETFL) & O_APPEND));
    close(d);
    CHECK_RET("fcntl_bad_cmd", fcntl(fd, 9999));
    close(fd);
    CHECK_RET("fcntl_closed_fd", fcntl(fd, F_GETFD));
    fd = open("f", O_PATH);
    CHECK_RET("fcntl_getfd_o_path", fcntl(fd, F_GETFD));
    checkf("f_getfl_o_path", "path=%d", !!(fcntl(fd, F_GETFL) & O_PATH));
    close(fd);
}

static void test_close(void)
{
    int fd = open("f", O_RDONLY);
    CHECK_RET("close", close(fd));
    CHECK_RET("close_twice", close(fd));
    CHECK_RET("close_negative", close(-1));
    for (int i = 80; i < 90; i++)
        sys_dup2(0, i);
    CHECK_RET("close_range", sys_close_range(80, 84, 0));
    checkf("close_range_result", "80=%d 84=%d 85=%d", is_open(80), is_open(84), is_open(85));
    CHECK_RET("close_range_cloexec", sys_close_range(85, 86, CLOSE_RANGE_CLOEXEC));
    checkf("close_range_cloexec_result", "85_open=%d 85_flags=%d", is_open(85),
           fcntl(85, F_GETFD));
    CHECK_RET("close_range_reversed", sys_close_range(90, 80, 0));
    CHECK_RET("close_range_bad_flags", sys_close_range(80, 90, 0x1));
    CHECK_RET("close_range_to_max", sys_close_range(85, ~0U, 0));
    checkf("close_range_to_max_result", "89=%d", is_open(89));
}

int main(void)
{
    vd_begin("fd");
    test_dup();
    test_fcntl();
    test_close();
    return vd_end();
}
