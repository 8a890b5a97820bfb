/* The virtio-net device's data path for a TAP, in C (net/virtio/engine.py): what
 * VirtioNetDevice._tx and _rx (device.py) and DeviceQueue (ring.py) do per frame, with the
 * same checks, for a device whose backend is a TAP fd. Frames go out through the TAP's writer
 * thread (tap_writer.c) when it runs, else by write(); frames come in by read() of the TAP
 * straight into the driver's receive buffers. The Python model stays the definition (and
 * serves every other backend); this is its per-frame work without the interpreter: a
 * quarter of the uplink loop's time under load went to it.
 *
 * A ring error (a driver that breaks the protocol) stops the engine with a message; the
 * device then asks for a reset, as the Python model does. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1
#define HDR_LEN 12
#define NEEDS_CSUM 1
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_ECN 0x80
#define MAX_BUFS 1024
#define SCRATCH (HDR_LEN + 14 + 65535 + 64)

struct vq {                      /* the device's half of one split queue */
    uint64_t desc, avail, used;  /* offsets in the shared region */
    uint32_t size;
    uint16_t last_avail, used_idx, signalled;
    int event_idx, indirect;
};

struct buf { uint64_t addr; uint32_t len; };

struct chain {
    uint16_t head;
    int nr, nw;                  /* readable buffers, then writable ones, in bufs */
    uint64_t rlen, wlen;
    struct buf bufs[MAX_BUFS];
};

enum {
    C_RX_FRAMES, C_TX_FRAMES, C_TX_BAD_CHAIN, C_TX_BAD_HDR, C_RX_TOO_BIG, C_RX_BAD_OFFLOAD,
    C_IRQ_RX, C_IRQ_TX, C_B_RX_FRAMES, C_B_RX_BYTES, C_B_RX_RUNT, C_B_RX_ERRORS,
    C_B_TX_FRAMES, C_B_TX_BYTES, C_B_TX_ERRORS, C_N
};

struct engine {
    unsigned char *mem;
    uint64_t memlen;
    struct vq rx, tx;
    int fd;
    struct tapw *writer;         /* NULL: write() here */
    int host_csum, host_tso4;    /* what the driver may send (VIRTIO_NET_F_CSUM, HOST_TSO4) */
    int csum_ok, tso4_ok, mrg;   /* what it takes (GUEST_CSUM, GUEST_TSO4, MRG_RXBUF) */
    uint32_t pending;            /* bytes of a frame read but not yet placed (no buffers) */
    int last_rx_errno, last_tx_errno;
    uint64_t counters[C_N];
    char error[128];
    struct chain ch[2];          /* a frame's first chain and each further one */
    uint16_t heads[MAX_BUFS];    /* the chains a received frame took, published together */
    uint32_t lens[MAX_BUFS];
    unsigned char frame[SCRATCH];
    unsigned char gather[SCRATCH];
};

static inline uint16_t ld16(struct engine *e, uint64_t at)
{
    uint16_t v;
    memcpy(&v, e->mem + at, 2);
    return v;
}

static inline void st16(struct engine *e, uint64_t at, uint16_t v)
{
    memcpy(e->mem + at, &v, 2);
}

static int fail(struct engine *e, const char *msg)
{
    strncpy(e->error, msg, sizeof e->error - 1);
    return -1;
}

static inline int need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* avail idx, read once per use: the driver writes it after the ring entry */
static inline uint16_t avail_idx(struct engine *e, struct vq *q)
{
    uint16_t v = ld16(e, q->avail + 2);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return v;
}

static int walk(struct engine *e, struct vq *q, uint16_t head, struct chain *c)
{
    if (head >= q->size)
        return fail(e, "head out of range");
    uint64_t base = q->desc, limit = q->size, seen = 0;
    int in_table = 0;
    uint32_t i = head;
    c->head = head;
    c->nr = c->nw = 0;
    c->rlen = c->wlen = 0;
    for (;;) {
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        unsigned char *d = e->mem + base + 16 * (uint64_t)i;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 4);
        memcpy(&flags, d + 12, 2);
        memcpy(&next, d + 14, 2);
        if (++seen > limit)
            return fail(e, "descriptor loop");
        if (flags & F_INDIRECT) {
            if (!q->indirect)
                return fail(e, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
            if (in_table || (flags & F_NEXT))
                return fail(e, "nested indirect, or INDIRECT with NEXT");
            if (len == 0 || len % 16 || addr + len > e->memlen || addr + len < addr)
                return fail(e, "bad indirect table");
            base = addr, limit = len / 16, i = 0, seen = 0, in_table = 1;
            continue;
        }
        if (addr + len > e->memlen || addr + len < addr)
            return fail(e, "buffer outside shared memory");
        if (c->nr + c->nw >= MAX_BUFS)
            return fail(e, "descriptor chain too long");
        if (flags & F_WRITE) {
            c->bufs[c->nr + c->nw++] = (struct buf){addr, len};
            c->wlen += len;
        } else if (c->nw) {
            return fail(e, "device-readable buffer after a device-writable one");
        } else {
            c->bufs[c->nr++] = (struct buf){addr, len};
            c->rlen += len;
        }
        if (!(flags & F_NEXT))
            return 0;
        if (next >= limit)
            return fail(e, "next out of range");
        i = next;
    }
}

/* 1 and the chain, 0 when none is available, -1 on a ring error */
static int pop(struct engine *e, struct vq *q, struct chain *c)
{
    uint16_t pending = (uint16_t)(avail_idx(e, q) - q->last_avail);
    if (!pending)
        return 0;
    if (pending > q->size)
        return fail(e, "avail idx ran ahead of the ring");
    uint16_t head = ld16(e, q->avail + 4 + 2 * (uint64_t)(q->last_avail & (q->size - 1)));
    if (walk(e, q, head, c) < 0)
        return -1;
    q->last_avail++;
    return 1;
}

static void push(struct engine *e, struct vq *q, uint16_t head, uint32_t len)
{
    unsigned char *u = e->mem + q->used + 4 + 8 * (uint64_t)(q->used_idx & (q->size - 1));
    uint32_t id = head;
    memcpy(u, &id, 4);
    memcpy(u + 4, &len, 4);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    q->used_idx++;
    st16(e, q->used + 2, q->used_idx);             /* publish after the element */
}

static int need_interrupt(struct engine *e, struct vq *q)
{
    uint16_t new_idx = q->used_idx, old = q->signalled;
    q->signalled = new_idx;
    if (new_idx == old)
        return 0;
    if (q->event_idx)
        return need_event(ld16(e, q->avail + 4 + 2 * (uint64_t)q->size), new_idx, old);
    return !(ld16(e, q->avail) & AVAIL_F_NO_INTERRUPT);
}

static int enable_notify(struct engine *e, struct vq *q)
{
    if (q->event_idx)
        st16(e, q->used + 4 + 8 * (uint64_t)q->size, q->last_avail);
    else
        st16(e, q->used, 0);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return avail_idx(e, q) != q->last_avail;
}

/* Copy n bytes between buf and the buffers bufs[0..count) taken as one stream, from byte
 * offset of it on: into the ring (to_ring) or out of it. The count copied (less when the
 * buffers end first). */
static uint64_t copy_chain(struct engine *e, const struct buf *bufs, int count, uint64_t offset,
                           unsigned char *buf, uint64_t n, int to_ring)
{
    uint64_t done = 0;
    for (int k = 0; k < count && done < n; k++) {
        struct buf b = bufs[k];
        if (offset >= b.len) {
            offset -= b.len;
            continue;
        }
        uint64_t part = b.len - offset;
        if (part > n - done)
            part = n - done;
        if (to_ring)
            memcpy(e->mem + b.addr + offset, buf + done, part);
        else
            memcpy(buf + done, e->mem + b.addr + offset, part);
        done += part;
        offset = 0;
    }
    return done;
}

/* the chain's readable bytes from byte skip on, into out */
static uint64_t gather(struct engine *e, struct chain *c, uint64_t skip, unsigned char *out, uint64_t n)
{
    return copy_chain(e, c->bufs, c->nr, skip, out, n, 0);
}

/* data into the chain's writable buffers from byte offset on */
static uint64_t scatter(struct engine *e, struct chain *c, const unsigned char *data, uint64_t n, uint64_t offset)
{
    return copy_chain(e, c->bufs + c->nr, c->nw, offset, (unsigned char *)data, n, 1);
}

static int tx_hdr_ok(struct engine *e, const unsigned char *h)
{
    if ((h[0] & NEEDS_CSUM) && !e->host_csum)
        return 0;
    if (h[1] == GSO_NONE)
        return 1;
    return (h[1] & ~GSO_ECN) == GSO_TCPV4 && e->host_tso4;
}

static void emit(struct engine *e, const unsigned char *hdr, const unsigned char *frame, uint64_t n)
{
    unsigned char h[HDR_LEN];
    memcpy(h, hdr, HDR_LEN);
    h[10] = h[11] = 0;                               /* num_buffers: 0 towards the TAP */
    if (e->writer) {
        int r = tapw_send(e->writer, (const char *)h, HDR_LEN, (const char *)frame, n);
        if (r == 0)
            return;
        e->last_tx_errno = -r;
    } else {
        struct iovec iov[2] = {{h, HDR_LEN}, {(void *)frame, n}};
        if (writev(e->fd, iov, 2) >= 0) {
            e->counters[C_B_TX_FRAMES]++;
            e->counters[C_B_TX_BYTES] += n;
            return;
        }
        e->last_tx_errno = errno;
    }
    e->counters[C_B_TX_ERRORS]++;
}

/* Frames the driver posted, to the TAP: the count moved (0 if none), -1 on a ring error. */
static int engine_tx(struct engine *e)
{
    struct vq *q = &e->tx;
    struct chain *c = &e->ch[0];
    int moved = 0;
    if (avail_idx(e, q) == q->last_avail)
        return 0;
    if (!q->event_idx)
        st16(e, q->used, USED_F_NO_NOTIFY);
    for (;;) {
        int r;
        while ((r = pop(e, q, c)) > 0) {
            moved++;
            if (c->rlen < HDR_LEN || c->nw) {
                e->counters[C_TX_BAD_CHAIN]++;
            } else {
                unsigned char hdr[HDR_LEN];
                gather(e, c, 0, hdr, HDR_LEN);
                if (!tx_hdr_ok(e, hdr)) {
                    e->counters[C_TX_BAD_HDR]++;
                } else {
                    uint64_t n = c->rlen - HDR_LEN;
                    e->counters[C_TX_FRAMES]++;
                    if (c->nr == 1) {
                        emit(e, hdr, e->mem + c->bufs[0].addr + HDR_LEN, n);
                    } else {
                        if (n > sizeof e->gather)
                            n = sizeof e->gather;    /* (larger than any frame a TAP takes) */
                        gather(e, c, HDR_LEN, e->gather, n);
                        emit(e, hdr, e->gather, n);
                    }
                }
            }
            push(e, q, c->head, 0);
        }
        if (r < 0)
            return -1;
        if (!enable_notify(e, q))
            break;
    }
    if (moved && need_interrupt(e, q))
        e->counters[C_IRQ_TX]++;
    return moved;
}

static uint16_t sum16(const unsigned char *p, uint64_t n, uint32_t acc)
{
    for (; n > 1; p += 2, n -= 2)
        acc += (uint32_t)p[0] << 8 | p[1];
    if (n)
        acc += (uint32_t)p[0] << 8;
    while (acc >> 16)
        acc = (acc & 0xFFFF) + (acc >> 16);
    return (uint16_t)acc;
}

/* What the driver may receive of the frame in e->frame (header included), as
 * offload.finish_for_peer makes it: 1 to deliver (the header rewritten), 0 to drop. */
static int finish(struct engine *e, uint32_t len)
{
    unsigned char *h = e->frame, *f = e->frame + HDR_LEN;
    uint32_t n = len - HDR_LEN;
    if (h[1] != GSO_NONE) {
        /* the TAP was told which offloads the driver takes (TUNSETOFFLOAD): it sends no other
         * GSO frame; the Python model cuts such frames for backends that do */
        return (h[1] & ~GSO_ECN) == GSO_TCPV4 && e->tso4_ok && e->csum_ok;
    }
    if (h[0] & NEEDS_CSUM) {
        if (e->csum_ok)
            return 1;
        uint16_t start, off;
        memcpy(&start, h + 6, 2);
        memcpy(&off, h + 8, 2);
        if ((uint32_t)start + off + 2 > n)
            return 0;
        uint16_t c = (uint16_t)~sum16(f + start, n - start, 0);
        if (!c)
            c = 0xFFFF;                              /* 0 means "no checksum" to UDP */
        f[start + off] = c >> 8;
        f[start + off + 1] = c & 0xFF;
    }
    memset(h, 0, HDR_LEN);                           /* a plain frame: nothing to say */
    return 1;
}

/* Frames from the TAP, into the driver's receive buffers: the count moved, -1 on a ring
 * error. A frame read when no buffer is free waits for the next call. ch[0] is a frame's
 * first chain (its header goes there last, once num_buffers is known), ch[1] each further
 * one (mergeable buffers); nothing is published until the whole frame is placed. */
static int engine_rx(struct engine *e)
{
    struct vq *q = &e->rx;
    int moved = 0;
    uint16_t *heads = e->heads;
    uint32_t *lens = e->lens;
    for (;;) {
        if (!e->pending) {
            ssize_t n = read(e->fd, e->frame, sizeof e->frame);
            if (n < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    e->counters[C_B_RX_ERRORS]++;
                    e->last_rx_errno = errno;
                }
                break;
            }
            if (n < HDR_LEN + 14) {
                e->counters[C_B_RX_RUNT]++;
                if (n == 0)
                    break;
                continue;
            }
            e->counters[C_B_RX_FRAMES]++;
            e->counters[C_B_RX_BYTES] += n - HDR_LEN;
            if (!finish(e, (uint32_t)n)) {
                e->counters[C_RX_BAD_OFFLOAD]++;
                continue;
            }
            e->pending = (uint32_t)n;
        }
        const unsigned char *data = e->frame + HDR_LEN;
        uint64_t total = e->pending - HDR_LEN, pos;
        int r = pop(e, q, &e->ch[0]), count = 1;
        if (r < 0)
            return -1;
        if (!r) {
            if (enable_notify(e, q))
                continue;
            break;
        }
        if (e->ch[0].wlen < HDR_LEN)
            return fail(e, "receive buffer smaller than the header");
        if (!e->mrg && e->ch[0].wlen < e->pending) {
            q->last_avail--;                         /* (unpop) this frame can never fit a buffer */
            e->pending = 0;
            e->counters[C_RX_TOO_BIG]++;
            continue;
        }
        pos = scatter(e, &e->ch[0], data, total, HDR_LEN);
        heads[0] = e->ch[0].head;
        lens[0] = (uint32_t)(HDR_LEN + pos);
        while (pos < total) {
            if (count >= MAX_BUFS)
                return fail(e, "frame does not fit the receive buffers");
            r = pop(e, q, &e->ch[1]);
            if (r < 0)
                return -1;
            if (!r)
                break;
            uint64_t n = scatter(e, &e->ch[1], data + pos, total - pos, 0);
            heads[count] = e->ch[1].head;
            lens[count] = (uint32_t)n;
            count++;
            pos += n;
        }
        if (pos < total) {                           /* out of buffers: wait for more */
            q->last_avail -= count;
            if (enable_notify(e, q))
                continue;
            break;
        }
        unsigned char hdr[HDR_LEN];
        memcpy(hdr, e->frame, HDR_LEN);
        uint16_t nb = (uint16_t)count;
        memcpy(hdr + 10, &nb, 2);
        scatter(e, &e->ch[0], hdr, HDR_LEN, 0);
        for (int i = 0; i < count; i++)
            push(e, q, heads[i], lens[i]);
        e->pending = 0;
        e->counters[C_RX_FRAMES]++;
        moved++;
    }
    if (moved && need_interrupt(e, q))
        e->counters[C_IRQ_RX]++;
    return moved;
}

/* The engine for a device on the region mem[0:memlen], its queues at the given offsets,
 * serving TAP fd through writer (NULL: write() here). feats: the negotiated bits below. */
#define E_EVENT_IDX 1
#define E_INDIRECT 2
#define E_HOST_CSUM 4
#define E_HOST_TSO4 8
#define E_GUEST_CSUM 16
#define E_GUEST_TSO4 32
#define E_MRG 64
static struct engine *engine_new(char *mem, unsigned long memlen, int fd, struct tapw *writer, int feats,
                                 unsigned int size_rx, unsigned long rx_desc, unsigned long rx_avail,
                                 unsigned long rx_used, unsigned int size_tx, unsigned long tx_desc,
                                 unsigned long tx_avail, unsigned long tx_used)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->mem = (unsigned char *)mem;
    e->memlen = memlen;
    e->fd = fd;
    e->writer = writer;
    e->host_csum = !!(feats & E_HOST_CSUM);
    e->host_tso4 = !!(feats & E_HOST_TSO4);
    e->csum_ok = !!(feats & E_GUEST_CSUM);
    e->tso4_ok = !!(feats & E_GUEST_TSO4);
    e->mrg = !!(feats & E_MRG);
    struct vq *qs[2] = {&e->rx, &e->tx};
    unsigned long lay[2][4] = {{size_rx, rx_desc, rx_avail, rx_used}, {size_tx, tx_desc, tx_avail, tx_used}};
    for (int i = 0; i < 2; i++) {
        qs[i]->size = (uint32_t)lay[i][0];
        qs[i]->desc = lay[i][1];
        qs[i]->avail = lay[i][2];
        qs[i]->used = lay[i][3];
        qs[i]->event_idx = !!(feats & E_EVENT_IDX);
        qs[i]->indirect = !!(feats & E_INDIRECT);
    }
    return e;
}

static void engine_set_writer(struct engine *e, struct tapw *writer)
{
    e->writer = writer;
}

static void engine_free(struct engine *e)
{
    free(e);
}

static const char *engine_error(struct engine *e)
{
    return e->error;
}

static void engine_counters(struct engine *e, unsigned long long *out)
{
    for (int i = 0; i < C_N; i++)
        out[i] = e->counters[i];
    out[C_N] = (unsigned long long)e->last_rx_errno;
    out[C_N + 1] = (unsigned long long)e->last_tx_errno;
}
