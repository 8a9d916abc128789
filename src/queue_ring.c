/*
 * queue_ring.c -- the queue's records: their check words, copying in and out
 * of the ring, validating a record, walking the ring, and the two locks with
 * their recovery.  (design and layout: queue_internal.h)
 */
#include "queue_internal.h"

#include <limits.h>
#include <string.h>

/* ---------------------------------------------------------- record digest
 * A multiply-and-fold step per 8-byte word.  A payload of DIGEST_LANES_MIN
 * bytes or more runs four independent chains ("lanes": the four multiplies
 * overlap, ~3x one chain's speed), word i going to lane i % 4, folded
 * together at the end; a shorter one runs one chain, which costs less than
 * setting up and folding four.  Fed piece by piece: a payload that wraps
 * around the ring is split at the ring's end, a multiple of 8 bytes from
 * its 8-aligned start, so every piece but the last is whole words and the
 * digest is the same as for one piece.  The lanes are kept rotated so that
 * h[0] is always the next word's: a piece of any length then needs no
 * index arithmetic, and the fold turns the rotation back. */
#define DIGEST_K 0x9E3779B97F4A7C15ull
#define DIGEST_LANES_MIN 128u

typedef struct digest {
    uint64_t h[4];  /* h[0]: the lane of the next word (one chain: h[0] only) */
    uint64_t words; /* words fed so far */
    int lanes;      /* four chains, or one */
} digest;

static inline uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * DIGEST_K;
    return h ^ h >> 32;
}

static inline uint64_t rotl(uint64_t x, unsigned r) { return r ? x << r | x >> (64 - r) : x; }

static void digest_words(digest *d, const char *p, uint64_t n)
{
    uint64_t h0 = d->h[0], w;
    d->words += (n + 7) / 8;
    if (!d->lanes) {
        for (; n >= 8; p += 8, n -= 8) {
            memcpy(&w, p, 8);
            h0 = mix(h0, w);
        }
        if (n) { /* the last piece's last, partial word */
            w = 0;
            memcpy(&w, p, n);
            h0 = mix(h0, w);
        }
        d->h[0] = h0;
        return;
    }
    uint64_t h1 = d->h[1], h2 = d->h[2], h3 = d->h[3], t;
    for (; n >= 32; p += 32, n -= 32) {
        uint64_t w4[4];
        memcpy(w4, p, 32);
        h0 = mix(h0, w4[0]);
        h1 = mix(h1, w4[1]);
        h2 = mix(h2, w4[2]);
        h3 = mix(h3, w4[3]);
    }
    for (; n; p += 8, n -= n < 8 ? n : 8) { /* single words: rotate */
        w = 0;
        memcpy(&w, p, n < 8 ? n : 8);
        t = mix(h0, w);
        h0 = h1, h1 = h2, h2 = h3, h3 = t;
    }
    d->h[0] = h0, d->h[1] = h1, d->h[2] = h2, d->h[3] = h3;
}

static inline digest digest_start(uint32_t len, uint32_t tag, uint32_t flags)
{
    uint64_t h = ((uint64_t)len | (uint64_t)tag << 32 | (uint64_t)flags << 40) * DIGEST_K +
                 0x5143;
    digest d = {{h, h ^ 0x1111, h ^ 0x2222, h ^ 0x3333}, 0, len >= DIGEST_LANES_MIN};
    return d;
}

static inline uint16_t digest_end(const digest *d)
{
    uint64_t h = d->h[0];
    if (d->lanes) {
        /* lane j rotated by 16 j (equal lanes must not cancel); the lanes
         * sit rotated by words % 4 positions, which rotates the sum by 16
         * bits per position (4 * 16 = 64) */
        h = d->h[0] ^ rotl(d->h[1], 16) ^ rotl(d->h[2], 32) ^ rotl(d->h[3], 48);
        h = mix(rotl(h, (unsigned)(16 * (d->words % 4))), 0);
    }
    h ^= h >> 29;
    return (uint16_t)(h ^ h >> 16 ^ h >> 32 ^ h >> 48);
}

/* The check word of a record holding `payload` (contiguous). */
uint16_t shk_q_digest(uint32_t len, uint32_t tag, uint32_t flags, const void *payload)
{
    digest d = digest_start(len, tag, flags);
    digest_words(&d, payload, len);
    return digest_end(&d);
}

/* ------------------------------------------------------------- ring copy */

void shk_q_ring_write(shk_queue *q, uint64_t pos, const void *src, uint64_t n)
{
    uint64_t o = pos & q->mask, first = q->ring_size - o;
    if (first >= n) {
        memcpy(q->ring + o, src, n);
    } else {
        memcpy(q->ring + o, src, first);
        memcpy(q->ring, (const char *)src + first, n - first);
    }
}

void shk_q_ring_read(const shk_queue *q, uint64_t pos, void *dst, uint64_t n)
{
    uint64_t o = pos & q->mask, first = q->ring_size - o;
    if (first >= n) {
        memcpy(dst, q->ring + o, n);
    } else {
        memcpy(dst, q->ring + o, first);
        memcpy((char *)dst + first, q->ring, n - first);
    }
}

/* The check word of the record at `pos` as it lies in the ring. */
static uint16_t ring_digest(const shk_queue *q, uint64_t pos, const rec_hdr *h)
{
    uint64_t o = (pos + REC_HDR) & q->mask, first = q->ring_size - o;
    digest d = digest_start(h->len, h->tag, h->flags);
    if (first >= h->len) {
        digest_words(&d, q->ring + o, h->len);
    } else {
        digest_words(&d, q->ring + o, first);
        digest_words(&d, q->ring, h->len - first);
    }
    return digest_end(&d);
}

/* Read and validate the record at `pos`, knowing `avail` bytes of records
 * follow it.  Fills *h (and *ref for OOL).  SHK_ECORRUPT if it cannot be a
 * record the queue wrote. */
int shk_q_read_record(const shk_queue *q, uint64_t pos, uint64_t avail, rec_hdr *h,
                      ool_ref *ref)
{
    if (avail < REC_HDR)
        return SHK_ECORRUPT;
    /* 8-aligned position, ring_size a multiple of 8: never wraps. */
    memcpy(h, q->ring + (pos & q->mask), REC_HDR);
    if ((h->flags & ~REC_OOL) || rec_size(h->len) > avail ||
        (!(h->flags & REC_OOL) && h->len > q->inline_max) || ring_digest(q, pos, h) != h->check)
        return SHK_ECORRUPT;
    if (h->flags & REC_OOL) {
        if (h->len != sizeof(ool_ref))
            return SHK_ECORRUPT;
        shk_q_ring_read(q, pos + REC_HDR, ref, sizeof *ref);
        if (ref->len > SHK_QUEUE_MAX_ITEM ||
            !shk_segment_contains(q->seg, ref->off, ref->len) ||
            shk_freelist_usable(q->heap, ref->off) < ref->len)
            return SHK_ECORRUPT;
    }
    return SHK_OK;
}

/* ------------------------------------------------------ lock and recovery */

/* Walk [head, tail) (lock held): count the records and the out-of-line
 * ones, stopping at the first that cannot be a record (*end: its position,
 * or tail).  SHK_ECORRUPT if the positions or a record are bad.  Used by
 * recovery (which cuts the ring at *end) and by check(). */
int shk_q_walk(shk_queue *q, uint64_t *count, uint64_t *ool, uint64_t *end)
{
    q_shared *sh = q->sh;
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    uint64_t n = 0, o = 0, p = head;
    int rc = SHK_OK;
    if (tail - head > q->ring_size || (head | tail) % 8) {
        *count = *ool = 0;
        *end = head;
        return SHK_ECORRUPT;
    }
    while (p != tail) {
        rec_hdr h;
        ool_ref ref;
        if (shk_q_read_record(q, p, tail - p, &h, &ref) != SHK_OK) {
            rc = SHK_ECORRUPT;
            break;
        }
        n++;
        o += (h.flags & REC_OOL) != 0;
        p += rec_size(h.len);
    }
    *count = n;
    *ool = o;
    *end = p;
    return rc;
}

void shk_q_wake_all(shk_queue *q)
{
    /* relaxed: the bump only has to make a waiter that is about to sleep
     * on the old value not sleep; FUTEX_WAIT compares atomically. */
    SHK_A(atomic_fetch_add_explicit(&q->sh->not_empty, 1, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&q->sh->not_full, 1, memory_order_relaxed));
    shk_futex_wake(&q->sh->not_empty, INT_MAX);
    shk_futex_wake(&q->sh->not_full, INT_MAX);
}

/* Both locks held: the totals from the ring (RECOVERY).  The dead holder
 * may have stopped between two stores; cut the ring at the first bad
 * record and recount. */
static void repair(shk_queue *q)
{
    q_shared *sh = q->sh;
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    if (tail - head > q->ring_size || (head | tail) % 8) {
        /* Positions are only ever stored whole; this is memory corruption.
         * Empty the queue rather than read garbage. */
        SHK_A(atomic_store_explicit(&sh->tail, head & ~7ull, memory_order_release));
        SHK_A(atomic_store_explicit(&sh->head, head & ~7ull, memory_order_release));
    }
    uint64_t n, o, end;
    if (shk_q_walk(q, &n, &o, &end) != SHK_OK)
        SHK_A(atomic_store_explicit(&sh->tail, end, memory_order_release));
    /* release: as every write of the totals (TWO LOCKS); both locks are
     * held, so nobody else writes them now. */
    uint64_t got = SHK_A(atomic_load_explicit(&sh->total_got, memory_order_relaxed));
    uint64_t ogot = SHK_A(atomic_load_explicit(&sh->ool_got, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&sh->total_put, got + n, memory_order_release));
    SHK_A(atomic_store_explicit(&sh->ool_put, ogot + o, memory_order_release));
    SHK_A(atomic_store_explicit(&sh->repair, 0, memory_order_relaxed));
    /* relaxed: read under get_lock, which we hold (SEEN) */
    SHK_A(atomic_fetch_add_explicit(&sh->repairs, 1, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&sh->recoveries, 1, memory_order_relaxed));
    /* Room or items may have appeared (the count was one too high): wake
     * every waiter, who looks again (BLOCKING).  Under the locks: this
     * path is rare, and no waiter needs them to look. */
    shk_q_wake_all(q);
}

/* Both locks held, get_lock just taken (get_rc: SHK_OK or
 * SHK_MUTEX_RECOVERED): repair if put_lock's holder died (put_dead),
 * get_lock's did, or a repair is pending; get_lock is consistent after. */
static void settle(shk_queue *q, int put_dead, int get_rc)
{
    /* relaxed: written under get_lock, which we hold */
    if (put_dead || get_rc == SHK_MUTEX_RECOVERED ||
        SHK_A(atomic_load_explicit(&q->sh->repair, memory_order_relaxed)))
        repair(q);
    if (get_rc == SHK_MUTEX_RECOVERED)
        shk_mutex_consistent(&q->sh->get_lock);
}

/* put_lock held (put_rc: how we took it, SHK_OK or SHK_MUTEX_RECOVERED):
 * take get_lock too and settle.  SHK_OK with both held, else neither. */
static int then_get_lock(shk_queue *q, int put_rc)
{
    int rc = shk_mutex_lock(&q->sh->get_lock);
    if (rc != SHK_OK && rc != SHK_MUTEX_RECOVERED) {
        if (put_rc == SHK_MUTEX_RECOVERED)
            shk_mutex_consistent(&q->sh->put_lock);
        shk_mutex_unlock(&q->sh->put_lock);
        return rc;
    }
    settle(q, put_rc == SHK_MUTEX_RECOVERED, rc);
    if (put_rc == SHK_MUTEX_RECOVERED)
        shk_mutex_consistent(&q->sh->put_lock);
    return SHK_OK;
}

int shk_q_lock_both(shk_queue *q)
{
    int rc = shk_mutex_lock(&q->sh->put_lock);
    if (rc != SHK_OK && rc != SHK_MUTEX_RECOVERED)
        return rc;
    return then_get_lock(q, rc);
}

int shk_q_lock_put(shk_queue *q)
{
    int rc = shk_mutex_lock(&q->sh->put_lock);
    if (SHK_LIKELY(rc == SHK_OK))
        return SHK_OK;
    if (rc != SHK_MUTEX_RECOVERED)
        return rc;
    /* A dead producer: repair with both locks (put_lock is the first in
     * the order), then keep only put_lock. */
    rc = then_get_lock(q, rc);
    if (rc == SHK_OK)
        shk_mutex_unlock(&q->sh->get_lock);
    return rc;
}

int shk_q_lock_get(shk_queue *q)
{
    int rc = shk_mutex_lock(&q->sh->get_lock);
    if (rc != SHK_OK && rc != SHK_MUTEX_RECOVERED)
        return rc;
    /* relaxed: written under get_lock, which we hold */
    if (SHK_LIKELY(rc == SHK_OK &&
                   !SHK_A(atomic_load_explicit(&q->sh->repair, memory_order_relaxed))))
        return SHK_OK;
    /* A dead holder, or a repair left pending by one: the repair needs
     * put_lock, which comes first in the order.  Leave a note that outlives
     * us, then take both in order (RECOVERY) and keep get_lock. */
    SHK_A(atomic_store_explicit(&q->sh->repair, 1, memory_order_relaxed));
    if (rc == SHK_MUTEX_RECOVERED)
        shk_mutex_consistent(&q->sh->get_lock);
    shk_mutex_unlock(&q->sh->get_lock);
    rc = shk_q_lock_both(q);
    if (rc == SHK_OK)
        shk_mutex_unlock(&q->sh->put_lock);
    return rc;
}

void shk_q_repair_from_put(shk_queue *q)
{
    int rc = shk_pmutex_trylock(&q->sh->get_lock.m);
    if (rc != SHK_OK && rc != SHK_MUTEX_RECOVERED)
        return; /* held by a live consumer, who repairs if need be */
    settle(q, 0, rc);
    shk_mutex_unlock(&q->sh->get_lock);
}
