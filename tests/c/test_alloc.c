/* Unit tests of the free-list, bump and slab allocators. */
#include "fixture.h"
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* The tests that do not fork reserve 256 MiB rather than the default
 * 64 GiB: enough for them, and little for valgrind to track.  The tests
 * that fork use fixture_fork_segment. */
#define SEG_MAX (256ull << 20)

static shk_freelist *new_freelist(shk_segment *s, uint64_t cap)
{
    uint64_t off;
    shk_freelist *fl = NULL;
    CHECK_EQ(shk_freelist_create_in(s, cap, &off), SHK_OK);
    CHECK_EQ(shk_freelist_open(s, off, &fl), SHK_OK);
    return fl;
}

TEST(freelist_basic)
{
    shk_segment *s = fixture_segment("fl", 0, SEG_MAX);
    shk_freelist *fl = new_freelist(s, 1 << 20);
    uint64_t avail0 = shk_freelist_available(fl);
    uint64_t a, b, c;
    CHECK_EQ(shk_freelist_alloc(fl, 1, &a), SHK_OK);
    CHECK_EQ(a % 16, 0);
    CHECK(shk_freelist_usable(fl, a) >= 1);
    CHECK_EQ(shk_freelist_alloc(fl, 1000, &b), SHK_OK);
    CHECK(shk_freelist_usable(fl, b) >= 1000);
    CHECK(b >= a + 16);
    CHECK_EQ(shk_freelist_alloc(fl, 0, &c), SHK_EINVAL);
    CHECK_EQ(shk_freelist_free(fl, a), SHK_OK);
    CHECK_EQ(shk_freelist_free(fl, a), SHK_EBADOFF);      /* double free */
    CHECK_EQ(shk_freelist_free(fl, b + 16), SHK_EBADOFF); /* interior */
    CHECK_EQ(shk_freelist_free(fl, 3), SHK_EBADOFF);      /* foreign */
    CHECK_EQ(shk_freelist_free(fl, 1ull << 40), SHK_EBADOFF);
    CHECK_EQ(shk_freelist_alloc(fl, 10, &c), SHK_OK);
    CHECK_EQ(c, a);                                       /* reused */
    CHECK_EQ(shk_freelist_free(fl, c), SHK_OK);
    CHECK_EQ(shk_freelist_free(fl, b), SHK_OK);
    CHECK_EQ(shk_freelist_available(fl), avail0);
    shk_freelist_stats st;
    CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_EQ(st.leaked_blocks + st.abandoned_blocks, 0);
    CHECK(st.free_blocks >= 2);   /* small classes are carved in runs */
    shk_freelist_close(fl);
    fixture_drop(s, "fl");
}

TEST(freelist_out_of_memory_changes_nothing)
{
    shk_segment *s = fixture_segment("oom", 0, SEG_MAX);
    shk_freelist *fl = new_freelist(s, 4096);
    uint64_t off, avail = shk_freelist_available(fl);
    CHECK_EQ(shk_freelist_alloc(fl, 8192, &off), SHK_ENOMEM);
    CHECK_EQ(shk_freelist_available(fl), avail);
    int n = 0;
    while (shk_freelist_alloc(fl, 100, &off) == SHK_OK)
        n++;
    CHECK(n > 20);
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
    shk_freelist_close(fl);
    fixture_drop(s, "oom");
}

TEST(freelist_larger_class_fallback)
{
    /* Memory freed in a large class serves small requests once the
     * untouched region is exhausted. */
    shk_segment *s = fixture_segment("fb", 0, SEG_MAX);
    shk_freelist *fl = new_freelist(s, 8192);
    uint64_t big, off;
    CHECK_EQ(shk_freelist_alloc(fl, 6000, &big), SHK_OK);
    while (shk_freelist_alloc(fl, 16, &off) == SHK_OK)
        ;
    CHECK_EQ(shk_freelist_free(fl, big), SHK_OK);
    CHECK_EQ(shk_freelist_alloc(fl, 16, &off), SHK_OK);
    CHECK_EQ(off, big);
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
    shk_freelist_close(fl);
    fixture_drop(s, "fb");
}

TEST(freelist_stripes_share_memory)
{
    /* A parent frees blocks into its stripe; a forked child (which takes
     * another stripe) must get them once there is no new memory left (here:
     * the allocator is exactly full; 4 runs of 64 blocks of 64 bytes). */
    shk_segment *s = fixture_fork_segment("stripe", 1ull << 20);
    shk_freelist *fl = new_freelist(s, 4 * 64 * 64);
    enum { N = 256 };
    uint64_t offs[N], start, top0, top1;
    for (int i = 0; i < N; i++)
        CHECK_EQ(shk_freelist_alloc(fl, 48, &offs[i]), SHK_OK);
    for (int i = 0; i < N; i++)
        CHECK_EQ(shk_freelist_free(fl, offs[i]), SHK_OK);
    shk_freelist_region(fl, &start, &top0);
    pid_t c = fork();
    if (c == 0) {
        uint64_t off;
        int ok = 1;
        for (int i = 0; i < N; i++)
            ok &= shk_freelist_alloc(fl, 48, &off) == SHK_OK;
        _exit(ok ? 0 : 1);
    }
    int st;
    CHECK_EQ(waitpid(c, &st, 0), c);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    shk_freelist_region(fl, &start, &top1);
    CHECK_EQ(top1, top0);
    shk_freelist_stats fs;
    CHECK_EQ(shk_freelist_check(fl, &fs), SHK_OK);
    CHECK_EQ(fs.live_blocks, N);
    CHECK_EQ(fs.leaked_blocks + fs.abandoned_blocks, 0);
    shk_freelist_close(fl);
    fixture_drop(s, "stripe");
}

TEST(segment_heap_grows)
{
    shk_segment *s = fixture_segment("grow", 0, SEG_MAX);
    shk_freelist *heap = shk_segment_heap(s);
    uint64_t before = shk_segment_file_size(s), off;
    CHECK_EQ(shk_freelist_alloc(heap, 50 << 20, &off), SHK_OK);
    CHECK(shk_segment_file_size(s) > before);
    CHECK(shk_segment_contains(s, off, 50 << 20));
    memset(shk_segment_base(s) + off, 0xab, 50 << 20);
    CHECK_EQ(shk_freelist_free(heap, off), SHK_OK);
    CHECK_EQ(shk_freelist_check(heap, NULL), SHK_OK);
    fixture_drop(s, "grow");
}

TEST(bump)
{
    shk_segment *s = fixture_segment("bump", 0, SEG_MAX);
    uint64_t boff, off, prev = 0;
    shk_bump *b = NULL;
    CHECK_EQ(shk_bump_create_in(s, 1000, &boff), SHK_OK);
    CHECK_EQ(shk_bump_open(s, boff, &b), SHK_OK);
    for (int i = 0; i < 62; i++) {
        CHECK_EQ(shk_bump_alloc(b, 16, &off), SHK_OK);
        CHECK(i == 0 || off == prev + 16);
        prev = off;
    }
    uint64_t avail = shk_bump_available(b);
    CHECK_EQ(shk_bump_alloc(b, 64, &off), SHK_ENOMEM);
    CHECK_EQ(shk_bump_available(b), avail);
    CHECK_EQ(shk_bump_alloc(b, 0, &off), SHK_EINVAL);
    shk_bump_stats st;
    CHECK_EQ(shk_bump_check(b, &st), SHK_OK);
    CHECK_EQ(st.used_bytes, 62 * 16);
    CHECK_EQ(st.used_bytes + st.available_bytes, st.capacity);
    shk_bump_reset(b);
    CHECK_EQ(shk_bump_available(b), shk_bump_capacity(b));
    /* a top that is not a block boundary, then one past the limit */
    _Atomic uint64_t *top = (_Atomic uint64_t *)(shk_segment_base(s) + boff + 64);
    uint64_t good = atomic_load(top);
    atomic_store(top, good + 1);
    CHECK_EQ(shk_bump_check(b, NULL), SHK_ECORRUPT);
    atomic_store(top, UINT64_MAX - 15);
    CHECK_EQ(shk_bump_check(b, NULL), SHK_ECORRUPT);
    atomic_store(top, good);
    CHECK_EQ(shk_bump_check(b, NULL), SHK_OK);
    shk_bump_close(b);
    CHECK_EQ(shk_bump_open(s, boff + 16, &b), SHK_ECORRUPT);
    fixture_drop(s, "bump");
}

TEST(slab)
{
    shk_segment *s = fixture_segment("slab", 0, SEG_MAX);
    uint64_t soff, off[100];
    shk_slab *sl = NULL;
    CHECK_EQ(shk_slab_create_in(s, 24, 70, &soff), SHK_OK);
    CHECK_EQ(shk_slab_open(s, soff, &sl), SHK_OK);
    CHECK_EQ(shk_slab_slot_size(sl), 32);
    for (int i = 0; i < 70; i++)
        CHECK_EQ(shk_slab_alloc(sl, &off[i]), SHK_OK);
    CHECK_EQ(shk_slab_alloc(sl, &off[70]), SHK_ENOMEM);
    CHECK_EQ(shk_slab_available(sl), 0);
    for (int i = 0; i < 70; i++)
        for (int j = i + 1; j < 70; j++)
            CHECK(off[i] != off[j]);
    CHECK_EQ(shk_slab_free(sl, off[5]), SHK_OK);
    CHECK_EQ(shk_slab_free(sl, off[5]), SHK_EBADOFF);
    CHECK_EQ(shk_slab_free(sl, off[5] + 1), SHK_EBADOFF);
    CHECK(!shk_slab_is_live(sl, off[5]));
    CHECK_EQ(shk_slab_alloc(sl, &off[70]), SHK_OK);
    CHECK_EQ(off[70], off[5]);
    CHECK_EQ(shk_slab_free(sl, off[9]), SHK_OK);
    shk_slab_stats st;
    CHECK_EQ(shk_slab_check(sl, &st), SHK_OK);
    CHECK_EQ(st.live_slots, 69);
    CHECK_EQ(st.free_slots, 1);
    CHECK_EQ(st.available_bytes, shk_slab_available(sl));
    /* Corrupt the padding bits of the last bitmap word (slots 70..127 do
     * not exist): alloc must still never hand out a slot past the end. */
    uint64_t start, end;
    shk_slab_region(sl, &start, &end);
    _Atomic uint64_t *last = (_Atomic uint64_t *)(shk_segment_base(s) + start) - 1;
    atomic_store(last, 0);
    CHECK_EQ(shk_slab_check(sl, NULL), SHK_ECORRUPT);
    uint64_t o;
    while (shk_slab_alloc(sl, &o) == SHK_OK)
        CHECK(o >= start && o + 32 <= end);
    shk_slab_close(sl);
    fixture_drop(s, "slab");
}

/* Every allocator opens like every structure: create_in / open / open_named
 * (size 0: open only). */
TEST(allocators_open_named)
{
    shk_segment *s = fixture_segment("named", 0, SEG_MAX);
    shk_freelist *fl = NULL, *fl2 = NULL;
    shk_bump *b = NULL, *b2 = NULL;
    shk_slab *sl = NULL, *sl2 = NULL;
    int created = -1;
    CHECK_EQ(shk_freelist_open_named(s, "f", 0, &fl, NULL), SHK_ENOENT);
    CHECK_EQ(shk_freelist_open_named(s, "f", 4096, &fl, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_freelist_open_named(s, "f", 0, &fl2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(shk_freelist_capacity(fl2), shk_freelist_capacity(fl));
    CHECK_EQ(shk_bump_open_named(s, "f", 100, &b, NULL), SHK_ETYPE);
    CHECK_EQ(shk_bump_open_named(s, "b", 0, &b, NULL), SHK_ENOENT);
    CHECK_EQ(shk_bump_open_named(s, "b", 1000, &b, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_bump_open_named(s, "b", 5, &b2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(shk_bump_capacity(b2), shk_bump_capacity(b));
    CHECK_EQ(shk_slab_open_named(s, "s", 64, 0, &sl, NULL), SHK_ENOENT);
    CHECK_EQ(shk_slab_open_named(s, "s", 64, 10, &sl, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_slab_open_named(s, "s", 0, 0, &sl2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(shk_slab_slot_count(sl2), 10);
    shk_freelist_close(fl);
    shk_freelist_close(fl2);
    shk_bump_close(b);
    shk_bump_close(b2);
    shk_slab_close(sl);
    shk_slab_close(sl2);
    fixture_drop(s, "named");
}

/* ---- concurrency: threads and processes hammering one free list ---- */

typedef struct {
    shk_freelist *fl;
    int seed;
    int iters;
    int errors;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    char *base = shk_segment_base(shk_freelist_segment(w->fl));
    uint64_t live[64] = {0};
    uint32_t sizes[64] = {0};
    unsigned seed = (unsigned)w->seed;
    for (int i = 0; i < w->iters; i++) {
        int k = (int)(rand_r(&seed) % 64);
        if (live[k]) {
            unsigned char *q = (unsigned char *)base + live[k];
            for (uint32_t j = 0; j < sizes[k]; j++)
                if (q[j] != (unsigned char)(w->seed + k))
                    w->errors++;
            if (shk_freelist_free(w->fl, live[k]) != SHK_OK)
                w->errors++;
            live[k] = 0;
        } else {
            uint32_t n = 1 + rand_r(&seed) % 700;
            if (shk_freelist_alloc(w->fl, n, &live[k]) != SHK_OK) {
                live[k] = 0;
                continue;
            }
            sizes[k] = n;
            memset(base + live[k], w->seed + k, n);
        }
    }
    for (int k = 0; k < 64; k++)
        if (live[k] && shk_freelist_free(w->fl, live[k]) != SHK_OK)
            w->errors++;
    return NULL;
}

TEST(freelist_threads)
{
    shk_segment *s = fixture_segment("thr", 0, SEG_MAX);
    shk_freelist *fl = new_freelist(s, 16 << 20);
    uint64_t avail = shk_freelist_available(fl);
    pthread_t t[4];
    worker_arg w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_arg){fl, 17 + i * 31, check_scale(200000), 0};
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(w[i].errors, 0);
    }
    CHECK_EQ(shk_freelist_available(fl), avail);
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
    shk_freelist_close(fl);
    fixture_drop(s, "thr");
}

TEST(freelist_processes)
{
    shk_segment *s = fixture_fork_segment("proc", 32ull << 20);
    shk_freelist *fl = new_freelist(s, 16 << 20);
    uint64_t avail = shk_freelist_available(fl);
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            worker_arg w = {fl, 5 + i * 13, check_scale(50000), 0};
            worker(&w);
            _exit(w.errors ? 1 : 0);
        }
    }
    CHECK(check_reap(pids, 4));
    CHECK_EQ(shk_freelist_available(fl), avail);
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
    shk_freelist_close(fl);
    fixture_drop(s, "proc");
}

/* Wait for a child armed at a crash point; it must have died there, and the
 * free list must still check.  The check's statistics go to *stats. */
static void expect_killed(pid_t pid, shk_freelist *fl, shk_freelist_stats *stats)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_EQ(shk_freelist_check(fl, stats), SHK_OK);
}

/* A child killed at each crash point of the free list leaves it usable and
 * checkable: the block in flight is reported leaked or abandoned (for a
 * carve, the whole run it was carving). */
TEST(freelist_crash_points)
{
    const char *points[] = {"freelist.carve", "freelist.pop", "freelist.free"};
    for (int p = 0; p < 3; p++) {
        shk_segment *s = fixture_fork_segment("crash", 2ull << 20);
        shk_freelist *fl = new_freelist(s, 1 << 20);
        uint64_t keep, tmp;
        CHECK_EQ(shk_freelist_alloc(fl, 40, &keep), SHK_OK);
        CHECK_EQ(shk_freelist_alloc(fl, 40, &tmp), SHK_OK);
        CHECK_EQ(shk_freelist_free(fl, tmp), SHK_OK);
        char name[128];
        snprintf(name, sizeof name, "%s", check_name("crash"));
        pid_t pid = fork();
        if (pid == 0) {
            shk_crash_arm(points[p]);
            shk_segment *mine;   /* attach anew, as an unrelated process */
            if (shk_segment_attach(name, &mine) != SHK_OK)
                _exit(3);
            uint64_t o;
            if (p == 2) {
                shk_freelist_free(fl, keep);    /* dies inside free */
            } else if (p == 1) {
                shk_freelist_alloc(fl, 40, &o);  /* a new run for our stripe */
                shk_freelist_free(fl, o);
                shk_freelist_alloc(fl, 40, &o);  /* dies popping it again */
            } else {
                shk_freelist_alloc(fl, 300, &o); /* dies carving a new run */
            }
            _exit(0);
        }
        shk_freelist_stats stats;
        expect_killed(pid, fl, &stats);
        uint64_t lost = stats.leaked_blocks + stats.abandoned_blocks;
        if (p == 0)
            CHECK(lost >= 1 && lost <= 64);
        else
            CHECK_EQ(lost, 1);
        /* Still fully usable by the survivors. */
        uint64_t o[100];
        for (int i = 0; i < 100; i++)
            CHECK_EQ(shk_freelist_alloc(fl, 40, &o[i]), SHK_OK);
        for (int i = 0; i < 100; i++)
            CHECK_EQ(shk_freelist_free(fl, o[i]), SHK_OK);
        CHECK_EQ(shk_freelist_check(fl, &stats), SHK_OK);
        shk_freelist_close(fl);
        fixture_drop(s, "crash");
    }
}

/* A child killed while moving another stripe's list to its own leaks that
 * list (reported), and the allocator stays usable and checkable. */
TEST(freelist_crash_while_stealing)
{
    shk_segment *s = fixture_fork_segment("steal", 1ull << 20);
    shk_freelist *fl = new_freelist(s, 64 * 64);   /* exactly one run */
    uint64_t offs[64];
    for (int i = 0; i < 64; i++)
        CHECK_EQ(shk_freelist_alloc(fl, 48, &offs[i]), SHK_OK);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(shk_freelist_free(fl, offs[i]), SHK_OK);
    pid_t pid = fork();
    if (pid == 0) {
        shk_crash_arm("freelist.steal");
        uint64_t o;
        shk_freelist_alloc(fl, 48, &o);   /* full: must take the parent's list */
        _exit(0);
    }
    shk_freelist_stats stats;
    expect_killed(pid, fl, &stats);
    CHECK_EQ(stats.leaked_blocks, 64);
    CHECK_EQ(stats.live_blocks, 0);
    uint64_t o;
    CHECK_EQ(shk_freelist_alloc(fl, 48, &o), SHK_ENOMEM);   /* leaked, not lost silently */
    CHECK_EQ(shk_freelist_alloc(fl, 16, &o), SHK_ENOMEM);
    shk_freelist_close(fl);
    fixture_drop(s, "steal");
}

int main(void)
{
    RUN(freelist_crash_points);
    RUN(freelist_basic);
    RUN(freelist_out_of_memory_changes_nothing);
    RUN(freelist_larger_class_fallback);
    RUN(freelist_stripes_share_memory);
    RUN(freelist_crash_while_stealing);
    RUN(segment_heap_grows);
    RUN(bump);
    RUN(slab);
    RUN(allocators_open_named);
    RUN(freelist_threads);
    RUN(freelist_processes);
    return check_summary();
}
