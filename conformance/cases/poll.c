// Readiness: poll, ppoll, select, pselect6, epoll (create/ctl/wait/pwait/pwait2)
// on pipes, regular files and directories.
// syscalls: poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
#include "verdict.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

static long sys_poll(struct pollfd *f, unsigned n, int t) { return syscall(SYS_poll, f, n, t); }

static void show_poll(const char *name, struct pollfd *f, int n, int timeout)
{
    errno = 0;
    long r = sys_poll(f, (unsigned)n, timeout);
    if (r < 0) {
        checkf(name, "ret=-1 errno=%s", errname(errno));
        return;
    }
    char out[256] = "";
    for (int i = 0; i < n; i++) {
        strcat(out, i ? " " : "");
        strcat(out, poll_events(f[i].revents));
    }
    checkf(name, "ret=%ld revents=%s", r, out);
}

static void test_poll(void)
{
    int p[2];
    pipe(p);
    struct pollfd f[2] = {{.fd = p[0], .events = POLLIN}, {.fd = p[1], .events = POLLOUT}};
    show_poll("poll_empty_pipe", f, 2, 0);
    write(p[1], "x", 1);
    show_poll("poll_pipe_with_data", f, 2, 0);
    close(p[1]);
    f[1].fd = -1;
    show_poll("poll_writer_closed", f, 2, 0);
    char c;
    read(p[0], &c, 1);
    show_poll("poll_writer_closed_drained", f, 1, 0);
    close(p[0]);
    pipe(p);
    close(p[0]);
    struct pollfd w = {.fd = p[1], .events = POLLOUT};
    show_poll("poll_reader_closed", &w, 1, 0);
    close(p[1]);

    write_file("file", "data");
    int fd = open("file", O_RDWR);
    struct pollfd rf = {.fd = fd, .events = POLLIN | POLLOUT};
    show_poll("poll_regular_file", &rf, 1, 0);
    close(fd);
    show_poll("poll_closed_fd", &rf, 1, 0);
    struct pollfd neg = {.fd = -5, .events = POLLIN};
    show_poll("poll_negative_fd_ignored", &neg, 1, 0);

    pipe(p);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd e = {.fd = p[0], .events = POLLIN};
    show_poll("poll_timeout", &e, 1, 50);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    checkf("poll_timeout_elapsed", "at_least_50ms=%d", ms >= 49);
    CHECK_RET("poll_bad_pointer", sys_poll(BADPTR, 1, 0));
    CHECK_RET("poll_too_many_fds", sys_poll(&e, 1u << 30, 0));
    struct timespec zero = {0, 0};
    errno = 0;
    long r = ppoll(&e, 1, &zero, NULL);
    checkf("ppoll_zero_timeout", "%s", rstr(r, errno));
    struct timespec bad = {0, -1};
    CHECK_RET("ppoll_bad_timeout", ppoll(&e, 1, &bad, NULL));
    write(p[1], "y", 1);
    r = ppoll(&e, 1, NULL, NULL);
    checkf("ppoll_ready", "ret=%ld revents=%s", r, poll_events(e.revents));
    close(p[0]);
    close(p[1]);
}

static void test_select(void)
{
    int p[2];
    pipe(p);
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_SET(p[0], &rd);
    FD_SET(p[1], &wr);
    struct timeval tv = {0, 0};
    long r = syscall(SYS_select, p[1] + 1, &rd, &wr, NULL, &tv);
    checkf("select_empty_pipe", "ret=%ld read=%d write=%d", r, FD_ISSET(p[0], &rd),
           FD_ISSET(p[1], &wr));
    write(p[1], "x", 1);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    tv.tv_usec = 0;
    r = syscall(SYS_select, p[0] + 1, &rd, NULL, NULL, &tv);
    checkf("select_readable", "ret=%ld read=%d", r, FD_ISSET(p[0], &rd));
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    struct timeval t50 = {0, 50000};
    read(p[0], (char[1]){0}, 1);
    r = syscall(SYS_select, p[0] + 1, &rd, NULL, NULL, &t50);
    checkf("select_timeout_updates_timeval", "ret=%ld remaining_zero=%d", r,
           t50.tv_sec == 0 && t50.tv_usec == 0);
    /* A closed fd below 64: select() clamps nfds to the fd table's size, so a high
     * number's verdict would depend on how large the table ever grew. */
    int closed = dup(p[0]);
    close(closed);
    FD_ZERO(&rd);
    FD_SET(closed, &rd);
    tv.tv_usec = 0;
    CHECK_RET("select_closed_fd", syscall(SYS_select, closed + 1, &rd, NULL, NULL, &tv));
    CHECK_RET("select_negative_nfds", syscall(SYS_select, -1, NULL, NULL, NULL, &tv));
    struct timeval badtv = {0, -1};
    CHECK_RET("select_bad_timeout", syscall(SYS_select, 0, NULL, NULL, NULL, &badtv));
    write(p[1], "z", 1);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    struct timespec ts = {0, 0};
    r = pselect(p[0] + 1, &rd, NULL, NULL, &ts, NULL);
    checkf("pselect_readable", "ret=%ld read=%d", r, FD_ISSET(p[0], &rd));
    close(p[0]);
    close(p[1]);
}

static void test_epoll(void)
{
    int ep = CHECK_FD("epoll_create", syscall(SYS_epoll_create, 1));
    close(ep);
    CHECK_RET("epoll_create_zero_size", syscall(SYS_epoll_create, 0));
    ep = CHECK_FD("epoll_create1_cloexec", epoll_create1(EPOLL_CLOEXEC));
    checkf("epoll_create1_cloexec_flag", "fd_flags=%d", fcntl(ep, F_GETFD));
    CHECK_RET("epoll_create1_bad_flags", epoll_create1(1));

    int p[2];
    pipe(p);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0xabc};
    CHECK_RET("epoll_ctl_add", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    CHECK_RET("epoll_ctl_add_twice", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    CHECK_RET("epoll_ctl_mod_unregistered", epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &e));
    CHECK_RET("epoll_ctl_del_unregistered", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], &e));
    CHECK_RET("epoll_ctl_bad_op", epoll_ctl(ep, 99, p[0], &e));
    CHECK_RET("epoll_ctl_self", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e));
    write_file("file", "x");
    int fd = open("file", O_RDONLY);
    CHECK_RET("epoll_ctl_regular_file", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
    close(fd);
    CHECK_RET("epoll_ctl_closed_fd", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
    CHECK_RET("epoll_ctl_not_epoll", epoll_ctl(p[1], EPOLL_CTL_ADD, p[0], &e));

    struct epoll_event out[4];
    CHECK_RET("epoll_wait_nothing", epoll_wait(ep, out, 4, 0));
    write(p[1], "ab", 2);
    long r = syscall(SYS_epoll_wait, ep, out, 4, 0);
    checkf("epoll_wait_ready", "ret=%ld events=%s data=%#llx", r, poll_events((int)out[0].events),
           (unsigned long long)out[0].data.u64);
    r = epoll_wait(ep, out, 4, 0);
    checkf("epoll_level_triggered_again", "ret=%ld", r);
    e.events = EPOLLIN | EPOLLET;
    CHECK_RET("epoll_ctl_mod_edge", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    r = epoll_wait(ep, out, 4, 0);
    long r2 = epoll_wait(ep, out, 4, 0);
    checkf("epoll_edge_triggered_once", "first=%ld second=%ld", r, r2);
    write(p[1], "c", 1);
    r = epoll_wait(ep, out, 4, 0);
    checkf("epoll_edge_new_data", "ret=%ld", r);
    e.events = EPOLLIN | EPOLLONESHOT;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e);
    r = epoll_wait(ep, out, 4, 0);
    r2 = epoll_wait(ep, out, 4, 0);
    checkf("epoll_oneshot", "first=%ld second=%ld", r, r2);
    CHECK_RET("epoll_ctl_del", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    CHECK_RET("epoll_wait_bad_maxevents", epoll_wait(ep, out, 0, 0));
    CHECK_RET("epoll_wait_not_epoll", epoll_wait(p[0], out, 4, 0));
    CHECK_RET("epoll_wait_bad_buffer", (epoll_ctl(ep, EPOLL_CTL_ADD, p[0],
                                                  &(struct epoll_event){.events = EPOLLIN}),
                                        epoll_wait(ep, BADPTR, 4, 0)));

    e.events = EPOLLOUT;
    e.data.u64 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &e);
    sigset_t none;
    sigemptyset(&none);
    r = epoll_pwait(ep, out, 4, 0, &none);
    checkf("epoll_pwait_two_ready", "ret=%ld", r);
    struct timespec ts = {0, 1000000};
    r = syscall(SYS_epoll_pwait2, ep, out, 4, &ts, NULL, 8);
    checkf("epoll_pwait2", "ret=%ld", r);
    close(p[1]);
    epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
    char buf[8];
    read(p[0], buf, sizeof buf);
    e.events = EPOLLIN;
    e.data.u64 = 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
    r = epoll_wait(ep, out, 4, 0);
    checkf("epoll_hup_after_writer_close", "ret=%ld events=%s", r, poll_events((int)out[0].events));
    close(p[0]);
    r = epoll_wait(ep, out, 4, 0);
    checkf("epoll_close_removes", "ret=%ld", r);
    close(ep);
}

int main(void)
{
    vd_begin("poll");
    test_poll();
    test_select();
    test_epoll();
    return vd_end();
}
