/* A guest's TCP sockets as tests/test_net_uplink.py checks them, one line per run.
 * `probe IP PORT [nb]` connects (blocking, or non-blocking with poll), prints the errno, the
 * socket's names and, when it connected, the first bytes of the reply to an HTTP request.
 * `probe -l BINDIP PORT` listens, accepts one connection and prints the address accept gave,
 * then the accepted socket's names, then echoes what it reads until end of stream.
 * `probe -n BINDIP PORT COUNT` listens and accepts nothing until COUNT connections wait in its
 * backlog (TCP_INFO's tcpi_unacked, at most 60 s), then accepts them all and prints how many
 * accept and getpeername named with an outside (not 127.x) address, agreeing with each other. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case 0: return "0"; case ECONNREFUSED: return "ECONNREFUSED"; case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH"; case ENETUNREACH: return "ENETUNREACH";
    case EINPROGRESS: return "EINPROGRESS"; case EALREADY: return "EALREADY"; case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN"; case EPERM: return "EPERM"; case ECONNRESET: return "ECONNRESET";
    default: return strerror(e);
    }
}

static void names(int fd) {
    struct sockaddr_in a; socklen_t l = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &l) == 0) printf(" sock=%s:%d", inet_ntoa(a.sin_addr), ntohs(a.sin_port));
    l = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &l) == 0) printf(" peer=%s:%d", inet_ntoa(a.sin_addr), ntohs(a.sin_port));
    else printf(" peer=%s", ename(errno));
}

static int serve(const char *ip, int port) {
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0) {
        printf("listen=%s\n", ename(errno));
        return 1;
    }
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    printf("listening=%s:%d\n", inet_ntoa(a.sin_addr), ntohs(a.sin_port));
    l = sizeof a;
    int c = accept(fd, (struct sockaddr *)&a, &l);
    if (c < 0) {
        printf("accept=%s\n", ename(errno));
        return 1;
    }
    printf("accepted=%s:%d", inet_ntoa(a.sin_addr), ntohs(a.sin_port));
    names(c);
    printf("\n");
    char buf[4096];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        write(c, buf, n);
    return 0;
}

static int backlog(const char *ip, int port, int count) {
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, count + 16) < 0) {
        printf("listen=%s\n", ename(errno));
        return 1;
    }
    printf("listening\n");
    struct tcp_info ti;
    for (int i = 0; i < 6000; i++) {
        socklen_t tl = sizeof ti;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0) {
            printf("tcp_info=%s\n", ename(errno));
            return 1;
        }
        if ((int)ti.tcpi_unacked >= count) break;
        usleep(10000);
    }
    int outside = 0;
    for (int i = 0; i < count; i++) {
        struct sockaddr_in p, q; socklen_t l = sizeof p, m = sizeof q;
        int c = accept(fd, (struct sockaddr *)&p, &l);
        if (c < 0) {
            printf("accept=%s after %d\n", ename(errno), i);
            return 1;
        }
        if (getpeername(c, (struct sockaddr *)&q, &m) == 0 && (ntohl(p.sin_addr.s_addr) >> 24) != 127
            && p.sin_addr.s_addr == q.sin_addr.s_addr && p.sin_port == q.sin_port)
            outside++;
        close(c);
    }
    printf("accepted=%d outside=%d\n", count, outside);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 4 && !strcmp(argv[1], "-l"))
        return serve(argv[2], atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "-n"))
        return backlog(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc < 3) return 2;
    int nb = argc > 3 && !strcmp(argv[3], "nb");
    int fd = socket(AF_INET, SOCK_STREAM | (nb ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    int e = r < 0 ? errno : 0;
    printf("connect=%s", ename(e));
    if (nb && e == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n0 = poll(&p, 1, 0);
        printf(" writable_at_once=%d", n0);
        if (!n0) { /* in progress: a second connect says so (or the outcome, if it came since) */
            r = connect(fd, (struct sockaddr *)&a, sizeof a);
            int again = r < 0 ? errno : 0;
            printf(" again=%s", ename(again));
            names(fd);
            if (again && again != EALREADY) {
                printf("\n");
                return 0;
            }
        }
        poll(&p, 1, 20000);
        int so = 0; socklen_t sl = sizeof so;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
        printf(" revents=%#x so_error=%s", p.revents, ename(so));
        e = so;
        int fl = fcntl(fd, F_GETFL); fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    names(fd);
    if (!e) {
        const char *req = "GET / HTTP/1.0\r\n\r\n";
        write(fd, req, strlen(req));
        char buf[64] = {0};
        int n = read(fd, buf, 12);
        printf(" reply=%.12s", n > 0 ? buf : "");
    }
    printf("\n");
    return 0;
}
