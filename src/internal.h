/*
 * internal.h -- helpers shared by the libshmkit sources; not installed.
 *
 *   - offset <-> pointer conversion (shared memory holds offsets only)
 *   - process-shared robust mutexes (shk_mutex_*)
 *   - futex wait/wake on a 32-bit word in shared memory (shk_futex_*)
 *   - the fork generation (fork.c)
 *   - crash points, in test builds only (crash.c)
 *   - a few small utilities (alignment, monotonic time)
 *
 * The tagged-offset Treiber stack is lfstack.h; a segment's mapping and
 * growth mapping.h; the free list's internal interface heap_internal.h.
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
    atomic_signal_fence(memory_order_seq_cst); /* portable: a no-op pause */
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

/* The two halves of a store-buffering handshake (a committer that stores,
 * then looks for waiters; a waiter that registers, then looks for the
 * commit): at least one side sees the other's store.
 *   shk_fence_sc()          after the waiter's seq_cst registration RMW,
 *                           before its loads;
 *   shk_fenced_load_u32(w)  the committer's look at the waiter word after
 *                           its commit store: a seq_cst fence, then a
 *                           relaxed load.
 * ThreadSanitizer does not model fences (gcc refuses them): there the
 * committer does a seq_cst RMW of the word instead (the same order, at
 * the price of writing its line: sanitizer builds only), and the waiter's
 * RMW is seq_cst already. */
#if defined(__SANITIZE_THREAD__)
static inline void shk_fence_sc(void) {}
static inline uint32_t shk_fenced_load_u32(_Atomic uint32_t *w)
{
    return SHK_A(atomic_fetch_add_explicit(w, 0, memory_order_seq_cst));
}
#else
static inline void shk_fence_sc(void) { atomic_thread_fence(memory_order_seq_cst); }
static inline uint32_t shk_fenced_load_u32(_Atomic uint32_t *w)
{
    atomic_thread_fence(memory_order_seq_cst);
    return SHK_A(atomic_load_explicit(w, memory_order_relaxed));
}
#endif

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
static inline uint64_t shk_align_up(uint64_t n, uint64_t a) { return (n + (a - 1)) & ~(a - 1); }
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
/* 0 if the process (pid, start) is known to be gone: pid is no live
 * process, or one of another start time (compared under mask, for owners
 * that store the start time truncated); else 1 (alive, /proc cannot tell,
 * or start is SHK_START_UNKNOWN). */
int shk_proc_alive(pid_t pid, uint64_t start, uint64_t mask);
/* 1 if the words of m can be those of a robust process-shared mutex that
 * shk_pmutex_init made (glibc layout; see sync.c), else 0.  For check(). */
int shk_pmutex_valid(const pthread_mutex_t *m);
void shk_pmutex_consistent(pthread_mutex_t *m);
void shk_pmutex_unlock(pthread_mutex_t *m);

/* ---- futex ----
 * Shared (not FUTEX_PRIVATE) futex on a 32-bit word in shared memory.
 * timeout_ns < 0 waits forever.  Returns SHK_OK when woken or the word
 * differed from `expected`, SHK_ETIMEDOUT, or SHK_EINTR on a signal. */
int shk_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
/* Wakes up to count sleepers on word; returns how many it woke. */
int shk_futex_wake(_Atomic uint32_t *word, int count);

static inline int64_t shk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- fork generation (fork.c) ----
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

/* ---- crash points (for the crash-torture tests) ----
 * SHK_CRASH_POINT("freelist.carve") kills the calling process with SIGKILL
 * when the environment variable SHMKIT_CRASH_AT is "freelist.carve" (or
 * "freelist.carve:N" for the N-th hit) at the time a segment is first
 * opened, or after shk_crash_arm("freelist.carve[:N]").  They mark the
 * instants where a kill is most dangerous: between the steps of a
 * multi-step change.  Test builds only (-DSHK_TEST_HOOKS, crash.c): there
 * an unarmed point costs one predictable branch; elsewhere it is no code. */
#ifdef SHK_TEST_HOOKS
extern int shk_crash_armed;
void shk_crash_init(void);
void shk_crash_arm(const char *spec); /* "name[:N]", NULL disarms */
void shk_crash_point_hit(const char *name);
#define SHK_CRASH_POINT(name)                                                                  \
    do {                                                                                       \
        if (SHK_UNLIKELY(shk_crash_armed))                                                     \
            shk_crash_point_hit(name);                                                         \
    } while (0)
#else
static inline void shk_crash_init(void) {}
#define SHK_CRASH_POINT(name) ((void)0)
#endif

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

static inline int shk_sized_init_cb(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    const shk_sized_init *si = arg;
    *size = si->size;
    return si->create(seg, si->size, off);
}

static inline int shk_object_sized(shk_segment *seg, const char *name, uint32_t type,
                                   shk_create_sized_fn create, uint64_t size, uint64_t *off,
                                   int *created)
{
    shk_sized_init si = {create, size};
    return shk_segment_object(seg, name, type, size ? shk_sized_init_cb : NULL, &si, off,
                              created);
}

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
 * The byte span [*start, *end) of the queue header's i-th robust mutex
 * (0: put_lock, 1: get_lock), so a test that damages or forges headers
 * can reach or keep the locks without hard-coding the layout (as
 * shk_dict_mutex_span); SHK_ENOTFOUND past the last.  (The stack has no
 * lock.) */
int shk_queue_mutex_span(unsigned i, uint64_t *start, uint64_t *end);

#endif
