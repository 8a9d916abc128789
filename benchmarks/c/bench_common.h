/*
 * bench_common.h -- what every C benchmark in benchmarks/c/ needs: a
 * monotonic clock in seconds, the median of repeated measurements
 * (these machines are noisy; a median shrugs off a disturbed run), and
 * forked workers that report one number each.
 */
#ifndef SHMKIT_BENCH_COMMON_H
#define SHMKIT_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

/* Fork nproc (at most 8) processes; process p stores work(p, arg) in
 * out[p] (through a shared page).  Returns when all have ended.  A worker
 * that fails (work() aborts on a wrong answer) ends the benchmark: its slot
 * would otherwise hold no result, and the rates of workers that died early
 * look like fast ones. */
static inline void bench_fork_each(int nproc, double (*work)(int p, void *arg),
                                   void *arg, double *out)
{
    size_t bytes = sizeof(double) * (size_t)nproc;
    double *shared = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        abort();
    pid_t pids[8];
    for (int p = 0; p < nproc; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            shared[p] = work(p, arg);
            _exit(0);
        }
    }
    int failed = 0;
    for (int p = 0; p < nproc; p++) {
        int st = 0;
        if (pids[p] < 0 || waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0) {
            fprintf(stderr, "benchmark worker %d failed (status %#x)\n", p, st);
            failed = 1;
        }
    }
    if (failed)
        exit(1);
    memcpy(out, shared, bytes);
    munmap(shared, bytes);
}

#endif
