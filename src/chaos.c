/*
 * chaos.c -- the chaos build's preemption points (SHK_A in internal.h).
 *
 * Each thread draws from its own xorshift generator, seeded from
 * SHMKIT_CHAOS_SEED (or the clock), the process id and a per-process
 * thread count; a forked child reseeds (its parent's sequence would
 * otherwise repeat in every child).  One access in RATE yields the CPU,
 * another one in RATE spins for up to ~2,000 pause instructions.
 * Compiled to nothing outside the chaos build.
 */
#include "internal.h"

#ifdef SHMKIT_CHAOS
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static _Thread_local uint64_t chaos_state;
static _Atomic unsigned chaos_threads; /* threads seeded in this process */
static unsigned chaos_rate;
static uint64_t chaos_seed;
static pthread_once_t chaos_once = PTHREAD_ONCE_INIT;

static void chaos_child(void)
{
    chaos_state = 0; /* the forking thread reseeds with the child's pid */
    /* relaxed: a plain counter, read only to vary seeds. */
    atomic_store_explicit(&chaos_threads, 0, memory_order_relaxed);
}

static void chaos_init(void)
{
    const char *r = getenv("SHMKIT_CHAOS_RATE"), *s = getenv("SHMKIT_CHAOS_SEED");
    chaos_rate = r && atoi(r) > 1 ? (unsigned)atoi(r) : 64;
    if (s && *s) {
        chaos_seed = strtoull(s, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        chaos_seed = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30;
    }
    pthread_atfork(NULL, NULL, chaos_child);
}

void shk_chaos_point(void)
{
    uint64_t x = chaos_state;
    if (SHK_UNLIKELY(x == 0)) {
        pthread_once(&chaos_once, chaos_init);
        /* relaxed: only makes each thread's seed differ. */
        unsigned t = atomic_fetch_add_explicit(&chaos_threads, 1, memory_order_relaxed);
        x = (chaos_seed ^ (uint64_t)getpid() << 20 ^ (uint64_t)t << 48) * 0x9e3779b97f4a7c15ull;
        x |= 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    chaos_state = x;
    uint64_t r = x * 2685821657736338717ull;
    unsigned pick = (unsigned)(r % chaos_rate);
    if (pick == 0) {
        sched_yield();
    } else if (pick == 1) {
        for (uint64_t n = (r >> 40) % 2048; n > 0; n--)
            shk_cpu_relax();
    }
}
#endif
