// Directory reading: getdents64/getdents, lseek on directories,
// readdir/telldir/seekdir/rewinddir.  Order-agnostic: names are sorted.
// syscalls: getdents64 getdents lseek mknodat
#include "verdict.h"

#define NFILES 150

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static long sys_getdents64(int fd, void *buf, size_t n)
{
    return syscall(SYS_getdents64, fd, buf, n);
}

static const char *tname(unsigned t)
{
    switch (t) {
    case DT_REG: return "reg";
    case DT_DIR: return "dir";
    case DT_LNK: return "lnk";
    case DT_FIFO: return "fifo";
    case DT_SOCK: return "sock";
    case DT_CHR: return "chr";
    case DT_UNKNOWN: return "unknown";
    default: return "other";
    }
}

struct listing {
    int count;
    int has_dot, has_dotdot;
    uint32_t hash; /* FNV-1a over sorted names */
    char *names[NFILES + 16];
    long last_ret; /* the final getdents64 return (0 at end, or -1) */
    int err;
};

static void hash_sorted(struct listing *l)
{
    qsort(l->names, (size_t)l->count, sizeof l->names[0], vd_cmp);
    l->hash = 2166136261u;
    for (int i = 0; i < l->count; i++) {
        for (const char *c = l->names[i]; *c; c++)
            l->hash = (l->hash ^ (unsigned char)*c) * 16777619u;
        l->hash = (l->hash ^ '/') * 16777619u;
    }
}

/* Read a directory fd to the end with getdents64 using bufsize-byte calls. */
static void read_all(int fd, size_t bufsize, struct listing *l)
{
    char buf[65536];
    memset(l, 0, sizeof *l);
    for (;;) {
        errno = 0;
        long n = sys_getdents64(fd, buf, bufsize);
        l->last_ret = n;
        l->err = errno;
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (void *)(buf + off);
            if (!strcmp(d->d_name, "."))
                l->has_dot = 1;
            else if (!strcmp(d->d_name, ".."))
                l->has_dotdot = 1;
            else if (l->count < NFILES + 16)
                l->names[l->count++] = strdup(d->d_name);
            off += d->d_reclen;
        }
    }
    hash_sorted(l);
}

static void free_listing(struct listing *l)
{
    for (int i = 0; i < l->count; i++)
        free(l->names[i]);
}

static void show_listing(const char *name, struct listing *l)
{
    checkf(name, "count=%d dot=%d dotdot=%d hash=%08x end=%s", l->count, l->has_dot,
           l->has_dotdot, l->hash, rstr(l->last_ret, l->err));
}

static void setup(void)
{
    char name[32];
    mkdir("big", 0755);
    for (int i = 0; i < NFILES; i++) {
        snprintf(name, sizeof name, "big/entry-%03d-%s", i, i % 2 ? "odd" : "even");
        write_file(name, "");
    }
    mkdir("small", 0755);
    write_file("small/file", "x");
    mkdir("small/dir", 0755);
    symlink("file", "small/link");
    mknodat(AT_FDCWD, "small/fifo", S_IFIFO | 0644, 0);
    mkdir("empty", 0755);
}

static void test_getdents(void)
{
    struct listing l;
    int fd = open("big", O_RDONLY | O_DIRECTORY);
    read_all(fd, sizeof(char[32768]), &l);
    show_listing("getdents64_big_dir", &l);
    free_listing(&l);
    CHECK_RET("getdents64_at_end", sys_getdents64(fd, (char[1024]){0}, 1024));
    CHECK_RET("lseek_dir_rewind", lseek(fd, 0, SEEK_SET));
    read_all(fd, 200, &l);
    show_listing("getdents64_small_buffer_calls", &l);
    checkf("small_buffer_first_last", "first=%s last=%s", l.names[0], l.names[l.count - 1]);
    free_listing(&l);
    CHECK_RET("getdents64_buffer_too_small", (lseek(fd, 0, SEEK_SET),
                                              sys_getdents64(fd, (char[16]){0}, 16)));
    CHECK_RET("getdents64_bad_buffer", sys_getdents64(fd, BADPTR, 4096));
    close(fd);

    fd = open("small", O_RDONLY | O_DIRECTORY);
    char buf[4096];
    long n = sys_getdents64(fd, buf, sizeof buf);
    char types[256] = "";
    char *names[16];
    int cnt = 0;
    for (long off = 0; off < n && cnt < 16;) {
        struct linux_dirent64 *d = (void *)(buf + off);
        char *e = malloc(64);
        snprintf(e, 64, "%s:%s", d->d_name, tname(d->d_type));
        names[cnt++] = e;
        off += d->d_reclen;
    }
    qsort(names, (size_t)cnt, sizeof names[0], vd_cmp);
    for (int i = 0; i < cnt; i++) {
        strcat(types, i ? "," : "");
        strcat(types, names[i]);
        free(names[i]);
    }
    checkf("getdents64_d_type", "%s", types);
    close(fd);

    fd = open("empty", O_RDONLY | O_DIRECTORY);
    read_all(fd, 4096, &l);
    show_listing("getdents64_empty_dir", &l);
    close(fd);

    fd = open("small/file", O_RDONLY);
    CHECK_RET("getdents64_on_file", sys_getdents64(fd, buf, sizeof buf));
    close(fd);
    CHECK_RET("getdents64_closed_fd", sys_getdents64(fd, buf, sizeof buf));
    fd = open("small", O_PATH);
    CHECK_RET("getdents64_o_path_fd", sys_getdents64(fd, buf, sizeof buf));
    close(fd);

    fd = open("big", O_RDONLY | O_DIRECTORY);
    n = syscall(SYS_getdents, fd, buf, sizeof buf);
    checkf("getdents_legacy", "returned_entries=%d", n > 0);
    close(fd);

    mkdir("gone", 0755);
    fd = open("gone", O_RDONLY | O_DIRECTORY);
    rmdir("gone");
    CHECK_RET("getdents64_removed_dir", sys_getdents64(fd, buf, sizeof buf));
    close(fd);
}

static void test_telldir(void)
{
    DIR *d = opendir("big");
    struct dirent *de;
    for (int i = 0; i < 40; i++)
        readdir(d);
    long pos = telldir(d);
    de = readdir(d);
    char at[256];
    snprintf(at, sizeof at, "%s", de ? de->d_name : "<none>");
    for (int i = 0; i < 70; i++)
        readdir(d);
    seekdir(d, pos);
    de = readdir(d);
    checkf("seekdir_returns_to_entry", "same_entry=%d", de && !strcmp(de->d_name, at));

    rewinddir(d);
    int count = 0;
    while ((de = readdir(d)))
        count++;
    checkf("rewinddir_full_count", "count=%d", count);
    write_file("big/late-arrival", "");
    rewinddir(d);
    count = 0;
    int seen_late = 0;
    while ((de = readdir(d))) {
        count++;
        seen_late |= !strcmp(de->d_name, "late-arrival");
    }
    checkf("rewinddir_sees_new_entry", "count=%d seen=%d", count, seen_late);
    closedir(d);

    unlink("big/entry-000-even");
    checkf("listing_after_unlink", "has_removed=%d",
           strstr(list_dir("big"), "entry-000-even") != NULL);
    checkf("listing_small_dir", "%s", list_dir("small"));
    errno = 0;
    d = opendir("nope");
    checkf("opendir_missing", "ok=%d errno=%s", d != NULL, errname(errno));
    errno = 0;
    d = opendir("small/file");
    checkf("opendir_file", "ok=%d errno=%s", d != NULL, errname(errno));
}

int main(void)
{
    vd_begin("dirent");
    setup();
    test_getdents();
    test_telldir();
    return vd_end();
}
