/* Unit tests of typed atomic arrays: every dtype's range checks, exchange,
 * compare-and-swap, checked / wrapping / float add, header validation, and
 * atomicity across real processes (fork). */
#include "fixture.h"
#include "internal.h"

#include <float.h>
#include <math.h>
#include <sys/wait.h>


static shk_scalar I(int64_t v) { shk_scalar s; s.i = v; return s; }
static shk_scalar U(uint64_t v) { shk_scalar s; s.u = v; return s; }
static shk_scalar F(double v) { shk_scalar s; s.f = v; return s; }

TEST(dtypes)
{
    CHECK_EQ(shk_dtype_itemsize(SHK_DT_INT8), 1);
    CHECK_EQ(shk_dtype_itemsize(SHK_DT_UINT16), 2);
    CHECK_EQ(shk_dtype_itemsize(SHK_DT_FLOAT32), 4);
    CHECK_EQ(shk_dtype_itemsize(SHK_DT_UINT64), 8);
    CHECK_EQ(shk_dtype_itemsize(0), 0);
    CHECK_EQ(shk_dtype_itemsize(SHK_DT_MAX_), 0);
    CHECK_EQ(shk_dtype_from_name("float64"), SHK_DT_FLOAT64);
    CHECK_EQ(shk_dtype_from_name("int7"), 0);
    CHECK_EQ(shk_dtype_format(SHK_DT_INT64), 'q');
    CHECK(shk_dtype_is_signed(SHK_DT_INT32) && !shk_dtype_is_signed(SHK_DT_UINT32));
    CHECK(shk_dtype_is_float(SHK_DT_FLOAT32) && !shk_dtype_is_float(SHK_DT_INT8));
    for (uint32_t dt = 1; dt < SHK_DT_MAX_; dt++)
        CHECK_EQ(shk_dtype_from_name(shk_dtype_name(dt)), dt);
}

TEST(integer_ranges)
{
    shk_segment *s = fixture_segment("ar1", 0, 0);
    static const struct { uint32_t dt; int64_t lo; uint64_t hi; } R[] = {
        {SHK_DT_INT8, -128, 127},
        {SHK_DT_INT16, -32768, 32767},
        {SHK_DT_INT32, INT32_MIN, INT32_MAX},
        {SHK_DT_INT64, INT64_MIN, INT64_MAX},
        {SHK_DT_UINT8, 0, 255},
        {SHK_DT_UINT16, 0, 65535},
        {SHK_DT_UINT32, 0, UINT32_MAX},
        {SHK_DT_UINT64, 0, UINT64_MAX},
    };
    for (size_t k = 0; k < sizeof R / sizeof R[0]; k++) {
        uint32_t dt = R[k].dt;
        int sg = shk_dtype_is_signed(dt);
        shk_array *a;
        CHECK_EQ(shk_array_open_named(s, shk_dtype_name(dt), dt, 5, &a, NULL), SHK_OK);
        CHECK_EQ(shk_array_length(a), 5);
        CHECK_EQ(shk_array_itemsize(a), shk_dtype_itemsize(dt));
        shk_scalar v;
        CHECK_EQ(shk_array_load(a, 4, &v), SHK_OK);
        CHECK_EQ(v.i, 0);
        CHECK_EQ(shk_array_load(a, 5, &v), SHK_EINVAL);
        shk_scalar lo = sg ? I(R[k].lo) : U(0), hi = sg ? I((int64_t)R[k].hi) : U(R[k].hi);
        CHECK_EQ(shk_array_store(a, 0, lo), SHK_OK);
        CHECK_EQ(shk_array_store(a, 1, hi), SHK_OK);
        CHECK_EQ(shk_array_load(a, 0, &v), SHK_OK);
        CHECK(v.u == lo.u);
        CHECK_EQ(shk_array_load(a, 1, &v), SHK_OK);
        CHECK(v.u == hi.u);
        /* one past either end is refused and changes nothing */
        if (shk_dtype_itemsize(dt) < 8) {
            shk_scalar below = sg ? I(R[k].lo - 1) : I(-1);
            shk_scalar above = sg ? I((int64_t)R[k].hi + 1) : U(R[k].hi + 1);
            if (sg)
                CHECK_EQ(shk_array_store(a, 0, below), SHK_EINVAL);
            CHECK_EQ(shk_array_store(a, 1, above), SHK_EINVAL);
            CHECK_EQ(shk_array_load(a, 0, &v), SHK_OK);
            CHECK(v.u == lo.u);
        }
        CHECK_EQ(shk_array_store(a, 5, lo), SHK_EINVAL);

        /* checked add at the edges */
        shk_scalar prev;
        CHECK_EQ(shk_array_add(a, 1, 1, &prev), SHK_EINVAL);       /* max + 1 */
        CHECK_EQ(shk_array_add(a, 0, -1, &prev), SHK_EINVAL);      /* min - 1 */
        CHECK_EQ(shk_array_add(a, 1, 0, &prev), SHK_OK);
        CHECK(prev.u == hi.u);
        CHECK_EQ(shk_array_add(a, 1, -1, &prev), SHK_OK);
        CHECK_EQ(shk_array_add(a, 1, 1, &prev), SHK_OK);
        CHECK_EQ(shk_array_load(a, 1, &v), SHK_OK);
        CHECK(v.u == hi.u);
        /* the whole range in one step: min + (max - min) = max */
        CHECK_EQ(shk_array_store(a, 2, lo), SHK_OK);
        uint64_t span = hi.u - lo.u;   /* modular = exact, fits uint64 */
        CHECK_EQ(shk_array_add_wide(a, 2, 0, span, &prev), SHK_OK);
        CHECK_EQ(shk_array_load(a, 2, &v), SHK_OK);
        CHECK(v.u == hi.u);
        CHECK_EQ(shk_array_add_wide(a, 2, 1, span, &prev), SHK_OK);
        CHECK_EQ(shk_array_load(a, 2, &v), SHK_OK);
        CHECK(v.u == lo.u);
        CHECK_EQ(shk_array_add_wide(a, 2, 1, 1, &prev), SHK_EINVAL);
        if (span != UINT64_MAX)
            CHECK_EQ(shk_array_add_wide(a, 2, 0, span + 1, &prev), SHK_EINVAL);

        /* wrapping add goes round */
        CHECK_EQ(shk_array_store(a, 3, hi), SHK_OK);
        CHECK_EQ(shk_array_add_wrap(a, 3, 1, &prev), SHK_OK);
        CHECK(prev.u == hi.u);
        CHECK_EQ(shk_array_load(a, 3, &v), SHK_OK);
        CHECK(v.u == lo.u);
        CHECK_EQ(shk_array_add_wrap(a, 3, UINT64_MAX, &prev), SHK_OK);   /* -1 */
        CHECK_EQ(shk_array_load(a, 3, &v), SHK_OK);
        CHECK(v.u == hi.u);

        /* exchange and compare-and-swap */
        CHECK_EQ(shk_array_exchange(a, 4, sg ? I(-5 < R[k].lo ? 0 : -5) : U(7), &prev), SHK_OK);
        CHECK_EQ(prev.i, 0);
        shk_scalar cur;
        CHECK_EQ(shk_array_load(a, 4, &cur), SHK_OK);
        shk_scalar seen;
        CHECK_EQ(shk_array_compare_and_swap(a, 4, U(cur.u + 1), U(1), &seen), 0);
        CHECK(seen.u == cur.u);
        CHECK_EQ(shk_array_compare_and_swap(a, 4, cur, U(1), &seen), 1);
        CHECK(seen.u == cur.u);
        CHECK_EQ(shk_array_load(a, 4, &v), SHK_OK);
        CHECK_EQ(v.i, 1);
        /* an expected value the type cannot hold never matches */
        if (shk_dtype_itemsize(dt) < 8)
            CHECK_EQ(shk_array_compare_and_swap(a, 4, U(R[k].hi + 2), U(2), &seen), 0);
        /* a desired value out of range is an error */
        if (shk_dtype_itemsize(dt) < 8)
            CHECK_EQ(shk_array_compare_and_swap(a, 4, U(1), U(R[k].hi + 1), &seen), SHK_EINVAL);
        CHECK_EQ(shk_array_add_float(a, 0, 1.0, &prev), SHK_EINVAL);
        CHECK_EQ(shk_array_check(a), SHK_OK);
        shk_array_close(a);
    }
    fixture_drop(s, "ar1");
}

TEST(floats)
{
    shk_segment *s = fixture_segment("ar2", 0, 0);
    shk_array *d, *f;
    CHECK_EQ(shk_array_open_named(s, "d", SHK_DT_FLOAT64, 3, &d, NULL), SHK_OK);
    CHECK_EQ(shk_array_open_named(s, "f", SHK_DT_FLOAT32, 3, &f, NULL), SHK_OK);
    shk_scalar v, prev;
    CHECK_EQ(shk_array_store(d, 0, F(0.1)), SHK_OK);
    CHECK_EQ(shk_array_load(d, 0, &v), SHK_OK);
    CHECK(v.f == 0.1);
    CHECK_EQ(shk_array_store(f, 0, F(0.1)), SHK_OK);
    CHECK_EQ(shk_array_load(f, 0, &v), SHK_OK);
    CHECK(v.f == (double)0.1f);
    CHECK_EQ(shk_array_store(f, 1, F(1e300)), SHK_OK);
    CHECK_EQ(shk_array_load(f, 1, &v), SHK_OK);
    CHECK(isinf(v.f) && v.f > 0);
    CHECK_EQ(shk_array_store(f, 1, F(-1e300)), SHK_OK);
    CHECK_EQ(shk_array_load(f, 1, &v), SHK_OK);
    CHECK(isinf(v.f) && v.f < 0);
    CHECK_EQ(shk_array_store(f, 1, F((double)FLT_MAX)), SHK_OK);
    CHECK_EQ(shk_array_load(f, 1, &v), SHK_OK);
    CHECK(v.f == (double)FLT_MAX);
    CHECK_EQ(shk_array_add_float(d, 1, 2.5, &prev), SHK_OK);
    CHECK_EQ(prev.f, 0);
    CHECK_EQ(shk_array_add(d, 1, -1, &prev), SHK_OK);   /* int delta on float */
    CHECK_EQ(shk_array_load(d, 1, &v), SHK_OK);
    CHECK(v.f == 1.5);
    CHECK_EQ(shk_array_add_wrap(d, 1, 1, &prev), SHK_EINVAL);
    CHECK_EQ(shk_array_add_wide(d, 1, 0, 1, &prev), SHK_EINVAL);
    /* compare-and-swap compares bits: -0.0 is not 0.0, NaN matches NaN */
    CHECK_EQ(shk_array_compare_and_swap(d, 2, F(-0.0), F(3.0), &v), 0);
    CHECK_EQ(shk_array_compare_and_swap(d, 2, F(0.0), F(NAN), &v), 1);
    CHECK_EQ(shk_array_compare_and_swap(d, 2, F(NAN), F(4.0), &v), 1);
    CHECK(isnan(v.f));
    /* float32: an expected double it cannot hold never matches */
    CHECK_EQ(shk_array_store(f, 2, F(0.1)), SHK_OK);
    CHECK_EQ(shk_array_compare_and_swap(f, 2, F(0.1), F(1.0), &v), 0);
    CHECK_EQ(shk_array_compare_and_swap(f, 2, F((double)0.1f), F(1.0), &v), 1);
    CHECK_EQ(shk_array_exchange(f, 2, F(2.0), &prev), SHK_OK);
    CHECK(prev.f == 1.0);
    CHECK_EQ(shk_array_check(f), SHK_OK);
    shk_array_close(d);
    shk_array_close(f);
    fixture_drop(s, "ar2");
}

TEST(named_and_validation)
{
    shk_segment *s = fixture_segment("ar3", 0, 0);
    shk_array *a, *b;
    uint64_t off;
    CHECK_EQ(shk_array_open_named(s, "a", 0, 0, &a, NULL), SHK_ENOENT);
    CHECK_EQ(shk_array_open_named(s, "a", 99, 4, &a, NULL), SHK_EINVAL);
    CHECK_EQ(shk_array_create_in(s, SHK_DT_INT8, 0, &off), SHK_EINVAL);
    CHECK_EQ(shk_array_create_in(s, SHK_DT_INT64, SHK_ARRAY_MAX_BYTES / 8 + 1, &off), SHK_EINVAL);
    CHECK_EQ(shk_array_create_in(s, SHK_DT_INT64, UINT64_MAX, &off), SHK_EINVAL);
    int created = -1;
    CHECK_EQ(shk_array_open_named(s, "a", SHK_DT_UINT16, 1000, &a, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_array_open_named(s, "a", 0, 0, &b, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(shk_array_dtype(b), SHK_DT_UINT16);
    CHECK_EQ(shk_array_length(b), 1000);
    CHECK(shk_array_data(a) == shk_array_data(b));
    CHECK_EQ((uintptr_t)shk_array_data(a) % 16, 0);
    shk_array_close(b);
    CHECK_EQ(shk_array_open_named(s, "a", SHK_DT_INT16, 0, &b, NULL), SHK_EINVAL);
    CHECK_EQ(shk_array_open_named(s, "a", SHK_DT_UINT16, 999, &b, NULL), SHK_EINVAL);
    shk_bitset *bs;
    CHECK_EQ(shk_bitset_open_named(s, "a", 10, &bs, NULL), SHK_ETYPE);

    off = shk_array_offset(a);
    char *base = shk_segment_base(s);
    uint64_t fs = shk_segment_file_size(s);
    unsigned char hdr[64];
    memcpy(hdr, base + off, 64);
    fixture_check_validator(&(fixture_header){shk_array_validate_header, hdr, 64, off, fs,
                                              10, off + 1, off + 64 + 1999, 48});
    /* a length and nbytes that agree but overflow */
    unsigned char c[64];
    memcpy(c, hdr, 64);
    uint64_t len = (1ull << 63) + 1, nb = len * 2;
    memcpy(c + 24, &len, 8);
    memcpy(c + 32, &nb, 8);
    CHECK_EQ(shk_array_validate_header(c, 64, off, fs), SHK_ECORRUPT);
    /* corrupt in place: open and check refuse */
    uint32_t dt = 77, saved;
    memcpy(&saved, base + off + 16, 4);
    memcpy(base + off + 16, &dt, 4);
    CHECK_EQ(shk_array_open(s, off, &b), SHK_ECORRUPT);
    CHECK_EQ(shk_array_check(a), SHK_ECORRUPT);
    memcpy(base + off + 16, &saved, 4);
    CHECK_EQ(shk_array_check(a), SHK_OK);
    CHECK_EQ(shk_array_open(s, off + 16, &b), SHK_ECORRUPT);
    CHECK_EQ(shk_array_open(s, UINT64_MAX - 3, &b), SHK_ECORRUPT);
    shk_array_close(a);
    fixture_drop(s, "ar3");
}

/* P processes x N atomic adds on a few shared counters of every width:
 * the sums are exact (lost updates would show).  Also float add via CAS
 * and checked add racing towards the type's maximum: exactly the room
 * left succeeds, the rest is refused. */
TEST(processes_atomic)
{
    shk_segment *s = fixture_fork_segment("ar4", FIXTURE_FORK_MAX);
    char segname[128];
    snprintf(segname, sizeof segname, "%s", check_name("ar4"));
    const uint32_t dts[] = {SHK_DT_INT8, SHK_DT_UINT16, SHK_DT_INT32, SHK_DT_UINT64,
                            SHK_DT_FLOAT64, SHK_DT_FLOAT32};
    const int P = 4, N = check_scale(20000) < 10 ? 10 : check_scale(20000);
    shk_array *h[6];
    for (int k = 0; k < 6; k++)
        CHECK_EQ(shk_array_open_named(s, shk_dtype_name(dts[k]), dts[k], 4, &h[k], NULL), SHK_OK);
    /* int8 slot 1 starts at 100: only 27 checked increments fit */
    CHECK_EQ(shk_array_store(h[0], 1, I(100)), SHK_OK);
    pid_t pids[4];
    for (int p = 0; p < P; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            shk_segment *cs;
            shk_array *a[6];
            if (shk_segment_attach(segname, &cs) != SHK_OK)
                _exit(2);
            for (int k = 0; k < 6; k++)
                if (shk_array_open_named(cs, shk_dtype_name(dts[k]), 0, 0, &a[k], NULL) != SHK_OK)
                    _exit(3);
            int ok8 = 0;
            for (int r = 0; r < N; r++) {
                shk_array_add_wrap(a[0], 0, 1, NULL);   /* wraps mod 256 */
                if (shk_array_add(a[0], 1, 1, NULL) == SHK_OK)
                    ok8++;
                shk_array_add(a[1], 0, 1, NULL);
                shk_array_add(a[2], 0, -1, NULL);
                shk_array_add_wrap(a[3], 0, 3, NULL);
                shk_array_add_float(a[4], 0, 0.5, NULL);
                shk_array_add_float(a[5], 0, 1.0, NULL);
                shk_array_add(a[3], 1, 1, NULL);
            }
            shk_array_add(a[2], 3, ok8, NULL);   /* report how many fitted */
            for (int k = 0; k < 6; k++) {
                shk_array_close(a[k]);
                shk_array_close(h[k]);   /* the copies inherited from the parent */
            }
            shk_segment_close(cs);
            shk_segment_close(s);
            _exit(0);
        }
    }
    CHECK(check_reap(pids, P));
    shk_scalar v;
    shk_array_load(h[0], 0, &v);
    CHECK_EQ(v.i, (int8_t)(uint8_t)((P * N) % 256));
    shk_array_load(h[0], 1, &v);
    CHECK_EQ(v.i, 127);
    shk_array_load(h[2], 3, &v);
    CHECK_EQ(v.i, 27);
    shk_array_load(h[1], 0, &v);
    /* checked adds past the max were refused (80000 at full scale) */
    CHECK_EQ(v.u, P * N > 65535 ? 65535 : P * N);
    shk_array_load(h[2], 0, &v);
    CHECK_EQ(v.i, -(int64_t)P * N);
    shk_array_load(h[3], 0, &v);
    CHECK(v.u == 3ull * P * N);
    shk_array_load(h[3], 1, &v);
    CHECK(v.u == (uint64_t)P * N);
    shk_array_load(h[4], 0, &v);
    CHECK(v.f == 0.5 * P * N);
    shk_array_load(h[5], 0, &v);
    CHECK(v.f == (double)(P * N));              /* exact below 2^24 */
    for (int k = 0; k < 6; k++) {
        CHECK_EQ(shk_array_check(h[k]), SHK_OK);
        shk_array_close(h[k]);
    }
    fixture_drop(s, "ar4");
}

int main(void)
{
    RUN(dtypes);
    RUN(integer_ranges);
    RUN(floats);
    RUN(named_and_validation);
    RUN(processes_atomic);
    return check_summary();
}
