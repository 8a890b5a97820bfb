"""AF_UNIX sockets named in the filesystem, between guest processes, under translation and
natively in a chroot of the same image (Linux is the oracle): the two outputs must agree.

One static C program (``/unixsock MODE ...``) plays server, client and the single-process
scenarios; busybox's shell runs them as separate guest processes.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from oracle import run_native, run_translated

SRC = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SA(p) ((struct sockaddr *)(p))

static socklen_t un(struct sockaddr_un *a, const char *p)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strncpy(a->sun_path, p, sizeof a->sun_path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1;
}
static int bind_to(int fd, const char *p) { struct sockaddr_un a; socklen_t l = un(&a, p); return bind(fd, SA(&a), l); }
static int connect_to(int fd, const char *p) { struct sockaddr_un a; socklen_t l = un(&a, p); return connect(fd, SA(&a), l); }
static const char *res(long r)
{
    static char b[4][64]; static int i; char *o = b[i++ & 3];
    if (r < 0) snprintf(o, 64, "-1 %s", strerror(errno)); else snprintf(o, 64, "%ld", r);
    return o;
}
static const char *nm(const struct sockaddr_un *a, socklen_t len)
{
    static char b[4][160]; static int i; char *o = b[i++ & 3];
    if (len <= offsetof(struct sockaddr_un, sun_path)) snprintf(o, 160, "(unnamed len=%u)", (unsigned)len);
    else snprintf(o, 160, "%s", a->sun_path);
    return o;
}
static const char *name_of(int fd, int peer)
{
    struct sockaddr_un a; socklen_t l = sizeof a; memset(&a, 0, sizeof a);
    int r = peer ? getpeername(fd, SA(&a), &l) : getsockname(fd, SA(&a), &l);
    return r < 0 ? res(r) : nm(&a, l);
}
static void nap(long ms) { struct timespec t = {ms / 1000, (ms % 1000) * 1000000L}; nanosleep(&t, NULL); }

/* server PATH N: accept N clients one after the other; echo each message back */
static int server(const char *path, int n)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind_to(s, path) < 0 || listen(s, 8) < 0) { printf("server: %s\n", res(-1)); return 1; }
    printf("server name %s\n", name_of(s, 0));
    for (int i = 0; i < n; i++) {
        struct sockaddr_un a; socklen_t l = sizeof a; memset(&a, 0, sizeof a);
        int c = accept(s, SA(&a), &l);
        char buf[64] = {0};
        long k = read(c, buf, sizeof buf - 1);
        printf("server got %s from %s\n", k > 0 ? buf : "?", nm(&a, l));
        char out[80]; snprintf(out, sizeof out, "echo:%s", buf);
        write(c, out, strlen(out));
        close(c);
    }
    close(s);
    return 0;
}

/* client PATH MSG [BINDPATH]: connect (retrying while the server is not there yet) */
static int client(const char *path, const char *msg, const char *bindpath)
{
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bindpath && bind_to(c, bindpath) < 0) { printf("client bind %s\n", res(-1)); return 1; }
    int r = -1;
    for (int i = 0; i < 500 && (r = connect_to(c, path)) < 0 && (errno == ENOENT || errno == ECONNREFUSED); i++)
        nap(10);
    printf("client connect %s peer %s self %s\n", res(r), name_of(c, 1), name_of(c, 0));
    if (r < 0) return 1;
    write(c, msg, strlen(msg));
    char buf[80] = {0};
    long k = read(c, buf, sizeof buf - 1);
    printf("client got %s\n", k > 0 ? buf : "?");
    return 0;
}

/* dgram: a bound sender and its receiver in two processes; names both ways */
static int dgram(void)
{
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("bind d %s\n", res(bind_to(d, "/tmp/d.sock")));
    pid_t p = fork();
    if (p == 0) {
        int c = socket(AF_UNIX, SOCK_DGRAM, 0);
        bind_to(c, "/tmp/c.sock");
        struct sockaddr_un to; socklen_t tl = un(&to, "/tmp/d.sock");
        printf("child sendto %s\n", res(sendto(c, "hi", 2, 0, SA(&to), tl)));
        struct sockaddr_un f; socklen_t fl = sizeof f; char buf[16] = {0};
        long k = recvfrom(c, buf, sizeof buf, 0, SA(&f), &fl);
        printf("child got %s from %s\n", k > 0 ? buf : res(k), nm(&f, fl));
        _exit(0);
    }
    struct sockaddr_un f; socklen_t fl = sizeof f; char buf[16] = {0};
    long k = recvfrom(d, buf, sizeof buf, 0, SA(&f), &fl);
    const char *from = nm(&f, fl), *got = k > 0 ? buf : res(k);
    const char *reply = res(sendto(d, "ho", 2, 0, SA(&f), fl));
    int st; waitpid(p, &st, 0);  /* the child's lines first: the output's order is fixed */
    printf("parent got %s from %s\nparent reply %s\n", got, from, reply);
    return 0;
}

/* seqpacket: record boundaries across processes */
static int seqpacket(void)
{
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    const char *b = res(bind_to(l, "/tmp/q.sock"));
    printf("bind %s listen %s\n", b, res(listen(l, 4)));
    pid_t p = fork();
    if (p == 0) {
        int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        printf("child connect %s\n", res(connect_to(c, "/tmp/q.sock")));
        write(c, "first", 5); write(c, "second!", 7);
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    char r1[32] = {0}, r2[32] = {0};
    long n1 = read(s, r1, sizeof r1);
    long n2 = read(s, r2, sizeof r2);
    int st; waitpid(p, &st, 0);
    printf("records %ld:%s %ld:%s\n", n1, r1, n2, r2);
    return 0;
}

/* scm: a child opens a file and passes the fd to its parent over a named connection */
static int scm(void)
{
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    bind_to(l, "/tmp/scm.sock"); listen(l, 4);
    pid_t p = fork();
    if (p == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        connect_to(c, "/tmp/scm.sock");
        int fd = open("/etc/passwd", O_RDONLY);
        char cbuf[CMSG_SPACE(sizeof(int))]; memset(cbuf, 0, sizeof cbuf);
        struct iovec iov = {.iov_base = "F", .iov_len = 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
        printf("child sendmsg %s\n", res(sendmsg(c, &mh, 0)));
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    char m; char rbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &m, .iov_len = 1};
    struct msghdr rh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = rbuf, .msg_controllen = sizeof rbuf};
    long n = recvmsg(s, &rh, 0);
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rh);
    int fd = -1;
    if (rc && rc->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(rc), sizeof fd);
    char buf[5] = {0};
    int st; waitpid(p, &st, 0);
    printf("parent recvmsg %s fd %s data %.4s\n", res(n), fd >= 0 ? "yes" : "no",
           fd >= 0 && read(fd, buf, 4) == 4 ? buf : "?");
    return 0;
}

/* errors: the errnos Linux gives for names */
static int errors(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0), t = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("bind %s\n", res(bind_to(s, "/tmp/e.sock")));
    printf("bind again (EADDRINUSE) %s\n", res(bind_to(t, "/tmp/e.sock")));
    printf("bind missing dir %s\n", res(bind_to(t, "/tmp/nodir/x.sock")));
    printf("connect missing %s\n", res(connect_to(t, "/tmp/missing.sock")));
    printf("connect not listening %s\n", res(connect_to(t, "/tmp/e.sock")));
    listen(s, 1);
    pid_t p = fork();
    if (p == 0) { close(s); _exit(0); }
    int st; waitpid(p, &st, 0);
    printf("connect listening %s\n", res(connect_to(t, "/tmp/e.sock")));
    close(s);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("connect after server closed %s\n", res(connect_to(u, "/tmp/e.sock")));
    printf("unlink %s\n", res(unlink("/tmp/e.sock")));
    printf("connect after unlink %s\n", res(connect_to(u, "/tmp/e.sock")));
    int v = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("bind after unlink %s\n", res(bind_to(v, "/tmp/e.sock")));
    return 0;
}

/* relative: bind a relative name after chdir; connect to it from elsewhere both ways */
static int relative(void)
{
    mkdir("/tmp/rel", 0755);
    printf("chdir %s\n", res(chdir("/tmp/rel")));
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    const char *b = res(bind_to(l, "r.sock"));
    const char *ls = res(listen(l, 4));
    printf("bind r.sock %s listen %s name %s\n", b, ls, name_of(l, 0));
    chdir("/");
    int c1 = socket(AF_UNIX, SOCK_STREAM, 0);
    const char *r1 = res(connect_to(c1, "/tmp/rel/r.sock"));
    printf("connect abs %s peer %s\n", r1, name_of(c1, 1));
    mkdir("/tmp/other", 0755);
    chdir("/tmp/other");
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    bind_to(c2, "../other/c.sock");
    const char *r2 = res(connect_to(c2, "../rel/r.sock"));
    printf("connect rel %s peer %s self %s\n", r2, name_of(c2, 1), name_of(c2, 0));
    struct sockaddr_un a; socklen_t al = sizeof a;
    close(accept(l, NULL, NULL));
    int s = accept(l, SA(&a), &al);
    printf("accepted from %s\n", s >= 0 ? nm(&a, al) : res(s));
    struct stat sb;
    const char *sr = res(stat("/tmp/other/c.sock", &sb));
    printf("stat /tmp/other/c.sock %s sock=%d\n", sr, S_ISSOCK(sb.st_mode));
    return 0;
}

/* flood SIZE: a blocking sender fills a receiver that reads only later: the sends wait (for
 * the receiver's queue with small datagrams, for the sender's own buffer with big ones), none
 * is lost */
static int flood(int size)
{
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    bind_to(d, "/tmp/f.sock");
    enum { N = 300 };
    static char buf[65536];
    pid_t p = fork();
    if (p == 0) {
        int c = socket(AF_UNIX, SOCK_DGRAM, 0);
        struct sockaddr_un to; socklen_t tl = un(&to, "/tmp/f.sock");
        int ok = 0;
        for (int i = 0; i < N; i++) {
            memcpy(buf, &i, sizeof i);
            ok += sendto(c, buf, size, 0, SA(&to), tl) == size;
        }
        printf("sent %d\n", ok);
        _exit(0);
    }
    nap(300);
    int got = 0, in_order = 1;
    for (int i = 0; i < N; i++) {
        int v = -1;
        if (recv(d, buf, sizeof buf, 0) == size) got++;
        memcpy(&v, buf, sizeof v);
        in_order &= v == i;
    }
    int st; waitpid(p, &st, 0);
    printf("received %d in order %d\n", got, in_order);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) return 2;
    const char *m = argv[1];
    if (!strcmp(m, "server") && argc == 4) return server(argv[2], atoi(argv[3]));
    if (!strcmp(m, "client") && argc >= 4) return client(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
    if (!strcmp(m, "bind") && argc == 3) { int s = socket(AF_UNIX, SOCK_STREAM, 0); printf("bind %s\n", res(bind_to(s, argv[2]))); return 0; }
    if (!strcmp(m, "dgram")) return dgram();
    if (!strcmp(m, "seqpacket")) return seqpacket();
    if (!strcmp(m, "scm")) return scm();
    if (!strcmp(m, "errors")) return errors();
    if (!strcmp(m, "relative")) return relative();
    if (!strcmp(m, "flood") && argc == 3) return flood(atoi(argv[2]));
    return 2;
}
"""


@pytest.fixture(scope="module")
def images(default_image: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(image for translation, a separate copy for the native oracle), with /unixsock in both."""
    base = tmp_path_factory.mktemp("unix")
    src = base / "unixsock.c"
    src.write_text(SRC)
    binary = base / "unixsock"
    subprocess.run(["gcc", "-O1", "-static", "-Wall", "-o", str(binary), str(src)], check=True)
    out = []
    for name in ("translated", "native"):
        root = base / name
        shutil.copytree(default_image, root, symlinks=True)
        shutil.copy2(binary, root / "unixsock")
        out.append(root)
    return out[0], out[1]


def _both(images: tuple[Path, Path], script: str, timeout: float = 60) -> str:
    t = run_translated(["/bin/sh", "-c", script], images[0], timeout=timeout)
    n = run_native(["/bin/sh", "-c", script], images[1], timeout=timeout)
    assert t.returncode == n.returncode == 0, (t.stderr.decode(), n.stderr.decode())
    assert t.stdout.decode() == n.stdout.decode(), t.stderr.decode()
    assert b"Traceback" not in t.stderr, t.stderr.decode()
    return t.stdout.decode()


def test_stream_between_processes(images: tuple[Path, Path]) -> None:
    """A server and two clients, each its own guest process: the server sees each client's
    bound name (or none), each client sees the server's path as bound, data goes both ways."""
    out = _both(images, """
/unixsock server /tmp/s.sock 2 > /tmp/srv.out &
/unixsock client /tmp/s.sock hello /tmp/c1.sock
cd /tmp && /unixsock client s.sock world
wait
cat /tmp/srv.out
""")
    assert "client connect 0 peer /tmp/s.sock self /tmp/c1.sock\nclient got echo:hello\n" in out
    assert "client connect 0 peer /tmp/s.sock self (unnamed len=2)\nclient got echo:world\n" in out
    assert "server name /tmp/s.sock\n" in out
    assert "server got hello from /tmp/c1.sock\n" in out
    assert "server got world from (unnamed len=2)\n" in out


def test_ls_shows_a_socket(images: tuple[Path, Path]) -> None:
    out = _both(images, "umask 027; /unixsock bind /tmp/x.sock; ls -l /tmp/x.sock | cut -c1-10; "
                        "test -S /tmp/x.sock && echo is-socket; /unixsock bind /tmp/x.sock")
    assert out == "bind 0\nsrwxr-x---\nis-socket\nbind -1 Address in use\n".replace(
        "Address in use", "Address already in use")


def test_dgram_names_both_ways(images: tuple[Path, Path]) -> None:
    out = _both(images, "/unixsock dgram")
    assert "parent got hi from /tmp/c.sock\n" in out
    assert "child got ho from /tmp/d.sock\n" in out


def test_seqpacket_keeps_records(images: tuple[Path, Path]) -> None:
    out = _both(images, "/unixsock seqpacket")
    assert "records 5:first 7:second!\n" in out


def test_scm_rights_across_a_named_connection(images: tuple[Path, Path]) -> None:
    out = _both(images, "/unixsock scm")
    assert "parent recvmsg 1 fd yes data root\n" in out


def test_errors(images: tuple[Path, Path]) -> None:
    out = _both(images, "/unixsock errors")
    assert "bind again (EADDRINUSE) -1 Address already in use\n" in out
    assert "connect missing -1 No such file or directory\n" in out
    assert "connect after server closed -1 Connection refused\n" in out
    assert "connect after unlink -1 No such file or directory\n" in out
    assert "bind after unlink 0\n" in out


def test_relative_names(images: tuple[Path, Path]) -> None:
    out = _both(images, "/unixsock relative")
    assert "name r.sock\n" in out  # the kernel reports the name exactly as bound
    assert "connect rel 0 peer r.sock self ../other/c.sock\n" in out
    assert "accepted from ../other/c.sock\n" in out


@pytest.mark.parametrize("size", [4, 60000])
def test_blocking_sender_waits_for_a_full_receiver(images: tuple[Path, Path], size: int) -> None:
    out = _both(images, f"/unixsock flood {size}")
    assert out == "sent 300\nreceived 300 in order 1\n"


# ---- the VFS side alone (no guest): what bind and connect do to the namespace ----------------


@pytest.fixture
def vfs():  # noqa: ANN201
    from vfs import TmpFs, Vfs

    v = Vfs(TmpFs(0o755))
    yield v
    v.close()


def test_vfs_bind_makes_nothing_when_the_host_bind_fails(vfs) -> None:  # noqa: ANN001
    import errno
    import os

    ctx = vfs.new_context()
    ctx.umask = 0o027

    def refuse() -> str:
        raise OSError(errno.EINVAL, "already bound")

    with pytest.raises(OSError) as e:
        vfs.bind_socket(ctx, ctx.cwd, b"/s.sock", refuse)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        vfs.stat(ctx, ctx.cwd, b"/s.sock")

    made = []

    def host() -> str:
        made.append(1)
        return vfs.scratch.make_file()  # stands in for the bound host socket

    loc = vfs.bind_socket(ctx, ctx.cwd, b"/s.sock", host)
    assert oct(vfs.stat(ctx, ctx.cwd, b"/s.sock").mode) == oct(0o140750)
    shadow = loc.inode.shadow
    assert os.path.exists(os.path.join(vfs.scratch.path, shadow))
    # an existing name, a missing parent: refused before the host is asked
    for path, code in ((b"/s.sock", errno.EEXIST), (b"/nodir/x", errno.ENOENT)):
        with pytest.raises(OSError) as e:
            vfs.bind_socket(ctx, ctx.cwd, path, host)
        assert e.value.errno == code
    assert made == [1]
    # renamed: the same inode (and host socket); unlinked: the host socket goes with it
    vfs.rename(ctx, ctx.cwd, b"/s.sock", ctx.cwd, b"/t.sock")
    assert vfs.socket_location(ctx, ctx.cwd, b"/t.sock").inode is loc.inode
    vfs.unlink(ctx, ctx.cwd, b"/t.sock")
    assert not os.path.exists(os.path.join(vfs.scratch.path, shadow))


def test_vfs_socket_location_needs_write_permission(vfs) -> None:  # noqa: ANN001
    import errno

    ctx = vfs.new_context()
    vfs.bind_socket(ctx, ctx.cwd, b"/s.sock", vfs.scratch.make_file)
    vfs.chmod(ctx, ctx.cwd, b"/s.sock", 0o755)
    user = vfs.new_context()
    user.uid = user.gid = 1000
    with pytest.raises(OSError) as e:
        vfs.socket_location(user, user.cwd, b"/s.sock")
    assert e.value.errno == errno.EACCES
    vfs.chmod(ctx, ctx.cwd, b"/s.sock", 0o757)
    assert vfs.socket_location(user, user.cwd, b"/s.sock").inode.mode & 0o777 == 0o757
