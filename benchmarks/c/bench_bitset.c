/*
 * bench_bitset.c -- single-process throughput of the atomic bitset and of
 * the typed array's element operations, from C.
 *
 * Each operation runs over 2^20 bits (128 KiB of words: cache-resident, so
 * this measures the operations, not DRAM) at scattered indexes (a
 * multiplicative hash of the loop counter, so no branch or prefetch pattern
 * helps).  Every figure is the median of REPEATS runs of ITERS operations.
 * Then two processes (fork) hammer one bit each, in separate cache lines
 * and in the same word, to show what sharing a word costs.
 * Results go to stdout and to bench-results/bench_bitset.json.
 *
 *   make cbench            (builds with -O2 and runs every C benchmark)
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"

#define LOG2_BITS 20
#define NBITS (1ull << LOG2_BITS)
#define ITERS 20000000ull
#define REPEATS 5

static inline uint64_t idx(uint64_t i)
{
    return (i * 0x9E3779B97F4A7C15ull) >> (64 - LOG2_BITS);
}

typedef uint64_t (*bench_fn)(void *h, uint64_t n);

static volatile uint64_t sink;

/* n single-bit operations at scattered bits.  A macro rather than a
 * function pointer to the operation, so the call is direct as in user
 * code and the loop measures the operation, not an indirect call. */
#define BIT_BENCH(name, op)                                                    \
    static uint64_t name(void *h, uint64_t n)                                  \
    {                                                                          \
        uint64_t acc = 0;                                                      \
        for (uint64_t i = 0; i < n; i++)                                       \
            acc += (uint64_t)op(h, idx(i));                                    \
        return acc;                                                            \
    }

BIT_BENCH(b_set, shk_bitset_set)
BIT_BENCH(b_clear, shk_bitset_clear)
BIT_BENCH(b_flip, shk_bitset_flip)
BIT_BENCH(b_test, shk_bitset_test)

static uint64_t b_mixed(void *h, uint64_t n)
{
    /* 50 % test, 25 % set, 25 % clear: a typical flag workload */
    uint64_t acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t j = idx(i);
        switch (i & 3) {
        case 0: acc += (uint64_t)shk_bitset_set(h, j); break;
        case 2: acc += (uint64_t)shk_bitset_clear(h, j); break;
        default: acc += (uint64_t)shk_bitset_test(h, j); break;
        }
    }
    return acc;
}
static uint64_t b_count(void *h, uint64_t n)
{
    /* one "op" = one bit counted */
    uint64_t acc = 0;
    for (uint64_t i = 0; i < n / NBITS; i++)
        acc += shk_bitset_count(h);
    return acc;
}

#define ALEN (1ull << 14)   /* 16 Ki int64 = 128 KiB */
static uint64_t a_add_wrap(void *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        shk_array_add_wrap(h, (i * 0x9E3779B97F4A7C15ull) >> 50, 1, NULL);
    return 0;
}
static uint64_t a_add_checked(void *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        shk_array_add(h, (i * 0x9E3779B97F4A7C15ull) >> 50, 1, NULL);
    return 0;
}
static uint64_t a_load(void *h, uint64_t n)
{
    uint64_t acc = 0;
    shk_scalar v;
    for (uint64_t i = 0; i < n; i++) {
        shk_array_load(h, (i * 0x9E3779B97F4A7C15ull) >> 50, &v);
        acc += v.u;
    }
    return acc;
}
static uint64_t a_store(void *h, uint64_t n)
{
    shk_scalar v;
    for (uint64_t i = 0; i < n; i++) {
        v.i = (int64_t)i;
        shk_array_store(h, (i * 0x9E3779B97F4A7C15ull) >> 50, v);
    }
    return 0;
}
static uint64_t a_cas(void *h, uint64_t n)
{
    shk_scalar e, d;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t j = (i * 0x9E3779B97F4A7C15ull) >> 50;
        shk_array_load(h, j, &e);
        d.i = e.i + 1;
        acc += (uint64_t)shk_array_compare_and_swap(h, j, e, d, NULL);
    }
    return acc;
}
static uint64_t a_fadd(void *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        shk_array_add_float(h, (i * 0x9E3779B97F4A7C15ull) >> 50, 1.0, NULL);
    return 0;
}

/* P processes (fork) each doing n set+clear pairs on its own bit, all bits
 * in ONE word (worst case: every operation moves the cache line) or each
 * in its own cache line.  Returns aggregate ops/s, median of REPEATS. */
static double run_procs(shk_bitset *b, int P, uint64_t n, int same_word)
{
    double r[REPEATS];
    for (int k = 0; k < REPEATS; k++) {
        int64_t t0 = shk_now_ns();
        pid_t pids[8];
        for (int p = 0; p < P; p++) {
            pids[p] = fork();
            if (pids[p] == 0) {
                uint64_t bit = same_word ? (uint64_t)p : (uint64_t)p * 512;
                for (uint64_t i = 0; i < n; i++) {
                    shk_bitset_set(b, bit);
                    shk_bitset_clear(b, bit);
                }
                _exit(0);
            }
        }
        for (int p = 0; p < P; p++)
            waitpid(pids[p], NULL, 0);
        int64_t t1 = shk_now_ns();
        r[k] = (double)(2 * n * (uint64_t)P) / ((double)(t1 - t0) / 1e9);
    }
    return bench_median(r, REPEATS);
}

static double run(bench_fn fn, void *h, uint64_t n)
{
    double r[REPEATS];
    for (int k = 0; k < REPEATS; k++) {
        int64_t t0 = shk_now_ns();
        sink += fn(h, n);
        int64_t t1 = shk_now_ns();
        r[k] = (double)n / ((double)(t1 - t0) / 1e9);
    }
    return bench_median(r, REPEATS);
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "shmkit-bench-bitset-%d", (int)getpid());
    shk_segment *seg;
    if (shk_segment_create(name, 0, 0, 0600, &seg) != SHK_OK) {
        fprintf(stderr, "cannot create segment\n");
        return 1;
    }
    shk_bitset *b;
    shk_array *ai, *af;
    if (shk_bitset_open_named(seg, "b", NBITS, &b, NULL) != SHK_OK ||
        shk_array_open_named(seg, "ai", SHK_DT_INT64, ALEN, &ai, NULL) != SHK_OK ||
        shk_array_open_named(seg, "af", SHK_DT_FLOAT64, ALEN, &af, NULL) != SHK_OK) {
        fprintf(stderr, "cannot create objects\n");
        return 1;
    }
    static const struct { const char *name; bench_fn fn; int arr; } B[] = {
        {"bitset.set", b_set, 0},        {"bitset.clear", b_clear, 0},
        {"bitset.flip", b_flip, 0},      {"bitset.test", b_test, 0},
        {"bitset.mixed", b_mixed, 0},    {"bitset.count (bits/s)", b_count, 0},
        {"array.add_wrap int64", a_add_wrap, 1},
        {"array.add checked int64", a_add_checked, 1},
        {"array.load int64", a_load, 1}, {"array.store int64", a_store, 1},
        {"array.cas int64", a_cas, 1},   {"array.add_float f64", a_fadd, 2},
    };
    const size_t nb = sizeof B / sizeof B[0];
    double res[sizeof B / sizeof B[0]];
    printf("%-26s %14s   (single process, median of %d x %llu ops)\n", "operation",
           "ops/s", REPEATS, (unsigned long long)ITERS);
    for (size_t k = 0; k < nb; k++) {
        void *h = B[k].arr == 0 ? (void *)b : B[k].arr == 1 ? (void *)ai : (void *)af;
        uint64_t n = B[k].fn == b_count ? ITERS * 16 : ITERS;
        res[k] = run(B[k].fn, h, n);
        printf("%-26s %14.0f   %6.1f M/s%s\n", B[k].name, res[k], res[k] / 1e6,
               strncmp(B[k].name, "bitset.", 7) == 0 && B[k].fn != b_count
                   ? (res[k] >= 100e6 ? "   (>= 100M target)" : "   (< 100M target)")
                   : "");
    }
    double p2_own = run_procs(b, 2, ITERS / 2, 0);
    double p2_same = run_procs(b, 2, ITERS / 2, 1);
    printf("%-26s %14.0f   %6.1f M/s   (2 processes, bits in separate cache lines)\n",
           "bitset.set+clear x2 procs", p2_own, p2_own / 1e6);
    printf("%-26s %14.0f   %6.1f M/s   (2 processes, bits in the SAME word: contended)\n",
           "bitset.set+clear x2 same", p2_same, p2_same / 1e6);
    mkdir("bench-results", 0755);
    FILE *f = fopen("bench-results/bench_bitset.json", "w");
    if (f) {
        struct utsname u;
        uname(&u);
        fprintf(f, "{\n  \"benchmark\": \"bench_bitset (C, single process)\",\n");
        fprintf(f, "  \"machine\": \"%s %s %s\",\n  \"cpus\": %ld,\n", u.sysname,
                u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN));
        fprintf(f, "  \"repeats\": %d,\n  \"iterations\": %llu,\n  \"ops_per_sec\": {\n",
                REPEATS, (unsigned long long)ITERS);
        for (size_t k = 0; k < nb; k++)
            fprintf(f, "    \"%s\": %.0f,\n", B[k].name, res[k]);
        fprintf(f, "    \"bitset.set+clear, 2 processes, own cache lines\": %.0f,\n", p2_own);
        fprintf(f, "    \"bitset.set+clear, 2 processes, same word\": %.0f\n", p2_same);
        fprintf(f, "  }\n}\n");
        fclose(f);
    }
    shk_bitset_close(b);
    shk_array_close(ai);
    shk_array_close(af);
    shk_segment_close(seg);
    shk_segment_unlink(name);
    return 0;
}
