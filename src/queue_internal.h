/*
 * queue_internal.h -- the MPMC queue's design, its shared layout and what
 * its three files share.  The queue: variable-size items in a byte ring of
 * records under a robust process-shared mutex, with futex waits.
 *
 * FILES (each uses only those above it)
 *   queue_ring.c   records, their check words, the ring copy, the lock and
 *                  its recovery (RECOVERY)
 *   queue_tasks.c  the task ledger of a joinable queue (JOINABLE)
 *   queue.c        create/open, put/get, waiting (BLOCKING, SPINNING),
 *                  inspection and check
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
#ifndef SHK_QUEUE_INTERNAL_H
#define SHK_QUEUE_INTERNAL_H

#include "internal.h"

#define Q_MAGIC 0x45554555514b4853ull /* "SHKQUEUE" */
#define Q_VERSION 3u                  /* also covers the item tags Python writes ('b', 'p') */
#define REC_HDR 8u
#define REC_OOL 1u
#define WAITER_BITS 20u /* waiter word: gen << 20 | count */
#define WAITER_MASK ((1u << WAITER_BITS) - 1)
/* How long a waiter polls the queue before it sleeps (see SPINNING). */
#define SPIN_MIN_NS 2000ll    /* what an idle waiter decays to      */
#define SPIN_START_NS 20000ll /* a new handle's budget              */
#define SPIN_MAX_NS 100000ll  /* what a busy partner can earn it    */
#define SPIN_CLOCK_EVERY 32u  /* polls between clock reads / yields */

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
    shk_mutex lock; /* 64 */
    /* Written under the lock; atomic so that qsize() may read them without
     * it (relaxed everywhere: the mutex orders the lock holders). */
    _Atomic uint64_t head; /* 128 */
    _Atomic uint64_t tail;
    _Atomic uint64_t count;
    _Atomic uint64_t out_of_line;
    _Atomic uint64_t total_put;
    _Atomic uint64_t total_got;
    _Atomic uint64_t recoveries;
    uint64_t pad1;
    _Atomic uint32_t not_empty; /* 192: futex words */
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
int shk_q_lock(shk_queue *q);
static inline void shk_q_unlock(shk_queue *q) { shk_mutex_unlock(&q->sh->lock); }

/* ---- queue_tasks.c ---- */
int shk_q_tasks_of(shk_queue *q, q_tasks **out);
t_cell *shk_q_claim_cell(shk_queue *q, q_tasks *t);
uint64_t shk_q_unfinished(const shk_queue *q, const q_tasks *t);

#endif
