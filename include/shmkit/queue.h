/*
 * shmkit/queue.h -- multi-producer multi-consumer queue of variable-size
 * items in shared memory.
 *
 * A queue is a byte ring of records: producers take one robust
 * process-shared mutex, consumers another (see src/queue_internal.h for
 * why, and docs/queue.md for the guarantees).
 * Items are byte strings of any length up to the heap's room; each carries
 * an 8-bit user tag (the Python layer uses it to tell raw bytes from pickles).
 * Small items are copied into the ring; large ones (> the ring's inline
 * limit) go to a heap block whose offset the ring record holds.
 *
 * Timeouts: timeout_ns == 0 never blocks (SHK_EFULL / SHK_EEMPTY),
 * timeout_ns < 0 waits forever, otherwise waits at most that long
 * (SHK_ETIMEDOUT).  A blocking call returns SHK_EINTR when a signal arrives
 * while it sleeps, so that the caller can run its handlers and call again.
 */
#ifndef SHMKIT_QUEUE_H
#define SHMKIT_QUEUE_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_queue shk_queue; /* process-local handle */

/* Default ring size when 0 is passed to shk_queue_create_in. */
#define SHK_QUEUE_DEFAULT_RING (1ull << 20)
#define SHK_QUEUE_MIN_RING 4096ull
#define SHK_QUEUE_MAX_RING (1ull << 32)
/* Largest item accepted (pickles of huge objects excepted, nothing needs
 * more; it keeps every length in a 32-bit record field or a heap block). */
#define SHK_QUEUE_MAX_ITEM (1ull << 36)
/* Ring bytes of the record of any item once its bytes spill out of line:
 * a ring with fewer free bytes takes no item of more than 8 bytes. */
#define SHK_QUEUE_MIN_RECORD 24ull

typedef struct shk_queue_config {
    uint64_t ring_bytes; /* ring capacity, rounded up to a power of two */
    uint64_t maxsize;    /* most items held at once; 0 = unbounded       */
} shk_queue_config;

/* Build a queue in `seg` (memory from the segment heap). *off receives the
 * offset of its shared header.  Used as a directory init function through
 * shk_queue_open_named. */
int shk_queue_create_in(shk_segment *seg, const shk_queue_config *cfg, uint64_t *off);
/* Open a handle on the queue whose header is at off (validated:
 * SHK_ECORRUPT).  The handle holds a reference on the segment. */
int shk_queue_open(shk_segment *seg, uint64_t off, shk_queue **out);
/* Create-or-open the queue named `name` in seg's directory.  cfg is used
 * only when it is created (NULL = defaults); *created may be NULL. */
int shk_queue_open_named(shk_segment *seg, const char *name, const shk_queue_config *cfg,
                         shk_queue **out, int *created);
void shk_queue_close(shk_queue *q);
shk_segment *shk_queue_segment(const shk_queue *q);

/* One item: data/len, and its 8-bit user tag. */
typedef struct shk_queue_item {
    const void *data;
    uint64_t len;
    uint32_t tag;
} shk_queue_item;

/* Called by get/get_many, with the consumers' lock held, once per item taken:
 * return a buffer of at least `len` bytes to copy the item into, or NULL to
 * stop (the item stays at the head; get returns SHK_ENOMEM).  It must not
 * call into this queue. */
typedef void *(*shk_queue_alloc_fn)(void *ctx, uint64_t len, uint32_t tag);

int shk_queue_put(shk_queue *q, const void *data, uint64_t len, uint32_t tag,
                  int64_t timeout_ns);
/* Put up to n items without blocking, in order, inline ones under one hold
 * of the producers' lock; *done = how many were put.  SHK_OK if all were;
 * SHK_EFULL if it stopped at an item that does not fit; SHK_EINVAL if it
 * stopped at an invalid item (the *done items before it were put). */
int shk_queue_put_many(shk_queue *q, const shk_queue_item *items, uint64_t n, uint64_t *done);

/* Take the head item: alloc(ctx, len, tag) gives the buffer. */
int shk_queue_get(shk_queue *q, shk_queue_alloc_fn alloc, void *ctx, int64_t timeout_ns);
/* Take up to max_items without blocking, under one hold of the consumers'
 * lock; *done = how many.  SHK_EEMPTY if none. */
int shk_queue_get_many(shk_queue *q, uint64_t max_items, shk_queue_alloc_fn alloc, void *ctx,
                       uint64_t *done);
/* Convenience: copy the head item into buf (cap bytes).  SHK_EINVAL (item
 * left in place, *len = its size) if it does not fit. */
int shk_queue_get_into(shk_queue *q, void *buf, uint64_t cap, uint64_t *len, uint32_t *tag,
                       int64_t timeout_ns);

/* The two halves of a blocking call, for callers (Python) that must do
 * something between attempts (release a lock, check signals): wait until a
 * put of `len` bytes may succeed / a get may succeed, or the timeout.
 * SHK_OK (try again: not a promise, another process may win), SHK_ETIMEDOUT
 * or SHK_EINTR.  A ready condition returns SHK_OK at once. */
int shk_queue_wait_put(shk_queue *q, uint64_t len, int64_t timeout_ns);
int shk_queue_wait_get(shk_queue *q, int64_t timeout_ns);
/* Wake every waiter blocked in shk_queue_wait_put/wait_get on this queue
 * (in any process: each returns SHK_OK and retries, as after any wake-up).
 * For a caller that closes a handle other threads wait on. */
void shk_queue_wake_waiters(shk_queue *q);

/* JoinableQueue (see JOINABLE in src/queue.c).  make_joinable attaches
 * the task ledger if the queue has none (idempotent); from then on every
 * get counts the items it takes as unfinished until task_done.
 * task_done: SHK_EEMPTY if no item is unfinished in anyone's hands,
 * SHK_EINVAL if the queue is not joinable.
 * wait_join: one wait step of join(): SHK_OK when no put item is
 * unfinished (items of dead consumers count as done), SHK_EAGAIN after a
 * wake-up or a nap of at most 100 ms (check again), SHK_ETIMEDOUT (not
 * done after timeout_ns; 0 = do not wait), SHK_EINTR.
 * tasks: the unfinished count and the items of dead consumers counted done. */
int shk_queue_make_joinable(shk_queue *q);
int shk_queue_task_done(shk_queue *q);
int shk_queue_wait_join(shk_queue *q, int64_t timeout_ns);
int shk_queue_tasks(shk_queue *q, uint64_t *unfinished, uint64_t *reclaimed);

/* Snapshot counts (exact when quiescent). */
uint64_t shk_queue_size(const shk_queue *q);
uint64_t shk_queue_maxsize(const shk_queue *q);
uint64_t shk_queue_ring_bytes(const shk_queue *q);
uint64_t shk_queue_used_bytes(const shk_queue *q);
/* Largest item stored inline in the ring; larger ones go out of line. */
uint64_t shk_queue_inline_max(const shk_queue *q);

typedef struct shk_queue_stats {
    uint64_t items, used_bytes, ring_bytes, maxsize, out_of_line;
    uint64_t total_put, total_got, recoveries;
    uint32_t get_waiters, put_waiters;
} shk_queue_stats;
/* Walk the ring under the lock and verify every record (lengths within the
 * ring, out-of-line blocks live heap blocks of the right size, the item count
 * and used bytes matching).  SHK_OK or SHK_ECORRUPT. */
int shk_queue_check(shk_queue *q, shk_queue_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
