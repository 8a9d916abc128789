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
 * The other side of the same promise: an entry whose fields a peer
 * corrupted (an odd version, a huge or overhanging length) is reported as
 * SHK_ECORRUPT by every operation that meets it, within a bounded number
 * of looks, never a hang, a crash or a silently skipped key.
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
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
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

/* Corrupt one field of the entry of key "victim" (with 50 other keys
 * around it), then run every operation that must meet that entry in a
 * child that dies on SIGALRM after 5 s: each must return SHK_ECORRUPT. */
enum { F_VER, F_KLEN, F_VLEN_HUGE, F_VLEN_PAST_END, F_COUNT };

static int ops_on_corrupt_entry(int field)
{
    shk_segment *s = fixture_fork_segment("dcorr", 1ull << 20);
    shk_dict *d = NULL;
    if (shk_dict_open_named(s, "d", 1, 0, &d, NULL) != SHK_OK)
        return 100;
    char k[24];
    for (int i = 0; i < 50; i++) {
        int len = key_of(k, (uint64_t)i);
        if (dict_put(d, k, (size_t)len, 1, SHK_DICT_SET, 0, 0) != SHK_OK)
            return 101;
    }
    if (dict_put(d, "victim", 6, 7, SHK_DICT_SET, 0, 0) != SHK_OK)
        return 102;
    shk_dict_ref r;
    if (shk_dict_find(d, 's', "victim", 6, &r) != SHK_OK)
        return 103;
    char *e = (char *)shk_segment_base(s) + r.entry;
    uint64_t fs = shk_segment_file_size(s);
    switch (field) {
    case F_VER:           /* life = ver << 16 | pins: make ver odd */
        *(uint64_t *)e |= 1ull << 16;
        break;
    case F_KLEN:          /* klen (u32 at +16) */
        *(uint32_t *)(e + 16) = 1u << 31;
        break;
    case F_VLEN_HUGE:     /* vlen (u64 at +24) */
        *(uint64_t *)(e + 24) = 1ull << 40;
        break;
    case F_VLEN_PAST_END: /* the value runs one byte past the file */
        *(uint64_t *)(e + 24) = fs - (uint64_t)(r.val - (const char *)shk_segment_base(s)) + 1;
        break;
    }
    int bad = 0;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(5);
        uint64_t v = 0, vlen = 0, pos = 0, tw = 0;
        uint8_t vt = 0;
        if (shk_dict_find(d, 's', "victim", 6, &r) != SHK_ECORRUPT)
            _exit(1);
        if (shk_dict_get(d, 's', "victim", 6, &vt, &v, 8, &vlen) != SHK_ECORRUPT)
            _exit(2);
        if (dict_put(d, "victim", 6, 9, SHK_DICT_SET, 0, 0) != SHK_ECORRUPT)
            _exit(3);
        if (shk_dict_delete(d, 's', "victim", 6, 0, 0) != SHK_ECORRUPT)
            _exit(4);
        int rc;
        while ((rc = shk_dict_next(d, &pos, &tw, &r)) == SHK_OK)
            ;
        if (rc != SHK_ECORRUPT)   /* not the end of a walk that skipped it */
            _exit(5);
        if (shk_dict_check(d, NULL) != SHK_ECORRUPT)
            _exit(6);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "corrupt field %d: child %s %d\n", field,
                WIFEXITED(st) ? "exited" : "killed by signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        bad = 1;
    }
    shk_dict_close(d);
    fixture_drop(s, "dcorr");
    return bad;
}

TEST(corrupt_entry_is_reported)
{
    for (int f = 0; f < F_COUNT; f++)
        CHECK_EQ(ops_on_corrupt_entry(f), 0);
}

/* Garbage in the per-writer entry counts (each lane's count[16] at +128 of
 * its 384 bytes; lanes follow the 128-byte header and 16 shards of 192
 * bytes, see the LAYOUT in src/dict.c): len() recounts the shards from
 * their tables instead of answering the garbage. */
TEST(corrupt_count_is_recounted)
{
    shk_segment *s = fixture_fork_segment("dcount", 1ull << 20);
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    char k[24];
    for (int i = 0; i < 100; i++) {
        int len = key_of(k, (uint64_t)i);
        CHECK_EQ(dict_put(d, k, (size_t)len, 1, SHK_DICT_SET, 0, 0), SHK_OK);
    }
    char *lane0 = (char *)shk_segment_base(s) + shk_dict_offset(d) + 128 + 16 * 192;
    memset(lane0 + 128, 0x68, 128);
    CHECK_EQ(shk_dict_count(d), 100);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    fixture_drop(s, "dcount");
}

int main(void)
{
    RUN(present_keys_never_missing);
    RUN(corrupt_entry_is_reported);
    RUN(corrupt_count_is_recounted);
    return check_summary();
}
