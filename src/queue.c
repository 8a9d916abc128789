/*
 * queue.c -- the MPMC queue: create/open, put and get, waiting, inspection
 * and check.  (design and layout: queue_internal.h)
 */
#include "queue_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ create/open */

int shk_queue_create_in(shk_segment *seg, const shk_queue_config *cfg, uint64_t *off)
{
    uint64_t ring = cfg && cfg->ring_bytes ? cfg->ring_bytes : SHK_QUEUE_DEFAULT_RING;
    uint64_t maxsize = cfg ? cfg->maxsize : 0;
    if (ring > SHK_QUEUE_MAX_RING)
        return SHK_EINVAL;
    if (ring < SHK_QUEUE_MIN_RING)
        ring = SHK_QUEUE_MIN_RING;
    if (ring & (ring - 1))
        ring = 2ull << shk_log2_u64(ring);
    shk_freelist *heap = shk_segment_heap(seg);
    uint64_t hoff, roff;
    int rc = shk_freelist_alloc(heap, sizeof(q_shared), &hoff);
    if (rc != SHK_OK)
        return rc;
    rc = shk_freelist_alloc(heap, ring, &roff);
    if (rc != SHK_OK) {
        shk_freelist_free(heap, hoff);
        return rc;
    }
    q_shared *sh = (q_shared *)(shk_segment_base(seg) + hoff);
    memset(sh, 0, sizeof *sh);
    rc = shk_mutex_init(&sh->put_lock);
    if (rc == SHK_OK)
        rc = shk_mutex_init(&sh->get_lock);
    if (rc != SHK_OK) {
        shk_freelist_free(heap, roff);
        shk_freelist_free(heap, hoff);
        return rc;
    }
    sh->ring_off = roff;
    sh->ring_size = ring;
    sh->maxsize = maxsize;
    sh->inline_max = ring / 8;
    sh->version = Q_VERSION;
    sh->header_size = sizeof(q_shared);
    /* Plain store: the directory entry that makes this header reachable is
     * published with a release store after init returns. */
    sh->magic = Q_MAGIC;
    *off = hoff;
    return SHK_OK;
}

int shk_queue_open(shk_segment *seg, uint64_t off, shk_queue **out)
{
    if (off % 8 || !shk_segment_contains(seg, off, sizeof(q_shared)))
        return SHK_ECORRUPT;
    char *base = shk_segment_base(seg);
    q_shared *sh = (q_shared *)(base + off);
    if (sh->magic != Q_MAGIC || sh->version != Q_VERSION || sh->header_size != sizeof(q_shared))
        return SHK_ECORRUPT;
    uint64_t ring = sh->ring_size;
    if (ring < SHK_QUEUE_MIN_RING || ring > SHK_QUEUE_MAX_RING || (ring & (ring - 1)) ||
        sh->ring_off % 16 || !shk_segment_contains(seg, sh->ring_off, ring) ||
        sh->inline_max > ring / 8)
        return SHK_ECORRUPT;
    /* Overlap of header and ring would let writes to one corrupt the other. */
    if (sh->ring_off < shk_add_sat(off, sizeof(q_shared)) && off < sh->ring_off + ring)
        return SHK_ECORRUPT;
    /* Producers and consumers go on meanwhile: a head read before a tail
     * can be a whole ring behind it if we are preempted between the two
     * loads.  tail - head <= ring holds at every instant, so check it with
     * a head that did not move while tail was read (acquire on the first
     * two loads keeps the three in order; nothing is read through them). */
    uint64_t head, tail;
    for (unsigned tries = 0;; tries++) {
        head = SHK_A(atomic_load_explicit(&sh->head, memory_order_acquire));
        tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_acquire));
        if (SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed)) == head)
            break;
        if (tries == 1u << 16)
            return SHK_ECORRUPT;
    }
    if (tail - head > ring || (head | tail) % 8)
        return SHK_ECORRUPT;
    shk_queue *q = calloc(1, sizeof *q);
    if (!q)
        return SHK_ESYS;
    q->seg = seg;
    q->heap = shk_segment_heap(seg);
    q->base = base;
    q->sh = sh;
    q->ring = base + sh->ring_off;
    q->ring_size = ring;
    q->mask = ring - 1;
    q->maxsize = sh->maxsize;
    q->inline_max = sh->inline_max;
    q->me_cell = -1;
    shk_fork_watch();
    shk_segment_retain(seg);
    *out = q;
    return SHK_OK;
}

static int init_cb(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    *size = sizeof(q_shared);
    return shk_queue_create_in(seg, arg, off);
}

int shk_queue_open_named(shk_segment *seg, const char *name, const shk_queue_config *cfg,
                         shk_queue **out, int *created)
{
    uint64_t off;
    shk_queue_config dflt = {0, 0};
    int rc = shk_segment_object(seg, name, SHK_TYPE_QUEUE, init_cb, (void *)(cfg ? cfg : &dflt),
                                &off, created);
    if (rc != SHK_OK)
        return rc;
    return shk_queue_open(seg, off, out);
}

void shk_queue_close(shk_queue *q)
{
    if (!q)
        return;
    shk_segment_close(q->seg);
    free(q);
}

shk_segment *shk_queue_segment(const shk_queue *q) { return q->seg; }

/* ------------------------------------------------------------------- put */

/* Room for one more record of `payload` ring bytes?  Decides with
 * put_lock held; a hint without it (SPINNING).  Reads head and total_got
 * only when the values this handle saw last fall short (SEEN). */
static int has_room(shk_queue *q, uint64_t payload)
{
    q_shared *sh = q->sh;
    /* tail, total_put: ours under put_lock (relaxed). */
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    if (q->maxsize) {
        uint64_t put = SHK_A(atomic_load_explicit(&sh->total_put, memory_order_relaxed));
        /* acquire: as the total_got load it caches (TWO LOCKS) */
        uint64_t got = atomic_load_explicit(&q->got_seen, memory_order_acquire);
        if (put - got >= q->maxsize) {
            got = SHK_A(atomic_load_explicit(&sh->total_got, memory_order_acquire));
            atomic_store_explicit(&q->got_seen, got, memory_order_release);
            /* > ring_size: a torn read outside the lock, or corruption */
            if (put - got >= q->maxsize && put - got <= q->ring_size)
                return 0;
        }
    }
    uint64_t need = rec_size(payload);
    /* acquire: the consumer that moved head past these bytes had read
     * them (TWO LOCKS); the cached value carries the same guarantee. */
    uint64_t used = tail - atomic_load_explicit(&q->head_seen, memory_order_acquire);
    if (used <= q->ring_size && need <= q->ring_size - used)
        return 1;
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_acquire));
    atomic_store_explicit(&q->head_seen, head, memory_order_release);
    used = tail - head;
    /* used > ring_size only in a torn read outside the lock (SPINNING) */
    return used <= q->ring_size && need <= q->ring_size - used;
}

/* has_room with put_lock held: a queue full by its count may only look
 * full (a dead consumer's count, RECOVERY); then repair and look again. */
static int room_locked(shk_queue *q, uint64_t payload)
{
    if (has_room(q, payload))
        return 1;
    if (!q->maxsize || shk_q_count(q) < q->maxsize)
        return 0;
    shk_q_repair_from_put(q);
    return has_room(q, payload);
}

/* Is there an item to take?  A hint (SPINNING, BLOCKING): relaxed; the
 * try under get_lock decides. */
static int item_hint(shk_queue *q, uint64_t unused)
{
    (void)unused;
    return SHK_A(atomic_load_explicit(&q->sh->tail, memory_order_relaxed)) !=
           SHK_A(atomic_load_explicit(&q->sh->head, memory_order_relaxed));
}

/* Single writer under the side's lock: load and store, no RMW.  release:
 * what the other side reads of it must come with what was written before
 * (TWO LOCKS). */
static inline void bump(_Atomic uint64_t *v, uint64_t by)
{
    SHK_A(atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + by,
                                memory_order_release));
}

/* Append one record and commit it.  put_lock held, room checked. */
static inline void append(shk_queue *q, const void *payload, uint32_t plen, uint32_t tag,
                          uint32_t flags)
{
    q_shared *sh = q->sh;
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    rec_hdr h = {plen, (uint8_t)tag, (uint8_t)flags, shk_q_digest(plen, tag, flags, payload)};
    memcpy(q->ring + (tail & q->mask), &h, REC_HDR);
    shk_q_ring_write(q, tail + REC_HDR, payload, plen);
    SHK_CRASH_POINT("queue.put.count");
    /* Counted before committed, so total_got <= total_put (TWO LOCKS). */
    if (flags & REC_OOL)
        bump(&sh->ool_put, 1);
    bump(&sh->total_put, 1);
    SHK_CRASH_POINT("queue.put.commit");
    /* The commit.  release: a consumer that reads this tail (acquire) sees
     * the record and the totals. */
    SHK_A(atomic_store_explicit(&sh->tail, tail + rec_size(plen), memory_order_release));
}

/* ---- waiting (see BLOCKING) ----
 * A waiter registers (waiter_enter, which returns the generation it
 * registered in), reads the sequence word, re-checks its condition after a
 * seq_cst fence and sleeps on the word; it takes its registration back
 * with waiter_leave.  A committer, after its commit store, fences and
 * bumps the sequence word if anyone is registered (signal_waiters), then
 * wakes (wake_waiters). */
static inline uint32_t waiter_enter(_Atomic uint32_t *waiters)
{
    /* seq_cst: the registration must precede the waiter's re-check in the
     * single order, against the committer's fence (BLOCKING). */
    uint32_t w = SHK_A(atomic_load_explicit(waiters, memory_order_relaxed));
    while (
        (w & WAITER_MASK) != WAITER_MASK &&
        !SHK_A(atomic_compare_exchange_weak_explicit(waiters, &w, w + 1, memory_order_seq_cst,
                                                     memory_order_relaxed)))
        ;
    shk_fence_sc(); /* before the re-check */
    return w >> WAITER_BITS;
}

static void waiter_leave(_Atomic uint32_t *waiters, uint32_t gen)
{
    /* relaxed: a counter; a stale value costs at most one wake syscall. */
    uint32_t w = SHK_A(atomic_load_explicit(waiters, memory_order_relaxed));
    while (
        (w >> WAITER_BITS) == gen && (w & WAITER_MASK) != 0 &&
        !SHK_A(atomic_compare_exchange_weak_explicit(waiters, &w, w - 1, memory_order_relaxed,
                                                     memory_order_relaxed)))
        ;
}

/* After a commit store: must waiters be woken?  Bumps the word if so. */
static inline int signal_waiters(_Atomic uint32_t *waiters, _Atomic uint32_t *seq)
{
    /* Our commit store before this load, against the waiter's
     * registration before its re-check (BLOCKING). */
    if (SHK_LIKELY((shk_fenced_load_u32(waiters) & WAITER_MASK) == 0))
        return 0;
    /* release: a waiter that reads the new value sees our commit. */
    SHK_A(atomic_fetch_add_explicit(seq, 1, memory_order_release));
    return 1;
}

/* Wakes up to n sleepers; if none was asleep, the count lied: start a new
 * generation (BLOCKING). */
static void wake_waiters(_Atomic uint32_t *waiters, _Atomic uint32_t *seq, int n)
{
    if (shk_futex_wake(seq, n) > 0)
        return;
    uint32_t w = SHK_A(atomic_load_explicit(waiters, memory_order_relaxed));
    if ((w & WAITER_MASK) == 0)
        return;
    uint32_t gen = ((w >> WAITER_BITS) + 1) & (0xffffffffu >> WAITER_BITS);
    /* One try, relaxed: a count that changed meanwhile belongs to live
     * waiters; the next committer's wake that finds nobody asleep resets
     * it.  No wake-up depends on the reset: signal_waiters bumped the word
     * already, so a live waiter about to sleep does not. */
    if (!SHK_A(atomic_compare_exchange_strong_explicit(waiters, &w, gen << WAITER_BITS,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed)))
        return;
    SHK_A(atomic_fetch_add_explicit(seq, 1, memory_order_release));
    shk_futex_wake(seq, INT_MAX);
}

static inline void wake_not_empty(shk_queue *q, int n)
{
    if (signal_waiters(&q->sh->get_waiters, &q->sh->not_empty))
        wake_waiters(&q->sh->get_waiters, &q->sh->not_empty, n);
}

static inline void wake_not_full(shk_queue *q)
{
    if (signal_waiters(&q->sh->put_waiters, &q->sh->not_full))
        wake_waiters(&q->sh->put_waiters, &q->sh->not_full, INT_MAX);
}

void shk_queue_wake_waiters(shk_queue *q)
{
    shk_q_wake_all(q);
    if (q->tasks) { /* a ledger this handle validated */
        SHK_A(atomic_fetch_add_explicit(&q->tasks->join_seq, 1, memory_order_relaxed));
        shk_futex_wake(&q->tasks->join_seq, INT_MAX);
    }
}

/* Non-blocking put of one item.  An OOL item is copied into a heap block
 * before locking; *block carries it across attempts of a blocking put. */
static int try_put(shk_queue *q, const void *data, uint64_t len, uint32_t tag, uint64_t *block)
{
    int ool = len > q->inline_max || *block != 0;
    ool_ref ref;
    for (;;) {
        if (ool) {
            if (*block == 0) {
                int rc = shk_freelist_alloc(q->heap, len ? len : 1, block);
                if (rc != SHK_OK)
                    /* A spill the heap cannot take waits for ring room. */
                    return len > q->inline_max ? rc : SHK_EFULL;
                memcpy(q->base + *block, data, len);
                SHK_CRASH_POINT("queue.put.ool");
            }
            ref.off = *block;
            ref.len = len;
        }
        int rc = shk_q_lock_put(q);
        if (rc != SHK_OK)
            return rc;
        if (room_locked(q, ool ? sizeof ref : len))
            break;
        int spill = !ool && len > sizeof ref && has_room(q, sizeof ref);
        shk_q_unlock_put(q);
        if (!spill)
            return SHK_EFULL;
        ool = 1; /* no room inline, room for a reference: spill */
    }
    uint64_t plen = ool ? sizeof ref : len;
    append(q, ool ? (const void *)&ref : data, (uint32_t)plen, tag, ool ? REC_OOL : 0);
    shk_q_unlock_put(q);
    *block = 0; /* the record owns it now */
    SHK_CRASH_POINT("queue.put.wake");
    wake_not_empty(q, 1);
    return SHK_OK;
}

/* Poll ready(q, arg) for up to *budget ns (and at most timeout_ns when
 * that is positive), adapting the budget (SPINNING).  1 if it said ready.
 * Bounded by the clock, read every SPIN_CLOCK_EVERY polls. */
static int spin_wait(shk_queue *q, _Atomic int64_t *budget, int64_t timeout_ns,
                     int (*ready)(shk_queue *, uint64_t), uint64_t arg)
{
    /* relaxed: a process-local tuning value; a lost update between two
     * threads of one process only makes the budget less adapted. */
    int64_t b = atomic_load_explicit(budget, memory_order_relaxed);
    if (b < SPIN_MIN_NS || b > SPIN_MAX_NS)
        b = SPIN_START_NS;
    int64_t limit = timeout_ns > 0 && timeout_ns < b ? timeout_ns : b;
    int64_t start = shk_now_ns();
    for (unsigned i = 1;; i++) {
        if (ready(q, arg)) {
            atomic_store_explicit(budget, b * 2 < SPIN_MAX_NS ? b * 2 : SPIN_MAX_NS,
                                  memory_order_relaxed);
            return 1;
        }
        if (i % SPIN_CLOCK_EVERY == 0) {
            if (shk_now_ns() - start >= limit)
                break;
            sched_yield();
        } else {
            shk_cpu_relax();
        }
    }
    atomic_store_explicit(budget, b / 2 > SPIN_MIN_NS ? b / 2 : SPIN_MIN_NS,
                          memory_order_relaxed);
    return 0;
}

/* Sleep until ready(q, arg) may hold, the timeout, or a wake (BLOCKING);
 * the check after registering is the one that decides.  SHK_OK when it
 * held there, else what the futex wait said. */
static int wait_on(shk_queue *q, _Atomic uint32_t *waiters, _Atomic uint32_t *seq,
                   int (*ready)(shk_queue *, uint64_t), uint64_t arg, int64_t timeout_ns)
{
    uint32_t gen = waiter_enter(waiters);
    /* acquire: a bump we read comes with the commit before it */
    uint32_t s = SHK_A(atomic_load_explicit(seq, memory_order_acquire));
    int rc = SHK_OK;
    if (!ready(q, arg)) {
        /* in slices: a committer killed before its wake costs one */
        int64_t nap = timeout_ns < 0 || timeout_ns > WAIT_SLICE_NS ? WAIT_SLICE_NS : timeout_ns;
        rc = shk_futex_wait(seq, s, nap);
        if (rc == SHK_ETIMEDOUT && nap != timeout_ns)
            rc = SHK_OK; /* a slice, not the caller's timeout: look again */
    }
    waiter_leave(waiters, gen);
    return rc;
}

int shk_queue_wait_put(shk_queue *q, uint64_t len, int64_t timeout_ns)
{
    if (len > SHK_QUEUE_MAX_ITEM)
        return SHK_EINVAL;
    uint64_t plen = len > q->inline_max ? sizeof(ool_ref) : len;
    if (timeout_ns == 0)
        return has_room(q, plen) ? SHK_OK : SHK_ETIMEDOUT;
    if (spin_wait(q, &q->spin_put, timeout_ns, has_room, plen))
        return SHK_OK;
    return wait_on(q, &q->sh->put_waiters, &q->sh->not_full, has_room, plen, timeout_ns);
}

/* Run a blocking operation: try, then wait and retry until the deadline. */
#define BLOCKING_LOOP(try_expr, busy_rc, wait_expr)                                            \
    do {                                                                                       \
        int64_t deadline_ = timeout_ns > 0 ? shk_now_ns() + timeout_ns : 0;                    \
        for (;;) {                                                                             \
            int rc_ = (try_expr);                                                              \
            if (rc_ != (busy_rc) || timeout_ns == 0)                                           \
                return rc_;                                                                    \
            int64_t left_ = -1;                                                                \
            if (timeout_ns > 0) {                                                              \
                left_ = deadline_ - shk_now_ns();                                              \
                if (left_ <= 0)                                                                \
                    return SHK_ETIMEDOUT;                                                      \
            }                                                                                  \
            int wrc_ = (wait_expr);                                                            \
            if (wrc_ != SHK_OK && wrc_ != SHK_ETIMEDOUT)                                       \
                return wrc_;                                                                   \
        }                                                                                      \
    } while (0)

static int put_blocking(shk_queue *q, const void *data, uint64_t len, uint32_t tag,
                        int64_t timeout_ns, uint64_t *block)
{
    BLOCKING_LOOP(try_put(q, data, len, tag, block), SHK_EFULL,
                  shk_queue_wait_put(q, len, left_));
}

int shk_queue_put(shk_queue *q, const void *data, uint64_t len, uint32_t tag,
                  int64_t timeout_ns)
{
    if (len > SHK_QUEUE_MAX_ITEM || tag > 255 || (len && !data))
        return SHK_EINVAL;
    uint64_t block = 0;
    int rc = put_blocking(q, data, len, tag, timeout_ns, &block);
    if (block)
        shk_freelist_free(q->heap, block);
    return rc;
}

int shk_queue_put_many(shk_queue *q, const shk_queue_item *items, uint64_t n, uint64_t *done)
{
    uint64_t k = 0;
    int rc = SHK_OK;
    *done = 0;
    while (k < n && rc == SHK_OK) {
        /* Inline items go in one lock hold; an OOL item takes its own
         * try_put (its block is filled outside put_lock). */
        const shk_queue_item *it = &items[k];
        if (it->len > SHK_QUEUE_MAX_ITEM || it->tag > 255 || (it->len && !it->data))
            return SHK_EINVAL; /* *done items before it were put */
        if (it->len > q->inline_max) {
            uint64_t block = 0;
            rc = try_put(q, it->data, it->len, it->tag, &block);
            if (block)
                shk_freelist_free(q->heap, block);
            if (rc == SHK_OK)
                *done = ++k;
            continue;
        }
        rc = shk_q_lock_put(q);
        if (rc != SHK_OK)
            return rc;
        uint64_t start = k;
        int spill = 0;
        while (k < n) {
            it = &items[k];
            if (it->len > q->inline_max || it->tag > 255 || (it->len && !it->data))
                break;
            if (!room_locked(q, it->len)) {
                /* try_put below spills it out of line, or says EFULL */
                spill = it->len > sizeof(ool_ref) && has_room(q, sizeof(ool_ref));
                rc = spill ? SHK_OK : SHK_EFULL;
                break;
            }
            append(q, it->data, (uint32_t)it->len, it->tag, 0);
            k++;
        }
        shk_q_unlock_put(q);
        if (k > start)
            wake_not_empty(q, (int)((k - start) < INT_MAX ? k - start : INT_MAX));
        *done = k;
        if (spill) {
            uint64_t block = 0;
            rc = try_put(q, items[k].data, items[k].len, items[k].tag, &block);
            if (block)
                shk_freelist_free(q->heap, block);
            if (rc == SHK_OK)
                *done = ++k;
        }
    }
    return rc;
}

/* ------------------------------------------------------------------- get */

/* get_lock held: the shared tail, read again (SEEN).  acquire: the
 * records before it are written (TWO LOCKS). */
static inline uint64_t fresh_tail(shk_queue *q)
{
    uint64_t tail = SHK_A(atomic_load_explicit(&q->sh->tail, memory_order_acquire));
    atomic_store_explicit(&q->tail_seen, tail, memory_order_release);
    return tail;
}

/* Take up to max items under one get_lock hold.  SHK_EEMPTY if none. */
static int try_get(shk_queue *q, uint64_t max, shk_queue_alloc_fn alloc, void *ctx,
                   uint64_t *done, int *more)
{
    int rc = shk_q_lock_get(q);
    if (rc != SHK_OK)
        return rc;
    q_shared *sh = q->sh;
    q_tasks *t;
    rc = shk_q_tasks_of(q, &t);
    if (rc != SHK_OK) {
        shk_q_unlock_get(q);
        return rc;
    }
    t_cell *cell = NULL; /* claimed when the first item is taken */
    /* head: ours under get_lock. */
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    /* acquire: the records below a tail this handle read are written (TWO
     * LOCKS); the shared tail is read again only once we reach that one
     * (SEEN). */
    uint64_t tail = atomic_load_explicit(&q->tail_seen, memory_order_acquire);
    /* relaxed: written by a repair, under get_lock too */
    uint64_t repairs = SHK_A(atomic_load_explicit(&sh->repairs, memory_order_relaxed));
    if (tail - head - 1 >= q->ring_size || repairs != q->repairs_seen) {
        /* reached, passed, not ours, or read before a repair cut the ring */
        q->repairs_seen = repairs;
        tail = fresh_tail(q);
    }
    if (tail - head > q->ring_size || (head | tail) % 8) {
        shk_q_unlock_get(q);
        return SHK_ECORRUPT;
    }
    uint64_t k = 0;
    /* OOL blocks to free after the lock is dropped; a few at a time. */
    uint64_t to_free[16];
    unsigned nfree = 0;
    while (k < max && nfree < 16 && (head != tail || (tail = fresh_tail(q)) != head)) {
        rec_hdr h;
        ool_ref ref;
        rc = shk_q_read_record(q, head, tail - head, &h, &ref);
        if (rc != SHK_OK)
            break;
        int ool = (h.flags & REC_OOL) != 0;
        uint64_t len = ool ? ref.len : h.len;
        void *dst = alloc(ctx, len, h.tag);
        if (!dst) {
            rc = SHK_ENOMEM;
            break;
        }
        if (ool)
            memcpy(dst, q->base + ref.off, len);
        else
            shk_q_ring_read(q, head + REC_HDR, dst, len);
        head += rec_size(h.len);
        SHK_CRASH_POINT("queue.get.commit");
        /* The commit of this item.  release: a producer that reads this
         * head (acquire) may overwrite the bytes we read. */
        SHK_A(atomic_store_explicit(&sh->head, head, memory_order_release));
        SHK_CRASH_POINT("queue.get.count");
        if (ool)
            bump(&sh->ool_got, 1);
        bump(&sh->total_got, 1);
        if (t) {
            if (!cell)
                cell = shk_q_claim_cell(q, t);
            cell->taken++; /* still unfinished, now in our hands */
        }
        if (ool)
            to_free[nfree++] = ref.off;
        k++;
    }
    shk_q_unlock_get(q);
    if (nfree)
        SHK_CRASH_POINT("queue.get.free");
    for (unsigned i = 0; i < nfree; i++)
        shk_freelist_free(q->heap, to_free[i]);
    if (k)
        wake_not_full(q);
    *done = k;
    *more = nfree == 16;
    if (k)
        return SHK_OK;
    return rc == SHK_OK ? SHK_EEMPTY : rc;
}

int shk_queue_wait_get(shk_queue *q, int64_t timeout_ns)
{
    if (timeout_ns == 0)
        return item_hint(q, 0) ? SHK_OK : SHK_ETIMEDOUT;
    if (spin_wait(q, &q->spin_get, timeout_ns, item_hint, 0))
        return SHK_OK;
    return wait_on(q, &q->sh->get_waiters, &q->sh->not_empty, item_hint, 0, timeout_ns);
}

int shk_queue_get(shk_queue *q, shk_queue_alloc_fn alloc, void *ctx, int64_t timeout_ns)
{
    uint64_t done;
    int more;
    if (!alloc)
        return SHK_EINVAL;
    BLOCKING_LOOP(try_get(q, 1, alloc, ctx, &done, &more), SHK_EEMPTY,
                  shk_queue_wait_get(q, left_));
}

int shk_queue_get_many(shk_queue *q, uint64_t max_items, shk_queue_alloc_fn alloc, void *ctx,
                       uint64_t *done)
{
    *done = 0;
    if (!alloc)
        return SHK_EINVAL;
    if (max_items == 0)
        return SHK_OK;
    uint64_t total = 0;
    int rc;
    for (;;) {
        uint64_t k = 0;
        int more = 0;
        rc = try_get(q, max_items - total, alloc, ctx, &k, &more);
        total += k;
        /* try_get stops early only to free OOL blocks; go on. */
        if (rc != SHK_OK || total == max_items || !more)
            break;
    }
    *done = total;
    return total ? SHK_OK : rc;
}

typedef struct into_ctx {
    void *buf;
    uint64_t cap, len;
    uint32_t tag;
} into_ctx;

static void *into_alloc(void *ctx, uint64_t len, uint32_t tag)
{
    into_ctx *c = ctx;
    c->len = len;
    c->tag = tag;
    if (len > c->cap)
        return NULL;
    return c->buf ? c->buf : (void *)c; /* len 0: any non-NULL pointer */
}

int shk_queue_get_into(shk_queue *q, void *buf, uint64_t cap, uint64_t *len, uint32_t *tag,
                       int64_t timeout_ns)
{
    into_ctx c = {buf, cap, 0, 0};
    int rc = shk_queue_get(q, into_alloc, &c, timeout_ns);
    if (rc == SHK_ENOMEM && c.len > cap)
        rc = SHK_EINVAL;
    if (rc == SHK_OK || rc == SHK_EINVAL) {
        if (len)
            *len = c.len;
        if (tag && rc == SHK_OK)
            *tag = c.tag;
    }
    return rc;
}

/* ------------------------------------------------------------ inspection */

uint64_t shk_queue_size(const shk_queue *q)
{
    /* a snapshot; exact only when nobody is changing the queue */
    return shk_q_count(q);
}
uint64_t shk_queue_maxsize(const shk_queue *q) { return q->maxsize; }
uint64_t shk_queue_ring_bytes(const shk_queue *q) { return q->ring_size; }
uint64_t shk_queue_inline_max(const shk_queue *q) { return q->inline_max; }
uint64_t shk_queue_used_bytes(const shk_queue *q)
{
    /* relaxed: a snapshot.  head first: tail - head then never "negative" */
    uint64_t head = SHK_A(atomic_load_explicit(&q->sh->head, memory_order_relaxed));
    uint64_t used = SHK_A(atomic_load_explicit(&q->sh->tail, memory_order_relaxed)) - head;
    return used > q->ring_size ? q->ring_size : used;
}

int shk_queue_mutex_span(unsigned i, uint64_t *start, uint64_t *end)
{
    if (i > 1)
        return SHK_ENOTFOUND;
    *start = i == 0 ? offsetof(q_shared, put_lock) : offsetof(q_shared, get_lock);
    *end = *start + sizeof(pthread_mutex_t);
    return SHK_OK;
}

int shk_queue_check(shk_queue *q, shk_queue_stats *st)
{
    int rc = shk_q_lock_both(q);
    if (rc != SHK_OK)
        return rc;
    q_shared *sh = q->sh;
    uint64_t n = 0, o = 0, walk_end;
    q_tasks *tasks;
    rc = shk_q_tasks_of(q, &tasks); /* the task ledger too, if the queue has one */
    if (rc == SHK_OK)
        rc = shk_q_walk(q, &n, &o, &walk_end);
    /* relaxed: both locks held, nobody writes these now */
#define LOAD(f) SHK_A(atomic_load_explicit(&sh->f, memory_order_relaxed))
    uint64_t put = LOAD(total_put), got = LOAD(total_got);
    if (rc == SHK_OK && (n != put - got || o != LOAD(ool_put) - LOAD(ool_got) ||
                         (q->maxsize && n > q->maxsize)))
        rc = SHK_ECORRUPT;
    if (st) {
        memset(st, 0, sizeof *st);
        st->items = n;
        st->out_of_line = o;
        st->used_bytes = LOAD(tail) - LOAD(head);
        st->ring_bytes = q->ring_size;
        st->maxsize = q->maxsize;
        st->total_put = put;
        st->total_got = got;
        st->recoveries = LOAD(recoveries);
        st->get_waiters = LOAD(get_waiters) & WAITER_MASK;
        st->put_waiters = LOAD(put_waiters) & WAITER_MASK;
    }
#undef LOAD
    shk_q_unlock_both(q);
    return rc;
}
