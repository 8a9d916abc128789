/*
 * bench_scale.c -- how shmkit's operations scale with processes (C, no
 * Python in the way).
 *
 *   build/bench/bench_scale [--procs 1,2,4,8,16,32] [--seconds 0.5]
 *                           [--repeats 3] [--only NAME,...] [--json OUT]
 *
 * For each workload and each process count N: a fresh segment is set up,
 * N processes are forked (each pinned to a core of its own when N <= the
 * usable cores), all start together, run the operation in a loop for
 * --seconds, and report their operation count and the time they ran; the
 * figure is the sum of each process's ops/s (aggregate throughput), the
 * median of --repeats runs.  Workloads (names for --only):
 *
 *   dict-get-random      get a random key of 100k (8-byte values)
 *   dict-get9-replace1   9 gets : 1 replace, random keys of 100k
 *   dict-set-own         set: each process its own 1,000 keys, round robin
 *   dict-set-shared      set random keys of the shared 100k
 *   freelist-64          allocate + free 64 B from the segment heap
 *   bitset-set-random    set a random bit of 1M
 *   array-add-one        atomic add on one Array element (one cache line)
 *   counter-add          Counter add (one cell per process)
 *   queue-64-half        64 B items, half the processes put, half get
 *                        (1 process: put then get)
 *   queue-64-batch64     the same in batches of 64 (put_many / get_many)
 *
 * The JSON (stdout, or --json OUT) is what python -m shmkit.bench.scale
 * merges with the Python workloads.  Environment: SHMKIT_SCALE_PROCS,
 * SHMKIT_SCALE_SECONDS, SHMKIT_SCALE_REPEATS give the defaults.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"
#include "bench_common.h"

#define MAX_PROCS 256
#define DICT_KEYS 100000
#define OWN_KEYS 1000
#define BITS (1u << 20)
#define BATCH 64
#define ITEM 64

typedef struct fixture {
    shk_segment *seg;
    shk_dict *d;
    shk_bitset *b;
    shk_array *a;
    shk_counter *c;
    shk_queue *q;
} fixture;

typedef struct worker {
    int p, nproc;
    uint64_t rng;
    uint64_t i;
    char keybuf[32];
} worker;

static inline uint64_t rnd(worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "bench_scale: %s: %s\n", what, shk_strerror(rc));
    exit(1);
}

static size_t dict_key(char *buf, uint64_t k)
{
    return (size_t)snprintf(buf, 32, "key%llu", (unsigned long long)k);
}

/* ---------------------------------------------------------- workloads
 * setup(fx) builds what the workload needs in fx->seg; op(fx, w) does one
 * step and returns how many operations it was. */

static void setup_dict(fixture *fx, int preload)
{
    int rc = shk_dict_open_named(fx->seg, "d", 1, DICT_KEYS * 2, &fx->d, NULL);
    if (rc != SHK_OK)
        fail("dict", rc);
    char k[32];
    for (uint64_t i = 0; preload && i < DICT_KEYS; i++) {
        size_t n = dict_key(k, i);
        if ((rc = shk_dict_set(fx->d, 's', k, n, 'i', &i, 8)) != SHK_OK)
            fail("dict preload", rc);
    }
}
static void setup_dict_full(fixture *fx) { setup_dict(fx, 1); }
static void setup_dict_empty(fixture *fx) { setup_dict(fx, 0); }

static int op_dict_get(fixture *fx, worker *w)
{
    uint64_t v, n;
    size_t kl = dict_key(w->keybuf, rnd(w) % DICT_KEYS);
    if (shk_dict_get(fx->d, 's', w->keybuf, kl, NULL, &v, 8, &n) != SHK_OK)
        fail("dict get", SHK_ENOTFOUND);
    return 1;
}

static int op_dict_set_shared(fixture *fx, worker *w)
{
    uint64_t k = rnd(w) % DICT_KEYS;
    size_t kl = dict_key(w->keybuf, k);
    int rc = shk_dict_set(fx->d, 's', w->keybuf, kl, 'i', &w->i, 8);
    if (rc != SHK_OK)
        fail("dict set", rc);
    w->i++;
    return 1;
}

static int op_dict_get9(fixture *fx, worker *w)
{
    if (++w->i % 10 == 0)
        return op_dict_set_shared(fx, w);
    return op_dict_get(fx, w);
}

static int op_dict_set_own(fixture *fx, worker *w)
{
    size_t kl = (size_t)snprintf(w->keybuf, 32, "p%d-%llu", w->p,
                                 (unsigned long long)(w->i % OWN_KEYS));
    int rc = shk_dict_set(fx->d, 's', w->keybuf, kl, 'i', &w->i, 8);
    if (rc != SHK_OK)
        fail("dict set", rc);
    w->i++;
    return 1;
}

static void setup_none(fixture *fx) { (void)fx; }

static int op_freelist(fixture *fx, worker *w)
{
    (void)w;
    uint64_t off;
    shk_freelist *fl = shk_segment_heap(fx->seg);
    int rc = shk_freelist_alloc(fl, 64, &off);
    if (rc != SHK_OK)
        fail("allocate", rc);
    if ((rc = shk_freelist_free(fl, off)) != SHK_OK)
        fail("free", rc);
    return 1;
}

static void setup_bitset(fixture *fx)
{
    int rc = shk_bitset_open_named(fx->seg, "b", BITS, &fx->b, NULL);
    if (rc != SHK_OK)
        fail("bitset", rc);
}

static int op_bitset(fixture *fx, worker *w)
{
    shk_bitset_set(fx->b, rnd(w) & (BITS - 1));
    return 1;
}

static void setup_array(fixture *fx)
{
    int rc = shk_array_open_named(fx->seg, "a", SHK_DT_INT64, 1, &fx->a, NULL);
    if (rc != SHK_OK)
        fail("array", rc);
}

static int op_array_add(fixture *fx, worker *w)
{
    (void)w;
    shk_array_add_wrap(fx->a, 0, 1, NULL);
    return 1;
}

static void setup_counter(fixture *fx)
{
    int rc = shk_counter_open_named(fx->seg, "c", 0, &fx->c, NULL);
    if (rc != SHK_OK)
        fail("counter", rc);
}

static int op_counter_add(fixture *fx, worker *w)
{
    (void)w;
    shk_counter_add(fx->c, 1);
    return 1;
}

static void setup_queue(fixture *fx)
{
    shk_queue_config cfg = {8u << 20, 0};
    int rc = shk_queue_open_named(fx->seg, "q", &cfg, &fx->q, NULL);
    if (rc != SHK_OK)
        fail("queue", rc);
}

/* Even processes put, odd ones get; a lone process (or the odd one out of
 * an odd count) alternates.  A put on a full or a get on an empty queue
 * counts nothing. */
static int queue_role(const worker *w)
{
    if (w->nproc == 1 || (w->nproc % 2 && w->p == w->nproc - 1))
        return (int)(w->i & 1);     /* 0: put, 1: get */
    return w->p & 1;
}

static int op_queue_half(fixture *fx, worker *w)
{
    char buf[ITEM];
    memset(buf, (int)w->p, sizeof buf);
    int role = queue_role(w);
    w->i++;
    if (role == 0)
        return shk_queue_put(fx->q, buf, ITEM, 0, 0) == SHK_OK;
    uint64_t len;
    uint32_t tag;
    return shk_queue_get_into(fx->q, buf, sizeof buf, &len, &tag, 0) == SHK_OK;
}

static void *into_scratch(void *ctx, uint64_t len, uint32_t tag)
{
    (void)tag;
    return len <= ITEM ? ctx : NULL;
}

static int op_queue_batch(fixture *fx, worker *w)
{
    static char data[ITEM];
    int role = queue_role(w);
    w->i++;
    uint64_t done = 0;
    if (role == 0) {
        shk_queue_item items[BATCH];
        for (int k = 0; k < BATCH; k++)
            items[k] = (shk_queue_item){data, ITEM, 0};
        shk_queue_put_many(fx->q, items, BATCH, &done);
    } else {
        char scratch[ITEM];
        shk_queue_get_many(fx->q, BATCH, into_scratch, scratch, &done);
    }
    return (int)done;
}

typedef struct workload {
    const char *name, *label;
    void (*setup)(fixture *fx);
    int (*op)(fixture *fx, worker *w);
} workload;

static const workload WORKLOADS[] = {
    {"dict-get-random", "dict get random of 100k keys", setup_dict_full, op_dict_get},
    {"dict-get9-replace1", "dict 9 gets : 1 replace", setup_dict_full, op_dict_get9},
    {"dict-set-own", "dict set, each process its own keys", setup_dict_empty, op_dict_set_own},
    {"dict-set-shared", "dict set random shared keys", setup_dict_full, op_dict_set_shared},
    {"freelist-64", "free-list allocate + free 64 B", setup_none, op_freelist},
    {"bitset-set-random", "bitset set random bits", setup_bitset, op_bitset},
    {"array-add-one", "array add on one counter", setup_array, op_array_add},
    {"counter-add", "Counter add (sharded)", setup_counter, op_counter_add},
    {"queue-64-half", "queue 64 B half put / half get", setup_queue, op_queue_half},
    {"queue-64-batch64", "queue 64 B batches of 64", setup_queue, op_queue_batch},
};
#define NWORKLOADS (sizeof WORKLOADS / sizeof WORKLOADS[0])

/* ------------------------------------------------------------- runner */

typedef struct control {
    _Atomic int ready;
    _Atomic int go;
    _Atomic int stop;
    struct {
        double ops, seconds;
    } out[MAX_PROCS];
} control;

static int ncpus_usable(int *cpus, int max)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

static void worker_main(const workload *wl, fixture *fx, control *ctl, int p, int nproc,
                        int pin_cpu)
{
    if (pin_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(pin_cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    worker w = {.p = p, .nproc = nproc, .rng = 0x9e3779b97f4a7c15ull * (uint64_t)(p + 1)};
    atomic_fetch_add(&ctl->ready, 1);
    while (!atomic_load_explicit(&ctl->go, memory_order_acquire))
        usleep(50);
    double ops = 0, t0 = bench_now();
    /* relaxed: the stop flag is a hint polled every 64 steps. */
    while (!atomic_load_explicit(&ctl->stop, memory_order_relaxed))
        for (int k = 0; k < 64; k++)
            ops += wl->op(fx, &w);
    ctl->out[p].seconds = bench_now() - t0;
    ctl->out[p].ops = ops;
}

/* One run: aggregate ops/s of nproc processes, or a negative value on
 * failure. */
static double run_once(const workload *wl, int nproc, double seconds, const int *cpus,
                       int ncpus)
{
    char name[64];
    snprintf(name, sizeof name, "shkscale-%d-%s", (int)getpid(), wl->name);
    shk_segment_unlink(name);
    fixture fx = {0};
    int rc = shk_segment_create(name, 64u << 20, 4ull << 30, 0600, &fx.seg);
    if (rc != SHK_OK)
        fail("segment", rc);
    wl->setup(&fx);
    control *ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
    if (ctl == MAP_FAILED)
        abort();
    memset(ctl, 0, sizeof *ctl);
    pid_t pids[MAX_PROCS];
    int pin = nproc <= ncpus;
    for (int p = 0; p < nproc; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            worker_main(wl, &fx, ctl, p, nproc, pin ? cpus[p] : -1);
            _exit(0);
        }
    }
    while (atomic_load(&ctl->ready) < nproc)
        usleep(200);
    atomic_store_explicit(&ctl->go, 1, memory_order_release);
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&ctl->stop, 1);
    int failed = 0;
    for (int p = 0; p < nproc; p++) {
        int st = 0;
        if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    double rate = 0;
    for (int p = 0; p < nproc; p++)
        if (ctl->out[p].seconds > 0)
            rate += ctl->out[p].ops / ctl->out[p].seconds;
    munmap(ctl, sizeof *ctl);
    shk_dict_close(fx.d);
    shk_bitset_close(fx.b);
    shk_array_close(fx.a);
    shk_counter_close(fx.c);
    if (fx.q)
        shk_queue_close(fx.q);
    shk_segment_close(fx.seg);
    shk_segment_unlink(name);
    return failed ? -1 : rate;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > MAX_PROCS)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

static int selected(const char *only, const char *name)
{
    if (!only)
        return 1;
    size_t l = strlen(name);
    for (const char *s = only; (s = strstr(s, name)) != NULL; s += l)
        if ((s == only || s[-1] == ',') && (s[l] == 0 || s[l] == ','))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *procs_s = getenv("SHMKIT_SCALE_PROCS");
    const char *sec_s = getenv("SHMKIT_SCALE_SECONDS");
    const char *rep_s = getenv("SHMKIT_SCALE_REPEATS");
    const char *only = NULL, *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--procs"))
            procs_s = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--seconds"))
            sec_s = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--repeats"))
            rep_s = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--only"))
            only = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--json"))
            json = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--procs 1,2,4,8,16,32] [--seconds S] [--repeats R] "
                            "[--only NAME,...] [--json OUT]\n", argv[0]);
            return 2;
        }
    }
    int procs[32];
    int nprocs = parse_list(procs_s ? procs_s : "1,2,4,8,16,32", procs, 32);
    double seconds = sec_s ? atof(sec_s) : 0.5;
    int repeats = rep_s ? atoi(rep_s) : 3;
    if (nprocs <= 0 || seconds <= 0 || repeats < 1 || repeats > 99) {
        fprintf(stderr, "bench_scale: bad --procs, --seconds or --repeats\n");
        return 2;
    }
    int cpus[MAX_PROCS];
    int ncpus = ncpus_usable(cpus, MAX_PROCS);
    FILE *out = json ? fopen(json, "w") : stdout;
    if (!out) {
        perror(json);
        return 1;
    }
    fprintf(out, "{\"cpus_usable\": %d, \"seconds\": %g, \"repeats\": %d, \"results\": [",
            ncpus, seconds, repeats);
    int first = 1;
    for (size_t k = 0; k < NWORKLOADS; k++) {
        const workload *wl = &WORKLOADS[k];
        if (!selected(only, wl->name))
            continue;
        for (int j = 0; j < nprocs; j++) {
            double runs[99];
            int ok = 1;
            for (int r = 0; r < repeats; r++)
                if ((runs[r] = run_once(wl, procs[j], seconds, cpus, ncpus)) < 0)
                    ok = 0;
            double runs_sorted[99];
            memcpy(runs_sorted, runs, sizeof(double) * (size_t)repeats);
            double med = bench_median(runs_sorted, repeats);
            fprintf(out, "%s\n  {\"workload\": \"%s\", \"label\": \"%s\", \"impl\": \"shmkit (C)\", "
                         "\"lang\": \"C\", \"nproc\": %d, \"pinned\": %s, ",
                    first ? "" : ",", wl->name, wl->label, procs[j],
                    procs[j] <= ncpus ? "true" : "false");
            if (ok)
                fprintf(out, "\"ops_per_s\": %.0f, \"runs\": [", med);
            else
                fprintf(out, "\"ops_per_s\": null, \"error\": \"a worker failed\", \"runs\": [");
            for (int r = 0; r < repeats; r++)
                fprintf(out, "%s%.0f", r ? ", " : "", runs[r]);
            fprintf(out, "]}");
            first = 0;
            fprintf(stderr, "  %-20s N=%-3d %14.0f ops/s\n", wl->name, procs[j], ok ? med : 0.0);
        }
    }
    fprintf(out, "\n]}\n");
    if (json)
        fclose(out);
    return 0;
}
