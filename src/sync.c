/*
 * sync.c -- the two blocking primitives of libshmkit: robust process-shared
 * mutexes and shared futexes.
 *
 * Mutexes are used only where a multi-step change cannot be made lock-free
 * cheaply (segment growth, the object directory, ...).  They are robust: a
 * holder killed with SIGKILL hands the lock to the next locker with
 * EOWNERDEAD instead of deadlocking it, and that locker repairs the state.
 *
 * Futexes are used for blocking waits (queue get/put).  They are *shared*
 * futexes (no FUTEX_PRIVATE_FLAG): private futexes are keyed by the process's
 * address space and would never wake a waiter in another process.
 *
 * Also here: shk_lfstack_check, the check of a lock-free list that other
 * processes may change while it is walked (internal.h).
 */
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int shk_lfstack_check(_Atomic uint64_t *head,
                      int (*walk)(uint64_t head_word, void *ctx), void *ctx)
{
    for (unsigned tries = 0;; tries++) {
        uint64_t w = atomic_load_explicit(head, memory_order_acquire);
        if (walk(w, ctx) == 0)
            return SHK_OK;
        /* acquire: the walk's node reads happen before this re-read. */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(head, memory_order_relaxed) == w)
            return SHK_ECORRUPT;
        if (tries == SHK_LFSTACK_CHECK_TRIES)
            return SHK_EAGAIN;
    }
}

int shk_mutex_init(shk_mutex *mx) { return shk_pmutex_init(&mx->m); }
int shk_mutex_lock(shk_mutex *mx) { return shk_pmutex_lock(&mx->m); }
void shk_mutex_consistent(shk_mutex *mx) { shk_pmutex_consistent(&mx->m); }
void shk_mutex_unlock(shk_mutex *mx) { shk_pmutex_unlock(&mx->m); }

int shk_pmutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t at;
    if (pthread_mutexattr_init(&at) != 0)
        return SHK_ESYS;
    int rc = pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(m, &at);
    pthread_mutexattr_destroy(&at);
    if (rc != 0) {
        errno = rc;
        return SHK_ESYS;
    }
    return SHK_OK;
}

int shk_pmutex_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc == 0)
        return SHK_OK;
    if (rc == EOWNERDEAD)
        return SHK_MUTEX_RECOVERED;
    /* ENOTRECOVERABLE cannot happen: every RECOVERED path marks the mutex
     * consistent before unlocking.  Anything else is a corrupt mutex. */
    errno = rc;
    return SHK_ESYS;
}

void shk_pmutex_consistent(pthread_mutex_t *m) { pthread_mutex_consistent(m); }

void shk_pmutex_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

int shk_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        /* FUTEX_WAIT takes a relative timeout measured on CLOCK_MONOTONIC. */
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp,
                      NULL, 0);
    if (rc == 0)
        return SHK_OK;
    if (errno == EAGAIN)
        return SHK_OK;     /* the word already changed: no need to sleep */
    if (errno == ETIMEDOUT)
        return SHK_ETIMEDOUT;
    if (errno == EINTR)
        return SHK_EINTR;
    return SHK_ESYS;
}

void shk_futex_wake(_Atomic uint32_t *word, int count)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, count, NULL, NULL, 0);
}

/* ---- crash points ---- */

int shk_crash_armed;
static char crash_name[64];
static long crash_countdown;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

void shk_crash_arm(const char *v)
{
    shk_crash_armed = 0;
    if (!v || !*v)
        return;
    const char *colon = strchr(v, ':');
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    if (n >= sizeof crash_name)
        return;
    memcpy(crash_name, v, n);
    crash_name[n] = 0;
    crash_countdown = colon ? strtol(colon + 1, NULL, 10) : 1;
    if (crash_countdown < 1)
        crash_countdown = 1;
    shk_crash_armed = 1;
}

static void crash_read_env(void) { shk_crash_arm(getenv("SHMKIT_CRASH_AT")); }

void shk_crash_init(void) { pthread_once(&crash_once, crash_read_env); }

void shk_crash_point_hit(const char *name)
{
    if (strcmp(name, crash_name) != 0)
        return;
    /* Only the process that armed it counts; races between threads do not
     * matter for a test hook that ends the process. */
    if (--crash_countdown == 0)
        raise(SIGKILL);
}

const char *shk_strerror(int status)
{
    switch (status) {
    case SHK_OK: return "success";
    case SHK_EINVAL: return "invalid argument";
    case SHK_ENOMEM: return "out of shared memory";
    case SHK_ECORRUPT: return "not a valid shmkit segment (corrupt, foreign, truncated or another layout version)";
    case SHK_EEXIST: return "already exists";
    case SHK_ENOENT: return "no such segment or object";
    case SHK_ECLOSED: return "handle is closed";
    case SHK_EFULL: return "full";
    case SHK_EEMPTY: return "empty";
    case SHK_ETIMEDOUT: return "timed out";
    case SHK_ESYS: return "system call failed";
    case SHK_EBADOFF: return "offset is not a live block of this allocator";
    case SHK_ETYPE: return "object exists with another type";
    case SHK_EINTR: return "interrupted by a signal";
    case SHK_EAGAIN: return "changed concurrently";
    case SHK_ENOTFOUND: return "key not found";
    case SHK_ECLOSEDQ: return "queue is closed";
    case SHK_EFOREIGN: return "segment is owned by another user or writable by others (not trusted)";
    default: return "unknown error";
    }
}

_Atomic unsigned shk_fork_gen_;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    /* relaxed: the child is single-threaded here; later loads in it are
     * program-ordered after this store. */
    atomic_fetch_add_explicit(&shk_fork_gen_, 1, memory_order_relaxed);
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

void shk_fork_watch(void)
{
    pthread_once(&fork_once, register_fork_handler);
}

const char *shk_type_name(uint32_t type)
{
    static const char *const names[SHK_TYPE_MAX_] = {
        "none", "bump", "freelist", "slab", "dict",
        "queue", "stack", "bitset", "array"};
    return type < SHK_TYPE_MAX_ ? names[type] : "unknown";
}
