/* Unit tests of the dict: basic operations, modes, growth, tombstones,
 * pins, concurrent readers and writers in several processes, and writers
 * SIGKILLed at random instants. */
#include "check.h"
#include "dict_helpers.h"
#include "internal.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static shk_segment *new_seg(const char *tag)
{
    shk_segment *s = NULL;
    shk_segment_unlink(check_name(tag));
    CHECK_EQ(shk_segment_create(check_name(tag), 0, 0, 0600, &s), SHK_OK);
    return s;
}

static void drop_seg(shk_segment *s, const char *tag)
{
    shk_segment_close(s);
    shk_segment_unlink(check_name(tag));
}

static int get_str(shk_dict *d, const char *k, char *out, size_t cap)
{
    uint64_t n = 0;
    uint8_t vt = 0;
    int rc = shk_dict_get(d, 's', k, strlen(k), &vt, out, cap - 1, &n);
    if (rc == SHK_OK)
        out[n] = 0;
    return rc;
}

static int set_str(shk_dict *d, const char *k, const char *v)
{
    return shk_dict_set(d, 's', k, strlen(k), 'S', v, strlen(v));
}

TEST(basic)
{
    shk_segment *s = new_seg("dbasic");
    shk_dict *d = NULL;
    int created = 0;
    CHECK_EQ(shk_dict_open_named(s, "d", 0, 0, &d, &created), SHK_ENOENT);
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, &created), SHK_OK);
    CHECK(created);
    char buf[64];
    CHECK_EQ(get_str(d, "a", buf, sizeof buf), SHK_ENOTFOUND);
    CHECK_EQ(set_str(d, "a", "1"), SHK_OK);
    CHECK_EQ(set_str(d, "b", "two"), SHK_OK);
    CHECK_EQ(get_str(d, "a", buf, sizeof buf), SHK_OK);
    CHECK(strcmp(buf, "1") == 0);
    CHECK_EQ(set_str(d, "a", "uno"), SHK_OK);
    CHECK_EQ(get_str(d, "a", buf, sizeof buf), SHK_OK);
    CHECK(strcmp(buf, "uno") == 0);
    CHECK_EQ(shk_dict_count(d), 2);
    /* same bytes, other key type: another key */
    CHECK_EQ(shk_dict_set(d, 'b', "a", 1, 'S', "x", 1), SHK_OK);
    CHECK_EQ(shk_dict_count(d), 3);
    CHECK_EQ(shk_dict_delete(d, 's', "a", 1, 0, 0), SHK_OK);
    CHECK_EQ(shk_dict_delete(d, 's', "a", 1, 0, 0), SHK_ENOTFOUND);
    CHECK_EQ(get_str(d, "a", buf, sizeof buf), SHK_ENOTFOUND);
    CHECK_EQ(shk_dict_count(d), 2);
    /* empty key and empty value */
    CHECK_EQ(shk_dict_set(d, 's', "", 0, 'S', "", 0), SHK_OK);
    CHECK_EQ(get_str(d, "", buf, sizeof buf), SHK_OK);
    CHECK(buf[0] == 0);
    /* too small a buffer */
    uint64_t n;
    CHECK_EQ(shk_dict_get(d, 's', "b", 1, NULL, buf, 1, &n), SHK_EINVAL);
    CHECK_EQ(n, 3);
    shk_dict_stats st;
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    CHECK_EQ(st.count, 3);
    /* a second handle sees the same dict */
    shk_dict *d2 = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d2, &created), SHK_OK);
    CHECK(!created);
    CHECK_EQ(get_str(d2, "b", buf, sizeof buf), SHK_OK);
    CHECK(strcmp(buf, "two") == 0);
    shk_dict_close(d2);
    /* ... and so does one opened by offset; an unnamed dict built by
     * create_in is a dict of its own */
    CHECK_EQ(shk_dict_open(s, shk_dict_offset(d), &d2), SHK_OK);
    CHECK_EQ(get_str(d2, "b", buf, sizeof buf), SHK_OK);
    shk_dict_close(d2);
    CHECK_EQ(shk_dict_open(s, shk_dict_offset(d) + 16, &d2), SHK_ECORRUPT);
    uint64_t doff;
    CHECK_EQ(shk_dict_create_in(s, 10, &doff), SHK_OK);
    CHECK_EQ(shk_dict_open(s, doff, &d2), SHK_OK);
    CHECK_EQ(shk_dict_count(d2), 0);
    CHECK_EQ(set_str(d2, "b", "mine"), SHK_OK);
    CHECK_EQ(get_str(d, "b", buf, sizeof buf), SHK_OK);
    CHECK(strcmp(buf, "two") == 0);
    shk_dict_close(d2);
    /* wrong type */
    uint64_t off;
    CHECK_EQ(shk_freelist_create_in(s, 4096, &off), SHK_OK);
    CHECK_EQ(shk_dict_clear(d), SHK_OK);
    CHECK_EQ(shk_dict_count(d), 0);
    CHECK_EQ(get_str(d, "b", buf, sizeof buf), SHK_ENOTFOUND);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    drop_seg(s, "dbasic");
}

TEST(modes)
{
    shk_segment *s = new_seg("dmodes");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    shk_dict_txn t;
    CHECK_EQ(shk_dict_prepare(d, 's', "k", 1, 'S', 1, &t), SHK_OK);
    t.val[0] = 'A';
    CHECK_EQ(shk_dict_commit(d, &t, SHK_DICT_INSERT, 0, 0, NULL), SHK_OK);
    CHECK_EQ(shk_dict_prepare(d, 's', "k", 1, 'S', 1, &t), SHK_OK);
    t.val[0] = 'B';
    CHECK_EQ(shk_dict_commit(d, &t, SHK_DICT_INSERT, 0, 0, NULL), SHK_EEXIST);
    /* expect absent: fails, key exists */
    CHECK_EQ(shk_dict_commit(d, &t, SHK_DICT_EXPECT, 0, 0, NULL), SHK_EAGAIN);
    shk_dict_ref r;
    CHECK_EQ(shk_dict_find(d, 's', "k", 1, &r), SHK_OK);
    CHECK(r.val[0] == 'A' && shk_dict_ref_valid(d, &r));
    CHECK_EQ(shk_dict_commit(d, &t, SHK_DICT_EXPECT, r.entry, r.ver + 2, NULL), SHK_EAGAIN);
    int replaced = 0;
    CHECK_EQ(shk_dict_commit(d, &t, SHK_DICT_EXPECT, r.entry, r.ver, &replaced), SHK_OK);
    CHECK(replaced);
    CHECK(!shk_dict_ref_valid(d, &r));   /* the old entry was retired */
    CHECK_EQ(shk_dict_find(d, 's', "k", 1, &r), SHK_OK);
    CHECK(r.val[0] == 'B');
    CHECK_EQ(shk_dict_delete(d, 's', "k", 1, r.entry, r.ver + 2), SHK_EAGAIN);
    CHECK_EQ(shk_dict_delete(d, 's', "k", 1, r.entry, r.ver), SHK_OK);
    CHECK_EQ(shk_dict_find(d, 's', "k", 1, &r), SHK_ENOTFOUND);
    /* abort gives the block back */
    uint64_t before = shk_freelist_available(shk_segment_heap(s));
    CHECK_EQ(shk_dict_prepare(d, 's', "z", 1, 'S', 100, &t), SHK_OK);
    shk_dict_abort(d, &t);
    CHECK_EQ(shk_freelist_available(shk_segment_heap(s)), before);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    drop_seg(s, "dmodes");
}

TEST(pins)
{
    shk_segment *s = new_seg("dpins");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    CHECK_EQ(set_str(d, "k", "first value"), SHK_OK);
    shk_dict_ref r;
    CHECK_EQ(shk_dict_find(d, 's', "k", 1, &r), SHK_OK);
    CHECK_EQ(shk_dict_pin(d, &r), SHK_OK);
    CHECK_EQ(shk_dict_pin(d, &r), SHK_OK);
    const char *v = r.val;
    CHECK_EQ(set_str(d, "k", "second"), SHK_OK);     /* zombie now */
    CHECK_EQ(shk_dict_delete(d, 's', "k", 1, 0, 0), SHK_OK);
    /* churn the heap: the pinned block must not be reused */
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof k, "x%d", i);
        CHECK_EQ(set_str(d, k, "first value"), SHK_OK);
        CHECK_EQ(set_str(d, k, "XXXXXXXXXXX"), SHK_OK);
    }
    CHECK(memcmp(v, "first value", 11) == 0);
    shk_dict_ref stale = r;
    CHECK_EQ(shk_dict_pin(d, &stale), SHK_EAGAIN);   /* retired: no new pins */
    shk_dict_unpin(d, r.entry);
    CHECK(memcmp(v, "first value", 11) == 0);
    uint64_t before = shk_freelist_available(shk_segment_heap(s));
    shk_dict_unpin(d, r.entry);                        /* last pin frees it */
    CHECK(shk_freelist_available(shk_segment_heap(s)) > before);
    shk_freelist_stats fs;
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), &fs), SHK_OK);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);

    /* An entry with every pin taken can still be replaced and deleted (a
     * writer pins what it replaces; it must not wait for a pin to go). */
    CHECK_EQ(set_str(d, "full", "pinned"), SHK_OK);
    CHECK_EQ(shk_dict_find(d, 's', "full", 4, &r), SHK_OK);
    for (unsigned i = 0; i < SHK_DICT_MAX_PINS; i++)
        CHECK_EQ(shk_dict_pin(d, &r), SHK_OK);
    CHECK_EQ(shk_dict_pin(d, &r), SHK_EFULL);
    CHECK_EQ(set_str(d, "full", "replaced"), SHK_OK);
    shk_dict_ref r2;
    CHECK_EQ(shk_dict_find(d, 's', "full", 4, &r2), SHK_OK);
    CHECK(r2.entry != r.entry);
    CHECK_EQ(shk_dict_find(d, 's', "full", 4, &r2), SHK_OK);
    CHECK_EQ(shk_dict_delete(d, 's', "full", 4, 0, 0), SHK_OK);
    CHECK(memcmp(r.val, "pinned", 6) == 0);          /* still a zombie */
    for (unsigned i = 0; i < SHK_DICT_MAX_PINS; i++)
        shk_dict_unpin(d, r.entry);
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), &fs), SHK_OK);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    drop_seg(s, "dpins");
}

/* Deleting every key of an insert burst leaves no tombstones: a delete that
 * empties a slot also empties the tombstones just before it. */
/* Deletes leave tombstones; inserts after them trigger a rebuild of the
 * table once its slots are used up, so churn never fills it. */
TEST(delete_leaves_tombstones_growth_clears_them)
{
    shk_segment *s = new_seg("dtomb");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 4096, &d, NULL), SHK_OK);
    char k[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2000; i++) {
            snprintf(k, sizeof k, "burst-%d", i);
            CHECK_EQ(set_str(d, k, "v"), SHK_OK);
        }
        for (int i = 0; i < 2000; i++) {   /* in insertion order: runs form */
            snprintf(k, sizeof k, "burst-%d", i);
            CHECK_EQ(shk_dict_delete(d, 's', k, strlen(k), 0, 0), SHK_OK);
        }
        shk_dict_stats st;
        CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
        CHECK_EQ(st.count, 0);
        CHECK_EQ(st.tombstones, st.used_slots);
        CHECK(st.used_slots * 4 <= st.capacity * 3);
    }
    shk_dict_close(d);
    drop_seg(s, "dtomb");
}

TEST(growth_and_tombstones)
{
    shk_segment *s = new_seg("dgrow");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    enum { N = 200000 };
    char k[32], v[32], buf[64];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        snprintf(v, sizeof v, "val-%d", i * 3);
        if (set_str(d, k, v) != SHK_OK) {
            CHECK(0);
            break;
        }
    }
    CHECK_EQ(shk_dict_count(d), N);
    shk_dict_stats st;
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    CHECK(st.resizes > 5);
    CHECK(st.capacity * 3 / 4 >= N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        snprintf(v, sizeof v, "val-%d", i * 3);
        if (get_str(d, k, buf, sizeof buf) != SHK_OK || strcmp(buf, v) != 0)
            bad++;
    }
    CHECK_EQ(bad, 0);
    /* delete and reinsert in waves: tombstones must not fill the table */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i += 2) {
            snprintf(k, sizeof k, "key-%d", i);
            CHECK_EQ(shk_dict_delete(d, 's', k, strlen(k), 0, 0), SHK_OK);
        }
        for (int i = 0; i < N; i += 2) {
            snprintf(k, sizeof k, "key-%d", i);
            CHECK_EQ(set_str(d, k, "again"), SHK_OK);
        }
    }
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    CHECK_EQ(st.count, N);
    /* iteration sees every key once */
    uint64_t pos = 0, tw = 0, seen = 0;
    shk_dict_ref r;
    while (shk_dict_next(d, &pos, &tw, &r) == SHK_OK)
        seen++;
    CHECK_EQ(seen, N);
    CHECK_EQ(shk_dict_clear(d), SHK_OK);
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    CHECK_EQ(st.count, 0);
    /* everything freed except the dict header and its shards' small tables
     * (and the segment's own blocks) */
    shk_freelist_stats fs;
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), &fs), SHK_OK);
    CHECK(fs.live_blocks <= 2 + SHK_DICT_SHARDS);
    shk_dict_close(d);
    drop_seg(s, "dgrow");
}

TEST(big_value_and_oom)
{
    shk_segment *s = NULL;
    const char *n = check_name("doom");
    shk_segment_unlink(n);
    CHECK_EQ(shk_segment_create(n, 0, 8 << 20, 0600, &s), SHK_OK);
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    CHECK_EQ(set_str(d, "k", "small"), SHK_OK);
    size_t big = 4 << 20;
    char *v = malloc(big);
    memset(v, 'q', big);
    CHECK_EQ(shk_dict_set(d, 's', "big", 3, 'B', v, big), SHK_OK);
    CHECK_EQ(shk_dict_set(d, 's', "k", 1, 'B', v, big), SHK_ENOMEM);
    char buf[16];
    CHECK_EQ(get_str(d, "k", buf, sizeof buf), SHK_OK);    /* unchanged */
    CHECK(strcmp(buf, "small") == 0);
    CHECK_EQ(shk_dict_count(d), 2);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    free(v);
    shk_dict_close(d);
    shk_segment_close(s);
    shk_segment_unlink(n);
}

TEST(corrupt_header)
{
    shk_segment *s = new_seg("dcorrupt");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    uint64_t off = shk_dict_offset(d);
    shk_dict_close(d);
    char *base = shk_segment_base(s);
    uint64_t saved;
    memcpy(&saved, base + off + 16, 8);
    uint64_t junk = 0xffffffffffffull;      /* table word far outside */
    memcpy(base + off + 16, &junk, 8);
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_ECORRUPT);
    memcpy(base + off + 16, &saved, 8);
    base[off] ^= 1;                          /* magic */
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_ECORRUPT);
    base[off] ^= 1;
    uint32_t op_saved, bad_op = 99;            /* intent op (offset 128) */
    memcpy(&op_saved, base + off + 128, 4);
    memcpy(base + off + 128, &bad_op, 4);
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_ECORRUPT);
    memcpy(base + off + 128, &op_saved, 4);
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    shk_dict_close(d);
    drop_seg(s, "dcorrupt");
}

/* ---- processes ---- */

/* Values are "<key>:<n>:" followed by a pattern derived from key and n, so
 * a reader can tell a torn value from a real one. */
static size_t make_val(char *out, const char *key, unsigned n)
{
    size_t len = (size_t)sprintf(out, "%s:%u:", key, n);
    size_t extra = (n * 37u) % 200u;
    for (size_t i = 0; i < extra; i++)
        out[len + i] = (char)('a' + (i + n) % 26);
    return len + extra;
}

static int val_ok(const char *key, const char *v, size_t len)
{
    unsigned n;
    char tmp[512];
    if (len >= sizeof tmp)
        return 0;
    memcpy(tmp, v, len);
    tmp[len] = 0;
    size_t kl = strlen(key);
    if (strncmp(tmp, key, kl) != 0 || tmp[kl] != ':' ||
        sscanf(tmp + kl + 1, "%u", &n) != 1)
        return 0;
    char exp[512];
    size_t el = make_val(exp, key, n);
    return el == len && memcmp(exp, tmp, len) == 0;
}

TEST(readers_see_no_torn_values)
{
    shk_segment *s = new_seg("dtorn");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    const int K = 64;
    char key[16], val[512];
    for (int i = 0; i < K; i++) {
        snprintf(key, sizeof key, "k%d", i);
        size_t n = make_val(val, key, 0);
        CHECK_EQ(shk_dict_set(d, 's', key, strlen(key), 'S', val, n), SHK_OK);
    }
    pid_t writer = fork();
    if (writer == 0) {
        /* overwrite, delete and re-add, forcing resizes with filler keys */
        char k2[16], v2[512];
        for (unsigned r = 1; r < 30000; r++) {
            int i = (int)(r % (unsigned)K);
            snprintf(k2, sizeof k2, "k%d", i);
            size_t n = make_val(v2, k2, r);
            if (r % 7 == 0)
                shk_dict_delete(d, 's', k2, strlen(k2), 0, 0);
            shk_dict_set(d, 's', k2, strlen(k2), 'S', v2, n);
            if (r % 5 == 0) {
                snprintf(k2, sizeof k2, "f%u", r);
                shk_dict_set(d, 's', k2, strlen(k2), 'S', "f", 1);
            }
            if (r % 9000 == 0)
                shk_dict_clear(d);
        }
        _exit(0);
    }
    long checks = 0, bad = 0;
    int status;
    while (waitpid(writer, &status, WNOHANG) == 0) {
        for (int i = 0; i < K; i++) {
            snprintf(key, sizeof key, "k%d", i);
            uint64_t n;
            int rc = shk_dict_get(d, 's', key, strlen(key), NULL, val, sizeof val, &n);
            if (rc == SHK_OK) {
                checks++;
                if (!val_ok(key, val, n))
                    bad++;
            } else if (rc != SHK_ENOTFOUND) {
                bad++;
            }
        }
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(bad, 0);
    CHECK(checks > 0);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    drop_seg(s, "dtorn");
}

/* Four processes: disjoint keys plus a shared counter updated by EXPECT. */
TEST(four_writers)
{
    shk_segment *s = new_seg("dfour");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    enum { P = 4, N = 5000 };
    pid_t pids[P];
    for (int p = 0; p < P; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            char k[32];
            for (int i = 0; i < N; i++) {
                snprintf(k, sizeof k, "p%d-%d", p, i);
                int64_t v = i;
                if (shk_dict_set(d, 's', k, strlen(k), 'i', &v, 8) != SHK_OK)
                    _exit(2);
                if (i % 3 == 0)
                    shk_dict_delete(d, 's', k, strlen(k), 0, 0);
                if (dict_incr(d) != SHK_OK)   /* counter += 1, optimistic */
                    _exit(3);
            }
            _exit(0);
        }
    }
    CHECK(check_reap(pids, P));
    int64_t ctr = 0;
    uint64_t n;
    CHECK_EQ(shk_dict_get(d, 's', "ctr", 3, NULL, &ctr, 8, &n), SHK_OK);
    CHECK_EQ(ctr, P * N);
    CHECK_EQ(shk_dict_count(d), 1 + P * (N - (N + 2) / 3));
    int bad = 0;
    for (int p = 0; p < P; p++)
        for (int i = 0; i < N; i++) {
            char k[32];
            snprintf(k, sizeof k, "p%d-%d", p, i);
            int64_t v = -1;
            int rc = shk_dict_get(d, 's', k, strlen(k), NULL, &v, 8, &n);
            if (i % 3 == 0 ? rc != SHK_ENOTFOUND : (rc != SHK_OK || v != i))
                bad++;
        }
    CHECK_EQ(bad, 0);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    shk_dict_close(d);
    drop_seg(s, "dfour");
}

/* A writer SIGKILLed at random instants, many times: afterwards the dict
 * passes check() and holds every committed key with its committed value. */
TEST(sigkill_writers)
{
    shk_segment *s = new_seg("dkill");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    /* shared progress: committed[i] = last value committed for key i */
    enum { K = 2000 };
    int64_t *committed = mmap(NULL, K * sizeof(int64_t), PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < K; i++)
        committed[i] = -1;
    srand(12345);
    int kills = 0;
    for (int round = 0; round < 40; round++) {
        pid_t c = fork();
        if (c == 0) {
            unsigned x = (unsigned)round * 2654435761u + 1;
            char k[16];
            for (int64_t n = 0;; n++) {
                x = x * 1103515245u + 12345u;
                int i = (int)((x >> 8) % K);
                snprintf(k, sizeof k, "k%d", i);
                int64_t v = round * 1000000 + n;
                /* announce before, confirm after: the parent accepts either
                 * value for a key whose write was in flight */
                committed[i] = -2 - v;
                if ((x >> 4) % 5 == 0) {
                    shk_dict_delete(d, 's', k, strlen(k), 0, 0);
                    committed[i] = -1;
                } else {
                    shk_dict_set(d, 's', k, strlen(k), 'i', &v, 8);
                    committed[i] = v;
                }
            }
        }
        struct timespec ts = {0, (long)(1000000 + rand() % 20000000)};
        nanosleep(&ts, NULL);
        kill(c, SIGKILL);
        int st;
        waitpid(c, &st, 0);
        kills++;
        /* the next writer (us) repairs and checks */
        CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    }
    int bad = 0;
    for (int i = 0; i < K; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        int64_t v = -1;
        uint64_t n;
        int rc = shk_dict_get(d, 's', k, strlen(k), NULL, &v, 8, &n);
        int64_t c = committed[i];
        if (c == -1) {
            if (rc != SHK_ENOTFOUND)
                bad++;
        } else if (c >= 0) {
            if (rc != SHK_OK || v != c)
                bad++;
        }
        /* c < -1: a write was in flight when killed; old or new is fine */
    }
    CHECK_EQ(bad, 0);
    shk_dict_stats st;
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    CHECK(kills == 40);
    CHECK(st.recoveries >= 1);   /* some kills landed inside the lock */
    printf("sigkill: %d kills, %llu recoveries\n", kills, (unsigned long long)st.recoveries);
    munmap(committed, K * sizeof(int64_t));
    shk_dict_close(d);
    drop_seg(s, "dkill");
}

/* Kills while the table grows (and is cleared): every key committed before
 * the kill is there afterwards, and check() passes. */
TEST(sigkill_during_growth)
{
    shk_segment *s = new_seg("dkillgrow");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    enum { ROUNDS = 30 };
    int64_t *done = mmap(NULL, ROUNDS * sizeof(int64_t), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    srand(777);
    uint64_t resizes_before = 0;
    for (int round = 0; round < ROUNDS; round++) {
        done[round] = -1;
        shk_dict_stats st0;
        shk_dict_stats_get(d, &st0);
        resizes_before = st0.resizes;
        if (round == ROUNDS / 2)
            CHECK_EQ(shk_dict_clear(d), SHK_OK);   /* start small again */
        pid_t c = fork();
        if (c == 0) {
            char k[32];
            for (int64_t n = 0;; n++) {
                snprintf(k, sizeof k, "r%d-%lld", round, (long long)n);
                if (shk_dict_set(d, 's', k, strlen(k), 'i', &n, 8) != SHK_OK)
                    _exit(3);
                done[round] = n;
            }
        }
        struct timespec ts = {0, (long)(2000000 + rand() % 30000000)};
        nanosleep(&ts, NULL);
        kill(c, SIGKILL);
        int wst;
        waitpid(c, &wst, 0);
        CHECK(WIFSIGNALED(wst));
        CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
        int bad = 0;
        for (int64_t n = 0; n <= done[round]; n++) {
            char k[32];
            int64_t v = -1;
            uint64_t len;
            snprintf(k, sizeof k, "r%d-%lld", round, (long long)n);
            if (shk_dict_get(d, 's', k, strlen(k), NULL, &v, 8, &len) != SHK_OK || v != n)
                bad++;
        }
        CHECK_EQ(bad, 0);
    }
    shk_dict_stats st;
    CHECK_EQ(shk_dict_check(d, &st), SHK_OK);
    CHECK(st.resizes > resizes_before || st.resizes > 5);
    printf("sigkill during growth: %llu entries, %llu resizes, %llu recoveries\n",
           (unsigned long long)st.count, (unsigned long long)st.resizes,
           (unsigned long long)st.recoveries);
    munmap(done, ROUNDS * sizeof(int64_t));
    shk_dict_close(d);
    drop_seg(s, "dkillgrow");
}

/* ---- deterministic crash points ----
 * Operation i of the script: i % 4 == 3 inserts a new key "n<i>" (growth);
 * i % 3 == 2 deletes "k<7i % 100>"; otherwise sets "k<7i % 100>" = i.
 * Every 97th operation clears the dict. */
enum { SCRIPT_K = 100 };

static int script_op(shk_dict *d, int64_t i)
{
    char k[32];
    if (i % 97 == 96)
        return shk_dict_clear(d);
    if (i % 4 == 3) {
        snprintf(k, sizeof k, "n%lld", (long long)i);
        return shk_dict_set(d, 's', k, strlen(k), 'i', &i, 8);
    }
    snprintf(k, sizeof k, "k%lld", (long long)((i * 7) % SCRIPT_K));
    if (i % 3 == 2) {
        int rc = shk_dict_delete(d, 's', k, strlen(k), 0, 0);
        return rc == SHK_ENOTFOUND ? SHK_OK : rc;
    }
    return shk_dict_set(d, 's', k, strlen(k), 'i', &i, 8);
}

/* 1 if the dict holds exactly the state after script ops [0, j]. */
static int script_matches(shk_dict *d, int64_t j)
{
    int64_t kv[SCRIPT_K];
    int64_t last_clear = -1;
    for (int x = 0; x < SCRIPT_K; x++)
        kv[x] = -1;
    for (int64_t i = 0; i <= j; i++) {
        if (i % 97 == 96) {
            for (int x = 0; x < SCRIPT_K; x++)
                kv[x] = -1;
            last_clear = i;
        } else if (i % 4 != 3) {
            kv[(i * 7) % SCRIPT_K] = i % 3 == 2 ? -1 : i;
        }
    }
    uint64_t want = 0;
    char k[32];
    int64_t v;
    uint64_t n;
    for (int x = 0; x < SCRIPT_K; x++) {
        snprintf(k, sizeof k, "k%d", x);
        int rc = shk_dict_get(d, 's', k, strlen(k), NULL, &v, 8, &n);
        if (kv[x] < 0 ? rc != SHK_ENOTFOUND : (rc != SHK_OK || v != kv[x]))
            return 0;
        want += kv[x] >= 0;
    }
    for (int64_t i = 3; i <= j + 4; i += 4) {
        snprintf(k, sizeof k, "n%lld", (long long)i);
        int rc = shk_dict_get(d, 's', k, strlen(k), NULL, &v, 8, &n);
        int present = i <= j && i > last_clear;
        if (present ? (rc != SHK_OK || v != i) : rc != SHK_ENOTFOUND)
            return 0;
        want += present;
    }
    return shk_dict_count(d) == want;
}

TEST(crash_points)
{
    static const char *points[] = {
        "dict.set.intent", "dict.set.versioned", "dict.set.claimed", "dict.set.published",
        "dict.set.retired", "dict.delete.unlinked",
        "dict.delete.retired",
        "dict.resize.copying", "dict.resize.built", "dict.resize.published",
        "dict.clear.prepared", "dict.clear.committed", "dict.clear.published", "freelist.pop", "freelist.free", "freelist.carve",
    };
    int64_t *done = mmap(NULL, sizeof(int64_t), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int killed = 0, total = 0;
    for (size_t p = 0; p < sizeof points / sizeof *points; p++) {
        for (int nth = 1; nth <= 40; nth += 13) {
            shk_segment *s = new_seg("dcrash");
            shk_dict *d = NULL;
            CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
            *done = -1;
            pid_t c = fork();
            if (c == 0) {
                char spec[64];
                snprintf(spec, sizeof spec, "%s:%d", points[p], nth);
                shk_crash_arm(spec);
                for (int64_t i = 0; i < 3000; i++) {
                    if (script_op(d, i) != SHK_OK)
                        _exit(2);
                    *done = i;
                }
                _exit(0);
            }
            int st;
            waitpid(c, &st, 0);
            total++;
            if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
                killed++;
            else
                CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            /* the next writer repairs; the state is before or after the
             * operation that was in flight, never anything else */
            CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
            int64_t j = *done;
            int ok = script_matches(d, j) || script_matches(d, j + 1);
            if (!ok)
                fprintf(stderr, "crash point %s:%d: state after op %lld wrong\n",
                        points[p], nth, (long long)j);
            CHECK(ok);
            /* and it keeps working */
            for (int64_t i = j + 1; i < j + 200; i++)
                CHECK_EQ(script_op(d, i), SHK_OK);
            CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
            shk_dict_close(d);
            drop_seg(s, "dcrash");
        }
    }
    printf("crash points: %d of %d runs killed at the point\n", killed, total);
    CHECK(killed > total / 2);
    munmap(done, sizeof(int64_t));
}

/* Two processes insert and delete 32 keys each, all in one shard, over and
 * over: inserts scan probe paths while the other's deletes leave
 * tombstones on them, and the table is rebuilt as they fill it.  An insert
 * unreachable from its key's home shows here as a delete of a key just
 * inserted that finds nothing. */
TEST(churn_one_shard_two_processes)
{
    shk_segment *s = new_seg("dchurn");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    enum { P = 2, K = 32, ROUNDS = 60000 };
    static char keys[P][K][16];
    dict_shard0_keys(d, keys[0], P * K);
    pid_t pids[P];
    for (int p = 0; p < P; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            uint64_t v = (uint64_t)p;
            for (int r = 0; r < ROUNDS; r++) {
                for (int i = 0; i < K; i++)
                    if (shk_dict_set(d, 's', keys[p][i], strlen(keys[p][i]), 'i', &v, 8) != SHK_OK)
                        _exit(2);
                for (int i = 0; i < K; i++)
                    if (shk_dict_delete(d, 's', keys[p][i], strlen(keys[p][i]), 0, 0) != SHK_OK)
                        _exit(3);
            }
            _exit(0);
        }
    }
    CHECK(check_reap(pids, P));
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    CHECK_EQ(shk_dict_count(d), 0);
    shk_dict_close(d);
    drop_seg(s, "dchurn");
}

/* A forked child must not reuse its parent's version batch. */
TEST(versions_unique_across_fork)
{
    shk_segment *s = new_seg("dfork");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    CHECK_EQ(set_str(d, "warm", "up"), SHK_OK);     /* parent takes a batch */
    uint64_t *vers = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int c = 0; c < 2; c++) {
        pid_t p = fork();
        if (p == 0) {
            char k[16];
            snprintf(k, sizeof k, "c%d", c);
            shk_dict_ref r;
            if (set_str(d, k, "x") != SHK_OK || shk_dict_find(d, 's', k, 2, &r) != SHK_OK)
                _exit(1);
            vers[c] = r.ver;
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    shk_dict_ref r;
    CHECK_EQ(set_str(d, "p", "x"), SHK_OK);
    CHECK_EQ(shk_dict_find(d, 's', "p", 1, &r), SHK_OK);
    CHECK(vers[0] != vers[1] && vers[0] != r.ver && vers[1] != r.ver);
    munmap(vers, 4096);
    shk_dict_close(d);
    drop_seg(s, "dfork");
}

/* stats() while another process inserts: count, tombstones and used slots
 * describe one reading of each shard (count + tombstones = used slots).  A
 * stats() that summed the lanes' counts twice, once for count and again
 * for tombstones, broke that whenever an insert landed between the sums. */
TEST(stats_one_count_per_shard)
{
    shk_segment *s = new_seg("dstats");
    shk_dict *d = NULL;
    CHECK_EQ(shk_dict_open_named(s, "d", 1, 0, &d, NULL), SHK_OK);
    volatile int *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                              -1, 0);
    pid_t c = fork();
    if (c == 0) {
        char k[32];
        for (int64_t n = 0; n < check_scale(100000) && !*stop; n++) {
            snprintf(k, sizeof k, "s%lld", (long long)n);
            if (shk_dict_set(d, 's', k, strlen(k), 'i', &n, 8) != SHK_OK)
                _exit(2);
        }
        _exit(0);
    }
    int bad = 0, looks = 0;
    for (; looks < check_scale(200000) && bad == 0; looks++) {
        shk_dict_stats st;
        shk_dict_stats_get(d, &st);
        if (st.count + st.tombstones != st.used_slots)
            bad++;
        int wst;
        if (waitpid(c, &wst, WNOHANG) == c) {
            CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
            c = 0;
            break;
        }
    }
    *stop = 1;
    if (c)
        CHECK(check_reap(&c, 1));
    CHECK_EQ(bad, 0);
    CHECK_EQ(shk_dict_check(d, NULL), SHK_OK);
    munmap((void *)stop, 4096);
    shk_dict_close(d);
    drop_seg(s, "dstats");
}

int main(void)
{
    RUN(basic);
    RUN(modes);
    RUN(pins);
    RUN(growth_and_tombstones);
    RUN(delete_leaves_tombstones_growth_clears_them);
    RUN(big_value_and_oom);
    RUN(corrupt_header);
    RUN(readers_see_no_torn_values);
    RUN(four_writers);
    RUN(churn_one_shard_two_processes);
    RUN(sigkill_writers);
    RUN(sigkill_during_growth);
    RUN(crash_points);
    RUN(versions_unique_across_fork);
    RUN(stats_one_count_per_shard);
    return check_summary();
}
