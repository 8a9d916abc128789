/* Multi-threaded stress of every lock-free structure, meant to run under
 * ThreadSanitizer (`make ctest-tsan`) as well as plain and ASan+UBSan.
 *
 * Threads of one process stand in for processes: they share one mapping
 * (and some tests give each thread its own handle and mapping).  Besides
 * checking results (no lost update, no block handed out twice, sums exact),
 * several tests pass PLAIN data between threads through the structure's
 * atomics -- a block's contents through the free list, a counter guarded by
 * a bit used as a lock, a buffer published by an array element -- so that
 * TSan reports a data race if any memory order is too weak. */
#include "dict_helpers.h"
#include "fixture.h"
#include "internal.h"

#include <pthread.h>

#define T 4

/* All workers start together (a spinning gate), so they really overlap
 * instead of each finishing before the next is created. */
static _Atomic int gate_count;

static void gate(void)
{
    atomic_fetch_add(&gate_count, 1);
    while (atomic_load(&gate_count) < T)
        ;
}

static void run_threads(void *(*fn)(void *), void *args, size_t argsize)
{
    pthread_t th[T];
    atomic_store(&gate_count, 0);
    for (int i = 0; i < T; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * argsize), 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
}

static uint64_t rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* ------------------------------------------------------------ free list */

typedef struct {
    shk_segment *seg;
    shk_freelist *fl;
    _Atomic uint64_t *mailbox;    /* T slots: offsets handed to a neighbour */
    int id;
    int errors;
} fl_arg;

/* Block layout used here: [u64 size][u64 tag][size-16 bytes of tag byte] */
static void fill_block(char *p, uint64_t n, uint64_t tag)
{
    memcpy(p, &n, 8);
    memcpy(p + 8, &tag, 8);
    memset(p + 16, (int)(tag & 0xff), n - 16);
}

static int verify_block(const char *p)
{
    uint64_t n, tag;
    memcpy(&n, p, 8);
    memcpy(&tag, p + 8, 8);
    if (n < 16 || n > 4096)
        return 0;
    for (uint64_t i = 16; i < n; i++)
        if ((unsigned char)p[i] != (tag & 0xff))
            return 0;
    return 1;
}

static void *fl_worker(void *v)
{
    fl_arg *a = v;
    gate();
    char *base = shk_segment_base(a->seg);
    uint64_t s = (uint64_t)a->id * 7919 + 1;
    uint64_t live[64];
    int nlive = 0;
    for (int r = 0, rounds = check_scale(100000); r < rounds; r++) {
        uint64_t x = rng(&s);
        if (nlive < 64 && (nlive == 0 || x % 3)) {
            uint64_t n = 16 + x % 1000, off;
            if (shk_freelist_alloc(a->fl, n, &off) != SHK_OK)
                continue;
            fill_block(base + off, n, x);
            live[nlive++] = off;
        } else {
            uint64_t off = live[--nlive];
            if (!verify_block(base + off))
                a->errors++;
            if (x % 2) {
                /* hand it to the next thread: the release exchange publishes
                 * the block's plain contents; the receiver acquires them */
                uint64_t prev = atomic_exchange_explicit(&a->mailbox[(a->id + 1) % T], off,
                                                         memory_order_acq_rel);
                off = prev;
                if (!off)
                    continue;
                if (!verify_block(base + off))
                    a->errors++;
            }
            if (shk_freelist_free(a->fl, off) != SHK_OK)
                a->errors++;
        }
    }
    for (int i = 0; i < nlive; i++)
        if (!verify_block(base + live[i]) || shk_freelist_free(a->fl, live[i]) != SHK_OK)
            a->errors++;
    return NULL;
}

TEST(freelist_threads)
{
    shk_segment *s = fixture_segment("st-fl", 0, 1ull << 30);
    uint64_t off;
    shk_freelist *fl;
    CHECK_EQ(shk_freelist_create_in(s, 8 << 20, &off), SHK_OK);
    CHECK_EQ(shk_freelist_open(s, off, &fl), SHK_OK);
    uint64_t start = shk_freelist_available(fl);
    _Atomic uint64_t mailbox[T];
    for (int i = 0; i < T; i++)
        atomic_init(&mailbox[i], 0);
    fl_arg args[T];
    for (int i = 0; i < T; i++)
        args[i] = (fl_arg){s, fl, mailbox, i, 0};
    run_threads(fl_worker, args, sizeof args[0]);
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].errors, 0);
        uint64_t m = atomic_load(&mailbox[i]);
        if (m)
            CHECK_EQ(shk_freelist_free(fl, m), SHK_OK);
    }
    CHECK_EQ(shk_freelist_available(fl), start);
    shk_freelist_stats st;
    CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
    CHECK_EQ(st.live_blocks, 0);
    shk_freelist_close(fl);
    /* the segment heap itself, growing the file while threads carve */
    for (int i = 0; i < T; i++)
        args[i] = (fl_arg){s, shk_segment_heap(s), mailbox, i, 0};
    for (int i = 0; i < T; i++)
        atomic_store(&mailbox[i], 0);
    run_threads(fl_worker, args, sizeof args[0]);
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].errors, 0);
        uint64_t m = atomic_load(&mailbox[i]);
        if (m)
            CHECK_EQ(shk_freelist_free(shk_segment_heap(s), m), SHK_OK);
    }
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), NULL), SHK_OK);
    fixture_drop(s, "st-fl");
}

/* ------------------------------------------------------- bump and slab */

typedef struct {
    shk_segment *seg;
    void *h;
    int id;
    int errors;
    uint64_t count;
    uint64_t offs[2000];
} ba_arg;

static void *bump_worker(void *v)
{
    ba_arg *a = v;
    gate();
    char *base = shk_segment_base(a->seg);
    for (int r = 0; r < 2000; r++) {
        uint64_t off;
        if (shk_bump_alloc(a->h, 48, &off) != SHK_OK)
            break;
        memset(base + off, a->id + 1, 48);
        a->offs[a->count++] = off;
    }
    return NULL;
}

static void *slab_worker(void *v)
{
    ba_arg *a = v;
    gate();
    char *base = shk_segment_base(a->seg);
    uint64_t live[32];
    int n = 0;
    uint64_t s = (uint64_t)a->id + 99;
    for (int r = 0, rounds = check_scale(100000); r < rounds; r++) {
        if (n < 32 && (n == 0 || rng(&s) % 2)) {
            uint64_t off;
            if (shk_slab_alloc(a->h, &off) != SHK_OK)
                continue;
            memset(base + off, a->id + 1, 32);
            live[n++] = off;
        } else {
            uint64_t off = live[--n];
            for (int k = 0; k < 32; k++)
                if (base[off + k] != (char)(a->id + 1))
                    a->errors++;
            if (shk_slab_free(a->h, off) != SHK_OK)
                a->errors++;
        }
    }
    while (n)
        if (shk_slab_free(a->h, live[--n]) != SHK_OK)
            a->errors++;
    return NULL;
}

TEST(bump_and_slab_threads)
{
    shk_segment *s = fixture_segment("st-bs", 0, 1ull << 30);
    uint64_t off;
    shk_bump *b;
    CHECK_EQ(shk_bump_create_in(s, 48 * 2000 * T - 48 * 100, &off), SHK_OK);
    CHECK_EQ(shk_bump_open(s, off, &b), SHK_OK);
    static ba_arg args[T];
    for (int i = 0; i < T; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].seg = s;
        args[i].h = b;
        args[i].id = i;
    }
    run_threads(bump_worker, args, sizeof args[0]);
    uint64_t total = 0;
    char *base = shk_segment_base(s);
    for (int i = 0; i < T; i++) {
        total += args[i].count;
        for (uint64_t k = 0; k < args[i].count; k++)
            for (int j = 0; j < 48; j++)
                if (base[args[i].offs[k] + (uint64_t)j] != (char)(i + 1))
                    args[i].errors++;
        CHECK_EQ(args[i].errors, 0);   /* no block handed to two threads */
    }
    CHECK_EQ(total, 2000 * T - 100);   /* exactly the capacity, no more */
    CHECK_EQ(shk_bump_available(b), 0);
    shk_bump_close(b);

    shk_slab *sl;
    CHECK_EQ(shk_slab_create_in(s, 32, 100, &off), SHK_OK);
    CHECK_EQ(shk_slab_open(s, off, &sl), SHK_OK);
    for (int i = 0; i < T; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].seg = s;
        args[i].h = sl;
        args[i].id = i;
    }
    run_threads(slab_worker, args, sizeof args[0]);
    for (int i = 0; i < T; i++)
        CHECK_EQ(args[i].errors, 0);
    CHECK_EQ(shk_slab_available(sl), 32 * 100);
    shk_slab_close(sl);
    fixture_drop(s, "st-bs");
}

/* --------------------------------------------------------------- bitset */

#define NB 20000

typedef struct {
    shk_segment *seg;
    int id;
    uint64_t won;
    int errors;
    uint64_t *plain_counter;   /* guarded by bit 0 of "lock" */
} bs_arg;

static void *bitset_worker(void *v)
{
    bs_arg *a = v;
    gate();
    shk_bitset *claim, *lock, *flips;
    /* each thread opens its own handles, as a process would */
    if (shk_bitset_open_named(a->seg, "claim", 0, &claim, NULL) != SHK_OK ||
        shk_bitset_open_named(a->seg, "lock", 0, &lock, NULL) != SHK_OK ||
        shk_bitset_open_named(a->seg, "flips", 0, &flips, NULL) != SHK_OK) {
        a->errors++;
        return NULL;
    }
    for (uint64_t i = 0; i < NB; i++)
        if (shk_bitset_set(claim, i) == 0)
            a->won++;
    for (int r = 0; r < 2; r++)
        for (uint64_t i = (uint64_t)a->id; i < NB; i += T) {   /* shared words */
            shk_bitset_flip(flips, i);
            shk_bitset_flip(flips, i);
        }
    for (int r = 0; r < check_scale(5000); r++) {
        while (shk_bitset_set(lock, 0) != 0)
            ;
        (*a->plain_counter)++;          /* a data race unless set/clear order it */
        shk_bitset_clear(lock, 0);
    }
    shk_bitset_close(claim);
    shk_bitset_close(lock);
    shk_bitset_close(flips);
    return NULL;
}

TEST(bitset_threads)
{
    shk_segment *s = fixture_segment("st-bits", 0, 1ull << 30);
    shk_bitset *claim, *lock, *flips;
    CHECK_EQ(shk_bitset_open_named(s, "claim", NB, &claim, NULL), SHK_OK);
    CHECK_EQ(shk_bitset_open_named(s, "lock", 1, &lock, NULL), SHK_OK);
    CHECK_EQ(shk_bitset_open_named(s, "flips", NB, &flips, NULL), SHK_OK);
    uint64_t counter = 0;
    bs_arg args[T];
    for (int i = 0; i < T; i++)
        args[i] = (bs_arg){s, i, 0, 0, &counter};
    run_threads(bitset_worker, args, sizeof args[0]);
    uint64_t won = 0;
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].errors, 0);
        won += args[i].won;
    }
    CHECK_EQ(won, NB);                  /* each bit claimed exactly once */
    CHECK_EQ(shk_bitset_count(claim), NB);
    CHECK_EQ(shk_bitset_count(flips), 0);
    CHECK_EQ(counter, (uint64_t)check_scale(5000) * T);
    CHECK_EQ(shk_bitset_check(claim, NULL), SHK_OK);
    shk_bitset_close(claim);
    shk_bitset_close(lock);
    shk_bitset_close(flips);
    fixture_drop(s, "st-bits");
}

/* ---------------------------------------------------------------- array */

#define NA 50000

typedef struct {
    shk_segment *seg;
    int id;
    int errors;
    uint64_t ticket_sum;
    uint64_t *mail;            /* plain buffer published by element 5 */
} ar_arg;

static void *array_worker(void *v)
{
    ar_arg *a = v;
    gate();
    shk_array *ai, *af;
    if (shk_array_open_named(a->seg, "i", 0, 0, &ai, NULL) != SHK_OK ||
        shk_array_open_named(a->seg, "f", 0, 0, &af, NULL) != SHK_OK) {
        a->errors++;
        return NULL;
    }
    shk_scalar prev, cur, one;
    one.i = 1;
    for (int r = 0; r < check_scale(NA); r++) {
        shk_array_add(ai, 0, 1, &prev);
        a->ticket_sum += prev.u;
        shk_array_add_wrap(ai, 1, (uint64_t)-3, NULL);
        do {                            /* CAS increment */
            shk_array_load(ai, 2, &cur);
            prev.i = cur.i + 1;
        } while (shk_array_compare_and_swap(ai, 2, cur, prev, NULL) != 1);
        shk_array_add_float(af, 0, 0.5, NULL);
        shk_array_exchange(ai, 3, one, NULL);
    }
    /* message passing: thread 0 writes a plain buffer and publishes it with
     * a release store of element 5; the others acquire-load it */
    if (a->id == 0) {
        for (int k = 0; k < 64; k++)
            a->mail[k] = (uint64_t)k * 3;
        shk_scalar go;
        go.i = 1;
        shk_array_store(ai, 5, go);
    } else {
        do
            shk_array_load(ai, 5, &cur);
        while (cur.i == 0);
        for (int k = 0; k < 64; k++)
            if (a->mail[k] != (uint64_t)k * 3)
                a->errors++;
    }
    shk_array_close(ai);
    shk_array_close(af);
    return NULL;
}

TEST(array_threads)
{
    shk_segment *s = fixture_segment("st-arr", 0, 1ull << 30);
    shk_array *ai, *af;
    CHECK_EQ(shk_array_open_named(s, "i", SHK_DT_INT64, 8, &ai, NULL), SHK_OK);
    CHECK_EQ(shk_array_open_named(s, "f", SHK_DT_FLOAT64, 1, &af, NULL), SHK_OK);
    static uint64_t mail[64];
    ar_arg args[T];
    for (int i = 0; i < T; i++)
        args[i] = (ar_arg){s, i, 0, 0, mail};
    run_threads(array_worker, args, sizeof args[0]);
    uint64_t tickets = 0;
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].errors, 0);
        tickets += args[i].ticket_sum;
    }
    uint64_t n = (uint64_t)check_scale(NA) * T;
    CHECK(tickets == n * (n - 1) / 2);  /* every fetch-add saw a distinct value */
    shk_scalar v;
    shk_array_load(ai, 0, &v);
    CHECK(v.u == n);
    shk_array_load(ai, 1, &v);
    CHECK(v.i == -3 * (int64_t)n);
    shk_array_load(ai, 2, &v);
    CHECK(v.u == n);
    shk_array_load(af, 0, &v);
    CHECK(v.f == 0.5 * (double)n);
    CHECK_EQ(shk_array_check(ai), SHK_OK);
    shk_array_close(ai);
    shk_array_close(af);
    fixture_drop(s, "st-arr");
}

/* ------------------------------------------------ directory and growth */

typedef struct {
    shk_segment *seg;
    int id;
    int created;
    int errors;
} dir_arg;

static void *dir_worker(void *v)
{
    dir_arg *a = v;
    gate();
    /* all threads race to create the same object: exactly one creates */
    shk_array *arr;
    int created = 0;
    if (shk_array_open_named(a->seg, "shared", SHK_DT_UINT32, 1000, &arr, &created) != SHK_OK)
        a->errors++;
    else {
        a->created = created;
        shk_array_add(arr, 0, 1, NULL);
        shk_array_close(arr);
    }
    /* and each creates its own objects, growing the segment as it goes */
    for (int k = 0; k < 10; k++) {
        char name[32];
        snprintf(name, sizeof name, "t%d-%d", a->id, k);
        shk_bitset *b;
        if (shk_bitset_open_named(a->seg, name, 1 << 20, &b, NULL) != SHK_OK) {
            a->errors++;
            continue;
        }
        shk_bitset_set(b, (uint64_t)k);
        shk_bitset_close(b);
    }
    return NULL;
}

TEST(directory_and_growth_threads)
{
    shk_segment *s = fixture_segment("st-dir", 0, 1ull << 30);
    uint64_t before = shk_segment_file_size(s);
    dir_arg args[T];
    for (int i = 0; i < T; i++)
        args[i] = (dir_arg){s, i, 0, 0};
    run_threads(dir_worker, args, sizeof args[0]);
    int creators = 0;
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].errors, 0);
        creators += args[i].created;
    }
    CHECK_EQ(creators, 1);
    CHECK_EQ(shk_segment_object_count(s), 1 + 10 * T);
    CHECK(shk_segment_file_size(s) > before);
    shk_array *arr;
    CHECK_EQ(shk_array_open_named(s, "shared", 0, 0, &arr, NULL), SHK_OK);
    shk_scalar v;
    shk_array_load(arr, 0, &v);
    CHECK_EQ(v.u, T);
    shk_array_close(arr);
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), NULL), SHK_OK);
    fixture_drop(s, "st-dir");
}

/* ----------------------------------------------------------------- dict */

/* Every writer path of the lock-free dict at once, on a keyspace small
 * enough that threads meet on the same keys and table lines: sets and
 * deletes of shared keys (slot CAS races, pins, tombstones), bursts of
 * own keys inserted then deleted (growth, reserves, tombstone runs), and an EXPECT-mode counter (no lost increment).  Values
 * are written plainly into the entry before its slot CAS publishes it, so
 * TSan reports a race if publication is too weak; readers check that what
 * they read is a value some thread wrote. */
#define DK 48
#define DICT_ROUNDS 6000

typedef struct {
    shk_dict *d;
    int id;
    int errors;
    int64_t incs;
} dict_arg;

/* Burst keys: every thread's hash to shard 0, so that the threads' bursts
 * crowd one table and its probe runs (where claims and delete runs race). */
#define BURST 24
static char burst_key[T][BURST][16];

static void *dict_worker(void *p)
{
    dict_arg *a = p;
    uint64_t seed = 0x9E3779B97F4A7C15ull * (uint64_t)(a->id + 1);
    char k[32];
    gate();
    for (int r = 0; r < DICT_ROUNDS; r++) {
        uint64_t x = rng(&seed);
        int n = snprintf(k, sizeof k, "k%d", (int)(x % DK));
        uint64_t v = (uint64_t)a->id << 32 | (uint64_t)r, got, len;
        int rc;
        switch ((x >> 8) % 10) {
        case 0: case 1: case 2:
            if (dict_put(a->d, k, (size_t)n, v, SHK_DICT_SET, 0, 0) != SHK_OK)
                a->errors++;
            break;
        case 3: case 4:
            rc = shk_dict_delete(a->d, 's', k, (size_t)n, 0, 0);
            if (rc != SHK_OK && rc != SHK_ENOTFOUND)
                a->errors++;
            break;
        case 5:
            rc = shk_dict_get(a->d, 's', k, (size_t)n, NULL, &got, 8, &len);
            if (rc == SHK_OK && (len != 8 || (got >> 32) >= T ||
                                 (uint32_t)got >= DICT_ROUNDS))
                a->errors++;
            else if (rc != SHK_OK && rc != SHK_ENOTFOUND)
                a->errors++;
            break;
        case 6:
            if (dict_incr(a->d) != SHK_OK)
                a->errors++;
            else
                a->incs++;
            break;
        default:
            /* a burst of keys only this thread uses, then gone again */
            for (int i = 0; i < BURST; i++) {
                const char *bk = burst_key[a->id][i];
                if (dict_put(a->d, bk, strlen(bk), v, SHK_DICT_SET, 0, 0) != SHK_OK)
                    a->errors++;
            }
            for (int i = 0; i < BURST; i++) {
                const char *bk = burst_key[a->id][i];
                if (shk_dict_delete(a->d, 's', bk, strlen(bk), 0, 0) != SHK_OK)
                    a->errors++;   /* our own key: must be there */
            }
        }
    }
    return NULL;
}

TEST(dict_threads)
{
    shk_segment *s = fixture_segment("st-dict", 0, 1ull << 30);
    shk_dict *d;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    dict_shard0_keys(d, burst_key[0], T * BURST);
    dict_arg args[T];
    for (int i = 0; i < T; i++)
        args[i] = (dict_arg){d, i, 0, 0};
    run_threads(dict_worker, args, sizeof args[0]);
    int64_t incs = 0;
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].errors, 0);
        incs += args[i].incs;
    }
    shk_dict_stats st;
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    int64_t ctr = 0;
    uint64_t len, present = 0, v;
    CHECK_EQ(shk_dict_get(d, 's', "ctr", 3, NULL, &ctr, 8, &len), SHK_OK);
    CHECK_EQ(ctr, incs);
    char k[32];
    for (int i = 0; i < DK; i++) {
        int n = snprintf(k, sizeof k, "k%d", i);
        present += shk_dict_get(d, 's', k, (size_t)n, NULL, &v, 8, &len) == SHK_OK;
    }
    CHECK_EQ(shk_dict_count(d), present + 1);
    CHECK_EQ(st.count, present + 1);
    shk_dict_close(d);
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), NULL), SHK_OK);
    fixture_drop(s, "st-dict");
}

/* Four threads increment one key with EXPECT-mode commits, nothing else.
 * Freed entry blocks are reused at once within a process, so without the
 * writer's pin on the entry it replaces, a slot word can come back with a
 * new entry in the same block under a stale CAS (ABA) and increments are
 * lost (a build without the pin lost ~18 % of them). */
static void *counter_worker(void *p)
{
    dict_arg *a = p;
    gate();
    for (int i = 0; i < 20000; i++) {
        if (dict_incr(a->d) != SHK_OK)
            a->errors++;
        else
            a->incs++;
    }
    return NULL;
}

TEST(dict_counter_threads)
{
    shk_segment *s = fixture_segment("st-ctr", 0, 1ull << 30);
    shk_dict *d;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    dict_arg args[T];
    for (int i = 0; i < T; i++)
        args[i] = (dict_arg){d, i, 0, 0};
    run_threads(counter_worker, args, sizeof args[0]);
    for (int i = 0; i < T; i++)
        CHECK_EQ(args[i].errors, 0);
    int64_t ctr = 0;
    uint64_t len;
    CHECK_EQ(shk_dict_get(d, 's', "ctr", 3, NULL, &ctr, 8, &len), SHK_OK);
    CHECK_EQ(ctr, (int64_t)T * 20000);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    fixture_drop(s, "st-ctr");
}

int main(void)
{
    RUN(freelist_threads);
    RUN(bump_and_slab_threads);
    RUN(bitset_threads);
    RUN(array_threads);
    RUN(directory_and_growth_threads);
    RUN(dict_threads);
    RUN(dict_counter_threads);
    return check_summary();
}
