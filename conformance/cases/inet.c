// AF_INET sockets over loopback: socket creation and flags, socket options,
// bind/listen/accept/connect, TCP data and half-close, UDP datagrams and
// ICMP-reported ECONNREFUSED, listener readiness through poll and epoll.
// Never a fixed port: every port is one the kernel handed out (port 0 binds).
// syscalls: socket bind listen accept accept4 connect getsockname getpeername
// syscalls: setsockopt getsockopt sendto recvfrom shutdown
#include "verdict.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* How long to wait for something the loopback delivers asynchronously (a FIN,
 * an ICMP error, the last ACK of a handshake): returns as soon as it is there. */
#define WAIT_MS 2000

static struct sockaddr_in sin_of(uint32_t host_addr, in_port_t net_port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = net_port;
    a.sin_addr.s_addr = htonl(host_addr);
    return a;
}

#define SA(p) ((struct sockaddr *)(p))

static int same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_family == b->sin_family && a->sin_port == b->sin_port &&
           a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* getsockname, or a zeroed address when it fails. */
static struct sockaddr_in name_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if (getsockname(fd, SA(&a), &len) < 0)
        memset(&a, 0, sizeof a);
    return a;
}

static struct sockaddr_in peer_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if (getpeername(fd, SA(&a), &len) < 0)
        memset(&a, 0, sizeof a);
    return a;
}

/* "family=2 addr=127.0.0.1 port_nonzero=1": never the port itself. */
static const char *addr_str(const struct sockaddr_in *a)
{
    static char buf[4][96];
    static int i;
    char *b = buf[i++ & 3];
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(b, 96, "family=%d addr=%s port_nonzero=%d", a->sin_family, ip, a->sin_port != 0);
    return b;
}

static void show_name(const char *name, int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    errno = 0;
    long r = getsockname(fd, SA(&a), &len);
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "ret=%ld len=%u %s", r, (unsigned)len, addr_str(&a));
}

/* A socket bound to 127.0.0.1, port chosen by the kernel. */
static int bound_sock(int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = sin_of(INADDR_LOOPBACK, 0);
    if (fd >= 0 && bind(fd, SA(&a), sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A listening TCP socket on 127.0.0.1; optionally nonblocking. */
static int listener(int extra_type)
{
    int fd = bound_sock(SOCK_STREAM | extra_type);
    if (fd >= 0 && listen(fd, 8) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_to(int fd, const struct sockaddr_in *a)
{
    return connect(fd, (const struct sockaddr *)a, sizeof *a);
}

/* A connected client to `lst` (blocking connect). */
static int client_of(int lst)
{
    struct sockaddr_in a = name_of(lst);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect_to(fd, &a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void show_poll(const char *name, int fd, short events, int timeout)
{
    struct pollfd p = {.fd = fd, .events = events};
    errno = 0;
    long r = poll(&p, 1, timeout);
    if (r < 0)
        checkf(name, "ret=-1 errno=%s", errname(errno));
    else
        checkf(name, "ret=%ld revents=%s", r, poll_events(p.revents));
}

/* getsockopt of an int option: "ret=0 val=N len=4" or the error. */
static const char *getint(int fd, int level, int opt)
{
    static char buf[4][64];
    static int i;
    char *b = buf[i++ & 3];
    int v = -1;
    socklen_t len = sizeof v;
    errno = 0;
    long r = getsockopt(fd, level, opt, &v, &len);
    if (r < 0)
        snprintf(b, 64, "ret=-1 errno=%s", errname(errno));
    else
        snprintf(b, 64, "ret=%ld val=%d len=%u", r, v, (unsigned)len);
    return b;
}

static long setint(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof v);
}

static const char *fdflags(int fd)
{
    static char buf[2][48];
    static int i;
    char *b = buf[i++ & 1];
    int fl = fcntl(fd, F_GETFL), fd_fl = fcntl(fd, F_GETFD);
    snprintf(b, 48, "nonblock=%d cloexec=%d", fl >= 0 && (fl & O_NONBLOCK) != 0,
             fd_fl >= 0 && (fd_fl & FD_CLOEXEC) != 0);
    return b;
}

static void test_socket(void)
{
    errno = 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int fl = fcntl(s, F_GETFL);
    checkf("socket_stream", "%s accmode=%d %s", s < 0 ? rstr(s, errno) : "ret=fd",
           fl & O_ACCMODE, fdflags(s));
    struct stat st;
    errno = 0;
    long r = fstat(s, &st);
    checkf("fstat_socket", "%s is_sock=%d mode=%s", rstr(r, errno), S_ISSOCK(st.st_mode),
           mstr(st.st_mode));
    close(s);
    s = CHECK_FD("socket_dgram", socket(AF_INET, SOCK_DGRAM, 0));
    close(s);
    errno = 0;
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    checkf("socket_nonblock_cloexec", "%s %s", s < 0 ? rstr(s, errno) : "ret=fd", fdflags(s));
    close(s);
    CHECK_RET("socket_bad_domain", socket(OPAQUE(1234), SOCK_STREAM, 0));
    CHECK_RET("socket_bad_type", socket(AF_INET, OPAQUE(99), 0));
    CHECK_RET("socket_bad_protocol", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
}

static void test_sockopt(void)
{
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    checkf("so_type", "tcp=[%s] udp=[%s]", getint(t, SOL_SOCKET, SO_TYPE),
           getint(u, SOL_SOCKET, SO_TYPE));
    checkf("so_domain", "%s", getint(t, SOL_SOCKET, SO_DOMAIN));
    checkf("so_protocol", "tcp=[%s] udp=[%s]", getint(t, SOL_SOCKET, SO_PROTOCOL),
           getint(u, SOL_SOCKET, SO_PROTOCOL));
    checkf("so_acceptconn_before_listen", "%s", getint(t, SOL_SOCKET, SO_ACCEPTCONN));
    checkf("so_error_fresh", "%s", getint(t, SOL_SOCKET, SO_ERROR));

    const char *before = getint(t, SOL_SOCKET, SO_REUSEADDR);
    errno = 0;
    long r = setint(t, SOL_SOCKET, SO_REUSEADDR, 1);
    checkf("so_reuseaddr_set_get", "default=[%s] set=[%s] get=[%s]", before, rstr(r, errno),
           getint(t, SOL_SOCKET, SO_REUSEADDR));
    before = getint(t, IPPROTO_TCP, TCP_NODELAY);
    errno = 0;
    r = setint(t, IPPROTO_TCP, TCP_NODELAY, 1);
    checkf("tcp_nodelay_set_get", "default=[%s] set=[%s] get=[%s]", before, rstr(r, errno),
           getint(t, IPPROTO_TCP, TCP_NODELAY));
    /* A non-zero value other than 1 reads back as 1. */
    before = getint(t, SOL_SOCKET, SO_KEEPALIVE);
    errno = 0;
    r = setint(t, SOL_SOCKET, SO_KEEPALIVE, 7);
    checkf("so_keepalive_set_get", "default=[%s] set=[%s] get=[%s]", before, rstr(r, errno),
           getint(t, SOL_SOCKET, SO_KEEPALIVE));
    checkf("tcp_option_on_udp", "%s", getint(u, IPPROTO_TCP, TCP_NODELAY));
    checkf("getsockopt_bad_level", "%s", getint(t, OPAQUE(12345), SO_TYPE));
    checkf("getsockopt_bad_optname", "%s", getint(t, SOL_SOCKET, OPAQUE(9999)));
    CHECK_RET("setsockopt_bad_optname", setint(t, SOL_SOCKET, OPAQUE(9999), 1));

    int v = 0;
    socklen_t len = (socklen_t)OPAQUE(-1);
    CHECK_RET("getsockopt_negative_optlen", getsockopt(t, SOL_SOCKET, SO_TYPE, &v, &len));
    /* A short (non-negative) optlen is not an error: the value is truncated. */
    v = 0;
    len = 2;
    errno = 0;
    r = getsockopt(u, SOL_SOCKET, SO_TYPE, &v, &len);
    checkf("getsockopt_short_optlen", "%s len=%u val=%d", rstr(r, errno), (unsigned)len, v);
    v = 1;
    CHECK_RET("setsockopt_short_optlen", setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &v, 2));
    len = sizeof v;
    CHECK_RET("getsockopt_bad_optval", getsockopt(t, SOL_SOCKET, SO_TYPE, BADPTR, &len));
    int p[2];
    pipe(p);
    len = sizeof v;
    CHECK_RET("getsockopt_not_socket", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &len));
    close(p[0]);
    close(p[1]);

    CHECK_RET("listen_unbound", listen(t, 4));
    checkf("so_acceptconn_after_listen", "%s", getint(t, SOL_SOCKET, SO_ACCEPTCONN));
    /* listen() on an unbound socket picks a port on the wildcard address. */
    show_name("listen_autobind_name", t);
    close(t);
    close(u);
}

static void test_bind(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    show_name("getsockname_unbound", s);
    struct sockaddr_in a = sin_of(INADDR_LOOPBACK, 0);
    CHECK_RET("bind_loopback_port0", bind(s, SA(&a), sizeof a));
    show_name("getsockname_after_bind", s);
    CHECK_RET("bind_twice", bind(s, SA(&a), sizeof a));
    socklen_t len = 4;
    struct sockaddr_in got;
    memset(&got, 0, sizeof got);
    errno = 0;
    long r = getsockname(s, SA(&got), &len);
    checkf("getsockname_short_len", "%s len=%u family=%d", rstr(r, errno), (unsigned)len,
           got.sin_family);

    int s2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_RET("bind_bad_addrlen", bind(s2, SA(&a), (socklen_t)OPAQUE(4)));
    struct sockaddr_in wrong = a;
    wrong.sin_family = AF_UNIX;
    CHECK_RET("bind_wrong_family", bind(s2, SA(&wrong), sizeof wrong));
    struct sockaddr_in far = sin_of(0x0affff01u /* 10.255.255.1 */, 0);
    CHECK_RET("bind_nonlocal_addr", bind(s2, SA(&far), sizeof far));
    /* The port the kernel gave `s`: taken, and nobody listens on it. */
    struct sockaddr_in taken = name_of(s);
    CHECK_RET("bind_port_in_use", bind(s2, SA(&taken), sizeof taken));
    close(s2);

    /* Both with SO_REUSEADDR and neither listening: Linux lets both bind. */
    int r1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setint(r1, SOL_SOCKET, SO_REUSEADDR, 1);
    setint(r2, SOL_SOCKET, SO_REUSEADDR, 1);
    bind(r1, SA(&a), sizeof a);
    struct sockaddr_in ra = name_of(r1);
    errno = 0;
    r = bind(r2, SA(&ra), sizeof ra);
    checkf("bind_reuseaddr_both", "%s same_port=%d", rstr(r, errno),
           r == 0 && name_of(r2).sin_port == ra.sin_port);
    close(r1);
    close(r2);

    int any = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in wild = sin_of(INADDR_ANY, 0);
    errno = 0;
    r = bind(any, SA(&wild), sizeof wild);
    struct sockaddr_in anyname = name_of(any);
    checkf("bind_any_udp", "%s %s", rstr(r, errno), addr_str(&anyname));
    close(any);

    /* connect() to a port that is bound but not listening: RST, refused. */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_RET("connect_refused", connect_to(c, &taken));
    checkf("so_error_after_refused", "%s", getint(c, SOL_SOCKET, SO_ERROR));
    close(c);
    close(s);
}

static void test_accept_connect(void)
{
    int lst = listener(SOCK_NONBLOCK);
    struct sockaddr_in la = name_of(lst);
    int plain = bound_sock(SOCK_STREAM);
    CHECK_RET("accept_not_listening", syscall(SYS_accept, plain, NULL, NULL));
    close(plain);
    int u = bound_sock(SOCK_DGRAM);
    CHECK_RET("listen_udp", listen(u, 1));
    CHECK_RET("accept_udp", syscall(SYS_accept, u, NULL, NULL));
    close(u);
    CHECK_RET("accept4_empty_nonblock", accept4(lst, NULL, NULL, SOCK_NONBLOCK));
    CHECK_RET("accept4_bad_flags", accept4(lst, NULL, NULL, OPAQUE(0x1)));
    show_poll("poll_listener_empty", lst, POLLIN, 0);

    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_RET("connect_to_listener", connect_to(c, &la));
    show_poll("poll_listener_pending", lst, POLLIN, WAIT_MS);
    struct sockaddr_in from;
    memset(&from, 0, sizeof from);
    socklen_t flen = sizeof from;
    errno = 0;
    int a = (int)syscall(SYS_accept, lst, &from, &flen);
    struct sockaddr_in cname = name_of(c);
    checkf("accept_with_addr", "%s len=%u from_is_client=%d", a < 0 ? rstr(a, errno) : "ret=fd",
           (unsigned)flen, same_addr(&from, &cname));
    /* The listener is nonblocking; the accepted socket does not inherit it. */
    checkf("accept_no_inherit_nonblock", "%s", fdflags(a));
    struct sockaddr_in apeer = peer_of(a), aname = name_of(a), cpeer = peer_of(c);
    checkf("accepted_getpeername", "equal=%d", same_addr(&apeer, &cname));
    checkf("accepted_getsockname", "equal_listener=%d", same_addr(&aname, &la));
    checkf("client_getpeername", "equal_listener=%d %s", same_addr(&cpeer, &la),
           addr_str(&cpeer));
    CHECK_RET("connect_isconn", connect_to(c, &la));

    /* Data both ways. */
    char buf[64];
    errno = 0;
    long w = write(c, "hello", 5);
    const char *wres = rstr(w, errno);
    errno = 0;
    long r = read(a, buf, sizeof buf);
    checkf("write_read", "write=[%s] read=[%s] data=%s", wres, rstr(r, errno), qstr(buf, r));
    errno = 0;
    w = send(a, "world!", 6, 0);
    wres = rstr(w, errno);
    char peek[8];
    errno = 0;
    long pr = recv(c, peek, 3, MSG_PEEK);
    const char *pres = rstr(pr, errno);
    errno = 0;
    r = recv(c, buf, 3, 0);
    checkf("send_recv_peek", "send=[%s] peek=[%s] peek_data=%s recv=[%s] data=%s", wres, pres,
           qstr(peek, pr), rstr(r, errno), qstr(buf, r));
    memset(&from, 0xff, sizeof from);
    flen = sizeof from;
    errno = 0;
    r = recvfrom(c, buf, sizeof buf, 0, SA(&from), &flen);
    checkf("recvfrom_tcp_addrlen", "%s data=%s addrlen=%u", rstr(r, errno), qstr(buf, r),
           (unsigned)flen);
    errno = 0;
    r = recv(c, buf, sizeof buf, MSG_DONTWAIT);
    checkf("recv_empty_dontwait", "%s", rstr(r, errno));
    show_poll("poll_connected_idle", c, POLLIN | POLLOUT, 0);

    /* Half close: the client stops writing. */
    CHECK_RET("shutdown_wr", shutdown(c, SHUT_WR));
    show_poll("poll_after_peer_shutdown", a, POLLIN | POLLRDHUP, WAIT_MS);
    CHECK_RET("read_after_peer_shutdown", read(a, buf, sizeof buf));
    CHECK_RET("send_after_shutdown_wr", send(c, "x", 1, MSG_NOSIGNAL));
    errno = 0;
    w = write(a, "back", 4);
    wres = rstr(w, errno);
    errno = 0;
    r = read(c, buf, sizeof buf);
    checkf("half_close_reverse", "write=[%s] read=[%s] data=%s", wres, rstr(r, errno),
           qstr(buf, r));
    close(a);
    close(c);

    /* Close of one side: the peer reads end of file. */
    c = client_of(lst);
    struct pollfd pl = {.fd = lst, .events = POLLIN};
    poll(&pl, 1, WAIT_MS);
    a = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
    close(a);
    show_poll("poll_after_peer_close", c, POLLIN | POLLRDHUP, WAIT_MS);
    CHECK_RET("read_after_peer_close", read(c, buf, sizeof buf));
    close(c);

    /* accept4 flags, a nonblocking connect. */
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    errno = 0;
    r = connect_to(c, &la);
    if (r == 0 || errno == EINPROGRESS)
        checkf("connect_nonblock", "ok");
    else
        checkf("connect_nonblock", "%s", rstr(r, errno));
    show_poll("connect_nonblock_writable", c, POLLOUT, WAIT_MS);
    checkf("connect_nonblock_so_error", "%s", getint(c, SOL_SOCKET, SO_ERROR));
    poll(&pl, 1, WAIT_MS);
    errno = 0;
    a = accept4(lst, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    checkf("accept4_nonblock_cloexec", "%s %s", a < 0 ? rstr(a, errno) : "ret=fd", fdflags(a));
    close(a);
    close(c);

    /* Unconnected TCP sockets. */
    int n = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t plen = sizeof from;
    CHECK_RET("getpeername_unconnected", getpeername(n, SA(&from), &plen));
    CHECK_RET("read_unconnected", read(n, buf, sizeof buf));
    CHECK_RET("send_unconnected", send(n, "x", 1, MSG_NOSIGNAL));
    CHECK_RET("shutdown_unconnected", shutdown(n, SHUT_RDWR));
    CHECK_RET("connect_bad_addrlen", connect(n, SA(&la), (socklen_t)OPAQUE(3)));
    close(n);
    close(lst);
}

static void test_udp(void)
{
    int s1 = bound_sock(SOCK_DGRAM), s2 = bound_sock(SOCK_DGRAM);
    struct sockaddr_in a1 = name_of(s1), a2 = name_of(s2), from;
    char buf[64];
    errno = 0;
    long w = sendto(s1, "ping", 4, 0, SA(&a2), sizeof a2);
    const char *wres = rstr(w, errno);
    memset(&from, 0, sizeof from);
    socklen_t flen = sizeof from;
    errno = 0;
    long r = recvfrom(s2, buf, sizeof buf, 0, SA(&from), &flen);
    checkf("udp_sendto_recvfrom", "sendto=[%s] recvfrom=[%s] data=%s addrlen=%u from_is_sender=%d",
           wres, rstr(r, errno), qstr(buf, r), (unsigned)flen, same_addr(&from, &a1));
    /* A datagram larger than the buffer: the rest is dropped, MSG_TRUNC tells. */
    sendto(s1, "abcdefgh", 8, 0, SA(&a2), sizeof a2);
    errno = 0;
    r = recv(s2, buf, 3, MSG_TRUNC);
    checkf("udp_recv_trunc", "%s data=%s", rstr(r, errno), qstr(buf, r < 3 ? r : 3));
    CHECK_RET("udp_recv_empty_dontwait", recv(s2, buf, sizeof buf, MSG_DONTWAIT));
    CHECK_RET("udp_send_unconnected", send(s1, "x", 1, 0));

    errno = 0;
    r = connect_to(s1, &a2);
    struct sockaddr_in p1 = peer_of(s1);
    checkf("udp_connect", "%s peer_equal=%d", rstr(r, errno), same_addr(&p1, &a2));
    errno = 0;
    w = send(s1, "pong", 4, 0);
    wres = rstr(w, errno);
    errno = 0;
    r = recv(s2, buf, sizeof buf, 0);
    checkf("udp_connected_send", "send=[%s] recv=[%s] data=%s", wres, rstr(r, errno),
           qstr(buf, r));
    errno = 0;
    w = sendto(s2, "back", 4, 0, SA(&a1), sizeof a1);
    wres = rstr(w, errno);
    errno = 0;
    r = recv(s1, buf, sizeof buf, 0);
    checkf("udp_connected_recv", "sendto=[%s] recv=[%s] data=%s", wres, rstr(r, errno),
           qstr(buf, r));
    close(s1);
    close(s2);

    /* A port nobody holds: bound by a throwaway socket that is then closed. */
    int tmp = bound_sock(SOCK_DGRAM);
    struct sockaddr_in closed = name_of(tmp);
    close(tmp);

    int nb = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_RET("udp_recv_empty_nonblock", recv(nb, buf, sizeof buf, 0));
    struct sockaddr_in n0 = name_of(nb);
    errno = 0;
    w = sendto(nb, "x", 1, 0, SA(&closed), sizeof closed);
    wres = rstr(w, errno);
    struct sockaddr_in n1 = name_of(nb);
    /* Unconnected: the ICMP error is not reported to this socket. */
    checkf("udp_sendto_autobind", "sendto=[%s] before=[%s] after=[%s]", wres, addr_str(&n0),
           addr_str(&n1));
    close(nb);

    /* Connected: the port-unreachable ICMP becomes ECONNREFUSED, reported once. */
    int cu = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    errno = 0;
    r = connect_to(cu, &closed);
    const char *cres = rstr(r, errno);
    errno = 0;
    w = send(cu, "y", 1, 0);
    checkf("udp_send_closed_port", "connect=[%s] send=[%s]", cres, rstr(w, errno));
    show_poll("udp_poll_after_icmp", cu, POLLIN, WAIT_MS);
    CHECK_RET("udp_recv_refused", recv(cu, buf, sizeof buf, 0));
    CHECK_RET("udp_recv_after_refused", recv(cu, buf, sizeof buf, 0));
    close(cu);
}

static void test_epoll(void)
{
    int lst = listener(0);
    struct sockaddr_in la = name_of(lst);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, lst, &e);
    struct epoll_event out[2];
    CHECK_RET("epoll_listener_empty", epoll_wait(ep, out, 2, 0));
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    connect_to(c, &la);
    memset(out, 0, sizeof out);
    errno = 0;
    long r = epoll_wait(ep, out, 2, WAIT_MS);
    checkf("epoll_listener_pending", "%s events=%s data=%llu", rstr(r, errno),
           poll_events((int)out[0].events), (unsigned long long)out[0].data.u64);
    int a = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
    CHECK_RET("epoll_listener_after_accept", epoll_wait(ep, out, 2, 0));
    /* The accepted socket: writable at once, readable when data comes. */
    e.events = EPOLLIN | EPOLLOUT;
    e.data.u64 = 8;
    epoll_ctl(ep, EPOLL_CTL_DEL, lst, NULL);
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &e);
    memset(out, 0, sizeof out);
    r = epoll_wait(ep, out, 2, 0);
    checkf("epoll_accepted_idle", "ret=%ld events=%s", r, poll_events((int)out[0].events));
    write(c, "z", 1);
    memset(out, 0, sizeof out);
    struct pollfd p = {.fd = a, .events = POLLIN};
    poll(&p, 1, WAIT_MS);
    r = epoll_wait(ep, out, 2, 0);
    checkf("epoll_accepted_data", "ret=%ld events=%s", r, poll_events((int)out[0].events));
    close(a);
    close(c);
    close(ep);
    close(lst);
}

int main(void)
{
    vd_begin("inet");
    alarm(10);
    signal(SIGPIPE, SIG_IGN);
    test_socket();
    test_sockopt();
    test_bind();
    test_accept_connect();
    test_udp();
    test_epoll();
    return vd_end();
}
