/* Hostile arguments for every translated system call.
 *
 * usage: syscall_fuzz SEED CALLS NR [NR ...]
 *
 * For each syscall number a child is forked (stdio on /dev/null, an alarm bounding it) that
 * makes CALLS calls with arguments drawn from a seeded generator: NULL, low, kernel-half and
 * unmapped pointers, a read-only page, a page with no NUL before the unmapped one, valid
 * buffers, paths good and bad (empty, relative, "..", magic links, 5000 bytes), fds good and
 * bad, AT_FDCWD, flag words of random bits, huge lengths. Whatever a call returns is fine:
 * the point is what the translator does with it. Afterwards the parent checks that the
 * sandbox still serves it (a file written, stat'ed, listed and read back) and prints
 * "alive"; per syscall it prints how its children ended ("NR exit" or "NR signal N").
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t state;

static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static char *rw;     /* 64 KiB read-write */
static char *ro;     /* a read-only page */
static char *no_nul; /* the page just before an unmapped one, no NUL in it */
static char long_path[5001];

static const char *paths[] = {
    "/tmp/fz/a", "/tmp/fz/d", "/tmp/fz/l", "/tmp/fz", "a", "d/../a", "", "..", "/",
    "/proc/self/fd/0", "/proc/self/exe", "/dev/null", "/tmp/fz/fifo", "/tmp/fz/new",
    "/nonexistent/x", "/tmp/fz/a/", "////tmp//fz/./d",
};

static long pointer(void)
{
    switch (next() % 12) {
    case 0: return 0;
    case 1: return 1;
    case 2: return (long)0xffff800000000000ULL; /* kernel half */
    case 3: return (long)0x00007ffffffff000ULL; /* top of user space, unmapped */
    case 4: return (long)ro;
    case 5: return (long)no_nul;
    case 6: return (long)(no_nul + 4096 - 3); /* a string running into the unmapped page */
    case 7: return (long)long_path;
    case 8: return (long)(rw + (next() % 60000));
    case 9: return (long)rw;
    default: return (long)paths[next() % (sizeof paths / sizeof paths[0])];
    }
}

static long argument(void)
{
    switch (next() % 10) {
    case 0: return pointer();
    case 1: return pointer();
    case 2: return (long)(next() % 8);        /* small ints, fds 0-7 */
    case 3: return -100;                      /* AT_FDCWD */
    case 4: return -1;
    case 5: return (long)(next() % 1024);     /* fds up to 1023 */
    case 6: return (long)next();              /* any bits */
    case 7: return (long)(next() & 0xffffffff);
    case 8: return 1L << (next() % 63);       /* huge lengths, single flags */
    default: return (long)(next() % 4096);
    }
}

static void setup_tree(void)
{
    mkdir("/tmp/fz", 0755);
    mkdir("/tmp/fz/d", 0755);
    int fd = open("/tmp/fz/a", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd >= 0) {
        write(fd, "hello\n", 6);
        close(fd);
    }
    symlink("a", "/tmp/fz/l");
    mkfifo("/tmp/fz/fifo", 0644);
}

static void fuzz_one(long nr, long calls)
{
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2)
        close(null);
    chdir("/tmp/fz");
    /* a few fds of every kind for the calls to find */
    open("/tmp/fz/a", O_RDONLY);
    open("/tmp/fz/d", O_RDONLY | O_DIRECTORY);
    open("/tmp/fz", O_PATH);
    int p[2];
    pipe(p);
    socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    socket(AF_UNIX, SOCK_DGRAM, 0);
    alarm(3);
    for (long i = 0; i < calls; i++) {
        long a[6];
        for (int k = 0; k < 6; k++)
            a[k] = argument();
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    _exit(0);
}

static int alive(void)
{
    char buf[64] = "";
    struct stat st;
    int fd = open("/tmp/alive", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "alive\n", 6) != 6 || close(fd) != 0)
        return 0;
    if (stat("/tmp/alive", &st) != 0 || st.st_size != 6)
        return 0;
    DIR *d = opendir("/tmp");
    int seen = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        seen |= !strcmp(e->d_name, "alive");
    if (d)
        closedir(d);
    fd = open("/tmp/alive", O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf - 1) != 6)
        return 0;
    close(fd);
    return seen && !strcmp(buf, "alive\n");
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: syscall_fuzz SEED CALLS NR [NR ...]\n");
        return 2;
    }
    state = strtoull(argv[1], NULL, 0) | 1;
    long calls = strtol(argv[2], NULL, 0);
    rw = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rw == MAP_FAILED || ro == MAP_FAILED || two == MAP_FAILED)
        return 3;
    memset(two, 'x', 4096);
    munmap(two + 4096, 4096);
    no_nul = two;
    memset(long_path, 'a', sizeof long_path - 1);
    for (int i = 0; i < 2000; i++)
        rw[i] = "/tmp/fz/a\0"[i % 10];
    setup_tree();
    for (int i = 3; i < argc; i++) {
        long nr = strtol(argv[i], NULL, 0);
        /* each child its own stream of arguments, from the seed and the syscall */
        uint64_t seed = state;
        state = seed ^ ((uint64_t)nr * 0x9e3779b97f4a7c15ULL);
        pid_t pid = fork();
        if (pid == 0)
            fuzz_one(nr, calls);
        state = seed;
        next();
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            printf("%ld lost\n", nr);
            continue;
        }
        if (WIFSIGNALED(status))
            printf("%ld signal %d\n", nr, WTERMSIG(status));
        else
            printf("%ld exit %d\n", nr, WEXITSTATUS(status));
        setup_tree(); /* what the child's calls took away */
    }
    printf("%s\n", alive() ? "alive" : "broken");
    return 0;
}
