// File locks: fcntl F_SETLK/F_SETLKW/F_GETLK, OFD locks, flock.
// Conflicts are probed from forked children.
// syscalls: fcntl flock
#include "verdict.h"
#include <sys/file.h>
#include <time.h>

static long setlk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* F_GETLK (or F_OFD_GETLK) for [start, start+len): "type=... start=.. len=.. pid=..". */
static void show_getlk(const char *name, int fd, int cmd, short type, off_t start, off_t len,
                       pid_t owner)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    errno = 0;
    if (fcntl(fd, cmd, &fl) < 0) {
        checkf(name, "ret=-1 errno=%s", errname(errno));
        return;
    }
    const char *t = fl.l_type == F_UNLCK ? "unlck" : fl.l_type == F_RDLCK ? "rdlck" : "wrlck";
    if (fl.l_type == F_UNLCK)
        checkf(name, "type=%s", t);
    else
        checkf(name, "type=%s start=%ld len=%ld pid=%s", t, (long)fl.l_start, (long)fl.l_len,
               fl.l_pid == owner ? "owner" : fl.l_pid == -1 ? "-1" : "other");
}

static void test_posix_locks(void)
{
    write_file("f", "0123456789abcdefghijklmnopqrstuvwxyz");
    int fd = open("f", O_RDWR);
    pid_t me = getpid();
    CHECK_RET("setlk_write_range", setlk(fd, F_SETLK, F_WRLCK, 0, 10));
    show_getlk("getlk_own_lock_invisible", fd, F_GETLK, F_WRLCK, 0, 10, me);
    IN_CHILD("child_conflicts", {
        int cfd = open("f", O_RDWR);
        CHECK_RET("child_setlk_conflict", setlk(cfd, F_SETLK, F_WRLCK, 5, 1));
        CHECK_RET("child_setlk_read_conflict", setlk(cfd, F_SETLK, F_RDLCK, 0, 1));
        show_getlk("child_getlk_sees_parent", cfd, F_GETLK, F_RDLCK, 0, 100, me);
        CHECK_RET("child_setlk_disjoint", setlk(cfd, F_SETLK, F_WRLCK, 20, 10));
        show_getlk("child_getlk_beyond", cfd, F_GETLK, F_WRLCK, 10, 10, me);
    });
    CHECK_RET("unlock_range", setlk(fd, F_SETLK, F_UNLCK, 0, 10));
    CHECK_RET("setlk_read_shared", setlk(fd, F_SETLK, F_RDLCK, 0, 0));
    IN_CHILD("child_shared", {
        int cfd = open("f", O_RDWR);
        CHECK_RET("child_read_lock_shared", setlk(cfd, F_SETLK, F_RDLCK, 0, 5));
        CHECK_RET("child_write_lock_blocked_by_reader", setlk(cfd, F_SETLK, F_WRLCK, 0, 5));
        show_getlk("child_getlk_whole_file_reader", cfd, F_GETLK, F_WRLCK, 0, 0, me);
    });
    CHECK_RET("upgrade_to_write", setlk(fd, F_SETLK, F_WRLCK, 0, 0));
    int other = open("f", O_RDONLY);
    close(other);
    IN_CHILD("child_after_close", {
        int cfd = open("f", O_RDWR);
        CHECK_RET("close_of_any_fd_releases_locks", setlk(cfd, F_SETLK, F_WRLCK, 0, 0));
    });

    setlk(fd, F_SETLK, F_WRLCK, 0, 1);
    int ready[2];
    pipe(ready);
    fflush(stdout);
    pid_t waiter = fork();
    if (waiter == 0) {
        int cfd = open("f", O_RDWR);
        alarm(10);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        write(ready[1], "r", 1);
        long r = setlk(cfd, F_SETLKW, F_WRLCK, 0, 1);
        int e = errno;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        checkf("setlkw_waits_for_release", "%s waited=%d", rstr(r, e), ms >= 50);
        fflush(stdout);
        _exit(0);
    }
    char c;
    read(ready[0], &c, 1);
    close(ready[0]);
    close(ready[1]);
    nanosleep(&(struct timespec){0, 150000000}, NULL);
    setlk(fd, F_SETLK, F_UNLCK, 0, 1);
    int st;
    waitpid(waiter, &st, 0);
    if (!WIFEXITED(st))
        checkf("setlkw_child", "%s", wstr(st));
    close(fd);

    fd = open("f", O_RDONLY);
    CHECK_RET("write_lock_on_read_only_fd", setlk(fd, F_SETLK, F_WRLCK, 0, 1));
    CHECK_RET("bad_lock_type", setlk(fd, F_SETLK, 7, 0, 1));
    CHECK_RET("negative_start", setlk(fd, F_SETLK, F_RDLCK, -5, 1));
    CHECK_RET("negative_len_locks_before", setlk(fd, F_SETLK, F_RDLCK, 10, -5));
    CHECK_RET("setlk_bad_pointer", fcntl(fd, F_SETLK, BADPTR));
    close(fd);
    CHECK_RET("setlk_closed_fd", setlk(fd, F_SETLK, F_RDLCK, 0, 1));

    IN_CHILD("child_exit_releases", {
        int cfd = open("f", O_RDWR);
        setlk(cfd, F_SETLK, F_WRLCK, 0, 0);
    });
    fd = open("f", O_RDWR);
    CHECK_RET("exit_releases_locks", setlk(fd, F_SETLK, F_WRLCK, 0, 0));
    close(fd);
}

static void test_ofd_locks(void)
{
    int a = open("f", O_RDWR);
    int b = open("f", O_RDWR);
    CHECK_RET("ofd_setlk", setlk(a, F_OFD_SETLK, F_WRLCK, 0, 10));
    CHECK_RET("ofd_conflict_same_process", setlk(b, F_OFD_SETLK, F_WRLCK, 5, 1));
    show_getlk("ofd_getlk", b, F_OFD_GETLK, F_WRLCK, 0, 0, getpid());
    int a2 = dup(a);
    CHECK_RET("ofd_dup_shares_lock", setlk(a2, F_OFD_SETLK, F_WRLCK, 0, 10));
    close(a2);
    CHECK_RET("ofd_survives_close_of_dup", setlk(b, F_OFD_SETLK, F_WRLCK, 0, 1));
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1,
                       .l_pid = 1};
    CHECK_RET("ofd_nonzero_pid", fcntl(b, F_OFD_SETLK, &fl));
    close(a);
    CHECK_RET("ofd_released_on_last_close", setlk(b, F_OFD_SETLK, F_WRLCK, 0, 10));
    close(b);
}

static void test_flock(void)
{
    int a = open("f", O_RDONLY);
    int b = open("f", O_RDONLY);
    CHECK_RET("flock_ex", flock(a, LOCK_EX));
    CHECK_RET("flock_ex_other_ofd_nb", flock(b, LOCK_EX | LOCK_NB));
    CHECK_RET("flock_sh_other_ofd_nb", flock(b, LOCK_SH | LOCK_NB));
    int a2 = dup(a);
    CHECK_RET("flock_dup_same_ofd", flock(a2, LOCK_EX | LOCK_NB));
    IN_CHILD("child_flock", {
        CHECK_RET("child_flock_inherited_ofd", flock(a, LOCK_EX | LOCK_NB));
        int c = open("f", O_RDONLY);
        CHECK_RET("child_flock_new_ofd", flock(c, LOCK_SH | LOCK_NB));
        CHECK_RET("child_fcntl_lock_independent", setlk(open("f", O_RDWR), F_SETLK, F_WRLCK, 0, 0));
    });
    CHECK_RET("flock_unlock", flock(a, LOCK_UN));
    CHECK_RET("flock_after_unlock", flock(b, LOCK_SH | LOCK_NB));
    CHECK_RET("flock_second_shared", flock(a, LOCK_SH | LOCK_NB));
    CHECK_RET("flock_convert_blocked", flock(a, LOCK_EX | LOCK_NB));
    CHECK_RET("flock_bad_op", flock(a, 0));
    CHECK_RET("flock_bad_op_bits", flock(a, LOCK_SH | LOCK_EX));
    close(a);
    close(a2);
    close(b);
    CHECK_RET("flock_closed_fd", flock(b, LOCK_SH));
}

int main(void)
{
    vd_begin("lock");
    test_posix_locks();
    test_ofd_locks();
    test_flock();
    return vd_end();
}
