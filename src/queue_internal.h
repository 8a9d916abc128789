/*
 * queue_internal.h -- the MPMC queue's design, its shared layout and what
 * its three files share.  The queue: variable-size items in a byte ring of
 * records, producers under one robust process-shared mutex and consumers
 * under another, with futex waits.
 *
 * FILES (each uses only those above it)
 *   queue_ring.c   records, their check words, the ring copy, the two locks
 *                  and their recovery (RECOVERY)
 *   queue_tasks.c  the task ledger of a joinable queue (JOINABLE)
 *   queue.c        create/open, put/get, waiting (BLOCKING, SPINNING),
 *                  inspection and check
 *
 * WHY LOCKS (and not a lock-free ring)
 *   The lock-free MPMC rings (Vyukov's bounded queue, LCRQ, rte_ring) claim
 *   a slot with one atomic step and publish it with a second.  A producer
 *   SIGKILLed between the two leaves a claimed, never-published slot that
 *   every consumer must wait behind forever -- exactly the wedge we must not
 *   have -- and variable-size records make claiming harder still.  With a
 *   robust mutex the critical section is tiny (a bounds check, one memcpy,
 *   a few stores), an uncontended lock+unlock costs ~11 ns here, and a
 *   holder killed at any instant hands the lock to the next process with
 *   EOWNERDEAD, which repairs the ring mechanically (see RECOVERY).  Every
 *   change becomes visible through a single commit store (`tail` for a put,
 *   `head` for a get), so a half-written record is never seen.
 *
 * TWO LOCKS (Michael and Scott's two-lock queue, on a ring)
 *   Producers take `put_lock` and consumers `get_lock`, so a producer never
 *   waits for a consumer nor the other way round: with one producer and one
 *   consumer neither lock is ever contended, and with many of each, one of
 *   each side works at a time.  The sides share nothing they both write:
 *     - `tail` and `total_put` are written only under put_lock, `head` and
 *       `total_got` only under get_lock, each pair on its own cache line;
 *       the item count is total_put - total_got.
 *     - A producer writes a record in [tail, tail + size) only after
 *       reading `head` (acquire): the consumer that moved head past those
 *       bytes had finished reading them (its head store is a release).
 *     - A consumer reads records only in [head, tail) with tail read
 *       (acquire): the producer stored tail (release) after writing them.
 *     - A producer stores total_put before tail (both release), so a
 *       consumer that took an item had total_put count it first: total_got
 *       <= total_put at every instant (the count is never negative).
 *   What needs both sides at once (check, recovery) takes put_lock, then
 *   get_lock: always in that order, so two such callers never deadlock.
 *
 * LAYOUT
 *   q_shared (a heap block, 384 bytes, one cache line per row):
 *     0    magic "SHKQUEUE" | version | header_size | ring_off |
 *          ring_size (power of two) | maxsize | inline_max | tasks_off
 *     64   put_lock (robust mutex)
 *     128  tail | total_put | ool_put | recoveries    (under put_lock)
 *     192  get_lock (robust mutex)
 *     256  head | total_got | ool_got | repair | repairs
 *                                                     (under get_lock)
 *     320  not_empty | not_full (futex sequence words) |
 *          get_waiters | put_waiters
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
 * INVARIANTS (whenever both locks are free)
 *   - 0 <= tail - head <= ring_size, both multiples of 8.
 *   - [head, tail) is an exact sequence of total_put - total_got valid
 *     records, of which ool_put - ool_got are OOL; each OOL record owns one
 *     live heap block.
 *   - maxsize == 0 or total_put - total_got <= maxsize.
 *   Records are read only by the get_lock holder (and check, holding both),
 *   and bounds-checked anyway (a torn or corrupt length gives
 *   SHK_ECORRUPT, never a wild read).
 *
 * COMMIT ORDER, and what a SIGKILL does to the one item in flight
 *   put:  [OOL: allocate + fill heap block] lock put_lock; write record at
 *         tail; total_put++; store tail (commit); unlock.
 *         Killed before the tail store: the item is not in the queue (an OOL
 *         block leaks).  After it: the item is in the queue, delivered once.
 *   get:  lock get_lock; copy the record out; store head (commit);
 *         total_got++; unlock; [OOL: free the block].
 *         Killed before the head store: the item stays at the head and is
 *         delivered to another consumer.  After it: the item is gone with the
 *         dead consumer (as with any queue: it was handed over).  An OOL
 *         block whose free did not happen leaks.
 *
 * RECOVERY (EOWNERDEAD)
 *   The dead holder may have stopped between two stores, so the totals
 *   may disagree with the ring by one item: they are recomputed from the
 *   ring with both locks held (put_lock first).  A put_lock recoverer
 *   takes get_lock too and repairs at once.  A get_lock recoverer may not
 *   take put_lock while holding get_lock (the order), so it sets `repair`,
 *   marks get_lock consistent, unlocks, and takes both in order; whoever
 *   next finds `repair` set under get_lock does the same, so the repair
 *   survives the recoverer's own death.  Until it is done only the count
 *   can be one off; head and tail, and so every item, are always right.
 *   A producer that finds the queue full also tries get_lock (without
 *   waiting) and repairs if it was a dead holder's or a repair is pending,
 *   so a stale count never keeps producers out while no consumer comes.
 *   The repair re-walks [head, tail), stops at the first invalid record
 *   (then tail = that position, impossible unless memory was corrupted)
 *   and sets total_put = total_got + records, ool_put likewise.  It may
 *   have made room (a count that was one too high), so it wakes every
 *   waiter, as a commit would.
 *
 * BLOCKING
 *   Two futex sequence words, not_empty and not_full, with waiter counts.
 *   The waiter and the committer hold different locks (or none), so they
 *   meet in the store-buffering pattern, each side seq_cst: a waiter
 *   registers (seq_cst RMW on its waiter count), reads the sequence word,
 *   then re-checks its condition (seq_cst loads of head and tail) and
 *   sleeps only if it still does not hold.  A committer stores its commit
 *   (tail or head), issues a seq_cst fence, reads the waiter count and,
 *   if non-zero, bumps the sequence word and wakes.  Either the waiter's
 *   re-check sees the commit, or the committer sees the registration and
 *   its bump makes the futex wait return at once: no wake-up is lost, and
 *   with nobody waiting a put or get makes no system call at all.
 *
 *   A committer killed between its commit and its wake leaves sleepers
 *   that no later commit may come for.  So a waiter sleeps in slices of
 *   at most WAIT_SLICE_NS and looks again after each: such a lost wake-up
 *   costs at most one slice, never a hang.
 *
 *   A waiter killed while asleep cannot take its count back.  So a waiter
 *   word is { generation (high 12 bits), count (low 20) }: a waiter takes
 *   back only a registration of the current generation.  A committer whose
 *   wake found nobody asleep although the count said otherwise (the
 *   counted are dead, or about to sleep or to leave) starts a new
 *   generation with count 0 (one CAS), bumps the sequence word and wakes
 *   everyone: each live waiter of the old generation wakes (or does not
 *   fall asleep, the word having changed), goes round its loop and
 *   registers again.  A dead waiter's count is thus dropped at the next
 *   wake.
 *
 * SEEN (positions cached per handle)
 *   A consumer that reads `tail` on every get pulls the producers' line to
 *   its core each time, and a producer that reads `head` pulls the
 *   consumers'.  But positions only grow, so a value read once stays a
 *   lower bound: records below a tail once read are committed, bytes below
 *   a head once read are free, and a got total once read bounds the count
 *   from above.  So each handle keeps the last values it read (tail_seen,
 *   head_seen, got_seen) and reads the shared word again only when the
 *   cached one does not settle the question (the consumer reached it, the
 *   room or count it gives is short).  With a backlog a consumer then
 *   reads tail once per ring's worth of records instead of once per item.
 *   A repair is the one thing that may lower a position (it cuts the ring
 *   at a damaged record), so it bumps `repairs`, and a consumer whose
 *   tail_seen was read under another `repairs` value reads tail again.
 *
 * SPINNING
 *   A futex sleep and its wake-up cost several microseconds on each side,
 *   paid on every item when a consumer keeps up with its producer.  So a
 *   waiter first polls the queue (relaxed loads of head / tail and the
 *   totals, a hint; the locked check decides) for up to its handle's spin
 *   budget, yielding the CPU every SPIN_CLOCK_EVERY polls so that on a
 *   machine with more processes than cores the partner it waits for can
 *   run.  The budget adapts: a spin that saw the queue ready doubles it (at
 *   most SPIN_MAX_NS), one that ran out halves it (at least SPIN_MIN_NS),
 *   so a waiter whose partner answers within the budget never sleeps, and
 *   an idle waiter spins ~2 us per wake-up: ~0 CPU.  The budgets are
 *   process-local (the handle), never in shared memory.
 *
 * JOINABLE (task_done / join)
 *   A queue becomes joinable when a JoinableQueue handle opens it: a task
 *   ledger (a heap block, its offset in tasks_off, set once under get_lock)
 *   is attached.  From then on every get, through any handle, counts the
 *   items it takes in the taking process's cell of the ledger:
 *     cell = { pid, start time of that process (/proc/pid/stat), taken }.
 *   unfinished = count (items queued) + the sum of every cell's `taken`,
 *   computed under get_lock, never stored: no second counter can disagree
 *   with the ring, and EOWNERDEAD recovery needs nothing new (the dead
 *   holder's cell is its own and is reclaimed below).  Only gets, task_done
 *   and reclaims lower it, all under get_lock; a put only raises it, so
 *   the ledger never takes put_lock, except that each join() wait step
 *   takes and drops it once, so that a producer killed between its
 *   total_put and tail stores (an item counted, never queued) is repaired
 *   even when no other producer comes.  task_done() takes one
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
#ifndef SHK_QUEUE_INTERNAL_H
#define SHK_QUEUE_INTERNAL_H

#include "internal.h"

#define Q_MAGIC 0x45554555514b4853ull /* "SHKQUEUE" */
#define Q_VERSION 4u                  /* also covers the item tags Python writes ('b', 'p') */
#define REC_HDR 8u
#define REC_OOL 1u
#define WAITER_BITS 20u /* waiter word: gen << 20 | count */
#define WAITER_MASK ((1u << WAITER_BITS) - 1)
/* How long a waiter polls the queue before it sleeps (see SPINNING). */
#define SPIN_MIN_NS 2000ll    /* what an idle waiter decays to      */
#define SPIN_START_NS 20000ll /* a new handle's budget              */
#define SPIN_MAX_NS 100000ll  /* what a busy partner can earn it    */
#define SPIN_CLOCK_EVERY 32u  /* polls between clock reads / yields */
/* The longest one futex sleep of a waiter (BLOCKING). */
#define WAIT_SLICE_NS 100000000ll

typedef struct q_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t ring_off;
    uint64_t ring_size;
    uint64_t maxsize;
    uint64_t inline_max;
    /* Offset of the task ledger (JOINABLE), 0 if none.  Set once, under
     * get_lock; read under get_lock. */
    _Atomic uint64_t tasks_off;
    uint64_t reserved;
    shk_mutex put_lock; /* 64 */
    /* The producers' line: written under put_lock (TWO LOCKS). */
    _Atomic uint64_t tail; /* 128 */
    _Atomic uint64_t total_put;
    _Atomic uint64_t ool_put;
    _Atomic uint64_t recoveries; /* written with both locks held */
    uint64_t pad1[4];
    shk_mutex get_lock; /* 192 */
    /* The consumers' line: written under get_lock. */
    _Atomic uint64_t head; /* 256 */
    _Atomic uint64_t total_got;
    _Atomic uint64_t ool_got;
    _Atomic uint64_t repair;  /* 1: the totals await a RECOVERY repair */
    _Atomic uint64_t repairs; /* bumped by every repair (SEEN) */
    uint64_t pad2[3];
    _Atomic uint32_t not_empty; /* 320: futex words */
    _Atomic uint32_t not_full;
    _Atomic uint32_t get_waiters;
    _Atomic uint32_t put_waiters;
    char pad3[SHK_CACHELINE - 16];
} q_shared;
SHK_STATIC_ASSERT(offsetof(q_shared, put_lock) == 64, "queue layout");
SHK_STATIC_ASSERT(offsetof(q_shared, tail) == 128, "queue layout");
SHK_STATIC_ASSERT(offsetof(q_shared, get_lock) == 192, "queue layout");
SHK_STATIC_ASSERT(offsetof(q_shared, head) == 256, "queue layout");
SHK_STATIC_ASSERT(offsetof(q_shared, not_empty) == 320, "queue layout");
SHK_STATIC_ASSERT(sizeof(q_shared) == 384, "queue header size");

typedef struct rec_hdr {
    uint32_t len; /* payload bytes in the ring (16 for OOL) */
    uint8_t tag;
    uint8_t flags;
    uint16_t check;
} rec_hdr;
SHK_STATIC_ASSERT(sizeof(rec_hdr) == REC_HDR, "record header");

typedef struct ool_ref {
    uint64_t off, len;
} ool_ref;
SHK_STATIC_ASSERT(REC_HDR + sizeof(ool_ref) == SHK_QUEUE_MIN_RECORD, "spilled record");

#define T_MAGIC 0x534b534154514b53ull /* "SKQTASKS" */
#define T_CELLS 128u
#define T_SHARED (T_CELLS - 1)   /* the cell of last resort */
#define JOIN_POLL_NS 100000000ll /* dead-consumer check period */

typedef struct t_cell {
    uint32_t pid; /* 0 = free */
    uint32_t pad;
    uint64_t start; /* the process's start time, in clock ticks */
    uint64_t taken; /* items it took and has not marked done */
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
    q_tasks *tasks; /* validated ledger at tasks_off, or NULL */
    uint64_t tasks_off;
    pid_t me_pid;    /* this process (0: not read yet)        */
    unsigned me_gen; /* shk_fork_gen() when me_pid was read    */
    uint64_t me_start;
    int me_cell; /* our cell's index, -1 if not known */
    /* The other side's positions as this process last read them (SEEN):
     * lower bounds, since head, tail and total_got only grow.  Process-
     * local; release/acquire because threads share a handle and a thread
     * reads records (or overwrites ring bytes) on another's reading. */
    _Atomic uint64_t tail_seen, head_seen, got_seen;
    uint64_t repairs_seen; /* sh->repairs when tail_seen was read (SEEN);
                            * under get_lock, like tail_seen */
    /* Spin budgets (ns) of this handle's get and put waits (SPINNING).
     * Process-local; relaxed atomics because threads share a handle. */
    _Atomic int64_t spin_get, spin_put;
};

static inline uint64_t rec_size(uint64_t payload) { return REC_HDR + shk_align_up(payload, 8); }

/* ---- queue_ring.c ---- */
uint16_t shk_q_digest(uint32_t len, uint32_t tag, uint32_t flags, const void *payload);
void shk_q_ring_write(shk_queue *q, uint64_t pos, const void *src, uint64_t n);
void shk_q_ring_read(const shk_queue *q, uint64_t pos, void *dst, uint64_t n);
int shk_q_read_record(const shk_queue *q, uint64_t pos, uint64_t avail, rec_hdr *h,
                      ool_ref *ref);
int shk_q_walk(shk_queue *q, uint64_t *count, uint64_t *ool, uint64_t *end);
/* Take put_lock / get_lock, repairing after a dead holder (RECOVERY);
 * shk_q_lock_both takes put_lock then get_lock. */
int shk_q_lock_put(shk_queue *q);
int shk_q_lock_get(shk_queue *q);
int shk_q_lock_both(shk_queue *q);
/* Bump both futex words and wake every waiter (a repair; close). */
void shk_q_wake_all(shk_queue *q);
/* put_lock held, the queue found full: if get_lock is free and its last
 * holder died (or left a repair pending), repair now, so that a count one
 * too high never keeps producers out while no consumer comes (RECOVERY). */
void shk_q_repair_from_put(shk_queue *q);
static inline void shk_q_unlock_put(shk_queue *q) { shk_mutex_unlock(&q->sh->put_lock); }
static inline void shk_q_unlock_get(shk_queue *q) { shk_mutex_unlock(&q->sh->get_lock); }
static inline void shk_q_unlock_both(shk_queue *q)
{
    shk_mutex_unlock(&q->sh->get_lock);
    shk_mutex_unlock(&q->sh->put_lock);
}
/* Items in the queue: total_put - total_got (TWO LOCKS).  acquire: the
 * total_got read first, so the total_put read after it is at least as
 * new (never below it).  Exact under get_lock when no producer is
 * between its total_put and tail stores; a snapshot otherwise. */
static inline uint64_t shk_q_count(const shk_queue *q)
{
    const q_shared *sh = q->sh;
    uint64_t got = SHK_A(atomic_load_explicit(&sh->total_got, memory_order_acquire));
    uint64_t put = SHK_A(atomic_load_explicit(&sh->total_put, memory_order_acquire));
    return put - got > q->ring_size ? 0 : put - got; /* only corruption makes it > */
}

/* ---- queue_tasks.c ---- */
int shk_q_tasks_of(shk_queue *q, q_tasks **out);
t_cell *shk_q_claim_cell(shk_queue *q, q_tasks *t);
uint64_t shk_q_unfinished(const shk_queue *q, const q_tasks *t);

#endif
