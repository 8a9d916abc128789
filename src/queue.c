/*
 * queue.c -- MPMC queue of variable-size items: a byte ring of records under
 * a robust process-shared mutex, with futex waits.
 *
 * WHY A LOCK (and not a lock-free ring)
 *   The lock-free MPMC rings (Vyukov's bounded queue, LCRQ...) claim a slot
 *   with one atomic step and publish it with a second.  A producer SIGKILLed
 *   between the two leaves a claimed, never-published slot that every
 *   consumer must wait behind forever -- exactly the wedge we must not have --
 *   and variable-size records make claiming harder still.  With a robust
 *   mutex the critical section is tiny (a bounds check, one memcpy, three
 *   relaxed stores), an uncontended lock+unlock costs ~11 ns here, and a
 *   holder killed at any instant hands the lock to the next process with
 *   EOWNERDEAD, which repairs the ring mechanically (see RECOVERY).  Every
 *   change becomes visible through a single commit store (`tail` for a put,
 *   `head` for a get), so a half-written record is never seen.
 *
 * LAYOUT
 *   q_shared (a heap block, 256 bytes):
 *     0    magic "SHKQUEUE" | version | header_size
 *     16   ring_off | ring_size (power of two) | maxsize | inline_max
 *     64   lock (robust mutex, 64 B)
 *     128  head | tail | count | out_of_line | total_put | total_got |
 *          recoveries                        (written under the lock)
 *     192  not_empty | not_full   (futex sequence words)
 *          get_waiters | put_waiters        (own cache line)
 *   ring (a heap block of ring_size bytes, ring_size a power of two):
 *
 *        head (first unread record)      tail (next free byte)
 *          v                               v
 *     +----+-------+----+-----------+------+------------------------+
 *     |....| hdr|payload| hdr|payload| ...  |        free             |
 *     +----+-------+----+-----------+------+------------------------+
 *     head and tail are byte positions that only grow (mod 2^64); a
 *     position p is at ring offset p & (ring_size - 1).  A record may wrap
 *     around the end of the ring: it is copied in two pieces.
 *
 *   record = 8-byte header { u32 len; u8 tag; u8 flags; u16 check }
 *            + payload padded to 8 bytes.  check is a 16-bit digest of
 *            len, tag, flags and the payload's bytes (rec_digest): a record
 *            damaged in the ring fails it (a 1 in 65536 chance to pass)
 *            and gives SHK_ECORRUPT instead of wrong bytes.
 *     inline:       payload = the item's len bytes
 *     OOL (flag 1): payload = { u64 block offset; u64 item length }, the
 *                   item lives in a segment-heap block owned by the record.
 *   Items up to inline_max (ring_size/8) are inline; larger ones go out of
 *   line, so one big item never needs a huge ring and the ring never holds
 *   more than a few of them.  An item of more than 16 bytes that does not
 *   fit inline in the free part of the ring goes out of line too (it
 *   "spills") when a 24-byte record still fits: the ring then bounds the
 *   number of items held (ring_size / 24 at least), not their bytes; the
 *   heap bounds those.  If the heap has no room for a spill, the put waits
 *   for ring room as for any inline item.
 *
 * INVARIANTS (whenever the lock is free)
 *   - 0 <= tail - head <= ring_size, both multiples of 8.
 *   - [head, tail) is an exact sequence of `count` valid records, of which
 *     `out_of_line` are OOL; each OOL record owns one live heap block.
 *   - maxsize == 0 or count <= maxsize.
 *   Records are read only by the lock holder, and bounds-checked anyway
 *   (a torn or corrupt length gives SHK_ECORRUPT, never a wild read).
 *
 * COMMIT ORDER, and what a SIGKILL does to the one item in flight
 *   put:  [OOL: allocate + fill heap block] lock; write record at tail;
 *         store tail (commit); count++; unlock.
 *         Killed before the tail store: the item is not in the queue (an OOL
 *         block leaks).  After it: the item is in the queue, delivered once.
 *   get:  lock; copy the record out; store head (commit); count--; unlock;
 *         [OOL: free the block].
 *         Killed before the head store: the item stays at the head and is
 *         delivered to another consumer.  After it: the item is gone with the
 *         dead consumer (as with any queue: it was handed over).  An OOL
 *         block whose free did not happen leaks.
 *
 * RECOVERY (EOWNERDEAD)
 *   The dead holder may have stopped anywhere between two stores, so the
 *   next locker re-walks [head, tail): stops at the first invalid record
 *   (then tail = that position, impossible unless memory was corrupted),
 *   recomputes count and out_of_line, and marks the mutex consistent.
 *
 * BLOCKING
 *   Two futex sequence words, not_empty and not_full, with waiter counts.
 *   A waiter, under the lock, re-checks its condition, increments its
 *   waiter count and reads the sequence word; it sleeps after unlocking.  A
 *   committer, under the lock, bumps the sequence word only if the waiter
 *   count is non-zero and wakes after unlocking.  Both sides look at the
 *   count under the same lock, so no wake-up is lost, and with nobody
 *   waiting a put or get makes no system call at all.
 *
 *   A waiter killed while asleep cannot take its count back.  So a waiter
 *   word is { generation (high 12 bits), count (low 20) }: a waiter takes
 *   back only a registration of the current generation.  A committer whose
 *   wake found nobody asleep although the count said otherwise (the
 *   counted are dead, or about to sleep or to leave) starts a new
 *   generation with count 0, bumps the sequence word and wakes everyone:
 *   each live waiter of the old generation wakes (or does not fall asleep,
 *   the word having changed), goes round its loop and registers again.
 *   A dead waiter's count is thus dropped at the next wake.
 *
 * SPINNING
 *   A futex sleep and its wake-up cost several microseconds on each side,
 *   paid on every item when a consumer keeps up with its producer.  So a
 *   waiter first polls the queue (relaxed loads of count / head / tail, a
 *   hint; the locked check decides) for up to its handle's spin budget,
 *   yielding the CPU every SPIN_CLOCK_EVERY polls so that on a machine with
 *   more processes than cores the partner it waits for can run.  The budget
 *   adapts: a spin that saw the queue ready doubles it (at most
 *   SPIN_MAX_NS), one that ran out halves it (at least SPIN_MIN_NS), so a
 *   waiter whose partner answers within the budget never sleeps, and an
 *   idle waiter spins ~2 us per wake-up: ~0 CPU.  The budgets are
 *   process-local (the handle), never in shared memory.
 *
 * JOINABLE (task_done / join)
 *   A queue becomes joinable when a JoinableQueue handle opens it: a task
 *   ledger (a heap block, its offset in tasks_off, set once under the lock)
 *   is attached.  From then on every get, through any handle, counts the
 *   items it takes in the taking process's cell of the ledger:
 *     cell = { pid, start time of that process (/proc/pid/stat), taken }.
 *   unfinished = count (items queued) + the sum of every cell's `taken`,
 *   computed under the lock, never stored: no second counter can disagree
 *   with the ring, and EOWNERDEAD recovery needs nothing new (the dead
 *   holder's cell is its own and is reclaimed below).  task_done() takes one
 *   off the caller's cell (or, for an item another process took, off any
 *   cell with taken > 0); with every cell at 0 it is SHK_EEMPTY (Python:
 *   ValueError, "task_done() called too many times").
 *   join() sleeps on join_seq; a task_done or reclaim that brings unfinished
 *   to 0 bumps it and wakes every joiner if join_waiters says anyone waits.
 *   A consumer that exits (killed or not) with items taken and not marked
 *   done cannot mark them: each join() wait step (at most JOIN_POLL_NS of
 *   sleep) checks the processes of cells with taken > 0 and counts a dead
 *   one's items done (the ledger's `reclaimed` total says how many).  A
 *   process is dead when /proc/<pid>/stat is gone, a zombie, or names a
 *   process of another start time (the pid was reused).  Cells are found
 *   by pid, so the processes must share one pid namespace; where /proc is
 *   unreadable a process counts as alive (join waits for task_done).  The
 *   last cell is shared by any process that finds the table full of live
 *   processes; it is never reclaimed.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define Q_MAGIC 0x45554555514b4853ull   /* "SHKQUEUE" */
#define Q_VERSION 2u
#define REC_HDR 8u
#define REC_OOL 1u
#define WAITER_BITS 20u                 /* waiter word: gen << 20 | count */
#define WAITER_MASK ((1u << WAITER_BITS) - 1)
/* How long a waiter polls the queue before it sleeps (see SPINNING). */
#define SPIN_MIN_NS 2000ll        /* what an idle waiter decays to      */
#define SPIN_START_NS 20000ll     /* a new handle's budget              */
#define SPIN_MAX_NS 100000ll      /* what a busy partner can earn it    */
#define SPIN_CLOCK_EVERY 32u      /* polls between clock reads / yields */

typedef struct q_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t ring_off;
    uint64_t ring_size;
    uint64_t maxsize;
    uint64_t inline_max;
    /* Offset of the task ledger (JOINABLE), 0 if none.  Set once, under the
     * lock; read under the lock. */
    _Atomic uint64_t tasks_off;
    uint64_t reserved;
    shk_mutex lock;                       /* 64 */
    /* Written under the lock; atomic so that qsize() may read them without
     * it (relaxed everywhere: the mutex orders the lock holders). */
    _Atomic uint64_t head;                /* 128 */
    _Atomic uint64_t tail;
    _Atomic uint64_t count;
    _Atomic uint64_t out_of_line;
    _Atomic uint64_t total_put;
    _Atomic uint64_t total_got;
    _Atomic uint64_t recoveries;
    uint64_t pad1;
    _Atomic uint32_t not_empty;           /* 192: futex words */
    _Atomic uint32_t not_full;
    _Atomic uint32_t get_waiters;
    _Atomic uint32_t put_waiters;
    char pad2[SHK_CACHELINE - 16];
} q_shared;
SHK_STATIC_ASSERT(offsetof(q_shared, lock) == 64, "queue layout");
SHK_STATIC_ASSERT(offsetof(q_shared, head) == 128, "queue layout");
SHK_STATIC_ASSERT(offsetof(q_shared, not_empty) == 192, "queue layout");
SHK_STATIC_ASSERT(sizeof(q_shared) == 256, "queue header size");

typedef struct rec_hdr {
    uint32_t len;      /* payload bytes in the ring (16 for OOL) */
    uint8_t tag;
    uint8_t flags;
    uint16_t check;
} rec_hdr;
SHK_STATIC_ASSERT(sizeof(rec_hdr) == REC_HDR, "record header");

typedef struct ool_ref {
    uint64_t off, len;
} ool_ref;
SHK_STATIC_ASSERT(REC_HDR + sizeof(ool_ref) == SHK_QUEUE_MIN_RECORD, "spilled record");

#define T_MAGIC 0x534b534154514b53ull   /* "SKQTASKS" */
#define T_CELLS 128u
#define T_SHARED (T_CELLS - 1)          /* the cell of last resort */
#define JOIN_POLL_NS 100000000ll        /* dead-consumer check period */
#define START_UNKNOWN UINT64_MAX

typedef struct t_cell {
    uint32_t pid;       /* 0 = free */
    uint32_t pad;
    uint64_t start;     /* the process's start time, in clock ticks */
    uint64_t taken;     /* items it took and has not marked done */
} t_cell;

/* The task ledger.  Cells and `reclaimed` are read and written only under
 * the queue lock (plain accesses); the futex words are atomics. */
typedef struct q_tasks {
    uint64_t magic;
    uint32_t ncells;
    uint32_t pad;
    _Atomic uint32_t join_seq;
    _Atomic uint32_t join_waiters;
    uint64_t reclaimed;
    uint64_t pad2[4];
    t_cell cells[T_CELLS];
} q_tasks;
SHK_STATIC_ASSERT(offsetof(q_tasks, cells) == 64, "task ledger layout");

struct shk_queue {
    shk_segment *seg;
    shk_freelist *heap;
    char *base;
    q_shared *sh;
    char *ring;
    uint64_t ring_size, mask, maxsize, inline_max;
    q_tasks *tasks;          /* validated ledger at tasks_off, or NULL */
    uint64_t tasks_off;
    pid_t me_pid;            /* this process (0: not read yet)        */
    unsigned me_gen;         /* shk_fork_gen() when me_pid was read    */
    uint64_t me_start;
    int me_cell;             /* our cell's index, -1 if not known */
    /* Spin budgets (ns) of this handle's get and put waits (SPINNING).
     * Process-local; relaxed atomics because threads share a handle. */
    _Atomic int64_t spin_get, spin_put;
};

static inline uint64_t rec_size(uint64_t payload)
{
    return REC_HDR + shk_align_up(payload, 8);
}

/* ---------------------------------------------------------- record digest
 * One multiply-and-fold step per 8-byte word (~8 GB/s), fed piece by
 * piece: a payload that wraps around the ring is split at the ring's end,
 * a multiple of 8 bytes from its 8-aligned start, so every piece but the
 * last is whole words and the digest is the same as for one piece. */
#define DIGEST_K 0x9E3779B97F4A7C15ull

static uint64_t digest_words(uint64_t h, const char *p, uint64_t n)
{
    uint64_t w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * DIGEST_K;
        h ^= h >> 32;
    }
    if (n) {
        w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * DIGEST_K;
        h ^= h >> 32;
    }
    return h;
}

static inline uint64_t digest_start(uint32_t len, uint32_t tag, uint32_t flags)
{
    return ((uint64_t)len | (uint64_t)tag << 32 | (uint64_t)flags << 40) * DIGEST_K + 0x5143;
}

static inline uint16_t digest_end(uint64_t h)
{
    h ^= h >> 29;
    return (uint16_t)(h ^ h >> 16 ^ h >> 32 ^ h >> 48);
}

/* The check word of a record holding `payload` (contiguous). */
static uint16_t rec_digest(uint32_t len, uint32_t tag, uint32_t flags, const void *payload)
{
    return digest_end(digest_words(digest_start(len, tag, flags), payload, len));
}

/* ------------------------------------------------------------- ring copy */

static void ring_write(shk_queue *q, uint64_t pos, const void *src, uint64_t n)
{
    uint64_t o = pos & q->mask, first = q->ring_size - o;
    if (first >= n) {
        memcpy(q->ring + o, src, n);
    } else {
        memcpy(q->ring + o, src, first);
        memcpy(q->ring, (const char *)src + first, n - first);
    }
}

static void ring_read(const shk_queue *q, uint64_t pos, void *dst, uint64_t n)
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
    uint64_t hs = digest_start(h->len, h->tag, h->flags);
    if (first >= h->len)
        return digest_end(digest_words(hs, q->ring + o, h->len));
    hs = digest_words(hs, q->ring + o, first);
    return digest_end(digest_words(hs, q->ring, h->len - first));
}

/* Read and validate the record at `pos`, knowing `avail` bytes of records
 * follow it.  Fills *h (and *ref for OOL).  SHK_ECORRUPT if it cannot be a
 * record written by queue.c. */
static int read_record(const shk_queue *q, uint64_t pos, uint64_t avail,
                       rec_hdr *h, ool_ref *ref)
{
    if (avail < REC_HDR)
        return SHK_ECORRUPT;
    /* 8-aligned position, ring_size a multiple of 8: never wraps. */
    memcpy(h, q->ring + (pos & q->mask), REC_HDR);
    if ((h->flags & ~REC_OOL) || rec_size(h->len) > avail ||
        (!(h->flags & REC_OOL) && h->len > q->inline_max) ||
        ring_digest(q, pos, h) != h->check)
        return SHK_ECORRUPT;
    if (h->flags & REC_OOL) {
        if (h->len != sizeof(ool_ref))
            return SHK_ECORRUPT;
        ring_read(q, pos + REC_HDR, ref, sizeof *ref);
        if (ref->len > SHK_QUEUE_MAX_ITEM ||
            !shk_segment_contains(q->seg, ref->off, ref->len) ||
            shk_freelist_usable(q->heap, ref->off) < ref->len)
            return SHK_ECORRUPT;
    }
    return SHK_OK;
}

/* ------------------------------------------------------ lock and recovery */

/* Walk [head, tail), recount, cut the ring at the first bad record.  Called
 * with the lock held after EOWNERDEAD, and by check(). */
static int walk(shk_queue *q, uint64_t *count, uint64_t *ool)
{
    q_shared *sh = q->sh;
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    uint64_t n = 0, o = 0;
    int rc = SHK_OK;
    if (tail - head > q->ring_size || (head | tail) % 8)
        return SHK_ECORRUPT;
    uint64_t p = head;
    while (p != tail) {
        rec_hdr h;
        ool_ref ref;
        if (read_record(q, p, tail - p, &h, &ref) != SHK_OK) {
            rc = SHK_ECORRUPT;
            break;
        }
        n++;
        o += (h.flags & REC_OOL) != 0;
        p += rec_size(h.len);
    }
    *count = n;
    *ool = o;
    return rc;
}

static void repair(shk_queue *q)
{
    q_shared *sh = q->sh;
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    if (tail - head > q->ring_size || (head | tail) % 8) {
        /* Positions are only ever stored whole; this is memory corruption.
         * Empty the queue rather than read garbage. */
        SHK_A(atomic_store_explicit(&sh->tail, head & ~7ull, memory_order_relaxed));
        SHK_A(atomic_store_explicit(&sh->head, head & ~7ull, memory_order_relaxed));
        tail = head = head & ~7ull;
    }
    uint64_t n = 0, o = 0, p = head;
    while (p != tail) {
        rec_hdr h;
        ool_ref ref;
        if (read_record(q, p, tail - p, &h, &ref) != SHK_OK) {
            SHK_A(atomic_store_explicit(&sh->tail, p, memory_order_relaxed));
            break;
        }
        n++;
        o += (h.flags & REC_OOL) != 0;
        p += rec_size(h.len);
    }
    SHK_A(atomic_store_explicit(&sh->count, n, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&sh->out_of_line, o, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&sh->recoveries, 1, memory_order_relaxed));
}

static inline int q_lock(shk_queue *q)
{
    int rc = shk_mutex_lock(&q->sh->lock);
    if (SHK_UNLIKELY(rc != SHK_OK)) {
        if (rc != SHK_MUTEX_RECOVERED)
            return rc;
        repair(q);
        shk_mutex_consistent(&q->sh->lock);
    }
    return SHK_OK;
}

static inline void q_unlock(shk_queue *q) { shk_mutex_unlock(&q->sh->lock); }

/* ------------------------------------------------------------ task ledger */

/* Start time (clock ticks since boot, field 22 of /proc/<pid>/stat) of a
 * live process; 0 if it does not exist or is a zombie; START_UNKNOWN if
 * /proc cannot tell. */
static uint64_t proc_start(pid_t pid)
{
    char path[48], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : START_UNKNOWN;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return n == 0 || errno == ESRCH ? 0 : START_UNKNOWN;
    buf[n] = 0;
    char *p = strrchr(buf, ')');          /* the name may hold spaces */
    if (!p || p[1] != ' ')
        return START_UNKNOWN;
    p += 2;
    if (*p == 'Z' || *p == 'X')
        return 0;
    for (int field = 3; field < 22; field++) {   /* p is at field 3 */
        p = strchr(p, ' ');
        if (!p)
            return START_UNKNOWN;
        p++;
    }
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    return end == p ? START_UNKNOWN : (uint64_t)v;
}

/* Lock held: the validated ledger (NULL if the queue is not joinable). */
static int tasks_of(shk_queue *q, q_tasks **out)
{
    /* relaxed: set once under the lock we hold. */
    uint64_t off = SHK_A(atomic_load_explicit(&q->sh->tasks_off, memory_order_relaxed));
    if (off == q->tasks_off) {
        *out = q->tasks;
        return SHK_OK;
    }
    /* bounds first: the address is formed only for an offset inside the
     * segment */
    uint64_t hoff = (uint64_t)((char *)q->sh - q->base);
    if (off % 8 || !shk_segment_contains(q->seg, off, sizeof(q_tasks)) ||
        (off < shk_add_sat(hoff, sizeof(q_shared)) && hoff < off + sizeof(q_tasks)) ||
        (off < q->sh->ring_off + q->ring_size && q->sh->ring_off < off + sizeof(q_tasks)))
        return SHK_ECORRUPT;
    q_tasks *t = (q_tasks *)(q->base + off);
    if (t->magic != T_MAGIC || t->ncells != T_CELLS)
        return SHK_ECORRUPT;
    q->tasks = t;
    q->tasks_off = off;
    *out = t;
    return SHK_OK;
}

/* Who we are: pid and start time, re-read after a fork (shk_fork_gen:
 * getpid() is a system call, too slow for every get). */
static void know_me(shk_queue *q)
{
    unsigned gen = shk_fork_gen();
    if (q->me_pid == 0 || q->me_gen != gen) {
        q->me_pid = getpid();
        q->me_gen = gen;
        q->me_start = proc_start(q->me_pid);
        q->me_cell = -1;
    }
}

/* Lock held: this process's cell, or NULL if it has none. */
static t_cell *find_cell(shk_queue *q, q_tasks *t)
{
    know_me(q);
    uint32_t pid = (uint32_t)q->me_pid;
    if (q->me_cell == (int)T_SHARED)   /* the table was full: stay there */
        return &t->cells[T_SHARED];
    if (q->me_cell >= 0 && t->cells[q->me_cell].pid == pid &&
        t->cells[q->me_cell].start == q->me_start)
        return &t->cells[q->me_cell];
    for (unsigned i = 0; i < T_SHARED; i++)
        if (t->cells[i].pid == pid && t->cells[i].start == q->me_start) {
            q->me_cell = (int)i;
            return &t->cells[i];
        }
    return NULL;
}

/* Lock held: is the process of cell c gone? */
static int cell_dead(const t_cell *c)
{
    uint64_t s = proc_start((pid_t)c->pid);
    return s == 0 || (s != START_UNKNOWN && c->start != START_UNKNOWN && s != c->start);
}

/* Lock held: this process's cell, claimed if need be (a full table of live
 * processes gives the shared last cell). */
static t_cell *claim_cell(shk_queue *q, q_tasks *t)
{
    t_cell *c = find_cell(q, t);
    if (c)
        return c;
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < T_SHARED; i++) {
            c = &t->cells[i];
            if (c->pid != 0 && !(pass == 1 && cell_dead(c)))
                continue;
            /* A dead process's cell (second pass, rare: a full table) is
             * reclaimed here: its items count as done. */
            t->reclaimed += c->taken;
            c->start = q->me_start;
            c->taken = 0;
            c->pid = (uint32_t)q->me_pid;
            q->me_cell = (int)i;
            return c;
        }
    q->me_cell = (int)T_SHARED;
    return &t->cells[T_SHARED];
}

/* Lock held: items put and not yet marked done. */
static uint64_t unfinished(const shk_queue *q, const q_tasks *t)
{
    uint64_t n = SHK_A(atomic_load_explicit(&q->sh->count, memory_order_relaxed));
    for (unsigned i = 0; i < T_CELLS; i++)
        n += t->cells[i].taken;
    return n;
}

/* Lock held: after unfinished may have reached 0.  1 if joiners must be
 * woken (after unlocking). */
static int signal_joiners(const shk_queue *q, q_tasks *t)
{
    /* relaxed: join_waiters rises under this lock; a stale non-zero costs a
     * syscall, and every joiner re-checks at least every JOIN_POLL_NS. */
    if (SHK_A(atomic_load_explicit(&t->join_waiters, memory_order_relaxed)) == 0 ||
        unfinished(q, t) != 0)
        return 0;
    SHK_A(atomic_fetch_add_explicit(&t->join_seq, 1, memory_order_relaxed));
    return 1;
}

/* Lock, and find the ledger: SHK_OK with the lock held and *t set (NULL:
 * not joinable), else unlocked. */
static int lock_tasks(shk_queue *q, q_tasks **t)
{
    int rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    rc = tasks_of(q, t);
    if (rc != SHK_OK)
        q_unlock(q);
    return rc;
}

int shk_queue_make_joinable(shk_queue *q)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    q_unlock(q);
    if (t)
        return SHK_OK;
    uint64_t off;
    rc = shk_freelist_alloc(q->heap, sizeof(q_tasks), &off);
    if (rc != SHK_OK)
        return rc;
    t = (q_tasks *)(q->base + off);
    memset(t, 0, sizeof *t);
    t->magic = T_MAGIC;
    t->ncells = T_CELLS;
    rc = q_lock(q);
    if (rc != SHK_OK) {
        shk_freelist_free(q->heap, off);
        return rc;
    }
    int mine = SHK_A(atomic_load_explicit(&q->sh->tasks_off, memory_order_relaxed)) == 0;
    if (mine)
        /* relaxed: published to every reader by the unlock (release). */
        SHK_A(atomic_store_explicit(&q->sh->tasks_off, off, memory_order_relaxed));
    rc = tasks_of(q, &t);
    q_unlock(q);
    if (!mine)
        shk_freelist_free(q->heap, off);
    return rc;
}

int shk_queue_task_done(shk_queue *q)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    if (!t) {
        q_unlock(q);
        return SHK_EINVAL;
    }
    t_cell *c = find_cell(q, t);
    for (unsigned i = 0; (!c || c->taken == 0) && i < T_CELLS; i++)
        c = &t->cells[i];   /* an item another process took */
    if (c->taken == 0) {
        q_unlock(q);
        return SHK_EEMPTY;
    }
    c->taken--;
    int wake = signal_joiners(q, t);
    q_unlock(q);
    if (wake)
        shk_futex_wake(&t->join_seq, INT_MAX);
    return SHK_OK;
}

/* Count the items of dead consumers done (outside the lock but for two
 * short holds: /proc is read between them). */
static int reclaim_dead(shk_queue *q, q_tasks *t)
{
    struct { uint32_t pid; uint64_t start; } snap[T_SHARED];
    int rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    for (unsigned i = 0; i < T_SHARED; i++) {
        snap[i].pid = t->cells[i].taken ? t->cells[i].pid : 0;
        snap[i].start = t->cells[i].start;
    }
    q_unlock(q);
    know_me(q);
    int any = 0;
    for (unsigned i = 0; i < T_SHARED; i++) {
        t_cell probe = {snap[i].pid, 0, snap[i].start, 0};
        if (snap[i].pid == 0 || snap[i].pid == (uint32_t)q->me_pid || !cell_dead(&probe))
            snap[i].pid = 0;
        else
            any = 1;
    }
    if (!any)
        return SHK_OK;
    rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    for (unsigned i = 0; i < T_SHARED; i++) {
        t_cell *c = &t->cells[i];
        if (snap[i].pid && c->pid == snap[i].pid && c->start == snap[i].start) {
            t->reclaimed += c->taken;
            c->taken = 0;
            c->pid = 0;
        }
    }
    int wake = signal_joiners(q, t);
    q_unlock(q);
    if (wake)
        shk_futex_wake(&t->join_seq, INT_MAX);
    return SHK_OK;
}

int shk_queue_wait_join(shk_queue *q, int64_t timeout_ns)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    q_unlock(q);
    if (!t)
        return SHK_EINVAL;
    rc = reclaim_dead(q, t);
    if (rc != SHK_OK || (rc = q_lock(q)) != SHK_OK)
        return rc;
    if (unfinished(q, t) == 0) {
        q_unlock(q);
        return SHK_OK;
    }
    if (timeout_ns == 0) {
        q_unlock(q);
        return SHK_ETIMEDOUT;
    }
    /* relaxed: ordered by the lock against signal_joiners. */
    SHK_A(atomic_fetch_add_explicit(&t->join_waiters, 1, memory_order_relaxed));
    uint32_t seq = SHK_A(atomic_load_explicit(&t->join_seq, memory_order_relaxed));
    q_unlock(q);
    int64_t nap = timeout_ns < 0 || timeout_ns > JOIN_POLL_NS ? JOIN_POLL_NS : timeout_ns;
    rc = shk_futex_wait(&t->join_seq, seq, nap);
    /* relaxed: a counter; a joiner killed asleep leaves it high, which
     * costs task_done one wake syscall when unfinished reaches 0. */
    uint32_t w = SHK_A(atomic_load_explicit(&t->join_waiters, memory_order_relaxed));
    while (w != 0 && !SHK_A(atomic_compare_exchange_weak_explicit(
                                 &t->join_waiters, &w, w - 1,
                                 memory_order_relaxed, memory_order_relaxed)))
        ;
    if (rc == SHK_EINTR)
        return rc;
    return timeout_ns > 0 && nap == timeout_ns && rc == SHK_ETIMEDOUT ? SHK_ETIMEDOUT
                                                                      : SHK_EAGAIN;
}

int shk_queue_tasks(shk_queue *q, uint64_t *unfinished_out, uint64_t *reclaimed)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    if (t) {
        *unfinished_out = unfinished(q, t);
        *reclaimed = t->reclaimed;
    }
    q_unlock(q);
    return t ? SHK_OK : SHK_EINVAL;
}

/* ------------------------------------------------------------ create/open */

int shk_queue_create_in(shk_segment *seg, const shk_queue_config *cfg,
                        uint64_t *off)
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
    rc = shk_mutex_init(&sh->lock);
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
    if (sh->magic != Q_MAGIC || sh->version != Q_VERSION ||
        sh->header_size != sizeof(q_shared))
        return SHK_ECORRUPT;
    uint64_t ring = sh->ring_size;
    if (ring < SHK_QUEUE_MIN_RING || ring > SHK_QUEUE_MAX_RING ||
        (ring & (ring - 1)) || sh->ring_off % 16 ||
        !shk_segment_contains(seg, sh->ring_off, ring) ||
        sh->inline_max > ring / 8)
        return SHK_ECORRUPT;
    /* Overlap of header and ring would let writes to one corrupt the other. */
    if (sh->ring_off < shk_add_sat(off, sizeof(q_shared)) &&
        off < sh->ring_off + ring)
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

int shk_queue_open_named(shk_segment *seg, const char *name,
                         const shk_queue_config *cfg, shk_queue **out,
                         int *created)
{
    uint64_t off;
    shk_queue_config dflt = {0, 0};
    int rc = shk_segment_object(seg, name, SHK_TYPE_QUEUE, init_cb,
                                (void *)(cfg ? cfg : &dflt), &off, created);
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

/* Room for one more record of `payload` ring bytes?  Decides with the lock
 * held; a hint without it (SPINNING). */
static inline int has_room(const shk_queue *q, uint64_t payload)
{
    q_shared *sh = q->sh;
    uint64_t used = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed)) -
                    SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    if (q->maxsize &&
        SHK_A(atomic_load_explicit(&sh->count, memory_order_relaxed)) >= q->maxsize)
        return 0;
    /* used > ring_size only in a torn read outside the lock (SPINNING) */
    return used <= q->ring_size && rec_size(payload) <= q->ring_size - used;
}

/* Append one record and commit it.  Lock held, room checked. */
static inline void append(shk_queue *q, const void *payload, uint32_t plen,
                          uint32_t tag, uint32_t flags)
{
    q_shared *sh = q->sh;
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    rec_hdr h = {plen, (uint8_t)tag, (uint8_t)flags,
                 rec_digest(plen, tag, flags, payload)};
    memcpy(q->ring + (tail & q->mask), &h, REC_HDR);
    ring_write(q, tail + REC_HDR, payload, plen);
    SHK_CRASH_POINT("queue.put.commit");
    /* The commit.  relaxed: the unlock (release) publishes it with the
     * record; nobody reads records without taking the lock. */
    SHK_A(atomic_store_explicit(&sh->tail, tail + rec_size(plen), memory_order_relaxed));
    SHK_CRASH_POINT("queue.put.count");
    SHK_A(atomic_store_explicit(&sh->count,
                          atomic_load_explicit(&sh->count, memory_order_relaxed) + 1,
                          memory_order_relaxed));
    if (flags & REC_OOL)
        SHK_A(atomic_store_explicit(&sh->out_of_line,
                              atomic_load_explicit(&sh->out_of_line, memory_order_relaxed) + 1,
                              memory_order_relaxed));
}

/* ---- waiting (see BLOCKING) ----
 * A waiter registers under the lock (waiter_enter, which returns the
 * generation it registered in), sleeps on the sequence word after
 * unlocking, and takes its registration back with waiter_leave.  A
 * committer, under the lock, bumps the sequence word if anyone is
 * registered (signal_waiters) and wakes after unlocking (wake_waiters). */
static inline uint32_t waiter_enter(_Atomic uint32_t *waiters)
{
    /* relaxed: ordered by the lock against every committer's check. */
    uint32_t w = SHK_A(atomic_load_explicit(waiters, memory_order_relaxed));
    if ((w & WAITER_MASK) != WAITER_MASK)
        SHK_A(atomic_store_explicit(waiters, w + 1, memory_order_relaxed));
    return w >> WAITER_BITS;
}

static void waiter_leave(_Atomic uint32_t *waiters, uint32_t gen)
{
    /* relaxed: a counter; whoever reads it for a decision holds the lock,
     * and a stale value costs at most one wake syscall. */
    uint32_t w = SHK_A(atomic_load_explicit(waiters, memory_order_relaxed));
    while ((w >> WAITER_BITS) == gen && (w & WAITER_MASK) != 0 &&
           !SHK_A(atomic_compare_exchange_weak_explicit(waiters, &w, w - 1,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)))
        ;
}

/* Lock held, after committing: must waiters be woken? */
static inline int signal_waiters(_Atomic uint32_t *waiters, _Atomic uint32_t *seq)
{
    /* relaxed: waiter counts rise under this lock and fall outside it; a
     * stale non-zero only costs a syscall. */
    if (SHK_LIKELY((SHK_A(atomic_load_explicit(waiters, memory_order_relaxed)) & WAITER_MASK) == 0))
        return 0;
    SHK_A(atomic_fetch_add_explicit(seq, 1, memory_order_relaxed));
    return 1;
}

/* Lock not held.  Wakes up to n sleepers; if none was asleep, the count
 * lied: start a new generation (BLOCKING). */
static void wake_waiters(shk_queue *q, _Atomic uint32_t *waiters,
                         _Atomic uint32_t *seq, int n)
{
    if (shk_futex_wake(seq, n) > 0)
        return;
    if (q_lock(q) != SHK_OK)
        return;
    uint32_t w = SHK_A(atomic_load_explicit(waiters, memory_order_relaxed));
    int any = (w & WAITER_MASK) != 0;
    if (any) {
        uint32_t gen = ((w >> WAITER_BITS) + 1) & (0xffffffffu >> WAITER_BITS);
        SHK_A(atomic_store_explicit(waiters, gen << WAITER_BITS, memory_order_relaxed));
        SHK_A(atomic_fetch_add_explicit(seq, 1, memory_order_relaxed));
    }
    q_unlock(q);
    if (any)
        shk_futex_wake(seq, INT_MAX);
}

static inline int signal_not_empty(shk_queue *q)
{
    return signal_waiters(&q->sh->get_waiters, &q->sh->not_empty);
}

static inline int signal_not_full(shk_queue *q)
{
    return signal_waiters(&q->sh->put_waiters, &q->sh->not_full);
}

void shk_queue_wake_waiters(shk_queue *q)
{
    /* relaxed: the bump only has to make a waiter that is about to sleep
     * on the old value not sleep; FUTEX_WAIT compares atomically. */
    SHK_A(atomic_fetch_add_explicit(&q->sh->not_empty, 1, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&q->sh->not_full, 1, memory_order_relaxed));
    shk_futex_wake(&q->sh->not_empty, INT_MAX);
    shk_futex_wake(&q->sh->not_full, INT_MAX);
    if (q->tasks) {   /* a ledger this handle validated */
        SHK_A(atomic_fetch_add_explicit(&q->tasks->join_seq, 1, memory_order_relaxed));
        shk_futex_wake(&q->tasks->join_seq, INT_MAX);
    }
}

/* Non-blocking put of one item.  An OOL item is copied into a heap block
 * before locking; *block carries it across attempts of a blocking put. */
static int try_put(shk_queue *q, const void *data, uint64_t len, uint32_t tag,
                   uint64_t *block)
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
        int rc = q_lock(q);
        if (rc != SHK_OK)
            return rc;
        if (has_room(q, ool ? sizeof ref : len))
            break;
        int spill = !ool && len > sizeof ref && has_room(q, sizeof ref);
        q_unlock(q);
        if (!spill)
            return SHK_EFULL;
        ool = 1;   /* no room inline, room for a reference: spill */
    }
    uint64_t plen = ool ? sizeof ref : len;
    append(q, ool ? (const void *)&ref : data, (uint32_t)plen, tag,
           ool ? REC_OOL : 0);
    SHK_A(atomic_fetch_add_explicit(&q->sh->total_put, 1, memory_order_relaxed));
    int wake = signal_not_empty(q);
    q_unlock(q);
    *block = 0;   /* the record owns it now */
    if (wake)
        wake_waiters(q, &q->sh->get_waiters, &q->sh->not_empty, 1);
    return SHK_OK;
}

/* Is there an item to take?  A hint (SPINNING): relaxed, re-checked under
 * the lock. */
static int item_hint(const shk_queue *q, uint64_t unused)
{
    (void)unused;
    return SHK_A(atomic_load_explicit(&q->sh->count, memory_order_relaxed)) > 0;
}

/* Poll ready(q, arg) for up to *budget ns (and at most timeout_ns when
 * that is positive), adapting the budget (SPINNING).  1 if it said ready.
 * Bounded by the clock, read every SPIN_CLOCK_EVERY polls. */
static int spin_wait(shk_queue *q, _Atomic int64_t *budget, int64_t timeout_ns,
                     int (*ready)(const shk_queue *, uint64_t), uint64_t arg)
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

int shk_queue_wait_put(shk_queue *q, uint64_t len, int64_t timeout_ns)
{
    if (len > SHK_QUEUE_MAX_ITEM)
        return SHK_EINVAL;
    uint64_t plen = len > q->inline_max ? sizeof(ool_ref) : len;
    if (timeout_ns != 0 && spin_wait(q, &q->spin_put, timeout_ns, has_room, plen))
        return SHK_OK;
    int rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    if (has_room(q, plen)) {
        q_unlock(q);
        return SHK_OK;
    }
    if (timeout_ns == 0) {
        q_unlock(q);
        return SHK_ETIMEDOUT;
    }
    uint32_t gen = waiter_enter(&q->sh->put_waiters);
    /* relaxed: ordered by the lock against every committer's bump. */
    uint32_t seq = SHK_A(atomic_load_explicit(&q->sh->not_full, memory_order_relaxed));
    q_unlock(q);
    rc = shk_futex_wait(&q->sh->not_full, seq, timeout_ns);
    waiter_leave(&q->sh->put_waiters, gen);
    return rc;
}

/* Run a blocking operation: try, then wait and retry until the deadline. */
#define BLOCKING_LOOP(try_expr, busy_rc, wait_expr)                           \
    do {                                                                      \
        int64_t deadline_ = timeout_ns > 0 ? shk_now_ns() + timeout_ns : 0;   \
        for (;;) {                                                            \
            int rc_ = (try_expr);                                             \
            if (rc_ != (busy_rc) || timeout_ns == 0)                          \
                return rc_;                                                   \
            int64_t left_ = -1;                                               \
            if (timeout_ns > 0) {                                             \
                left_ = deadline_ - shk_now_ns();                             \
                if (left_ <= 0)                                               \
                    return SHK_ETIMEDOUT;                                     \
            }                                                                 \
            int wrc_ = (wait_expr);                                           \
            if (wrc_ != SHK_OK && wrc_ != SHK_ETIMEDOUT)                      \
                return wrc_;                                                  \
        }                                                                     \
    } while (0)

static int put_blocking(shk_queue *q, const void *data, uint64_t len,
                        uint32_t tag, int64_t timeout_ns, uint64_t *block)
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

int shk_queue_put_many(shk_queue *q, const shk_queue_item *items, uint64_t n,
                       uint64_t *done)
{
    uint64_t k = 0;
    int rc = SHK_OK;
    *done = 0;
    while (k < n && rc == SHK_OK) {
        /* Inline items go in one lock hold; an OOL item takes its own
         * try_put (its block is filled outside the lock). */
        const shk_queue_item *it = &items[k];
        if (it->len > SHK_QUEUE_MAX_ITEM || it->tag > 255 || (it->len && !it->data))
            return SHK_EINVAL;   /* *done items before it were put */
        if (it->len > q->inline_max) {
            uint64_t block = 0;
            rc = try_put(q, it->data, it->len, it->tag, &block);
            if (block)
                shk_freelist_free(q->heap, block);
            if (rc == SHK_OK)
                *done = ++k;
            continue;
        }
        rc = q_lock(q);
        if (rc != SHK_OK)
            return rc;
        uint64_t start = k;
        int spill = 0;
        while (k < n) {
            it = &items[k];
            if (it->len > q->inline_max || it->tag > 255 || (it->len && !it->data))
                break;
            if (!has_room(q, it->len)) {
                /* try_put below spills it out of line, or says EFULL */
                spill = it->len > sizeof(ool_ref) && has_room(q, sizeof(ool_ref));
                rc = spill ? SHK_OK : SHK_EFULL;
                break;
            }
            append(q, it->data, (uint32_t)it->len, it->tag, 0);
            k++;
        }
        SHK_A(atomic_fetch_add_explicit(&q->sh->total_put, k - start, memory_order_relaxed));
        int wake = k > start && signal_not_empty(q);
        q_unlock(q);
        if (wake)
            wake_waiters(q, &q->sh->get_waiters, &q->sh->not_empty,
                         (int)((k - start) < INT_MAX ? k - start : INT_MAX));
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

/* Take up to max items under one lock hold.  SHK_EEMPTY if none. */
static int try_get(shk_queue *q, uint64_t max, shk_queue_alloc_fn alloc,
                   void *ctx, uint64_t *done, int *more)
{
    int rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    q_shared *sh = q->sh;
    q_tasks *t;
    rc = tasks_of(q, &t);
    if (rc != SHK_OK) {
        q_unlock(q);
        return rc;
    }
    t_cell *cell = NULL;   /* claimed when the first item is taken */
    uint64_t head = SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
    uint64_t tail = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed));
    uint64_t k = 0;
    /* OOL blocks to free after the lock is dropped; a few at a time. */
    uint64_t to_free[16];
    unsigned nfree = 0;
    rc = SHK_OK;
    while (k < max && head != tail && nfree < 16) {
        rec_hdr h;
        ool_ref ref;
        rc = read_record(q, head, tail - head, &h, &ref);
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
            ring_read(q, head + REC_HDR, dst, len);
        head += rec_size(h.len);
        SHK_CRASH_POINT("queue.get.commit");
        /* The commit of this item.  relaxed: published by the unlock. */
        SHK_A(atomic_store_explicit(&sh->head, head, memory_order_relaxed));
        SHK_CRASH_POINT("queue.get.count");
        SHK_A(atomic_store_explicit(&sh->count,
                              atomic_load_explicit(&sh->count, memory_order_relaxed) - 1,
                              memory_order_relaxed));
        if (t) {
            if (!cell)
                cell = claim_cell(q, t);
            cell->taken++;   /* still unfinished, now in our hands */
        }
        if (ool) {
            SHK_A(atomic_store_explicit(&sh->out_of_line,
                                  atomic_load_explicit(&sh->out_of_line, memory_order_relaxed) - 1,
                                  memory_order_relaxed));
            to_free[nfree++] = ref.off;
        }
        k++;
    }
    int wake = 0;
    if (k) {
        SHK_A(atomic_fetch_add_explicit(&sh->total_got, k, memory_order_relaxed));
        wake = signal_not_full(q);
    }
    q_unlock(q);
    if (nfree)
        SHK_CRASH_POINT("queue.get.free");
    for (unsigned i = 0; i < nfree; i++)
        shk_freelist_free(q->heap, to_free[i]);
    if (wake)
        wake_waiters(q, &q->sh->put_waiters, &sh->not_full, INT_MAX);
    *done = k;
    *more = nfree == 16;
    if (k)
        return SHK_OK;
    return rc == SHK_OK ? SHK_EEMPTY : rc;
}

int shk_queue_wait_get(shk_queue *q, int64_t timeout_ns)
{
    if (timeout_ns != 0 && spin_wait(q, &q->spin_get, timeout_ns, item_hint, 0))
        return SHK_OK;
    int rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    if (SHK_A(atomic_load_explicit(&q->sh->count, memory_order_relaxed)) > 0) {
        q_unlock(q);
        return SHK_OK;
    }
    if (timeout_ns == 0) {
        q_unlock(q);
        return SHK_ETIMEDOUT;
    }
    uint32_t gen = waiter_enter(&q->sh->get_waiters);
    /* relaxed: ordered by the lock against every committer's bump. */
    uint32_t seq = SHK_A(atomic_load_explicit(&q->sh->not_empty, memory_order_relaxed));
    q_unlock(q);
    rc = shk_futex_wait(&q->sh->not_empty, seq, timeout_ns);
    waiter_leave(&q->sh->get_waiters, gen);
    return rc;
}

int shk_queue_get(shk_queue *q, shk_queue_alloc_fn alloc, void *ctx,
                  int64_t timeout_ns)
{
    uint64_t done;
    int more;
    if (!alloc)
        return SHK_EINVAL;
    BLOCKING_LOOP(try_get(q, 1, alloc, ctx, &done, &more), SHK_EEMPTY,
                  shk_queue_wait_get(q, left_));
}

int shk_queue_get_many(shk_queue *q, uint64_t max_items,
                       shk_queue_alloc_fn alloc, void *ctx, uint64_t *done)
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
    return c->buf ? c->buf : (void *)c;   /* len 0: any non-NULL pointer */
}

int shk_queue_get_into(shk_queue *q, void *buf, uint64_t cap, uint64_t *len,
                       uint32_t *tag, int64_t timeout_ns)
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
    /* relaxed: a snapshot; exact only when nobody is changing the queue. */
    return SHK_A(atomic_load_explicit(&q->sh->count, memory_order_relaxed));
}
uint64_t shk_queue_maxsize(const shk_queue *q) { return q->maxsize; }
uint64_t shk_queue_ring_bytes(const shk_queue *q) { return q->ring_size; }
uint64_t shk_queue_inline_max(const shk_queue *q) { return q->inline_max; }
uint64_t shk_queue_used_bytes(const shk_queue *q)
{
    return SHK_A(atomic_load_explicit(&q->sh->tail, memory_order_relaxed)) -
           SHK_A(atomic_load_explicit(&q->sh->head, memory_order_relaxed));
}

size_t shk_queue_lock_offset(void) { return offsetof(q_shared, lock); }

int shk_queue_check(shk_queue *q, shk_queue_stats *st)
{
    int rc = q_lock(q);
    if (rc != SHK_OK)
        return rc;
    q_shared *sh = q->sh;
    uint64_t n = 0, o = 0;
    q_tasks *tasks;
    rc = tasks_of(q, &tasks);   /* the task ledger too, if the queue has one */
    if (rc == SHK_OK)
        rc = walk(q, &n, &o);
    if (rc == SHK_OK &&
        (n != SHK_A(atomic_load_explicit(&sh->count, memory_order_relaxed)) ||
         o != SHK_A(atomic_load_explicit(&sh->out_of_line, memory_order_relaxed)) ||
         (q->maxsize && n > q->maxsize)))
        rc = SHK_ECORRUPT;
    if (st) {
        memset(st, 0, sizeof *st);
        st->items = n;
        st->out_of_line = o;
        st->used_bytes = SHK_A(atomic_load_explicit(&sh->tail, memory_order_relaxed)) -
                         SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed));
        st->ring_bytes = q->ring_size;
        st->maxsize = q->maxsize;
        st->total_put = SHK_A(atomic_load_explicit(&sh->total_put, memory_order_relaxed));
        st->total_got = SHK_A(atomic_load_explicit(&sh->total_got, memory_order_relaxed));
        st->recoveries = SHK_A(atomic_load_explicit(&sh->recoveries, memory_order_relaxed));
        st->get_waiters = SHK_A(atomic_load_explicit(&sh->get_waiters, memory_order_relaxed)) & WAITER_MASK;
        st->put_waiters = SHK_A(atomic_load_explicit(&sh->put_waiters, memory_order_relaxed)) & WAITER_MASK;
    }
    q_unlock(q);
    return rc;
}
