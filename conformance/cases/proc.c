// /proc/self: exe, cwd, root, fd/, fdinfo/, status, stat, cmdline, comm,
// environ, maps, task/, and /proc/<pid> of a child; a thread renamed through its
// task/TID/comm (what pthread_setname_np does for another thread); changes procfs refuses
// (Linux mounts it read-write: each refusal is its own errno, not EROFS).
// syscalls: readlink readlinkat openat read write getdents64 prctl getpid gettid unlink rmdir
// syscalls: mkdir symlink link mknod rename chmod truncate chown utimensat
#include "verdict.h"
#include <pthread.h>
#include <sys/prctl.h>

static const char *link_of(const char *path)
{
    static char buf[2][4096];
    static int i;
    char *b = buf[i++ & 1];
    errno = 0;
    long r = readlink(path, b, 4095);
    if (r < 0)
        snprintf(b, 4096, "<%s>", errname(errno));
    else
        b[r] = 0;
    return b;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The value of "Key:\t..." in a /proc status-style file, or "<missing>". */
static const char *field(const char *path, const char *key)
{
    static char out[2][256];
    static int i;
    char *o = out[i++ & 1];
    char buf[8192];
    if (read_file(path, buf, sizeof buf) < 0) {
        snprintf(o, 256, "<%s>", errname(errno));
        return o;
    }
    size_t k = strlen(key);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, key, k) && line[k] == ':') {
            char *v = line + k + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(o, 256, "%s", v);
            return o;
        }
    }
    return "<missing>";
}

static int fd_listed(const char *listing, int fd)
{
    char want[16];
    snprintf(want, sizeof want, "%d", fd);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", listing);
    for (char *t = strtok(copy, ","); t; t = strtok(NULL, ","))
        if (!strcmp(t, want))
            return 1;
    return 0;
}

static void test_links(void)
{
    const char *exe = link_of("/proc/self/exe");
    checkf("exe_ends_with_case_name", "ok=%d", ends_with(exe, "/proc"));
    checkf("exe_is_conformance_path", "%s", exe);
    checkf("exe_same_file", "same=%d", ({
               struct stat a, b;
               stat("/proc/self/exe", &a) == 0 && stat("/conformance/proc", &b) == 0 &&
                   a.st_ino == b.st_ino;
           }));
    checkf("cwd_link", "%s", link_of("/proc/self/cwd"));
    checkf("root_link", "%s", link_of("/proc/self/root"));
    char self[64];
    snprintf(self, sizeof self, "%d", getpid());
    checkf("self_link_is_pid", "same=%d", !strcmp(link_of("/proc/self"), self));
    checkf("thread_self_link", "same=%d", ({
               char want[64];
               snprintf(want, sizeof want, "%d/task/%d", getpid(), gettid());
               !strcmp(link_of("/proc/thread-self"), want);
           }));
    struct stat st;
    lstat("/proc/self/exe", &st);
    checkf("exe_is_symlink", "mode_type=%c", mstr(st.st_mode)[0]);
    CHECK_RET("readlink_proc_missing", readlink("/proc/self/nope", self, sizeof self));
}

static void test_fds(void)
{
    write_file("a", "0123456789");
    int fa = open("a", O_RDONLY);
    int fd_dir = open(".", O_RDONLY | O_DIRECTORY);
    int p[2];
    pipe(p);
    const char *listing = list_dir("/proc/self/fd");
    checkf("fd_dir_lists_opened", "a=%d dir=%d pipe_r=%d pipe_w=%d stdout=%d",
           fd_listed(listing, fa), fd_listed(listing, fd_dir), fd_listed(listing, p[0]),
           fd_listed(listing, p[1]), fd_listed(listing, 1));
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fa);
    checkf("fd_link_file", "%s", link_of(path));
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd_dir);
    checkf("fd_link_dir", "%s", link_of(path));
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    checkf("fd_link_pipe", "prefix_ok=%d", !strncmp(link_of(path), "pipe:[", 6));
    close(p[0]);
    close(p[1]);
    listing = list_dir("/proc/self/fd");
    checkf("fd_dir_after_close", "pipe_w=%d", fd_listed(listing, p[1]));

    snprintf(path, sizeof path, "/proc/self/fd/%d", fa);
    int again = open(path, O_RDONLY);
    char buf[8];
    long r = read(again, buf, 4);
    checkf("reopen_via_proc_fd", "data=%s independent_offset=%d", qstr(buf, r),
           lseek(fa, 0, SEEK_CUR) == 0);
    close(again);

    lseek(fa, 3, SEEK_SET);
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fa);
    checkf("fdinfo_pos", "pos=%s", field(path, "pos"));
    checkf("fdinfo_flags", "flags=%s", field(path, "flags"));
    int fc = open("a", O_WRONLY | O_APPEND | O_CLOEXEC);
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fc);
    checkf("fdinfo_flags_cloexec_append", "flags=%s", field(path, "flags"));
    close(fc);
    close(fa);
    close(fd_dir);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fa);
    checkf("closed_fd_link", "%s", link_of(path));
}

static void test_status(void)
{
    char pid[32], ppid[32];
    snprintf(pid, sizeof pid, "%d", getpid());
    snprintf(ppid, sizeof ppid, "%d", getppid());
    checkf("status_pid", "equals_getpid=%d", !strcmp(field("/proc/self/status", "Pid"), pid));
    checkf("status_ppid", "equals_getppid=%d",
           !strcmp(field("/proc/self/status", "PPid"), ppid));
    checkf("status_tgid", "equals_getpid=%d", !strcmp(field("/proc/self/status", "Tgid"), pid));
    checkf("status_name", "%s", field("/proc/self/status", "Name"));
    checkf("status_uid", "%s", field("/proc/self/status", "Uid"));
    checkf("status_threads", "%s", field("/proc/self/status", "Threads"));
    checkf("status_state", "%s", field("/proc/self/status", "State"));
    umask(027);
    checkf("status_umask", "%s", field("/proc/self/status", "Umask"));
    umask(022);

    char buf[4096];
    long n = read_file("/proc/self/stat", buf, sizeof buf);
    int spid = 0;
    char comm[64] = "";
    char state = '?';
    sscanf(buf, "%d (%63[^)]) %c", &spid, comm, &state);
    checkf("stat_fields", "read=%d pid_ok=%d comm=%s state=%c", n > 0, spid == getpid(), comm,
           state);
    n = read_file("/proc/self/cmdline", buf, sizeof buf);
    checkf("cmdline", "%s", qstr(buf, n));
    checkf("comm", "%s", file_str("/proc/self/comm"));
    prctl(PR_SET_NAME, "renamed");
    checkf("comm_after_prctl", "%s", file_str("/proc/self/comm"));
    int fd = open("/proc/self/comm", O_WRONLY);
    write(fd, "written", 7);
    close(fd);
    checkf("comm_after_write", "%s", file_str("/proc/self/comm"));
    n = read_file("/proc/self/environ", buf, sizeof buf);
    int home = 0;
    for (long off = 0; off < n; off += (long)strlen(buf + off) + 1)
        home |= !strcmp(buf + off, "HOME=/root");
    checkf("environ_has_home", "ok=%d", home);
    n = read_file("/proc/self/maps", buf, sizeof buf);
    checkf("maps_mentions_exe", "ok=%d", strstr(buf, "/conformance/proc") != NULL);
    checkf("maps_has_stack", "ok=%d", strstr(buf, "[stack]") != NULL);
    char task[64];
    snprintf(task, sizeof task, "%d", gettid());
    checkf("task_lists_self", "%s", !strcmp(list_dir("/proc/self/task"), task) ? "only_self" :
                                                                                 "other");
}

/* Open a comm file for writing and write a name into it: the check says what each step gave. */
static void write_comm(const char *check, const char *path, const char *name)
{
    int fd = open(path, O_WRONLY);
    errno = 0;
    long n = fd < 0 ? -2 : write(fd, name, strlen(name));
    checkf(check, "open=%d write=%ld %s", fd >= 0, n, errname(errno));
    if (fd >= 0)
        close(fd);
}

static void test_other_process(void)
{
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        prctl(PR_SET_NAME, "conf-child");
        char x;
        read(p[0], &x, 1);
        _exit(0);
    }
    close(p[0]);
    char path[64];
    /* Wait until the child has renamed itself. */
    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof path, "/proc/%d/comm", c);
        if (!strcmp(file_str(path), "\"conf-child\\n\""))
            break;
        usleep(5000);
    }
    checkf("child_comm", "%s", file_str(path));
    /* Only a thread of the same group may rename a task through its comm file. */
    write_comm("child_comm_write_by_other", path, "stranger");
    checkf("child_comm_unchanged", "%s", file_str(path));
    snprintf(path, sizeof path, "/proc/%d/status", c);
    char me[32];
    snprintf(me, sizeof me, "%d", getpid());
    checkf("child_status_ppid", "is_parent=%d", !strcmp(field(path, "PPid"), me));
    snprintf(path, sizeof path, "/proc/%d/exe", c);
    checkf("child_exe", "%s", link_of(path));
    close(p[1]);
    waitpid(c, NULL, 0);
    snprintf(path, sizeof path, "/proc/%d/status", c);
    checkf("reaped_child_gone", "%s", file_str(path));
    checkf("proc_missing_pid", "%s", file_str("/proc/999999999/status"));
}

#define REFUSED(name, call)                                                                        \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(call);                                                                    \
        checkf(name, "ret=%ld %s", r_ < 0 ? -1L : 0L, r_ < 0 ? errname(errno) : "ok");             \
    } while (0)

static void test_refused_changes(void)
{
    REFUSED("refuse_unlink", unlink("/proc/self/status"));
    REFUSED("refuse_unlink_dir", unlink("/proc/self/fd"));
    REFUSED("refuse_unlink_missing", unlink("/proc/self/nope"));
    REFUSED("refuse_rmdir", rmdir("/proc/self/fd"));
    REFUSED("refuse_rmdir_file", rmdir("/proc/self/status"));
    REFUSED("refuse_mkdir_new", mkdir("/proc/self/newdir", 0755));
    REFUSED("refuse_mkdir_existing", mkdir("/proc/self/status", 0755));
    REFUSED("refuse_symlink", symlink("x", "/proc/self/newlink"));
    REFUSED("refuse_link", link("/proc/self/status", "/proc/self/newname"));
    REFUSED("refuse_mknod", mknod("/proc/self/newnode", S_IFREG | 0644, 0));
    REFUSED("refuse_creat", open("/proc/self/newfile", O_CREAT | O_WRONLY, 0644));
    REFUSED("refuse_creat_top", open("/proc/newfile", O_CREAT | O_WRONLY, 0644));
    REFUSED("refuse_rename_to_new", rename("/proc/self/status", "/proc/self/status2"));
    REFUSED("refuse_rename_over", rename("/proc/self/status", "/proc/self/stat"));
    REFUSED("refuse_chmod", chmod("/proc/self/status", 0600));
    REFUSED("accept_truncate", truncate("/proc/self/status", 0));
    REFUSED("accept_chown", chown("/proc/self/status", 0, 0));
    struct timespec times[2] = {{1, 0}, {1, 0}};
    REFUSED("accept_utimens", utimensat(AT_FDCWD, "/proc/self/status", times, 0));
    REFUSED("accept_utimens_now", utimensat(AT_FDCWD, "/proc/self/status", NULL, 0));
    checkf("status_still_there", "ok=%d", access("/proc/self/status", R_OK) == 0);
}

struct named {
    int ready[2], go[2];
    char name[16];
};

static void *named_thread(void *arg)
{
    struct named *w = arg;
    pid_t tid = gettid();
    char x;
    write(w->ready[1], &tid, sizeof tid);
    read(w->go[0], &x, 1);
    prctl(PR_GET_NAME, w->name);
    return NULL;
}

static void test_thread_name(void)
{
    struct named w = {0};
    pthread_t th;
    pid_t tid = 0;
    pipe(w.ready);
    pipe(w.go);
    if (pthread_create(&th, NULL, named_thread, &w) != 0) {
        checkf("thread_comm_write", "<no thread>");
        return;
    }
    read(w.ready[0], &tid, sizeof tid);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    write_comm("thread_comm_write", path, "worker");
    checkf("thread_comm_after_write", "%s", file_str(path));
    char me[64];
    snprintf(me, sizeof me, "/proc/self/task/%d/comm", getpid());
    checkf("leader_comm_unchanged", "%s", file_str(me));
    write(w.go[1], "g", 1);
    pthread_join(th, NULL);
    checkf("thread_name_after_write", "%s", w.name);
}

int main(void)
{
    vd_begin("proc");
    test_links();
    test_fds();
    test_status();
    test_other_process();
    test_thread_name();
    test_refused_changes();
    return vd_end();
}
