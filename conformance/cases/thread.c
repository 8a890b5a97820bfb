// Threads: pthread_create/join (clone with CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|
// CLONE_THREAD|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID), gettid, cwd/umask/fds
// shared between threads, /proc/self and /proc/thread-self from a thread, tgkill to a
// thread, execve and exit_group from a non-main thread, a thread outliving the main thread,
// clone3 as glibc 2.34+ calls it first.
// syscalls: clone clone3 gettid getpid tgkill exit exit_group execve chdir umask openat readlink futex set_robust_list
#include "verdict.h"
#include <pthread.h>
#include <linux/sched.h>
#include <sys/prctl.h>

#define SELF "/conformance/thread"

static pid_t main_pid;

/* ---- helper mode: the program exec'd from a thread ---- */

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* This thread's name (PR_GET_NAME), or "<ERRNO>". */
static const char *my_name(void)
{
    static char n[2][17];
    static int i;
    char *b = n[i++ & 1];
    memset(b, 0, 17);
    if (prctl(PR_GET_NAME, b) != 0)
        snprintf(b, 17, "<%s>", errname(errno));
    return b;
}

static int helper(int argc, char **argv)
{
    if (!strcmp(argv[1], "name")) {
        printf("%s", my_name());
        return 0;
    }
    if (!strcmp(argv[1], "execpid") && argc > 2) {
        printf("pid_same=%d tid_is_pid=%d tasks=%d\n", getpid() == atoi(argv[2]),
               gettid() == getpid(), count_tasks());
        return 0;
    }
    return 99;
}

/* ---- 10 threads ---- */

struct slot {
    int idx;
    pid_t tid;
    int pid_same;
};

static void *worker(void *arg)
{
    struct slot *s = arg;
    s->tid = gettid();
    s->pid_same = getpid() == main_pid;
    return (void *)(long)(s->idx * s->idx);
}

static void test_create_join(void)
{
    pthread_t th[10];
    struct slot slots[10];
    int created = 0, joined = 0, pid_same = 1, tid_not_pid = 1, distinct = 1;
    long sum = 0;
    for (int i = 0; i < 10; i++) {
        slots[i] = (struct slot){.idx = i};
        if (pthread_create(&th[i], NULL, worker, &slots[i]) == 0)
            created++;
    }
    for (int i = 0; i < created; i++) {
        void *ret;
        if (pthread_join(th[i], &ret) == 0) {
            joined++;
            sum += (long)ret;
        }
    }
    for (int i = 0; i < created; i++) {
        pid_same &= slots[i].pid_same;
        tid_not_pid &= slots[i].tid != main_pid && slots[i].tid > 0;
        for (int j = 0; j < i; j++)
            distinct &= slots[i].tid != slots[j].tid;
    }
    checkf("create_join_10", "created=%d joined=%d sum=%ld", created, joined, sum);
    checkf("thread_ids", "pid_same=%d tid_not_pid=%d distinct=%d", pid_same, tid_not_pid,
           distinct);
    checkf("main_tid_is_pid", "same=%d", gettid() == getpid());
}

/* ---- CLONE_FS / CLONE_FILES ---- */

static int shared_fd = -1;
static char thread_cwd_link[256], thread_self_cwd[256], fd_link[256];

static void *fs_worker(void *arg)
{
    (void)arg;
    chdir("sub");
    umask(077);
    shared_fd = open("data", O_RDONLY);
    ssize_t n = readlink("/proc/self/cwd", thread_cwd_link, sizeof thread_cwd_link - 1);
    thread_cwd_link[n > 0 ? n : 0] = 0;
    n = readlink("/proc/thread-self/cwd", thread_self_cwd, sizeof thread_self_cwd - 1);
    thread_self_cwd[n > 0 ? n : 0] = 0;
    return NULL;
}

static void test_shared_state(void)
{
    mkdir("sub", 0755);
    write_file("sub/data", "shared-data");
    pthread_t t;
    pthread_create(&t, NULL, fs_worker, NULL);
    pthread_join(t, NULL);
    char cwd[256];
    checkf("chdir_seen_by_main", "cwd=%s", getcwd(cwd, sizeof cwd) ? cwd : "<error>");
    checkf("umask_seen_by_main", "old=%03o", (unsigned)umask(022));
    char buf[64] = {0};
    ssize_t n = shared_fd >= 0 ? pread(shared_fd, buf, sizeof buf - 1, 0) : -1;
    checkf("fd_from_thread_usable", "data=%s", qstr(buf, n));
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", shared_fd);
    n = readlink(path, fd_link, sizeof fd_link - 1);
    fd_link[n > 0 ? n : 0] = 0;
    checkf("fd_from_thread_proc_link", "target=%s", fd_link);
    checkf("proc_self_cwd_in_thread", "target=%s", thread_cwd_link);
    checkf("proc_thread_self_cwd", "target=%s", thread_self_cwd);
    close(shared_fd);
    chdir(vd_scratch);
    /* a path opened by main after the thread's chdir is relative to the new cwd */
    pthread_create(&t, NULL, fs_worker, NULL);
    pthread_join(t, NULL);
    close(shared_fd);
    CHECK_FD("main_open_relative_to_thread_cwd", open("data", O_RDONLY) >= 0 ? 3 : -1);
    chdir(vd_scratch);
    umask(022);
}

/* ---- /proc while threads live ---- */

static pthread_barrier_t bar;
static pid_t live_tid;

static void *parked(void *arg)
{
    (void)arg;
    live_tid = gettid();
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    return NULL;
}

static void test_proc_task(void)
{
    pthread_t t[3];
    pthread_barrier_init(&bar, NULL, 4);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, parked, NULL);
    pthread_barrier_wait(&bar);
    checkf("proc_task_count", "tasks=%d", count_tasks());
    char path[128], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", live_tid);
    long n = read_file(path, buf, sizeof buf);
    int tgid = -1, pid = -1;
    char *p = n > 0 ? strstr(buf, "\nTgid:") : NULL;
    if (p)
        tgid = atoi(p + 6);
    p = n > 0 ? strstr(buf, "\nPid:") : NULL;
    if (p)
        pid = atoi(p + 5);
    checkf("proc_task_status", "tgid_is_pid=%d pid_is_tid=%d", tgid == getpid(), pid == live_tid);
    snprintf(path, sizeof path, "/proc/%d", live_tid);
    struct stat st;
    CHECK_RET("proc_tid_hidden_but_reachable", stat(path, &st));
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
}

/* ---- signals and threads ---- */

static volatile pid_t handler_tid;
static volatile int handler_hits;

static void on_usr(int sig)
{
    (void)sig;
    handler_tid = gettid();
    handler_hits++;
}

static volatile int stop_waiting;

static void *sig_target(void *arg)
{
    (void)arg;
    live_tid = gettid();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    pthread_barrier_wait(&bar);
    while (!stop_waiting && handler_hits == 0)
        usleep(1000);
    return NULL;
}

static void test_signals(void)
{
    struct sigaction sa = {.sa_handler = on_usr};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);

    pthread_barrier_init(&bar, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, sig_target, NULL);
    pthread_barrier_wait(&bar);
    CHECK_RET("tgkill_thread", syscall(SYS_tgkill, getpid(), live_tid, SIGUSR1));
    pthread_join(t, NULL);
    checkf("tgkill_ran_in_target", "hits=%d in_target=%d", handler_hits, handler_tid == live_tid);
    /* pthread_join returns when the thread's tid word is cleared, a moment before the kernel
       has released the tid: until then a tgkill still finds it (also natively). Wait for that
       (bounded), then check what is left: ESRCH. */
    for (int i = 0; i < 2000 && syscall(SYS_tgkill, getpid(), live_tid, 0) == 0; i++)
        usleep(500);
    CHECK_RET("tgkill_exited_thread", syscall(SYS_tgkill, getpid(), live_tid, 0));

    /* a process-directed signal blocked in main goes to the thread that accepts it */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
    handler_hits = 0;
    handler_tid = 0;
    pthread_create(&t, NULL, sig_target, NULL);
    pthread_barrier_wait(&bar);
    kill(getpid(), SIGUSR2);
    pthread_join(t, NULL);
    checkf("process_signal_to_unblocked_thread", "hits=%d in_thread=%d", handler_hits,
           handler_tid == live_tid);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    pthread_barrier_destroy(&bar);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
}

/* ---- exec / exit_group / exit from threads ---- */

static char pidbuf[16];

static void *exec_thread(void *arg)
{
    (void)arg;
    usleep(5000);
    syscall(SYS_execve, SELF, (char *[]){"thread", "execpid", pidbuf, NULL}, (char *[]){NULL});
    printf("exec=%s\n", errname(errno));
    fflush(stdout);
    syscall(SYS_exit_group, 120);
    return NULL;
}

static void *idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void *exit_group_thread(void *arg)
{
    (void)arg;
    usleep(5000);
    syscall(SYS_exit_group, 7);
    return NULL;
}

static void *exit_thread(void *arg)
{
    (void)arg;
    syscall(SYS_exit, 3);
    return NULL;
}

/* runs after the main thread is gone: its calls must still be served */
static void *orphan_thread(void *arg)
{
    (void)arg;
    usleep(20000);
    int fd = open("sub/data", O_RDONLY);
    char buf[32] = {0};
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    int e = errno;
    struct stat st;
    long sr = fstat(fd, &st);
    char cwd[256];
    printf("open=%s data=%s fstat=%s cwd=%s\n", rstr(fd < 0 ? -1 : 0, e), qstr(buf, n),
           rstr(sr, errno), getcwd(cwd, sizeof cwd) ? "ok" : errname(errno));
    fflush(stdout);
    syscall(SYS_exit_group, 4);
    return NULL;
}

static void run_watched(void *fn)
{
    alarm(5);
    ((void (*)(void))fn)();
    _exit(111);
}

/* fork; in the child run fn (which may exec); capture stdout and status */
static void in_threaded_child(const char *name, void (*fn)(void))
{
    char buf[512];
    long total;
    int st = vd_capture(run_watched, (void *)fn, buf, sizeof buf, &total);
    checkf(name, "out=%s status=%s", qstr(buf, total), wstr(st));
}

static void child_exec_from_thread(void)
{
    snprintf(pidbuf, sizeof pidbuf, "%d", getpid());
    pthread_t t;
    pthread_create(&t, NULL, idle_thread, NULL);
    pthread_create(&t, NULL, idle_thread, NULL);
    pthread_create(&t, NULL, exec_thread, NULL);
    for (;;)
        pause();
}

static void child_exit_group_from_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, idle_thread, NULL);
    pthread_create(&t, NULL, exit_group_thread, NULL);
    for (;;)
        pause();
}

static void child_exit_one_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, exit_thread, NULL);
    int r = pthread_join(t, NULL);
    printf("join=%d tasks=%d\n", r, count_tasks());
    fflush(stdout);
    _exit(0);
}

static void child_main_thread_exits(void)
{
    pthread_t t;
    pthread_create(&t, NULL, orphan_thread, NULL);
    syscall(SYS_exit, 0);
}

static void test_lifecycle(void)
{
    in_threaded_child("execve_from_thread", child_exec_from_thread);
    in_threaded_child("exit_group_from_thread", child_exit_group_from_thread);
    in_threaded_child("exit_one_thread", child_exit_one_thread);
    in_threaded_child("main_thread_exits_first", child_main_thread_exits);
}

/* ---- clone3 ---- */

/* The vfork child runs on this frame until it exits: nothing after the call but exit. */
static __attribute__((noinline)) long clone3_vfork_exit(void)
{
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_VM | CLONE_VFORK;
    ca.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0)
        syscall(SYS_exit_group, 4);
    return r;
}

static void test_clone3(void)
{
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    fflush(stdout);
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0)
        syscall(SYS_exit_group, 3);
    int st = 0;
    if (r > 0)
        waitpid((pid_t)r, &st, 0);
    checkf("clone3_as_fork", "%s%s", r > 0 ? "ret=pid " : rstr(r, errno), r > 0 ? wstr(st) : "");

    r = clone3_vfork_exit();
    st = 0;
    if (r > 0)
        waitpid((pid_t)r, &st, 0);
    checkf("clone3_vfork", "%s exited=%d", r > 0 ? "ret=pid" : rstr(r, errno), WIFEXITED(st));

    memset(&ca, 0, sizeof ca);
    CHECK_RET("clone3_short_size", syscall(SYS_clone3, &ca, 8));
    ca.flags = CLONE_THREAD;
    CHECK_RET("clone3_thread_without_sighand", syscall(SYS_clone3, &ca, sizeof ca));
    CHECK_RET("clone_thread_without_sighand",
              syscall(SYS_clone, CLONE_THREAD, 0, 0, 0, 0));
    ca.flags = 0;
    ca.exit_signal = 0x100;
    CHECK_RET("clone3_bad_exit_signal", syscall(SYS_clone3, &ca, sizeof ca));
}

/* ---- task names: per thread, given by exec, inherited by clone and fork ---- */

static char created_name[17];

static void *name_worker(void *arg)
{
    (void)arg;
    prctl(PR_GET_NAME, created_name);
    prctl(PR_SET_NAME, "worker-named");
    return NULL;
}

/* What a child process says its name is: fork only, or fork and exec this program. */
static const char *child_name(int exec)
{
    static char b[2][64];
    static int i;
    char *out = b[i++ & 1];
    int p[2];
    memset(out, 0, 64);
    if (pipe(p) != 0)
        return "<pipe>";
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        if (exec) {
            dup2(p[1], 1);
            execl(SELF, "thread", "name", (char *)NULL);
            _exit(127);
        }
        const char *n = my_name();
        write(p[1], n, strlen(n));
        _exit(0);
    }
    close(p[1]);
    long n = read(p[0], out, 63);
    close(p[0]);
    waitpid(c, NULL, 0);
    if (n < 0)
        snprintf(out, 64, "<%s>", errname(errno));
    return out;
}

static void test_names(void)
{
    checkf("name_after_exec", "%s", my_name());
    prctl(PR_SET_NAME, "main-renamed");
    checkf("name_after_set", "%s", my_name());
    pthread_t t;
    pthread_create(&t, NULL, name_worker, NULL);
    pthread_join(t, NULL);
    checkf("thread_inherits_name", "%s", created_name);
    checkf("thread_rename_is_its_own", "%s", my_name());
    checkf("fork_inherits_name", "%s", child_name(0));
    checkf("exec_names_afresh", "%s", child_name(1));
    prctl(PR_SET_NAME, "a-name-longer-than-fifteen");
    checkf("name_truncated", "%s", my_name());
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return helper(argc, argv);
    alarm(20);
    vd_begin("thread");
    main_pid = getpid();
    test_create_join();
    test_shared_state();
    test_proc_task();
    test_signals();
    test_lifecycle();
    test_clone3();
    test_names();
    return vd_end();
}
