/*
 * test_dict_contention.c -- every read of the dict answers what is there,
 * with many more processes than cores.
 *
 * A lookup preempted between loading a slot and reading the entry it names
 * may read a block that was meanwhile replaced, freed and reused for
 * another key's entry: a consistent snapshot of the wrong entry.  Believing
 * its key "does not match" walks the probe past the real slot and reports a
 * present key missing; a writer's probe doing the same inserts the key a
 * second time.  It takes a reader descheduled in that window to see it, so
 * this runs 8 processes per core (16 on 2 cores, at least 16) on 100,000
 * keys, 9 lookups to 1 replace, every lookup's answer checked: the key is
 * present throughout, so a miss or another key's value is a failure.  Beside
 * them every process increments one hot counter by find + compare-and-set,
 * and the total must be exact.  Afterwards every key must be there exactly
 * once (a walk of the table) and check() must pass.
 *
 * SHMKIT_TEST_SCALE (default 1) multiplies the operations per process.
 */
#include "check.h"
#include "dict_helpers.h"
#include "fixture.h"

#include <stdint.h>
#include <sys/mman.h>

enum { KEYS = 100000, HOT_EVERY = 64 };

typedef struct {
    uint64_t misses;        /* a present key reported missing          */
    uint64_t wrong;         /* a value that is not this key's          */
    uint64_t incrs;         /* hot-counter increments that committed   */
    uint64_t errors;        /* any other unexpected return code        */
} tally;

static int key_of(char *buf, uint64_t i)
{
    return snprintf(buf, 24, "key:%llu", (unsigned long long)i);
}

static uint64_t rng_next(uint64_t *x)
{
    /* xorshift64*: each process its own seed */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ull;
}

static void worker(shk_dict *d, int p, uint64_t ops, tally *t)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(p + 1);
    char k[24];
    for (uint64_t n = 0; n < ops; n++) {
        uint64_t r = rng_next(&x);
        if (n % HOT_EVERY == 0) {
            int rc = dict_incr(d);
            if (rc == SHK_OK)
                t->incrs++;
            else
                t->errors++;
            continue;
        }
        uint64_t i = r % KEYS;
        int len = key_of(k, i);
        if ((r >> 32) % 10 == 0) {
            /* replace: the value names the key (high half) and the writer */
            uint64_t v = i << 32 | (uint64_t)p;
            if (dict_put(d, k, (size_t)len, v, SHK_DICT_SET, 0, 0) != SHK_OK)
                t->errors++;
            continue;
        }
        uint64_t v = 0, vlen = 0;
        uint8_t vt = 0;
        int rc = shk_dict_get(d, 's', k, (size_t)len, &vt, &v, sizeof v, &vlen);
        if (rc == SHK_ENOTFOUND)
            t->misses++;
        else if (rc != SHK_OK)
            t->errors++;
        else if (vlen != 8 || vt != 'i' || v >> 32 != i)
            t->wrong++;
    }
}

TEST(present_keys_never_missing)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int procs = (int)(cores > 0 ? cores * 8 : 16);
    if (procs < 16)
        procs = 16;
    if (procs > 256)
        procs = 256;
    const char *sc = getenv("SHMKIT_TEST_SCALE");
    uint64_t scale = sc && atoi(sc) > 0 ? (uint64_t)atoi(sc) : 1;
    uint64_t ops = 150000 * scale;

    shk_segment *s = fixture_fork_segment("dcont", 64ull << 20);
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open(s, "d", 1, 0, &d, NULL), SHK_OK);
    char k[24];
    for (uint64_t i = 0; i < KEYS; i++) {
        int len = key_of(k, i);
        CHECK_EQ(dict_put(d, k, (size_t)len, i << 32 | 0xffffffffull, SHK_DICT_SET, 0, 0),
                 SHK_OK);
    }
    CHECK_EQ(dict_put(d, "ctr", 3, 0, SHK_DICT_SET, 0, 0), SHK_OK);

    tally *t = mmap(NULL, sizeof(tally) * (size_t)procs, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(t != MAP_FAILED);
    memset(t, 0, sizeof(tally) * (size_t)procs);
    pid_t *pids = calloc((size_t)procs, sizeof *pids);
    for (int p = 0; p < procs; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            worker(d, p, ops, &t[p]);
            _exit(0);
        }
    }
    CHECK(check_reap(pids, procs));

    tally sum = {0, 0, 0, 0};
    for (int p = 0; p < procs; p++) {
        sum.misses += t[p].misses;
        sum.wrong += t[p].wrong;
        sum.incrs += t[p].incrs;
        sum.errors += t[p].errors;
    }
    if (sum.misses || sum.wrong || sum.errors)
        fprintf(stderr, "%d processes x %llu ops: %llu misses, %llu wrong values, %llu errors\n",
                procs, (unsigned long long)ops, (unsigned long long)sum.misses,
                (unsigned long long)sum.wrong, (unsigned long long)sum.errors);
    CHECK_EQ(sum.misses, 0);
    CHECK_EQ(sum.wrong, 0);
    CHECK_EQ(sum.errors, 0);

    /* The hot counter lost no increment. */
    shk_dict_ref r;
    uint64_t ctr = 0;
    CHECK_EQ(shk_dict_find(d, 's', "ctr", 3, &r), SHK_OK);
    memcpy(&ctr, r.val, 8);
    CHECK_EQ(ctr, sum.incrs);

    /* Every key exactly once: no writer's probe inserted one twice. */
    unsigned char *seen = calloc(KEYS, 1);
    uint64_t pos = 0, tw = 0, dup = 0, live = 0;
    int rc;
    while ((rc = shk_dict_next(d, &pos, &tw, &r)) == SHK_OK) {
        live++;
        if (r.klen > 4 && memcmp(r.key, "key:", 4) == 0) {
            uint64_t i = strtoull(r.key + 4, NULL, 10);
            if (i < KEYS && seen[i]++)
                dup++;
        }
    }
    CHECK_EQ(rc, SHK_ENOTFOUND);
    CHECK_EQ(dup, 0);
    CHECK_EQ(live, KEYS + 1);
    CHECK_EQ(shk_dict_count(d), KEYS + 1);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    free(seen);
    free(pids);
    munmap(t, sizeof(tally) * (size_t)procs);
    shk_dict_close(d);
    fixture_drop(s, "dcont");
}

int main(void)
{
    RUN(present_keys_never_missing);
    return check_summary();
}
