/*
 * internal.h -- helpers shared by the libshmkit sources; not installed.
 *
 *   - offset <-> pointer conversion (shared memory holds offsets only)
 *   - process-shared robust mutexes (shk_mutex_*)
 *   - futex wait/wake on a 32-bit word in shared memory (shk_futex_*)
 *   - the tagged-offset Treiber stack (shk_lfstack_*) that the free-list
 *     allocator and the Stack structure both use
 *   - a few small utilities (alignment, monotonic time)
 */
#ifndef SHMKIT_INTERNAL_H
#define SHMKIT_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "shmkit.h"

/* A spin-wait hint to the CPU (one round of a busy wait). */
static inline void shk_cpu_relax(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);   /* portable: a no-op pause */
#endif
}

/* ---- chaos: preemption between any two atomic steps ----
 * SHK_A(expr) wraps every atomic access to shared memory in src/.  In the
 * chaos build (-DSHMKIT_CHAOS: `make ctest-chaos`, or SHMKIT_CHAOS=1 when
 * building the extension) it first calls shk_chaos_point(), which, with a
 * seeded probability, yields the CPU or spins a little: run with more
 * processes than cores, operations are then preempted between any two of
 * their atomic steps, not only where the scheduler happens to land.
 * SHMKIT_CHAOS_SEED (default: from the clock) and SHMKIT_CHAOS_RATE (one
 * access in RATE yields and one in RATE spins; default 64) steer it.  In
 * the ordinary build SHK_A(expr) is expr. */
#ifdef SHMKIT_CHAOS
void shk_chaos_point(void);
#define SHK_A(expr) (shk_chaos_point(), (expr))
#else
#define SHK_A(expr) (expr)
#endif

#define SHK_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

/* SHK_PREFETCH_W: start moving a line we are about to write into this
 * core's cache (a hint only; no effect on correctness). */
#if defined(__GNUC__) || defined(__clang__)
#define SHK_LIKELY(x) __builtin_expect(!!(x), 1)
#define SHK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SHK_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define SHK_LIKELY(x) (x)
#define SHK_UNLIKELY(x) (x)
#define SHK_PREFETCH_W(p) ((void)(p))
#endif

#define SHK_CACHELINE 64

/* floor(log2(x)) for x > 0, with a portable fallback. */
static inline unsigned shk_log2_u64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return 63u - (unsigned)__builtin_clzll(x);
#else
    unsigned r = 0;
    while (x >>= 1)
        r++;
    return r;
#endif
}

/* ---- offsets ---- */

static inline void *shk_ptr(char *base, uint64_t off) { return base + off; }
static inline uint64_t shk_off(const char *base, const void *p)
{
    return (uint64_t)((const char *)p - base);
}
static inline uint64_t shk_align_up(uint64_t n, uint64_t a)
{
    return (n + (a - 1)) & ~(a - 1);
}
/* a + b without wrap-around: UINT64_MAX on overflow, which every bounds
 * check then rejects.  Lengths read from shared memory go through this. */
static inline uint64_t shk_add_sat(uint64_t a, uint64_t b)
{
    return (a + b < a) ? UINT64_MAX : a + b;
}

/* ---- robust, process-shared mutex ----
 * A pthread mutex with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST, in a
 * 64-byte slot of shared memory.  If its holder dies, the next locker gets
 * SHK_MUTEX_RECOVERED: it must repair what the lock protects, then call
 * shk_mutex_consistent() before unlocking. */
typedef union shk_mutex {
    pthread_mutex_t m;
    char pad[64];
} shk_mutex;
SHK_STATIC_ASSERT(sizeof(pthread_mutex_t) <= 64, "pthread_mutex_t fits 64B");

#define SHK_MUTEX_RECOVERED 1
int shk_mutex_init(shk_mutex *mx);
/* SHK_OK / SHK_MUTEX_RECOVERED, or SHK_ECORRUPT when the mutex words cannot
 * be a mutex shk_mutex_init made (a foreign kind, an impossible owner, or
 * an owner thread that no longer exists): never waits on such a word. */
int shk_mutex_lock(shk_mutex *mx);
void shk_mutex_consistent(shk_mutex *mx);
void shk_mutex_unlock(shk_mutex *mx);
/* The same on a bare pthread_mutex_t, for a layout that shares the
 * mutex's cache line with the data it guards (dict_internal.h's shard line). */
int shk_pmutex_init(pthread_mutex_t *m);
int shk_pmutex_lock(pthread_mutex_t *m);
/* Without waiting: SHK_OK / SHK_MUTEX_RECOVERED as above, SHK_EAGAIN if
 * held, SHK_ECORRUPT for words that cannot be a mutex shk_pmutex_init
 * made. */
int shk_pmutex_trylock(pthread_mutex_t *m);
/* 1 unless kill(pid, 0) says no such process (EPERM: it exists, another
 * user's).  pid must be > 0: kill(0) and kill(-1) name groups. */
int shk_pid_exists(pid_t pid);
/* The start time of process pid (clock ticks since boot, field 22 of
 * /proc/<pid>/stat): with the pid it names one process even after the pid
 * is reused.  0 if the process does not exist or is a zombie;
 * SHK_START_UNKNOWN if /proc cannot tell. */
#define SHK_START_UNKNOWN UINT64_MAX
uint64_t shk_proc_start(pid_t pid);
/* 1 if the words of m can be those of a robust process-shared mutex that
 * shk_pmutex_init made (glibc layout; see sync.c), else 0.  For check(). */
int shk_pmutex_valid(const pthread_mutex_t *m);
void shk_pmutex_consistent(pthread_mutex_t *m);
void shk_pmutex_unlock(pthread_mutex_t *m);

/* ---- futex ----
 * Shared (not FUTEX_PRIVATE) futex on a 32-bit word in shared memory.
 * timeout_ns < 0 waits forever.  Returns SHK_OK when woken or the word
 * differed from `expected`, SHK_ETIMEDOUT, or SHK_EINTR on a signal. */
int shk_futex_wait(_Atomic uint32_t *word, uint32_t expected,
                   int64_t timeout_ns);
/* Wakes up to count sleepers on word; returns how many it woke. */
int shk_futex_wake(_Atomic uint32_t *word, int count);

static inline int64_t shk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- fork generation ----
 * Per-process state cached in a handle (a dict's version batch, the heap
 * stripe) must not be shared with a forked child.  shk_fork_watch() (called
 * at any open; idempotent) installs a pthread_atfork handler that bumps the
 * generation in the child; a handle that remembers the generation it took
 * its state in sees the change with one relaxed load. */
extern _Atomic unsigned shk_fork_gen_;
void shk_fork_watch(void);
static inline unsigned shk_fork_gen(void)
{
    return SHK_A(atomic_load_explicit(&shk_fork_gen_, memory_order_relaxed));
}

/* ---- tagged-offset Treiber stack ----
 * The head word packs a 32-bit ABA tag above a 32-bit node offset counted in
 * 16-byte units, so nodes must be 16-aligned and below 64 GiB
 * (SHK_MAX_MAX_SIZE).  Node offset 0 means empty: offset 0 is always the
 * segment header, never a node.  The link of a node is the _Atomic uint64_t
 * at base + node offset (callers put it first in their node layout).
 *
 * Reading the link of a node that another process pops and reuses meanwhile
 * is harmless: the memory stays mapped (segments never shrink), the read is
 * atomic, and the tag makes the following CAS fail. */
#define SHK_LFSTACK_EMPTY 0u

static inline uint64_t shk_lf_pack(uint64_t tag, uint64_t off)
{
    return (tag << 32) | ((off >> 4) & 0xffffffffu);
}
static inline uint64_t shk_lf_off(uint64_t word) { return (word & 0xffffffffu) << 4; }
static inline uint64_t shk_lf_tag(uint64_t word) { return word >> 32; }

static inline void shk_lfstack_push(_Atomic uint64_t *head, char *base,
                                    uint64_t node)
{
    _Atomic uint64_t *link = (_Atomic uint64_t *)(base + node);
    /* relaxed: our link store and the node's contents are published by the
     * release CAS below. */
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_relaxed));
    for (;;) {
        SHK_A(atomic_store_explicit(link, shk_lf_off(old), memory_order_relaxed));
        /* release on success: a popper that acquires this head value sees the
         * node's contents and link.  relaxed on failure: we only retry. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(
                head, &old, shk_lf_pack(shk_lf_tag(old) + 1, node),
                memory_order_release, memory_order_relaxed)))
            return;
    }
}

/* Pops a node; returns its offset or 0 when empty.  `limit` bounds a link
 * read from shared memory: a corrupt link beyond it ends the pop with 0
 * rather than a wild read. */
static inline uint64_t shk_lfstack_pop(_Atomic uint64_t *head, char *base,
                                       uint64_t limit)
{
    /* acquire: pairs with the pusher's release so the link and contents of
     * the node we may take are visible. */
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_acquire));
    for (;;) {
        uint64_t node = shk_lf_off(old);
        if (node == 0 || node + 16 > limit)
            return 0;
        uint64_t next = SHK_A(atomic_load_explicit(
            (_Atomic uint64_t *)(base + node), memory_order_relaxed));
        /* acquire on both paths: on failure we re-read a new node's link. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(
                head, &old, shk_lf_pack(shk_lf_tag(old) + 1, next),
                memory_order_acquire, memory_order_acquire)))
            return node;
    }
}

/* Detaches the whole stack; returns its first node (0 if empty).  The
 * chain's links are untouched and now ours alone: a concurrent pop of the
 * old head fails on the tag. */
static inline uint64_t shk_lfstack_take_all(_Atomic uint64_t *head)
{
    /* acquire: pairs with the pushers' release, so every node's link and
     * contents along the chain are visible. */
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_acquire));
    while (shk_lf_off(old) != 0 &&
           !SHK_A(atomic_compare_exchange_weak_explicit(
               head, &old, shk_lf_pack(shk_lf_tag(old) + 1, 0),
               memory_order_acquire, memory_order_acquire)))
        ;
    return shk_lf_off(old);
}

/* Pushes a chain (first .. a node whose link is 0) that we own.  If the
 * stack is empty, one CAS installs the whole chain; otherwise it is walked
 * to its tail (at most max_nodes, each below `limit`) and pushed as one. */
static inline void shk_lfstack_push_chain(_Atomic uint64_t *head, char *base,
                                          uint64_t first, uint64_t limit,
                                          uint64_t max_nodes)
{
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_relaxed));
    uint64_t tail = 0;
    for (;;) {
        if (shk_lf_off(old) != 0 && tail == 0) {
            tail = first;
            for (uint64_t n = 1; n < max_nodes; n++) {
                uint64_t next = SHK_A(atomic_load_explicit(
                    (_Atomic uint64_t *)(base + tail), memory_order_relaxed));
                if (next == 0 || next + 16 > limit)
                    break;
                tail = next;
            }
        }
        if (tail)
            SHK_A(atomic_store_explicit((_Atomic uint64_t *)(base + tail),
                                  shk_lf_off(old), memory_order_relaxed));
        /* release on success: as in push, for every node of the chain. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(
                head, &old, shk_lf_pack(shk_lf_tag(old) + 1, first),
                memory_order_release, memory_order_relaxed)))
            return;
    }
}

/* Verify a list that other processes may push to and pop from meanwhile.
 * walk(head_word, ctx) walks the list from that head word and returns 0 if
 * every node passed, nonzero at the first that did not (a node popped and
 * reused under the walk fails it).  Every push and pop moves the head word
 * (its tag counts them), so a walk that failed while the head word stayed
 * the same saw a list nobody touched: SHK_ECORRUPT.  If the head moved, the
 * walk proves nothing and is tried again; a list that moves under every one
 * of SHK_LFSTACK_CHECK_TRIES further walks gives SHK_EAGAIN (unverified,
 * not corrupt).  SHK_OK: the last walk passed.  (In sync.c, not inline:
 * gcc's ThreadSanitizer build refuses the fence in an inlined header
 * function.) */
#define SHK_LFSTACK_CHECK_TRIES 64
int shk_lfstack_check(_Atomic uint64_t *head,
                      int (*walk)(uint64_t head_word, void *ctx), void *ctx);

/* ---- crash points (for the crash-torture tests) ----
 * SHK_CRASH_POINT("freelist.carve") kills the calling process with SIGKILL
 * when the environment variable SHMKIT_CRASH_AT is "freelist.carve" (or
 * "freelist.carve:N" for the N-th hit) at the time a segment is first
 * opened.  Unarmed, a crash point costs one predictable branch.  They mark
 * the instants where a kill is most dangerous: between the steps of a
 * multi-step change. */
extern int shk_crash_armed;
void shk_crash_init(void);
void shk_crash_arm(const char *spec);   /* "name[:N]", NULL disarms */
void shk_crash_point_hit(const char *name);
#define SHK_CRASH_POINT(name)                                                \
    do {                                                                     \
        if (SHK_UNLIKELY(shk_crash_armed))                                   \
            shk_crash_point_hit(name);                                       \
    } while (0)

/* ---- layout facts for the fuzz tests ----
 * [*start, *end) of the i-th robust mutex inside a dict's header, relative
 * to the header; SHK_ENOTFOUND past the last.  The header fuzzer keeps
 * mutexes intact: a forged owner stalls lockers by design (SECURITY.md). */
int shk_dict_mutex_span(unsigned i, uint64_t *start, uint64_t *end);

/* ---- named objects whose create_in takes one size ----
 * Find object `name` of `type` in seg's directory; if absent and size != 0,
 * build it with create(seg, size, off).  *off gets its offset.  The
 * open_named of the free list and the bump allocator. */
typedef int (*shk_create_sized_fn)(shk_segment *seg, uint64_t size, uint64_t *off);
typedef struct {
    shk_create_sized_fn create;
    uint64_t size;
} shk_sized_init;

static inline int shk_sized_init_cb(shk_segment *seg, void *arg, uint64_t *off,
                                    uint64_t *size)
{
    const shk_sized_init *si = arg;
    *size = si->size;
    return si->create(seg, si->size, off);
}

static inline int shk_object_sized(shk_segment *seg, const char *name, uint32_t type,
                                   shk_create_sized_fn create, uint64_t size,
                                   uint64_t *off, int *created)
{
    shk_sized_init si = {create, size};
    return shk_segment_object(seg, name, type, size ? shk_sized_init_cb : NULL, &si, off,
                              created);
}

/* ---- segment internals used by other sources ---- */
int shk_segment_fd(const shk_segment *seg);

/* ---- an object of fixed layout (counter, bitset): its header ----
 * Copy the len-byte header at segment offset off into hdr once, validate
 * the copy with `valid` (the type's shk_*_validate_header), and check that
 * the object's bytes(hdr, off) bytes from off are one live heap block (a
 * corrupt directory entry pointing into another object fails here).  The
 * caller uses the copy, never a second read of shared memory that another
 * process may have changed since.  SHK_OK or SHK_ECORRUPT. */
typedef int (*shk_header_valid_fn)(const void *buf, size_t len, uint64_t off,
                                   uint64_t file_size);
typedef uint64_t (*shk_object_bytes_fn)(const void *hdr, uint64_t off);
static inline int shk_object_header(shk_segment *seg, uint64_t off, void *hdr, size_t len,
                                    shk_header_valid_fn valid, shk_object_bytes_fn bytes)
{
    if (!shk_segment_contains(seg, off, len))
        return SHK_ECORRUPT;
    memcpy(hdr, shk_segment_base(seg) + off, len);
    int rc = valid(hdr, len, off, shk_segment_file_size(seg));
    if (rc != SHK_OK)
        return rc;
    if (shk_freelist_usable(shk_segment_heap(seg), off) < bytes(hdr, off))
        return SHK_ECORRUPT;
    return SHK_OK;
}

/* ---- shared layouts the tests need ----
 * Byte offset of the robust mutex (sizeof(shk_mutex) bytes) in the queue's
 * shared header, so a test that forges headers can keep it intact without
 * hard-coding the layout.  (The stack has no lock.) */
size_t shk_queue_lock_offset(void);

#endif
