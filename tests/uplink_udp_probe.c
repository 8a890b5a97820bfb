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

int main(int argc, char **argv) {
    struct sockaddr_in srv = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_aton(argv[1], &srv.sin_addr);
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
