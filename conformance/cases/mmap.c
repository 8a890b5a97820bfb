// Memory mappings of files and anonymous memory: mmap, munmap, mprotect,
// msync, mremap, madvise, mincore; coherence between mappings and read/write.
// syscalls: mmap munmap mprotect msync mremap madvise mincore memfd_create
#include "verdict.h"
#include <setjmp.h>
#include <sys/mman.h>

#define PAGE 4096

static sigjmp_buf jump;
static volatile int fault_sig, armed;

static void on_fault(int sig)
{
    if (!armed) {
        printf("fatal: unexpected %s\n", sigabbrev_np(sig));
        fflush(stdout);
        _exit(3);
    }
    fault_sig = sig;
    siglongjmp(jump, 1);
}

/* Touch one byte (read, or write when value >= 0); returns the signal name or "ok". */
static const char *probe(volatile char *p, int value)
{
    fault_sig = 0;
    armed = 1;
    if (sigsetjmp(jump, 1) == 0) {
        if (value >= 0)
            *p = (char)value;
        else
            (void)*p;
        armed = 0;
        return "ok";
    }
    armed = 0;
    return sigabbrev_np(fault_sig);
}

static void *map_file(const char *path, int oflags, size_t len, int prot, int flags)
{
    int fd = open(path, oflags);
    void *m = mmap(NULL, len, prot, flags, fd, 0);
    close(fd);
    return m;
}

static const char *mres(void *m)
{
    static char buf[48];
    if (m == MAP_FAILED)
        snprintf(buf, sizeof buf, "ret=-1 errno=%s", errname(errno));
    else
        snprintf(buf, sizeof buf, "ret=addr");
    return buf;
}

static void test_file_mappings(void)
{
    char page[2 * PAGE];
    memset(page, '.', sizeof page);
    memcpy(page, "original", 8);
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, page, sizeof page);
    char *m = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    checkf("mmap_shared", "%s", mres(m));
    checkf("mmap_reads_file", "%s", qstr(m, 8));
    memcpy(m, "MAPPED!!", 8);
    char buf[16];
    long r = pread(fd, buf, 8, 0);
    checkf("shared_write_visible_to_read", "%s", qstr(buf, r));
    pwrite(fd, "written", 7, PAGE);
    checkf("write_visible_in_shared_map", "%s", qstr(m + PAGE, 7));
    CHECK_RET("msync", msync(m, 2 * PAGE, MS_SYNC));
    CHECK_RET("msync_bad_flags", msync(m, PAGE, MS_SYNC | MS_ASYNC));
    CHECK_RET("msync_unaligned", msync(m + 1, PAGE, MS_SYNC));
    CHECK_RET("munmap", munmap(m, 2 * PAGE));
    r = pread(fd, buf, 10, 0);
    checkf("file_after_munmap", "%s", qstr(buf, r));

    m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    memcpy(m, "private", 7);
    r = pread(fd, buf, 8, 0);
    checkf("private_write_not_visible", "file=%s map=%s", qstr(buf, r), qstr(m, 8));
    munmap(m, PAGE);

    m = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, PAGE);
    checkf("mmap_with_offset", "%s", qstr(m, 7));
    munmap(m, PAGE);
    errno = 0;
    checkf("mmap_unaligned_offset", "%s", mres(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 100)));
    errno = 0;
    checkf("mmap_zero_length", "%s", mres(mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0)));
    errno = 0;
    checkf("mmap_no_share_type", "%s", mres(mmap(NULL, PAGE, PROT_READ, 0, fd, 0)));
    close(fd);
    errno = 0;
    checkf("mmap_closed_fd", "%s", mres(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0)));

    errno = 0;
    m = map_file("f", O_RDONLY, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED);
    checkf("mmap_shared_write_on_rdonly_fd", "%s", mres(m));
    errno = 0;
    m = map_file("f", O_RDONLY, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
    checkf("mmap_private_write_on_rdonly_fd", "%s", mres(m));
    munmap(m, PAGE);
    errno = 0;
    m = map_file("f", O_WRONLY, PAGE, PROT_READ, MAP_SHARED);
    checkf("mmap_on_wronly_fd", "%s", mres(m));
    int p[2];
    pipe(p);
    errno = 0;
    checkf("mmap_pipe", "%s", mres(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, p[0], 0)));
    close(p[0]);
    close(p[1]);
    int d = open(".", O_RDONLY);
    errno = 0;
    checkf("mmap_directory", "%s", mres(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, d, 0)));
    close(d);

    m = map_file("f", O_RDWR, 4 * PAGE, PROT_READ, MAP_SHARED);
    checkf("touch_within_file", "%s", probe(m + PAGE, -1));
    checkf("touch_beyond_eof_sigbus", "%s", probe(m + 3 * PAGE, -1));
    checkf("write_to_readonly_map_sigsegv", "%s", probe(m, 'x'));
    truncate("f", 4 * PAGE);
    checkf("touch_after_extend", "%s", probe(m + 3 * PAGE, -1));
    CHECK_RET("mprotect_write_on_shared_rdwr", mprotect(m, PAGE, PROT_READ | PROT_WRITE));
    checkf("write_after_mprotect", "%s", probe(m, 'Q'));
    checkf("mprotect_write_reaches_file", "first=%c", file_str("f")[1]);
    munmap(m, 4 * PAGE);
    m = map_file("f", O_RDONLY, PAGE, PROT_READ, MAP_SHARED);
    CHECK_RET("mprotect_write_on_shared_rdonly", mprotect(m, PAGE, PROT_READ | PROT_WRITE));
    munmap(m, PAGE);
}

static void test_anonymous(void)
{
    char *m = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    checkf("mmap_anonymous", "%s zero=%d", mres(m), m[0] == 0 && m[4 * PAGE - 1] == 0);
    memset(m, 'a', 4 * PAGE);
    CHECK_RET("madvise_dontneed", madvise(m, PAGE, MADV_DONTNEED));
    checkf("madvise_dontneed_zeroes_private", "first=%d second_page=%c", m[0], m[PAGE]);
    CHECK_RET("madvise_bad_advice", madvise(m, PAGE, 12345));
    unsigned char vec[4];
    CHECK_RET("mincore", mincore(m, 4 * PAGE, vec));
    checkf("mincore_resident", "page1=%d", vec[1] & 1);
    CHECK_RET("mincore_unaligned", mincore(m + 1, PAGE, vec));
    CHECK_RET("mprotect_none", mprotect(m + PAGE, PAGE, PROT_NONE));
    checkf("touch_prot_none", "%s", probe(m + PAGE, -1));
    CHECK_RET("mprotect_restore", mprotect(m + PAGE, PAGE, PROT_READ | PROT_WRITE));
    checkf("touch_after_restore", "%s value=%c", probe(m + PAGE, -1), m[PAGE]);
    CHECK_RET("mprotect_unaligned", mprotect(m + 1, PAGE, PROT_READ));
    CHECK_RET("mprotect_bad_prot", mprotect(m, PAGE, 0x100));
    char *g = mremap(m, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE);
    if (g == MAP_FAILED) {
        checkf("mremap_grow", "%s", mres(g));
        return;
    }
    checkf("mremap_grow", "%s kept=%c new_zero=%d", mres(g), g[2 * PAGE], g[7 * PAGE] == 0);
    errno = 0;
    checkf("mremap_bad_flags", "%s", mres(mremap(g, PAGE, PAGE, 0x100)));
    CHECK_RET("munmap_unaligned", munmap(g + 1, PAGE));
    CHECK_RET("munmap_zero_len", munmap(g, 0));
    CHECK_RET("munmap_unmapped_ok", munmap(g, 8 * PAGE) + munmap(g, 8 * PAGE));
    errno = 0;
    checkf("mmap_anonymous_bad_fd_ignored", "%s",
           mres(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, 12345, 0)));
    errno = 0;
    checkf("mmap_fixed_unaligned", "%s",
           mres(mmap((void *)0x10001, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     -1, 0)));

    char *shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    IN_CHILD("child_shared_anon", { strcpy(shared, "from child"); });
    checkf("shared_anonymous_across_fork", "%s", qstr(shared, 10));
    char *priv = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(priv, "parent");
    IN_CHILD("child_private_anon", { strcpy(priv, "child!"); });
    checkf("private_anonymous_copy_on_write", "%s", qstr(priv, 6));
}

static void test_memfd(void)
{
    int fd = CHECK_FD("memfd_create", memfd_create("conf", MFD_CLOEXEC));
    ftruncate(fd, PAGE);
    char *a = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    strcpy(a, "two views");
    checkf("memfd_two_mappings_coherent", "%s", qstr(b, 9));
    CHECK_RET("memfd_bad_flags", memfd_create("x", 0x100));
    close(fd);
}

int main(void)
{
    vd_begin("mmap");
    struct sigaction sa = {.sa_handler = on_fault};
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    test_file_mappings();
    test_anonymous();
    test_memfd();
    return vd_end();
}
