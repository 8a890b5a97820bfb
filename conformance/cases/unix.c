// AF_UNIX sockets named in the filesystem: bind creates a socket inode (mode,
// umask, EADDRINUSE, lookup and permission errors), connect and sendto find it
// (ENOENT, ENOTDIR, ELOOP, EACCES, ECONNREFUSED, EPROTOTYPE), and the kernel
// reports the names as they were bound (getsockname, getpeername, accept,
// recvfrom), also for relative names; unlink, rename and link of the name;
// stream, datagram and seqpacket data, SCM_RIGHTS across a named connection.
// syscalls: socket bind listen accept connect getsockname getpeername
// syscalls: sendto recvfrom sendmsg recvmsg mknod unlink rename link
#include "verdict.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SA(p) ((struct sockaddr *)(p))

/* An address for `path`, length as most programs pass it (the path and its NUL). */
static socklen_t un(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n > sizeof a->sun_path)
        n = sizeof a->sun_path;
    memcpy(a->sun_path, path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (n < sizeof a->sun_path));
}

static int sock(int type)
{
    return socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
}

static int bind_to(int fd, const char *path)
{
    struct sockaddr_un a;
    socklen_t l = un(&a, path);
    return bind(fd, SA(&a), l);
}

static int connect_to(int fd, const char *path)
{
    struct sockaddr_un a;
    socklen_t l = un(&a, path);
    return connect(fd, SA(&a), l);
}

/* A listening stream (or seqpacket) socket bound to path, -1 on failure. */
static int listener(int type, const char *path)
{
    int fd = sock(type);
    if (fd >= 0 && (bind_to(fd, path) < 0 || listen(fd, 8) < 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* "len=N path=..." of a name as the kernel reports it; "unnamed" for no path. */
static const char *name_str(const struct sockaddr_un *a, socklen_t len)
{
    static char buf[4][192];
    static int i;
    char *b = buf[i++ & 3];
    if (len <= offsetof(struct sockaddr_un, sun_path))
        snprintf(b, 192, "len=%u unnamed", (unsigned)len);
    else
        snprintf(b, 192, "len=%u path=%.*s", (unsigned)len,
                 (int)(len - offsetof(struct sockaddr_un, sun_path)), a->sun_path);
    return b;
}

static void show_name(const char *name, int fd, int peer)
{
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    errno = 0;
    int r = peer ? getpeername(fd, SA(&a), &len) : getsockname(fd, SA(&a), &len);
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "ret=0 %s", name_str(&a, len));
}

static void show_mode(const char *name, const char *path)
{
    struct stat st;
    errno = 0;
    if (lstat(path, &st) < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "mode=%s nlink=%lu size=%lld", mstr(st.st_mode), (unsigned long)st.st_nlink,
               (long long)st.st_size);
}

/* Connect a new stream client to path, accept it on lst; prints the accept's
 * peer name and the client's peer name. Closes both ends. */
static void round_trip(const char *name, int lst, const char *path, const char *client_name)
{
    int c = sock(SOCK_STREAM);
    if (client_name)
        bind_to(c, client_name);
    errno = 0;
    int r = connect_to(c, path);
    int e = errno;
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    int s = r < 0 ? -1 : accept(lst, SA(&a), &len);
    char buf[16] = {0};
    long n = -1;
    if (s >= 0 && write(c, "ping", 4) == 4)
        n = read(s, buf, sizeof buf - 1);
    checkf(name, "%s accepted=%d %s data=%s", rstr(r, e), s >= 0, s >= 0 ? name_str(&a, len) : "-",
           qstr(buf, n));
    if (s >= 0)
        close(s);
    close(c);
}

int main(void)
{
    vd_begin("unix");
    char cwd[256];
    if (!getcwd(cwd, sizeof cwd))
        return 1;
    char abs_path[300];
    snprintf(abs_path, sizeof abs_path, "%s/srv.sock", cwd);

    /* ---- bind ---- */
    int lst = sock(SOCK_STREAM);
    CHECK_RET("bind_abs", bind_to(lst, abs_path));
    show_mode("bind_mode", "srv.sock");
    show_name("getsockname_abs", lst, 0);
    CHECK_RET("bind_bound_again", bind_to(lst, "other.sock"));
    checkf("bind_bound_again_left", "%s", list_dir("."));
    int s2 = sock(SOCK_STREAM);
    CHECK_RET("bind_in_use", bind_to(s2, "srv.sock"));
    write_file("file", "x");
    CHECK_RET("bind_on_file", bind_to(s2, "file"));
    CHECK_RET("bind_missing_parent", bind_to(s2, "nodir/x.sock"));
    CHECK_RET("bind_parent_not_dir", bind_to(s2, "file/x.sock"));
    CHECK_RET("bind_trailing_slash", bind_to(s2, "slash.sock/"));
    {
        struct sockaddr_un a;
        un(&a, "long.sock");
        CHECK_RET("bind_addrlen_too_long", bind(s2, SA(&a), sizeof a + 1));
    }
    close(s2);
    mkdir("ro", 0755);
    AS_USER("bind_unwritable_dir", 65534, bind_to(sock(SOCK_STREAM), "ro/u.sock"));
    mkdir("rw", 0777);
    chmod("rw", 0777);
    AS_USER("bind_as_user", 65534, bind_to(sock(SOCK_STREAM), "rw/u.sock"));
    {
        struct stat st;
        errno = 0;
        if (stat("rw/u.sock", &st) < 0)
            checkf("bind_as_user_owner", "ret=-1 errno=%s", errname(errno));
        else
            checkf("bind_as_user_owner", "uid=%u mode=%s", (unsigned)st.st_uid, mstr(st.st_mode));
    }
    umask(077);
    int um = sock(SOCK_DGRAM);
    CHECK_RET("bind_umask", bind_to(um, "umask.sock"));
    umask(022);
    show_mode("bind_umask_mode", "umask.sock");
    close(um);
    {
        /* sun_path filled to the last byte, no NUL: the name is all 108 bytes */
        char name[109];
        memset(name, 'n', 108);
        name[108] = 0;
        struct sockaddr_un a;
        socklen_t l = un(&a, name);
        int f = sock(SOCK_DGRAM);
        errno = 0;
        int r = bind(f, SA(&a), l);
        struct sockaddr_un b;
        socklen_t bl = sizeof b;
        memset(&b, 0, sizeof b);
        getsockname(f, SA(&b), &bl);
        struct stat st;
        checkf("bind_full_sun_path", "%s addrlen=%u namelen=%u exists=%d", rstr(r, errno), (unsigned)l,
               (unsigned)bl, stat(name, &st) == 0 && S_ISSOCK(st.st_mode));
        unlink(name);
        close(f);
    }

    /* ---- listen, connect, accept ---- */
    CHECK_RET("listen", listen(lst, 8));
    round_trip("connect_abs", lst, abs_path, "cli.sock");
    round_trip("connect_rel", lst, "srv.sock", NULL);
    symlink("srv.sock", "link.sock");
    round_trip("connect_symlink", lst, "link.sock", NULL);
    {
        int c = sock(SOCK_STREAM);
        connect_to(c, "srv.sock");
        show_name("getpeername", c, 1);
        show_name("getsockname_unbound", c, 0);
        int s = accept(lst, NULL, NULL);
        close(s);
        close(c);
    }
    {
        int c = sock(SOCK_DGRAM);
        CHECK_RET("connect_wrong_type", connect_to(c, "srv.sock"));
        close(c);
    }
    {
        int c = sock(SOCK_STREAM);
        CHECK_RET("connect_missing", connect_to(c, "missing.sock"));
        CHECK_RET("connect_not_dir", connect_to(c, "file/x.sock"));
        CHECK_RET("connect_regular_file", connect_to(c, "file"));
        CHECK_RET("connect_dir", connect_to(c, "rw"));
        mknod("node.sock", S_IFSOCK | 0755, 0);
        show_mode("mknod_sock_mode", "node.sock");
        CHECK_RET("connect_mknod_sock", connect_to(c, "node.sock"));
        symlink("loop1", "loop2");
        symlink("loop2", "loop1");
        CHECK_RET("connect_eloop", connect_to(c, "loop1"));
        int unl = sock(SOCK_STREAM);
        bind_to(unl, "notlisten.sock");
        CHECK_RET("connect_not_listening", connect_to(c, "notlisten.sock"));
        close(unl);
        CHECK_RET("connect_closed", connect_to(c, "notlisten.sock"));
        show_mode("closed_name_stays", "notlisten.sock");
        close(c);
    }
    chmod("srv.sock", 0755);
    AS_USER("connect_no_write", 65534, connect_to(sock(SOCK_STREAM), "srv.sock"));
    chmod("srv.sock", 0757);
    AS_USER("connect_write_other", 65534, connect_to(sock(SOCK_STREAM), "srv.sock"));
    close(accept4(lst, NULL, NULL, SOCK_NONBLOCK));
    mkdir("private", 0700);
    {
        int p = listener(SOCK_STREAM, "private/p.sock");
        AS_USER("connect_no_search", 65534, connect_to(sock(SOCK_STREAM), "private/p.sock"));
        close(p);
    }
    CHECK_RET("open_socket_file", open("srv.sock", O_RDWR));

    /* ---- the name: rename, link, unlink ---- */
    CHECK_RET("rename", rename("srv.sock", "moved.sock"));
    round_trip("connect_renamed", lst, "moved.sock", NULL);
    {
        int c = sock(SOCK_STREAM);
        connect_to(c, "moved.sock");
        show_name("renamed_peer_name", c, 1);
        close(accept(lst, NULL, NULL));
        close(c);
    }
    CHECK_RET("link", link("moved.sock", "hard.sock"));
    round_trip("connect_hardlink", lst, "hard.sock", NULL);
    CHECK_RET("unlink_one", unlink("moved.sock"));
    round_trip("connect_other_link", lst, "hard.sock", NULL);
    CHECK_RET("unlink_last", unlink("hard.sock"));
    round_trip("connect_unlinked", lst, "hard.sock", NULL);
    int again = listener(SOCK_STREAM, "hard.sock");
    checkf("rebind_after_unlink", "ok=%d", again >= 0);
    round_trip("connect_rebound", again, "hard.sock", NULL);
    close(again);
    close(lst);

    /* ---- relative names ---- */
    mkdir("sub", 0755);
    if (chdir("sub") == 0) {
        int r = listener(SOCK_STREAM, "r.sock");
        show_name("relative_name", r, 0);
        if (chdir("..") == 0) {
            round_trip("relative_connect", r, "sub/r.sock", "sub/../c2.sock");
            round_trip("relative_dotdot", r, "sub/../sub/./r.sock", NULL);
        }
        close(r);
    }
    show_mode("relative_created", "sub/r.sock");

    /* ---- datagrams ---- */
    {
        int d = sock(SOCK_DGRAM), c = sock(SOCK_DGRAM), u = sock(SOCK_DGRAM);
        bind_to(d, "d.sock");
        bind_to(c, "c.sock");
        struct sockaddr_un to;
        socklen_t tl = un(&to, "d.sock");
        CHECK_RET("dgram_sendto", sendto(c, "one", 3, 0, SA(&to), tl));
        struct sockaddr_un from;
        socklen_t fl = sizeof from;
        char buf[16] = {0};
        long n = recvfrom(d, buf, sizeof buf, 0, SA(&from), &fl);
        checkf("dgram_recvfrom", "data=%s from %s", qstr(buf, n), name_str(&from, fl));
        CHECK_RET("dgram_reply", sendto(d, "two", 3, 0, SA(&from), fl));
        fl = sizeof from;
        memset(buf, 0, sizeof buf);
        n = recvfrom(c, buf, sizeof buf, 0, SA(&from), &fl);
        checkf("dgram_reply_from", "data=%s from %s", qstr(buf, n), name_str(&from, fl));
        CHECK_RET("dgram_unbound_sendto", sendto(u, "three", 5, 0, SA(&to), tl));
        fl = sizeof from;
        n = recvfrom(d, buf, sizeof buf, 0, SA(&from), &fl);
        checkf("dgram_unbound_from", "n=%ld fromlen=%u", n, (unsigned)fl);
        struct sockaddr_un miss;
        socklen_t ml = un(&miss, "nothere.sock");
        CHECK_RET("dgram_sendto_missing", sendto(u, "x", 1, 0, SA(&miss), ml));
        socklen_t fl2 = un(&miss, "file");
        CHECK_RET("dgram_sendto_file", sendto(u, "x", 1, 0, SA(&miss), fl2));
        CHECK_RET("dgram_connect", connect_to(u, "d.sock"));
        CHECK_RET("dgram_send_connected", send(u, "four", 4, 0));
        memset(buf, 0, sizeof buf);
        n = recv(d, buf, sizeof buf, 0);
        checkf("dgram_recv_connected", "data=%s", qstr(buf, n));
        close(d);
        CHECK_RET("dgram_sendto_closed", sendto(c, "x", 1, 0, SA(&to), tl));
        close(c);
        close(u);
    }
    {
        int l = listener(SOCK_STREAM, "s3.sock");
        int c = sock(SOCK_STREAM);
        connect_to(c, "s3.sock");
        struct sockaddr_un to;
        socklen_t tl = un(&to, "s3.sock");
        CHECK_RET("stream_sendto_addr", sendto(c, "x", 1, 0, SA(&to), tl));
        close(c);
        close(l);
    }

    /* ---- seqpacket ---- */
    {
        int l = listener(SOCK_SEQPACKET, "seq.sock");
        int c = sock(SOCK_SEQPACKET);
        CHECK_RET("seqpacket_connect", connect_to(c, "seq.sock"));
        int s = accept(l, NULL, NULL);
        long w = write(c, "abc", 3) + write(c, "defg", 4);
        char b1[16] = {0}, b2[16] = {0};
        long n1 = read(s, b1, sizeof b1), n2 = read(s, b2, sizeof b2);
        checkf("seqpacket_records", "wrote=%ld %s %s", w, qstr(b1, n1), qstr(b2, n2));
        close(s);
        close(c);
        close(l);
    }

    /* ---- SCM_RIGHTS over a named connection ---- */
    {
        int l = listener(SOCK_STREAM, "scm.sock");
        int c = sock(SOCK_STREAM);
        connect_to(c, "scm.sock");
        int s = accept(l, NULL, NULL);
        int p[2];
        if (pipe(p) == 0 && write(p[1], "via fd", 6) == 6) {
            char cbuf[CMSG_SPACE(sizeof(int))];
            memset(cbuf, 0, sizeof cbuf);
            struct iovec iov = {.iov_base = "m", .iov_len = 1};
            struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                                .msg_controllen = sizeof cbuf};
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
            CHECK_RET("scm_sendmsg", sendmsg(c, &mh, 0));
            close(p[0]);
            close(p[1]);
            char m;
            char rbuf[CMSG_SPACE(sizeof(int))];
            struct iovec riov = {.iov_base = &m, .iov_len = 1};
            struct msghdr rh = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rbuf,
                                .msg_controllen = sizeof rbuf};
            long n = recvmsg(s, &rh, 0);
            struct cmsghdr *rc = CMSG_FIRSTHDR(&rh);
            int got = -1;
            if (rc && rc->cmsg_type == SCM_RIGHTS)
                memcpy(&got, CMSG_DATA(rc), sizeof(int));
            char data[16] = {0};
            long dn = got >= 0 ? read(got, data, sizeof data) : -1;
            checkf("scm_recvmsg", "n=%ld fd_received=%d data=%s", n, got >= 0, qstr(data, dn));
            if (got >= 0)
                close(got);
        }
        close(s);
        close(c);
        close(l);
    }

    /* ---- what the directory shows ---- */
    {
        DIR *d = opendir(".");
        int types = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (!strcmp(de->d_name, "scm.sock"))
                types = de->d_type;
        if (d)
            closedir(d);
        checkf("dirent_type", "d_type=%d", types);
    }
    checkf("listing", "%s", list_dir("."));
    return vd_end();
}
