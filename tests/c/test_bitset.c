/* Unit tests of the atomic bitset: single-bit ops, whole-set ops, the
 * tail-bits invariant, validation of corrupt headers, and atomicity across
 * real processes (fork). */
#include "fixture.h"
#include "internal.h"

#include <sys/wait.h>


TEST(single_bit_ops)
{
    shk_segment *s = fixture_segment("bs1", 0, 0);
    shk_bitset *b;
    int created = -1;
    CHECK_EQ(shk_bitset_open_named(s, "b", 130, &b, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_bitset_size(b), 130);
    CHECK_EQ(shk_bitset_nwords(b), 3);
    CHECK_EQ(shk_bitset_count(b), 0);
    for (uint64_t i = 0; i < 130; i++)
        CHECK_EQ(shk_bitset_test(b, i), 0);
    CHECK_EQ(shk_bitset_set(b, 0), 0);
    CHECK_EQ(shk_bitset_set(b, 0), 1);
    CHECK_EQ(shk_bitset_test(b, 0), 1);
    CHECK_EQ(shk_bitset_set(b, 129), 0);
    CHECK_EQ(shk_bitset_flip(b, 64), 0);
    CHECK_EQ(shk_bitset_flip(b, 64), 1);
    CHECK_EQ(shk_bitset_flip(b, 64), 0);
    CHECK_EQ(shk_bitset_clear(b, 0), 1);
    CHECK_EQ(shk_bitset_clear(b, 0), 0);
    CHECK_EQ(shk_bitset_assign(b, 5, 1), 0);
    CHECK_EQ(shk_bitset_assign(b, 5, 0), 1);
    CHECK_EQ(shk_bitset_count(b), 2);          /* 64, 129 */
    uint64_t *w = shk_bitset_words(b);
    CHECK(w[1] == 1ull && w[2] == 2ull && w[0] == 0);
    /* out of range: an error, nothing changed */
    CHECK_EQ(shk_bitset_set(b, 130), SHK_EINVAL);
    CHECK_EQ(shk_bitset_clear(b, 130), SHK_EINVAL);
    CHECK_EQ(shk_bitset_flip(b, UINT64_MAX), SHK_EINVAL);
    CHECK_EQ(shk_bitset_test(b, 1000), SHK_EINVAL);
    CHECK(w[2] == 2ull);
    uint64_t n = 0;
    CHECK_EQ(shk_bitset_check(b, &n), SHK_OK);
    CHECK_EQ(n, 2);

    /* a second handle (another "process") sees the same bits */
    shk_bitset *b2;
    CHECK_EQ(shk_bitset_open_named(s, "b", 0, &b2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(shk_bitset_test(b2, 129), 1);
    CHECK_EQ(shk_bitset_size(b2), 130);
    shk_bitset_close(b2);
    shk_bitset_close(b);
    fixture_drop(s, "bs1");
}

TEST(whole_set_ops)
{
    shk_segment *s = fixture_segment("bs2", 0, 0);
    const uint64_t sizes[] = {1, 63, 64, 65, 127, 128, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        char name[16];
        snprintf(name, sizeof name, "b%llu", (unsigned long long)n);
        shk_bitset *b;
        CHECK_EQ(shk_bitset_open_named(s, name, n, &b, NULL), SHK_OK);
        CHECK_EQ(shk_bitset_any(b), 0);
        CHECK_EQ(shk_bitset_all(b), 0);
        CHECK_EQ(shk_bitset_find_next_set(b, 0), -1);
        CHECK_EQ(shk_bitset_find_next_clear(b, 0), 0);
        shk_bitset_set_all(b);
        CHECK_EQ(shk_bitset_count(b), n);
        CHECK_EQ(shk_bitset_all(b), 1);
        CHECK_EQ(shk_bitset_any(b), 1);
        CHECK_EQ(shk_bitset_find_next_clear(b, 0), -1);
        CHECK_EQ(shk_bitset_find_next_set(b, n - 1), (int64_t)(n - 1));
        CHECK_EQ(shk_bitset_find_next_set(b, n), -1);
        CHECK_EQ(shk_bitset_check(b, NULL), SHK_OK);   /* tail stays clear */
        CHECK_EQ(shk_bitset_clear(b, n - 1), 1);
        CHECK_EQ(shk_bitset_all(b), 0);
        CHECK_EQ(shk_bitset_find_next_clear(b, 0), (int64_t)(n - 1));
        shk_bitset_clear_all(b);
        CHECK_EQ(shk_bitset_count(b), 0);
        /* find walks across words */
        shk_bitset_set(b, n - 1);
        CHECK_EQ(shk_bitset_find_next_set(b, 0), (int64_t)(n - 1));
        if (n > 1) {
            CHECK_EQ(shk_bitset_find_next_clear(b, n - 1), -1);
            shk_bitset_set(b, 0);
            CHECK_EQ(shk_bitset_find_next_set(b, 1), (int64_t)(n - 1));
        }
        shk_bitset_close(b);
    }
    fixture_drop(s, "bs2");
}

TEST(find_model)
{
    /* find_next_* against a brute-force scan on a pseudo-random pattern */
    shk_segment *s = fixture_segment("bs3", 0, 0);
    shk_bitset *b;
    const uint64_t n = 777;
    CHECK_EQ(shk_bitset_open_named(s, "b", n, &b, NULL), SHK_OK);
    uint64_t x = 12345;
    unsigned char model[777] = {0};
    for (int r = 0; r < 3000; r++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t i = (x >> 33) % n;
        int op = (int)((x >> 20) % 3);
        int prev = op == 0 ? shk_bitset_set(b, i)
                 : op == 1 ? shk_bitset_clear(b, i) : shk_bitset_flip(b, i);
        CHECK_EQ(prev, model[i]);
        model[i] = op == 0 ? 1 : op == 1 ? 0 : !model[i];
        uint64_t from = (x >> 7) % (n + 2);
        int64_t es = -1, ec = -1;
        for (uint64_t j = from; j < n; j++)
            if (model[j]) { es = (int64_t)j; break; }
        for (uint64_t j = from; j < n; j++)
            if (!model[j]) { ec = (int64_t)j; break; }
        CHECK_EQ(shk_bitset_find_next_set(b, from), es);
        CHECK_EQ(shk_bitset_find_next_clear(b, from), ec);
    }
    uint64_t cnt = 0;
    for (uint64_t j = 0; j < n; j++)
        cnt += model[j];
    CHECK_EQ(shk_bitset_count(b), cnt);
    shk_bitset_close(b);
    fixture_drop(s, "bs3");
}

TEST(named_errors)
{
    shk_segment *s = fixture_segment("bs4", 0, 0);
    shk_bitset *b;
    CHECK_EQ(shk_bitset_open_named(s, "missing", 0, &b, NULL), SHK_ENOENT);
    CHECK_EQ(shk_bitset_open_named(s, "b", 100, &b, NULL), SHK_OK);
    shk_bitset *b2;
    CHECK_EQ(shk_bitset_open_named(s, "b", 101, &b2, NULL), SHK_EINVAL);
    CHECK_EQ(shk_bitset_open_named(s, "b", 100, &b2, NULL), SHK_OK);
    shk_bitset_close(b2);
    CHECK_EQ(shk_bitset_open_named(s, "x", SHK_BITSET_MAX_BITS + 1, &b2, NULL), SHK_EINVAL);
    uint64_t off;
    CHECK_EQ(shk_bitset_create_in(s, 0, &off), SHK_EINVAL);
    /* another type under that name */
    shk_array *a;
    CHECK_EQ(shk_array_open_named(s, "b", SHK_DT_INT8, 4, &a, NULL), SHK_ETYPE);
    /* a bitset bigger than the segment may grow to */
    shk_segment *small;
    const char *n = check_name("bs4small");
    shk_segment_unlink(n);
    CHECK_EQ(shk_segment_create(n, 0, 4 << 20, 0600, &small), SHK_OK);
    CHECK_EQ(shk_bitset_open_named(small, "big", 1ull << 30, &b2, NULL), SHK_ENOMEM);
    CHECK_EQ(shk_segment_object_count(small), 0);
    shk_segment_close(small);
    shk_segment_unlink(n);
    shk_bitset_close(b);
    fixture_drop(s, "bs4");
}

TEST(validate_header)
{
    shk_segment *s = fixture_segment("bs5", 0, 0);
    shk_bitset *b;
    CHECK_EQ(shk_bitset_open_named(s, "b", 1000, &b, NULL), SHK_OK);
    uint64_t off = shk_bitset_offset(b);
    char *base = shk_segment_base(s);
    uint64_t fs = shk_segment_file_size(s);
    unsigned char hdr[64];
    memcpy(hdr, base + off, 64);
    /* ... and every single-byte change in the meaningful fields is caught */
    fixture_check_validator(&(fixture_header){shk_bitset_validate_header, hdr, 64, off, fs,
                                              63, off + 16, off + 64 + 100, 40});
    /* nbits huge with a matching nwords: rejected by the size bound */
    unsigned char c[64];
    memcpy(c, hdr, 64);
    uint64_t big = UINT64_MAX - 5, bigw = (big / 64) + 1;
    memcpy(c + 16, &big, 8);
    memcpy(c + 24, &bigw, 8);
    CHECK_EQ(shk_bitset_validate_header(c, 64, off, fs), SHK_ECORRUPT);

    /* corrupt the live header: open and check both refuse it */
    shk_bitset *b2;
    uint64_t saved;
    memcpy(&saved, base + off + 16, 8);
    uint64_t bad = 5000;    /* nbits no longer matches nwords */
    memcpy(base + off + 16, &bad, 8);
    CHECK_EQ(shk_bitset_open(s, off, &b2), SHK_ECORRUPT);
    CHECK_EQ(shk_bitset_check(b, NULL), SHK_ECORRUPT);
    memcpy(base + off + 16, &saved, 8);
    CHECK_EQ(shk_bitset_check(b, NULL), SHK_OK);
    /* an offset that is not a bitset, or not the start of a heap block */
    CHECK_EQ(shk_bitset_open(s, off + 64, &b2), SHK_ECORRUPT);
    CHECK_EQ(shk_bitset_open(s, 0, &b2), SHK_ECORRUPT);
    CHECK_EQ(shk_bitset_open(s, UINT64_MAX - 8, &b2), SHK_ECORRUPT);
    /* a stray bit past the end (written through the raw words) */
    uint64_t *w = shk_bitset_words(b);
    w[shk_bitset_nwords(b) - 1] |= 1ull << 63;
    CHECK_EQ(shk_bitset_check(b, NULL), SHK_ECORRUPT);
    CHECK_EQ(shk_bitset_count(b), 0);       /* masked: count does not lie */
    CHECK_EQ(shk_bitset_find_next_set(b, 0), -1);
    w[shk_bitset_nwords(b) - 1] = 0;
    CHECK_EQ(shk_bitset_check(b, NULL), SHK_OK);
    shk_bitset_close(b);
    fixture_drop(s, "bs5");
}

/* N processes hammer the same words: each sets the bits i with i % N == k
 * and flips every bit an even number of times.  Lost updates would show as
 * a wrong count or stray bits. */
TEST(processes_atomic)
{
    shk_segment *s = fixture_fork_segment("bs6", FIXTURE_FORK_MAX);
    shk_bitset *b;
    const uint64_t n = 4096;
    const int P = 4;
    shk_bitset *f;
    CHECK_EQ(shk_bitset_open_named(s, "b", n, &b, NULL), SHK_OK);
    CHECK_EQ(shk_bitset_open_named(s, "f", n, &f, NULL), SHK_OK);
    shk_bitset_close(b);
    shk_bitset_close(f);
    pid_t pids[4];
    char segname[128];
    snprintf(segname, sizeof segname, "%s", check_name("bs6"));  /* pid-based */
    for (int k = 0; k < P; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            shk_segment *cs;
            shk_bitset *cb, *cf;
            if (shk_segment_attach(segname, &cs) != SHK_OK ||
                shk_bitset_open_named(cs, "b", 0, &cb, NULL) != SHK_OK ||
                shk_bitset_open_named(cs, "f", 0, &cf, NULL) != SHK_OK)
                _exit(2);
            int bad = 0;
            for (int round = 0; round < check_scale(50); round++)
                for (uint64_t i = 0; i < n; i++) {
                    if (i % (uint64_t)P == (uint64_t)k && round == 0)
                        bad |= shk_bitset_set(cb, i) != 0;
                    shk_bitset_flip(cf, i);
                    shk_bitset_flip(cf, i);
                }
            shk_bitset_close(cb);
            shk_bitset_close(cf);
            shk_segment_close(cs);
            shk_segment_close(s);   /* the copy inherited from the parent */
            _exit(bad);
        }
    }
    CHECK(check_reap(pids, P));
    shk_bitset *bb, *ff;
    CHECK_EQ(shk_bitset_open_named(s, "b", 0, &bb, NULL), SHK_OK);
    CHECK_EQ(shk_bitset_open_named(s, "f", 0, &ff, NULL), SHK_OK);
    CHECK_EQ(shk_bitset_count(bb), n);
    CHECK_EQ(shk_bitset_all(bb), 1);
    CHECK_EQ(shk_bitset_count(ff), 0);
    CHECK_EQ(shk_bitset_check(bb, NULL), SHK_OK);
    shk_bitset_close(bb);
    shk_bitset_close(ff);
    fixture_drop(s, "bs6");
}

/* A try-lock built from set/clear protects a non-atomic counter across
 * processes: checks the acquire/release contract, not just atomicity. */
TEST(bit_as_lock)
{
    shk_segment *s = fixture_fork_segment("bs7", FIXTURE_FORK_MAX);
    shk_bitset *b;
    CHECK_EQ(shk_bitset_open_named(s, "lock", 8, &b, NULL), SHK_OK);
    uint64_t off;
    CHECK_EQ(shk_freelist_alloc(shk_segment_heap(s), 64, &off), SHK_OK);
    volatile uint64_t *counter = (volatile uint64_t *)(shk_segment_base(s) + off);
    *counter = 0;
    const int P = 3, N = check_scale(20000);
    pid_t pids[3];
    for (int k = 0; k < P; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            for (int r = 0; r < N; r++) {
                while (shk_bitset_set(b, 3) != 0)
                    ;
                uint64_t v = *counter;
                *counter = v + 1;
                shk_bitset_clear(b, 3);
            }
            shk_bitset_close(b);    /* the copies inherited from the parent */
            shk_segment_close(s);
            _exit(0);
        }
    }
    CHECK(check_reap(pids, P));
    CHECK_EQ(*counter, (uint64_t)P * N);
    shk_bitset_close(b);
    fixture_drop(s, "bs7");
}

int main(void)
{
    RUN(single_bit_ops);
    RUN(whole_set_ops);
    RUN(find_model);
    RUN(named_errors);
    RUN(validate_header);
    RUN(processes_atomic);
    RUN(bit_as_lock);
    return check_summary();
}
