/* UDP through linuxabi's uplink, or natively: usage `udp_probe SERVER PORT`.
 * The echo server (tests/test_net_uplink_udp.py) answers "DATA seen=IP:PORT" (the source it saw).
 * Prints what recvfrom/recvmsg/read report, getsockname/getpeername, and whether the port the
 * server saw is the socket's own. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *name(const struct sockaddr_in *a) {
    static char buf[4][64];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, 64, "%s:%d", inet_ntoa(a->sin_addr), ntohs(a->sin_port));
    return b;
}

static const char *ip(const struct sockaddr_in *a) {  /* inet_ntoa's buffer is shared: copy */
    static char buf[4][32];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, 32, "%s", inet_ntoa(a->sin_addr));
    return b;
}

static int udp(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

/* "seen=IP:PORT" at the end of the reply: print the IP, and whether PORT is ours */
static void seen(const char *reply, int s) {
    const char *p = strstr(reply, " seen=");
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &len);
    if (!p) { printf(" seen=?"); return; }
    const char *colon = strrchr(p, ':');
    printf(" seen_ip=%.*s own_port=%d", (int)(colon - p - 6), p + 6, atoi(colon + 1) == ntohs(me.sin_port));
}

/* `udp_probe SERVER CLOSED_PORT refused`: a connected socket's datagram to a port nobody
 * listens on; the ICMP port unreachable it draws is the socket's error (recv, then SO_ERROR
 * is clear again; an unconnected socket hears nothing). */
static int refused(const struct sockaddr_in *srv) {
    char buf[64];
    int s = udp();
    printf("connect=%d", connect(s, (const struct sockaddr *)srv, sizeof *srv));
    printf(" send=%zd", send(s, "anyone?", 7, 0));
    ssize_t n = recv(s, buf, sizeof buf, 0);
    printf(" recv=%s", n < 0 ? strerror(errno) : "data");
    int err = -1;
    socklen_t len = sizeof err;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
    printf(" so_error_after=%d", err);
    close(s);
    s = udp();
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    printf(" unconnected_sendto=%zd", sendto(s, "anyone?", 7, 0, (const struct sockaddr *)srv, sizeof *srv));
    n = recv(s, buf, sizeof buf, 0);
    printf(" unconnected_recv=%s\n", n < 0 ? strerror(errno) : "data");
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    struct sockaddr_in srv = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_aton(argv[1], &srv.sin_addr);
    if (argc > 3 && !strcmp(argv[3], "refused"))
        return refused(&srv);
    char buf[512];
    struct sockaddr_in from, me, peer;
    socklen_t len;

    /* 1: sendto + recvfrom, unconnected */
    int s = udp();
    ssize_t n = sendto(s, "via-sendto", 10, 0, (struct sockaddr *)&srv, sizeof srv);
    printf("sendto=%zd", n < 0 ? -errno : n);
    len = sizeof from;
    n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
    if (n < 0) { printf(" recvfrom=%s\n", strerror(errno)); return 1; }
    buf[n] = 0;
    len = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &len);
    printf(" from=%s data=%.10s sock_ip=%s", name(&from), buf, ip(&me));
    seen(buf, s);
    /* again, read by recvmsg */
    sendto(s, "second", 6, 0, (struct sockaddr *)&srv, sizeof srv);
    struct iovec iov = {buf, sizeof buf - 1};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    n = recvmsg(s, &mh, 0);
    if (n < 0) { printf(" recvmsg=%s\n", strerror(errno)); return 1; }
    buf[n] = 0;
    printf(" recvmsg_from=%s data=%.6s\n", name(&from), buf);
    close(s);

    /* 2: connect + send + recvfrom/read */
    s = udp();
    int c = connect(s, (struct sockaddr *)&srv, sizeof srv);
    printf("connect=%d", c < 0 ? -errno : c);
    n = send(s, "via-connect", 11, 0);
    printf(" send=%zd", n < 0 ? -errno : n);
    len = sizeof from;
    n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
    if (n < 0) { printf(" recvfrom=%s\n", strerror(errno)); return 1; }
    buf[n] = 0;
    printf(" from=%s data=%.11s", name(&from), buf);
    len = sizeof peer;
    getpeername(s, (struct sockaddr *)&peer, &len);
    len = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &len);
    printf(" peer=%s sock_ip=%s", name(&peer), ip(&me));
    seen(buf, s);
    write(s, "by-write", 8);
    n = read(s, buf, sizeof buf - 1);
    if (n < 0) { printf(" read=%s\n", strerror(errno)); return 1; }
    buf[n] = 0;
    printf(" read=%.8s\n", buf);
    close(s);
    return 0;
}
