/*
 * bench_alloc.c -- allocator throughput from C, single process (and two
 * processes on the free list).  Prints ops/s as the median of 5 repeats.
 *   make cbench
 */
#define _GNU_SOURCE
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"

#define REPEATS 5
#define N 20000000


static int init_fl(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    (void)arg;
    *size = 256 << 20;
    return shk_freelist_create_in(seg, *size, off);
}

static int init_bump(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    (void)arg;
    *size = (uint64_t)N * 64 + 4096;
    return shk_bump_create_in(seg, *size, off);
}

static int init_slab(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    (void)arg;
    *size = 64 * 4096;
    return shk_slab_create_in(seg, 64, 4096, off);
}

static volatile uint64_t sink;

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "shmkit-cbench-%d", (int)getpid());
    shk_segment *seg;
    if (shk_segment_create(name, 0, 0, 0600, &seg) != SHK_OK)
        return 1;
    uint64_t o;
    shk_freelist *fl;
    shk_bump *bump;
    shk_slab *slab;
    shk_segment_object(seg, "fl", SHK_TYPE_FREELIST, init_fl, NULL, &o, NULL);
    shk_freelist_open(seg, o, &fl);
    shk_segment_object(seg, "bump", SHK_TYPE_BUMP, init_bump, NULL, &o, NULL);
    shk_bump_open(seg, o, &bump);
    shk_segment_object(seg, "slab", SHK_TYPE_SLAB, init_slab, NULL, &o, NULL);
    shk_slab_open(seg, o, &slab);

    double r[REPEATS];
    for (int k = 0; k < REPEATS; k++) {
        double t = bench_now();
        for (int i = 0; i < N; i++) {
            shk_freelist_alloc(fl, 64, &o);
            shk_freelist_free(fl, o);
        }
        r[k] = N / (bench_now() - t);
    }
    printf("freelist allocate+free pairs/s (1 process): %.1fM\n", bench_median(r, REPEATS) / 1e6);

    for (int k = 0; k < REPEATS; k++) {
        shk_bump_reset(bump);
        double t = bench_now();
        for (int i = 0; i < N; i++) {
            shk_bump_alloc(bump, 64, &o);
            sink = o;
        }
        r[k] = N / (bench_now() - t);
    }
    printf("bump allocations/s (1 process):              %.1fM\n", bench_median(r, REPEATS) / 1e6);

    for (int k = 0; k < REPEATS; k++) {
        double t = bench_now();
        for (int i = 0; i < N; i++) {
            shk_slab_alloc(slab, &o);
            shk_slab_free(slab, o);
        }
        r[k] = N / (bench_now() - t);
    }
    printf("slab allocate+free pairs/s (1 process):     %.1fM\n", bench_median(r, REPEATS) / 1e6);

    /* Two processes on the same free list, each its own pairs. */
    for (int k = 0; k < REPEATS; k++) {
        double t = bench_now();
        pid_t p = fork();
        for (int i = 0; i < N / 2; i++) {
            shk_freelist_alloc(fl, 64, &o);
            shk_freelist_free(fl, o);
        }
        if (p == 0)
            _exit(0);
        waitpid(p, NULL, 0);
        r[k] = N / (bench_now() - t);
    }
    printf("freelist pairs/s, 2 processes (aggregate):   %.1fM\n", bench_median(r, REPEATS) / 1e6);

    shk_freelist_close(fl);
    shk_bump_close(bump);
    shk_slab_close(slab);
    shk_segment_close(seg);
    shk_segment_unlink(name);
    return 0;
}
