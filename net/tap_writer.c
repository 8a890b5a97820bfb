/* The TAP's writer thread (net/tap_writer.py; built into net._tapio by net/tapio_build.py): frames the stack sends are copied into a
 * single-producer single-consumer byte ring and written to the TAP by a native thread.
 *
 * A write to a TAP runs the receiving namespace's whole input path (IP, TCP, the reader's
 * wake-up) in the writer's context: a third of the uplink loop's time under load, all of it
 * with the loop's thread (and so the stack) stalled. Here the loop pays a copy; the thread,
 * which needs no interpreter lock, pays the write, on another CPU when there is one.
 *
 * Records: u32 length (of the vnet header and frame that follow), the bytes, padded to 8;
 * a length of WRAP sends the reader back to the ring's start. Frames leave in the order they
 * came. When the ring is full the producer waits for room (the back-pressure a full NIC queue
 * gives), never drops or reorders. The thread takes no lock and allocates nothing once
 * started: a fork while it runs leaves the child nothing held. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define WRAP 0xFFFFFFFFu

struct tapw {
    int fd;                       /* the TAP (not ours: never closed here) */
    int wake;                     /* eventfd: the producer woke the thread */
    int room;                     /* eventfd: the thread freed room for a waiting producer */
    unsigned char *buf;
    uint64_t cap;                 /* a power of two */
    _Atomic uint64_t head;        /* bytes ever produced (the producer's) */
    _Atomic uint64_t tail;        /* bytes ever consumed (the thread's) */
    _Atomic int idle;             /* the thread waits on `wake` */
    _Atomic int wants_room;       /* the producer waits on `room` */
    _Atomic int stop;
    pthread_t thread;
    int running;
    /* counters, read by the producer's side */
    _Atomic uint64_t frames, bytes, waits, errors;
    _Atomic int last_error;
};

static void tapw_signal(int efd)
{
    uint64_t one = 1;
    ssize_t r = write(efd, &one, sizeof one);
    (void)r;
}

static void tapw_drain(int efd)
{
    uint64_t n;
    ssize_t r = read(efd, &n, sizeof n);
    (void)r;
}

static void *tapw_main(void *arg)
{
    struct tapw *w = arg;
    for (;;) {
        uint64_t tail = atomic_load_explicit(&w->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&w->head, memory_order_acquire);
        if (tail == head) {
            if (atomic_load(&w->stop))
                return NULL;
            atomic_store(&w->idle, 1);
            /* a record published before `idle` was seen would wait forever: look again */
            if (atomic_load(&w->head) == tail && !atomic_load(&w->stop)) {
                struct pollfd p = {w->wake, POLLIN, 0};
                poll(&p, 1, -1);
                tapw_drain(w->wake);
            }
            atomic_store(&w->idle, 0);
            continue;
        }
        while (tail != head) {
            uint64_t at = tail & (w->cap - 1);
            uint32_t len;
            memcpy(&len, w->buf + at, 4);
            if (len == WRAP) {
                tail += w->cap - at;
                atomic_store_explicit(&w->tail, tail, memory_order_release);
                continue;
            }
            ssize_t n;
            while ((n = write(w->fd, w->buf + at + 4, len)) < 0 && (errno == EAGAIN || errno == EINTR)
                   && !atomic_load(&w->stop)) {
                struct pollfd p = {w->fd, POLLOUT, 0};      /* a TAP never says EAGAIN; a socket may */
                poll(&p, 1, 100);
            }
            if (n < 0) {
                atomic_fetch_add(&w->errors, 1);
                atomic_store(&w->last_error, errno);
            } else {
                atomic_fetch_add(&w->frames, 1);
                atomic_fetch_add(&w->bytes, len);
            }
            tail += (4 + (uint64_t)len + 7) & ~(uint64_t)7;
            atomic_store_explicit(&w->tail, tail, memory_order_release);
            if (atomic_load(&w->wants_room))
                tapw_signal(w->room);
        }
    }
}

/* A writer for `fd` with a ring of `cap` bytes (a power of two, at least four of the largest
 * frames), its thread started; NULL with errno set. */
static struct tapw *tapw_new(int fd, unsigned long cap)
{
    int e;
    struct tapw *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->fd = fd;
    w->cap = cap;
    w->buf = malloc(cap);
    w->wake = w->room = -1;
    w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->room = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!w->buf || w->wake < 0 || w->room < 0)
        goto fail;
    e = pthread_create(&w->thread, NULL, tapw_main, w);
    if (e) {
        errno = e;
        goto fail;
    }
    w->running = 1;
    return w;
fail:
    e = errno;
    if (w->wake >= 0)
        close(w->wake);
    if (w->room >= 0)
        close(w->room);
    free(w->buf);
    free(w);
    errno = e;
    return NULL;
}

/* Queue one frame (its vnet header, then the frame): 0, or -EMSGSIZE for one larger than a
 * quarter of the ring. Waits for room when the ring is full. */
static int tapw_send(struct tapw *w, const char *hdr, unsigned long hlen, const char *frame,
                     unsigned long flen)
{
    uint64_t len = hlen + flen, need = (4 + len + 7) & ~(uint64_t)7;
    if (need > w->cap / 4)
        return -EMSGSIZE;
    uint64_t head = atomic_load_explicit(&w->head, memory_order_relaxed);
    uint64_t at = head & (w->cap - 1);
    uint64_t span = need + (at + need > w->cap ? w->cap - at : 0);   /* with a wrap, the rest of the ring */
    for (;;) {
        uint64_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);
        if (head + span - tail <= w->cap)
            break;
        atomic_fetch_add(&w->waits, 1);
        atomic_store(&w->wants_room, 1);
        tail = atomic_load(&w->tail);
        if (head + span - tail > w->cap) {
            struct pollfd p = {w->room, POLLIN, 0};
            poll(&p, 1, 10);        /* (bounded: a lost wake-up costs 10 ms, never a hang) */
            tapw_drain(w->room);
        }
        atomic_store(&w->wants_room, 0);
    }
    if (at + need > w->cap) {
        uint32_t wrap = WRAP;
        memcpy(w->buf + at, &wrap, 4);
        head += w->cap - at;
        at = 0;
    }
    uint32_t l32 = (uint32_t)len;
    memcpy(w->buf + at, &l32, 4);
    memcpy(w->buf + at + 4, hdr, hlen);
    memcpy(w->buf + at + 4 + hlen, frame, flen);
    atomic_store_explicit(&w->head, head + need, memory_order_release);
    /* One wake-up per sleep: frames queued before the thread is up again need none (each
     * costs a write and a cross-CPU wake-up; Connection: close through nginx, +3-9%). */
    if (atomic_exchange(&w->idle, 0))
        tapw_signal(w->wake);
    return 0;
}

/* Wait until every queued frame is written (at most timeout_ms): 1 when it is, else 0. */
static int tapw_flush(struct tapw *w, int timeout_ms)
{
    for (int waited = 0; atomic_load(&w->tail) != atomic_load(&w->head); waited++) {
        if (waited >= timeout_ms)
            return 0;
        atomic_store(&w->wants_room, 1);
        struct pollfd p = {w->room, POLLIN, 0};
        poll(&p, 1, 1);
        tapw_drain(w->room);
    }
    atomic_store(&w->wants_room, 0);
    return 1;
}

/* Stop the thread after it wrote what was queued, and free the writer. */
static void tapw_free(struct tapw *w)
{
    if (w->running) {
        atomic_store(&w->stop, 1);
        tapw_signal(w->wake);
        pthread_join(w->thread, NULL);
    }
    close(w->wake);
    close(w->room);
    free(w->buf);
    free(w);
}

static void tapw_counters(struct tapw *w, unsigned long long *out)
{
    out[0] = atomic_load(&w->frames);
    out[1] = atomic_load(&w->bytes);
    out[2] = atomic_load(&w->errors);
    out[3] = (unsigned long long)atomic_load(&w->last_error);
    out[4] = atomic_load(&w->waits);
}
