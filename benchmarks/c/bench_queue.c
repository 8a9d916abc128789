/*
 * bench_queue.c -- C throughput of the queue and the stack.
 *
 *   1. single process: put+get pairs of 64-byte items (ops = puts + gets)
 *   2. single process: put_many/get_many batches of 64 items
 *   3. producer process -> consumer process, 64-byte items, one at a time
 *   4. stack push+pop pairs, single process
 *   5. round trip: put on one queue, a second process echoes it on another,
 *      get it back; the median of 20,000 round trips, in ns
 * Median of 5 repeats; results printed and written to
 * bench-results/bench_queue_c.json (or $SHMKIT_BENCH_OUT).
 */
#define _GNU_SOURCE
#include <shmkit.h>
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPEATS 5
#define ITEM 64


static void *sink_alloc(void *ctx, uint64_t len, uint32_t tag)
{
    (void)len;
    (void)tag;
    return ctx;
}

static double bench_pairs(shk_queue *q, long n)
{
    char item[ITEM] = {1}, out[ITEM * 64];
    double t = bench_now();
    for (long i = 0; i < n; i++) {
        if (shk_queue_put(q, item, ITEM, 0, 0) != SHK_OK ||
            shk_queue_get(q, sink_alloc, out, 0) != SHK_OK)
            abort();
    }
    return 2.0 * n / (bench_now() - t);
}

static double bench_batches(shk_queue *q, long n)
{
    char item[ITEM] = {1}, out[ITEM];
    shk_queue_item items[64];
    for (int i = 0; i < 64; i++)
        items[i] = (shk_queue_item){item, ITEM, 0};
    double t = bench_now();
    for (long i = 0; i < n / 64; i++) {
        uint64_t done;
        if (shk_queue_put_many(q, items, 64, &done) != SHK_OK ||
            shk_queue_get_many(q, 64, sink_alloc, out, &done) != SHK_OK || done != 64)
            abort();
    }
    return 2.0 * (double)(n / 64 * 64) / (bench_now() - t);
}

static double bench_two_procs(shk_queue *q, long n)
{
    char item[ITEM] = {1}, out[ITEM];
    double t = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++)
            if (shk_queue_put(q, item, ITEM, 0, -1) != SHK_OK)
                _exit(1);
        _exit(0);
    }
    for (long i = 0; i < n; i++)
        if (shk_queue_get(q, sink_alloc, out, -1) != SHK_OK)
            abort();
    double el = bench_now() - t;
    waitpid(pid, NULL, 0);
    return n / el;   /* messages per second */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define TRIPS 20000
static double bench_round_trip(shk_queue *a, shk_queue *b)
{
    char item[ITEM] = {1}, out[ITEM];
    static double t[TRIPS];
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < TRIPS + 1000; i++)
            if (shk_queue_get(a, sink_alloc, out, -1) != SHK_OK ||
                shk_queue_put(b, out, ITEM, 0, -1) != SHK_OK)
                _exit(1);
        _exit(0);
    }
    for (long i = 0; i < TRIPS + 1000; i++) {
        double t0 = bench_now();
        if (shk_queue_put(a, item, ITEM, 0, -1) != SHK_OK ||
            shk_queue_get(b, sink_alloc, out, -1) != SHK_OK)
            abort();
        if (i >= 1000)
            t[i - 1000] = bench_now() - t0;
    }
    waitpid(pid, NULL, 0);
    qsort(t, TRIPS, sizeof t[0], cmp_double);
    return t[TRIPS / 2] * 1e9;
}

static double bench_stack(shk_stack *s, long n)
{
    char item[ITEM] = {1}, out[ITEM];
    double t = bench_now();
    for (long i = 0; i < n; i++) {
        if (shk_stack_push(s, item, ITEM, 0) != SHK_OK ||
            shk_stack_pop(s, sink_alloc, out) != SHK_OK)
            abort();
    }
    return 2.0 * n / (bench_now() - t);
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "shmkit-bench-queue-%d", (int)getpid());
    shk_segment *seg;
    if (shk_segment_create(name, 0, 1ull << 30, 0600, &seg) != SHK_OK)
        return 1;
    shk_queue *q, *back;
    shk_stack *s;
    shk_queue_config cfg = {1 << 20, 0};
    if (shk_queue_open_named(seg, "q", &cfg, &q, NULL) != SHK_OK ||
        shk_queue_open_named(seg, "back", &cfg, &back, NULL) != SHK_OK ||
        shk_stack_open_named(seg, "s", &s, NULL) != SHK_OK)
        return 1;
    const char *names[5] = {"queue_put_get_pairs_ops_per_s",
                            "queue_batch64_ops_per_s",
                            "queue_proc_to_proc_msgs_per_s",
                            "stack_push_pop_ops_per_s",
                            "queue_round_trip_p50_ns"};
    double res[5];
    long n = 2000000;
    for (int b = 0; b < 5; b++) {
        double r[REPEATS];
        for (int k = 0; k < REPEATS; k++) {
            switch (b) {
            case 0: r[k] = bench_pairs(q, n); break;
            case 1: r[k] = bench_batches(q, n); break;
            case 2: r[k] = bench_two_procs(q, n); break;
            case 3: r[k] = bench_stack(s, n); break;
            default: r[k] = bench_round_trip(q, back); break;
            }
        }
        res[b] = bench_median(r, REPEATS);
        if (b == 4)
            printf("%-34s %10.0f ns   (64 B items, median of %d runs' medians)\n",
                   names[b], res[b], REPEATS);
        else
            printf("%-34s %10.2f M/s  (64 B items, median of %d)\n", names[b],
                   res[b] / 1e6, REPEATS);
    }
    const char *out = getenv("SHMKIT_BENCH_OUT");
    if (!out) {
        mkdir("bench-results", 0755);
        out = "bench-results/bench_queue_c.json";
    }
    FILE *f = fopen(out, "w");
    if (f) {
        fprintf(f, "{\n  \"item_bytes\": %d,\n  \"repeats\": %d,\n", ITEM, REPEATS);
        for (int b = 0; b < 5; b++)
            fprintf(f, "  \"%s\": %.0f%s\n", names[b], res[b], b < 4 ? "," : "");
        fprintf(f, "}\n");
        fclose(f);
    }
    shk_stack_close(s);
    shk_queue_close(q);
    shk_segment_close(seg);
    shk_segment_unlink(name);
    return 0;
}
