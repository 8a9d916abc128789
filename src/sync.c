/*
 * sync.c -- synchronization between processes: the two blocking primitives
 * of libshmkit, robust process-shared mutexes and shared futexes, and the
 * facts about a process that owner checks use (shk_pid_exists: does it
 * exist; shk_proc_start: when did it start).
 *
 * Mutexes are used only where a multi-step change cannot be made lock-free
 * cheaply (segment growth, the object directory, ...).  They are robust: a
 * holder killed with SIGKILL hands the lock to the next locker with
 * EOWNERDEAD instead of deadlocking it, and that locker repairs the state.
 *
 * Futexes are used for blocking waits (queue get/put).  They are *shared*
 * futexes (no FUTEX_PRIVATE_FLAG): private futexes are keyed by the process's
 * address space and would never wake a waiter in another process.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* ---- validating a mutex that lives in shared memory ----
 * Any process that can write the segment can leave garbage in a mutex, and
 * glibc trusts its mutex words: a garbage kind makes pthread_mutex_lock
 * fail with EINVAL or take a non-robust path, a garbage lock word names an
 * owner that will never unlock, and the locker sleeps on the futex for
 * ever.  So before locking we check what can be checked, and a wait for a
 * held lock is cut into slices after each of which the owner is looked at.
 *
 * This reads glibc's pthread_mutex_t (struct __pthread_mutex_s, stable
 * since glibc 2.3 on Linux): `__kind` holds the type and the ROBUST and
 * PSHARED bits, set once by pthread_mutex_init and never changed; `__lock`
 * is the robust futex word, 0 when free, else the owner's thread id in the
 * low 30 bits (FUTEX_TID_MASK) plus the FUTEX_WAITERS / FUTEX_OWNER_DIED
 * bits (never FUTEX_WAITERS without an owner).  The kind expected is taken from a mutex this process initialises
 * the same way, not hard-coded.  Elsewhere (not glibc) the checks are
 * skipped and only the status mapping applies.
 *
 * A held lock whose owner thread id does not exist (kill(tid, 0) gives
 * ESRCH) and whose word did not change meanwhile cannot be a real holder:
 * a robust owner that dies is replaced in the word by the kernel
 * (FUTEX_OWNER_DIED) before its id is freed.  This assumes every process
 * using the segment is in one PID namespace (docs/SECURITY.md). */
#define SHK_TID_MASK 0x3fffffffu      /* FUTEX_TID_MASK */
#define SHK_OWNER_DIED 0x40000000u    /* FUTEX_OWNER_DIED */
#define SHK_PID_MAX_LIMIT (4u << 20)  /* the kernel's PID_MAX_LIMIT */
#define SHK_LOCK_SLICE_NS 100000000LL /* 100 ms between owner checks */
#define SHK_LOCK_SPINS 100            /* polls of a held lock's word */

#ifdef __GLIBC__
static int expected_kind;
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;

static void learn_kind(void)
{
    pthread_mutex_t m;
    memset(&m, 0, sizeof m);
    if (shk_pmutex_init(&m) == SHK_OK) {
        expected_kind = m.__data.__kind;
        pthread_mutex_destroy(&m);
    }
}

static uint32_t lock_word(const pthread_mutex_t *m)
{
    /* relaxed: a snapshot of a word other lockers CAS; nothing else is
     * read through it. */
    return (uint32_t)__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
}
#endif

int shk_pmutex_valid(const pthread_mutex_t *m)
{
#ifdef __GLIBC__
    pthread_once(&kind_once, learn_kind);
    if (expected_kind != 0 &&
        __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) != expected_kind)
        return 0;
    uint32_t w = lock_word(m);
    if ((w & SHK_TID_MASK) > SHK_PID_MAX_LIMIT)
        return 0;
    /* No owner yet flag bits: glibc clears the whole word on unlock and the
     * kernel sets OWNER_DIED when it frees one, so only FUTEX_WAITERS
     * alone is left, which nobody would ever take. */
    if (w != 0 && (w & SHK_TID_MASK) == 0 && !(w & SHK_OWNER_DIED))
        return 0;
#else
    (void)m;
#endif
    return 1;
}

static int lock_status(int rc)
{
    if (rc == 0)
        return SHK_OK;
    if (rc == EOWNERDEAD)
        return SHK_MUTEX_RECOVERED;
    /* ENOTRECOVERABLE cannot come from our own use: every RECOVERED path
     * marks the mutex consistent before unlocking.  It, EINVAL (a kind
     * glibc does not know), EDEADLK and EAGAIN (kinds we never create) all
     * say the mutex words are not what shk_pmutex_init wrote. */
    if (rc == ENOTRECOVERABLE || rc == EINVAL || rc == EDEADLK || rc == EAGAIN)
        return SHK_ECORRUPT;
    errno = rc;
    return SHK_ESYS;
}

/* The file mapped at addr in process `pid` ("self" for us): its device
 * and inode as /proc/PID/maps shows them ("fd:01 1234"), into key.  With
 * addr == 0, whether that process maps the file `key` names at all.
 * 1 found, 0 not, -1 unknown (the maps could not be read). */
static int maps_find(const char *pid, uintptr_t addr, char *key, size_t keylen)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%s/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char dev[32];
        unsigned long long ino;
        if (sscanf(line, "%lx-%lx %*s %*s %31s %llu", &lo, &hi, dev, &ino) != 4 || ino == 0)
            continue;
        char k[64];
        snprintf(k, sizeof k, "%s %llu", dev, ino);
        if (addr) {
            if (addr >= lo && addr < hi) {
                snprintf(key, keylen, "%s", k);
                found = 1;
            }
        } else if (strcmp(k, key) == 0) {
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* Could thread `tid` hold mutex m at all: does its process map the file m
 * lives in?  A word naming a live thread of a process that never mapped
 * the segment (pid 1, say) is a forged owner.  0 no; 1 yes or unknown. */
static int owner_maps_mutex(const pthread_mutex_t *m, pid_t tid)
{
    char key[64], pid[24];
    if (maps_find("self", (uintptr_t)m, key, sizeof key) != 1)
        return 1;
    snprintf(pid, sizeof pid, "%d", (int)tid);
    return maps_find(pid, 0, key, sizeof key) != 0;
}

int shk_pid_exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

uint64_t shk_proc_start(pid_t pid)
{
    char path[48], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : SHK_START_UNKNOWN;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return n == 0 || errno == ESRCH ? 0 : SHK_START_UNKNOWN;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    if (!p || p[1] != ' ')
        return SHK_START_UNKNOWN;
    p += 2;
    if (*p == 'Z' || *p == 'X')
        return 0;
    for (int field = 3; field < 22; field++) { /* p is at field 3 */
        p = strchr(p, ' ');
        if (!p)
            return SHK_START_UNKNOWN;
        p++;
    }
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    return end == p ? SHK_START_UNKNOWN : (uint64_t)v;
}

int shk_proc_alive(pid_t pid, uint64_t start, uint64_t mask)
{
    uint64_t now = shk_proc_start(pid);
    if (now == SHK_START_UNKNOWN)
        return 1;
    if (now == 0)
        return 0;
    return start == SHK_START_UNKNOWN || (now & mask) == (start & mask);
}

/* Held by something that cannot be a live holder?  (Called after a slice
 * of waiting timed out, so the cost of reading /proc is no concern.) */
static int owner_impossible(const pthread_mutex_t *m)
{
#ifdef __GLIBC__
    uint32_t w = lock_word(m);
    pid_t tid = (pid_t)(w & SHK_TID_MASK);
    if (tid == 0)
        return 0; /* freed meanwhile: lock again */
    if ((uint32_t)tid > SHK_PID_MAX_LIMIT || tid == (pid_t)syscall(SYS_gettid))
        return 1; /* this thread never locks twice */
    if (shk_pid_exists(tid)) {
        /* alive (EPERM: alive, another user): a holder only if it maps
         * the segment */
        if (owner_maps_mutex(m, tid))
            return 0;
        return lock_word(m) == w;
    }
    /* The word still names the vanished thread: no exit is pending. */
    return lock_word(m) == w;
#else
    (void)m;
    return 0;
#endif
}

int shk_pmutex_trylock(pthread_mutex_t *m)
{
    if (SHK_UNLIKELY(!shk_pmutex_valid(m)))
        return SHK_ECORRUPT;
    int rc = pthread_mutex_trylock(m);
    return rc == EBUSY ? SHK_EAGAIN : lock_status(rc);
}

int shk_pmutex_lock(pthread_mutex_t *m)
{
    int rc = shk_pmutex_trylock(m);
    if (SHK_LIKELY(rc != SHK_EAGAIN))
        return rc;
#ifdef __GLIBC__
    /* Held.  Our holds are short (a copy, a few stores), and sleeping in
     * the kernel costs this locker a wake-up and the holder a FUTEX_WAKE,
     * which under contention turns into a convoy.  So poll the lock word a
     * bounded number of times first (as glibc's adaptive mutexes do, which
     * cannot be robust) and try again when it reads free. */
    for (int i = 0; i < SHK_LOCK_SPINS; i++) {
        shk_cpu_relax();
        if ((lock_word(m) & SHK_TID_MASK) == 0) {
            rc = shk_pmutex_trylock(m);
            if (rc != SHK_EAGAIN)
                return rc;
        }
    }
#endif
    /* Still held: wait in slices, looking at the owner between them.  A
     * live owner is waited for as long as it holds the lock. */
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SHK_LOCK_SLICE_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        rc = pthread_mutex_timedlock(m, &ts);
        if (rc != ETIMEDOUT)
            return lock_status(rc);
        if (!shk_pmutex_valid(m) || owner_impossible(m))
            return SHK_ECORRUPT;
    }
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
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (rc == 0)
        return SHK_OK;
    if (errno == EAGAIN)
        return SHK_OK; /* the word already changed: no need to sleep */
    if (errno == ETIMEDOUT)
        return SHK_ETIMEDOUT;
    if (errno == EINTR)
        return SHK_EINTR;
    return SHK_ESYS;
}

int shk_futex_wake(_Atomic uint32_t *word, int count)
{
    long n = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, count, NULL, NULL, 0);
    return n > 0 ? (int)n : 0;
}
