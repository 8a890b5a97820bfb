/* The bridge's non-blocking reads of its host socket (net/bridge.py; built into net._tapio by
 * net/tapio_build.py). Python's socket.recv raises BlockingIOError for an empty socket: the
 * exception's making (its errno text decoded from the locale, a traceback entry) and catching
 * cost ~2 µs, and a keep-alive request meets two empty reads. Here an empty read is a return
 * value: -errno for a failure, EAGAIN included. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

long bridge_recv(int fd, char *buf, unsigned long len)
{
    ssize_t n;
    do
        n = recv(fd, buf, len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -(long)errno : (long)n;
}
