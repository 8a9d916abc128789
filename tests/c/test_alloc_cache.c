/* Tests of the free list's per-process caches (src/alloc_cache.c): many
 * processes allocating and freeing (each block's bytes checked for a second
 * owner), processes killed holding cached blocks or in the middle of an
 * operation (their blocks come back), fork, and a corrupt cache. */
#include "fixture.h"
#include "internal.h"
#include "heap_internal.h"
#include "lfstack.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPROC 16
#define HELD 48           /* blocks a worker holds at once */
#define SEG_BYTES (16ull << 20)

/* Bookkeeping shared with the workers, outside the segment. */
typedef struct board {
    _Atomic uint64_t held[NPROC][HELD];   /* a worker's live blocks, 0: none */
    _Atomic int bad;                       /* a worker saw another's bytes */
    _Atomic int ready;
} board;

static board *board_new(void)
{
    board *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(b != MAP_FAILED);
    memset(b, 0, sizeof *b);
    return b;
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Mostly cached classes (up to 1 KiB), sometimes a larger one. */
static uint64_t some_size(uint64_t *x)
{
    uint64_t r = rnd(x);
    return r % 16 == 0 ? 1100 + r % 3000 : 1 + r % 1000;
}

static int bytes_are(const char *p, uint64_t n, unsigned char v)
{
    for (uint64_t i = 0; i < n; i++)
        if ((unsigned char)p[i] != v)
            return 0;
    return 1;
}

/* Worker i: allocate and free at random, HELD blocks at a time, each
 * filled with the worker's byte and checked before it is freed (a block
 * handed to two processes at once shows the other's byte).  iters < 0: run
 * until killed. */
static void worker(shk_segment *seg, board *bd, int i, long iters)
{
    shk_freelist *fl = shk_segment_heap(seg);
    char *base = shk_segment_base(seg);
    unsigned char tag = (unsigned char)(i + 1);
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    for (long it = 0; iters < 0 || it < iters; it++) {
        unsigned j = (unsigned)(rnd(&x) % HELD);
        /* relaxed: the board is read by the parent only after we stop */
        uint64_t off = atomic_load_explicit(&bd->held[i][j], memory_order_relaxed);
        if (off) {
            uint64_t n = shk_freelist_usable(fl, off);
            if (n == 0 || !bytes_are(base + off, n, tag))
                atomic_store(&bd->bad, 1);
            atomic_store_explicit(&bd->held[i][j], 0, memory_order_relaxed);
            if (shk_freelist_free(fl, off) != SHK_OK)
                atomic_store(&bd->bad, 2);
        } else {
            uint64_t n = some_size(&x);
            if (shk_freelist_alloc(fl, n, &off) != SHK_OK) {
                atomic_store(&bd->bad, 3);
                continue;
            }
            memset(base + off, tag, shk_freelist_usable(fl, off));
            atomic_store_explicit(&bd->held[i][j], off, memory_order_relaxed);
        }
    }
}

/* Free what the workers' boards still record (the parent's handle, its
 * cache off so the blocks go straight to the shared lists). */
static void free_recorded(shk_freelist *fl, board *bd)
{
    for (int i = 0; i < NPROC; i++)
        for (int j = 0; j < HELD; j++) {
            uint64_t off = atomic_load(&bd->held[i][j]);
            if (off)
                CHECK_EQ(shk_freelist_free(fl, off), SHK_OK);
        }
}

/* 16 processes (on however many cores) allocate and free; no block is
 * ever handed to two at once, and when they have exited without closing,
 * their caches come back: nothing is live, leaked or cached. */
TEST(cache_many_processes)
{
    shk_segment *s = fixture_fork_segment("many", SEG_BYTES);
    shk_freelist *fl = shk_segment_heap(s);
    board *bd = board_new();
    uint64_t avail0 = shk_freelist_available(fl);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            worker(s, bd, i, check_scale(20000));
            /* give back the blocks still held, leave the cache as it is
             * (exit without close: a dead owner's cache) */
            for (int j = 0; j < HELD; j++) {
                uint64_t off = atomic_load(&bd->held[i][j]);
                if (off && shk_freelist_free(fl, off) != SHK_OK)
                    _exit(4);
                atomic_store(&bd->held[i][j], 0);
            }
            _exit(atomic_load(&bd->bad));
        }
    }
    CHECK(check_reap(pids, NPROC));
    CHECK_EQ(atomic_load(&bd->bad), 0);
    shk_freelist_stats st;
    CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_EQ(st.leaked_blocks + st.abandoned_blocks, 0);
    CHECK(st.cached_blocks > 0);   /* the dead workers' caches */
    CHECK_EQ(shk_freelist_available(fl), avail0);
    uint64_t back = 0;
    CHECK_EQ(shk_freelist_reclaim(fl, &back), SHK_OK);
    CHECK_EQ(back, st.cached_blocks);
    CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
    CHECK_EQ(st.cached_blocks, 0);
    CHECK_EQ(st.live_blocks + st.leaked_blocks + st.abandoned_blocks, 0);
    CHECK_EQ(st.free_list_bytes + st.untouched_bytes, st.capacity);
    CHECK_EQ(shk_freelist_available(fl), avail0);
    munmap(bd, sizeof *bd);
    fixture_drop(s, "many");
}

/* Workers SIGKILLed at random instants, mid-operation, one after another.
 * Then: what their boards record is freed, dead caches reclaimed, and
 * every block is accounted for: none cached, at most one live per kill
 * (allocated, not yet recorded, or unrecorded, not yet freed), at most one
 * batch leaked per kill (moving between a cache and the shared lists). */
TEST(cache_crash_torture)
{
    for (int round = 0; round < check_scale(3); round++) {
        shk_segment *s = fixture_fork_segment("torture", SEG_BYTES);
        shk_freelist *fl = shk_segment_heap(s);
        board *bd = board_new();
        pid_t pids[NPROC];
        for (int i = 0; i < NPROC; i++) {
            pids[i] = fork();
            if (pids[i] == 0) {
                atomic_fetch_add(&bd->ready, 1);
                worker(s, bd, i, -1);
                _exit(0);
            }
        }
        shk_freelist_cache_enable(fl, 0);
        while (atomic_load(&bd->ready) < NPROC)
            usleep(1000);
        uint64_t x = (uint64_t)time(NULL) * 2654435761u + (uint64_t)round + 1;
        for (int i = 0; i < NPROC; i++) {
            usleep((useconds_t)(2000 + rnd(&x) % 20000));
            kill(pids[i], SIGKILL);
            int st;
            CHECK_EQ(waitpid(pids[i], &st, 0), pids[i]);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
            /* a check between kills, with the others running */
            CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
        }
        CHECK_EQ(atomic_load(&bd->bad), 0);
        free_recorded(fl, bd);
        uint64_t back = 0;
        CHECK_EQ(shk_freelist_reclaim(fl, &back), SHK_OK);
        shk_freelist_stats st;
        CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
        CHECK_EQ(st.cached_blocks, 0);
        CHECK(st.live_blocks <= NPROC);
        CHECK(st.leaked_blocks <= NPROC * 128);
        /* the survivors' view: everything not live or leaked is usable */
        shk_freelist_cache_enable(fl, 1);
        uint64_t off;
        for (int i = 0; i < 1000; i++) {
            CHECK_EQ(shk_freelist_alloc(fl, 64, &off), SHK_OK);
            CHECK_EQ(shk_freelist_free(fl, off), SHK_OK);
        }
        CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
        munmap(bd, sizeof *bd);
        fixture_drop(s, "torture");
    }
}

/* Workers killed while idle, holding full caches: every cached block is
 * counted as cached (not leaked) and comes back, exactly, whether by
 * shk_freelist_reclaim or by shk_segment_check. */
TEST(cache_killed_idle_nothing_lost)
{
    for (int via_segment = 0; via_segment < 2; via_segment++) {
        shk_segment *s = fixture_fork_segment("idle", SEG_BYTES);
        shk_freelist *fl = shk_segment_heap(s);
        board *bd = board_new();
        pid_t pids[NPROC];
        for (int i = 0; i < NPROC; i++) {
            pids[i] = fork();
            if (pids[i] == 0) {
                uint64_t o[300];
                for (int k = 0; k < 300; k++)
                    if (shk_freelist_alloc(fl, 1 + (uint64_t)(k % 5) * 100, &o[k]) != SHK_OK)
                        _exit(1);
                for (int k = 0; k < 300; k++)
                    if (shk_freelist_free(fl, o[k]) != SHK_OK)
                        _exit(2);
                atomic_fetch_add(&bd->ready, 1);
                pause();
                _exit(0);
            }
        }
        while (atomic_load(&bd->ready) < NPROC)
            usleep(1000);
        for (int i = 0; i < NPROC; i++)
            kill(pids[i], SIGKILL);
        for (int i = 0; i < NPROC; i++)
            CHECK_EQ(waitpid(pids[i], NULL, 0), pids[i]);
        shk_freelist_stats st;
        CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
        CHECK(st.cached_blocks >= NPROC * 5);
        CHECK_EQ(st.live_blocks + st.leaked_blocks + st.abandoned_blocks, 0);
        uint64_t cached = st.cached_blocks, free0 = st.free_blocks, back = 0;
        if (via_segment)
            CHECK_EQ(shk_segment_check(s), SHK_OK);
        else
            CHECK_EQ(shk_freelist_reclaim(fl, &back), SHK_OK);
        CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
        CHECK_EQ(st.cached_blocks, 0);
        CHECK_EQ(st.free_blocks, free0 + cached);
        if (!via_segment)
            CHECK_EQ(back, cached);
        CHECK_EQ(st.live_blocks + st.leaked_blocks + st.abandoned_blocks, 0);
        munmap(bd, sizeof *bd);
        fixture_drop(s, "idle");
    }
}

/* A process killed at each crash point of the cache leaves the heap
 * checkable and usable; what it had cached comes back, and what was in
 * flight is reported, never lost silently. */
TEST(cache_crash_points)
{
    const char *points[] = {"freelist.cache_free", "freelist.cache_alloc",
                            "freelist.cache_flush", "freelist.refill",
                            "freelist.cache_drain"};
    for (int p = 0; p < 5; p++) {
        shk_segment *s = fixture_fork_segment("points", SEG_BYTES);
        shk_freelist *fl = shk_segment_heap(s);
        uint64_t seed;
        /* a list the child's refill (point 3) will take from */
        CHECK_EQ(shk_freelist_alloc(fl, 64, &seed), SHK_OK);
        shk_freelist_cache_enable(fl, 0);
        CHECK_EQ(shk_freelist_free(fl, seed), SHK_OK);
        shk_freelist_cache_enable(fl, 1);
        pid_t pid = fork();
        if (pid == 0) {
            uint64_t o[200];
            if (p == 3) {
                /* a refill from our stripe's list: a carved run cached,
                 * then drained onto our list, then taken again */
                shk_freelist_alloc(fl, 64, &o[0]);
                shk_freelist_cache_enable(fl, 0);
                shk_freelist_cache_enable(fl, 1);
                shk_crash_arm(points[p]);
                for (int k = 1; k < 200; k++)
                    shk_freelist_alloc(fl, 64, &o[k]);
                _exit(0);
            }
            for (int k = 0; k < 200; k++)
                shk_freelist_alloc(fl, 64, &o[k]);
            shk_crash_arm(points[p]);
            for (int k = 0; k < 200; k++)
                shk_freelist_free(fl, o[k]);    /* free, flush */
            for (int k = 0; k < 200; k++)
                shk_freelist_alloc(fl, 64, &o[k]);   /* alloc */
            shk_freelist_close(fl);              /* drain */
            _exit(0);
        }
        int st;
        CHECK_EQ(waitpid(pid, &st, 0), pid);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            printf("not killed at %s\n", points[p]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        shk_freelist_stats fs;
        CHECK_EQ(shk_freelist_check(fl, &fs), SHK_OK);
        CHECK_EQ(shk_freelist_reclaim(fl, NULL), SHK_OK);
        CHECK_EQ(shk_freelist_check(fl, &fs), SHK_OK);
        CHECK_EQ(fs.cached_blocks, 0);
        CHECK(fs.leaked_blocks <= 128);
        if (p == 0 || p == 1)
            CHECK_EQ(fs.leaked_blocks, 1);
        uint64_t o[300];
        for (int k = 0; k < 300; k++)
            CHECK_EQ(shk_freelist_alloc(fl, 64, &o[k]), SHK_OK);
        for (int k = 0; k < 300; k++)
            CHECK_EQ(shk_freelist_free(fl, o[k]), SHK_OK);
        CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
        fixture_drop(s, "points");
    }
}

/* Threads of one process share its cache (its lock): no block to two
 * threads at once, and everything accounted for afterwards. */
typedef struct thread_arg {
    shk_segment *seg;
    board *bd;
    int i;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    worker(a->seg, a->bd, a->i, check_scale(20000));
    return NULL;
}

TEST(cache_threads_share_slot)
{
    shk_segment *s = fixture_fork_segment("threads", SEG_BYTES);
    shk_freelist *fl = shk_segment_heap(s);
    board *bd = board_new();
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){s, bd, i};
        CHECK_EQ(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&bd->bad), 0);
    free_recorded(fl, bd);
    shk_freelist_stats st;
    CHECK_EQ(shk_freelist_check(fl, &st), SHK_OK);
    CHECK_EQ(st.live_blocks + st.leaked_blocks + st.abandoned_blocks, 0);
    CHECK(st.cached_blocks > 0);
    munmap(bd, sizeof *bd);
    fixture_drop(s, "threads");
}

/* The segment heap of a new segment `tag`, with one 64-byte block
 * allocated and freed (so in this process's cache): its offset in *a. */
static shk_freelist *heap_with_cached_block(const char *tag, shk_segment **s, uint64_t *a)
{
    *s = fixture_fork_segment(tag, SEG_BYTES);
    shk_freelist *fl = shk_segment_heap(*s);
    CHECK_EQ(shk_freelist_alloc(fl, 64, a), SHK_OK);
    CHECK_EQ(shk_freelist_free(fl, *a), SHK_OK);
    return fl;
}

/* A forked child takes a cache of its own: it never gets the block its
 * parent cached, and the parent's cache is whole after the child dies. */
TEST(cache_fork_takes_own_slot)
{
    shk_segment *s;
    uint64_t a, b;
    shk_freelist *fl = heap_with_cached_block("fork", &s, &a);   /* a: ours */
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t o;
        if (shk_freelist_alloc(fl, 64, &o) != SHK_OK || o == a)
            _exit(1);
        _exit(0);
    }
    CHECK(check_reap(&pid, 1));
    CHECK_EQ(shk_freelist_alloc(fl, 64, &b), SHK_OK);
    CHECK_EQ(b, a);                                /* still in our cache */
    CHECK_EQ(shk_freelist_free(fl, b), SHK_OK);
    CHECK_EQ(shk_freelist_free(fl, b), SHK_EBADOFF);   /* double free */
    fixture_drop(s, "fork");
}

/* A cache list that names a block outside the heap, or a block that is not
 * cached, is corruption: check() and the owner's next allocation say so. */
TEST(cache_corrupt_list)
{
    shk_segment *s;
    uint64_t a, b;
    shk_freelist *fl = heap_with_cached_block("corrupt", &s, &a);
    /* find the cache list whose head names a's header */
    shk_fl_common *m = (shk_fl_common *)fl;
    _Atomic uint64_t *head = NULL;
    for (uint64_t i = 0; i < SHK_CACHE_TABLE_BYTES / 8; i++) {
        _Atomic uint64_t *w = (_Atomic uint64_t *)(m->table + i * 8);
        if (shk_lf_off(atomic_load(w)) == a - SHK_FL_BLOCK_HDR) {
            head = w;
            break;
        }
    }
    CHECK(head != NULL);
    if (!head)
        return;
    uint64_t saved = atomic_load(head);
    atomic_store(head, shk_lf_pack(shk_lf_tag(saved) + 1, 1ull << 34));
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_ECORRUPT);
    CHECK_EQ(shk_freelist_alloc(fl, 64, &b), SHK_ECORRUPT);
    atomic_store(head, saved);
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
    /* a LIVE block on the list */
    CHECK_EQ(shk_freelist_alloc(fl, 64, &b), SHK_OK);
    atomic_store(head, shk_lf_pack(shk_lf_tag(saved) + 2, b - SHK_FL_BLOCK_HDR));
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_ECORRUPT);
    atomic_store(head, shk_lf_pack(shk_lf_tag(saved) + 3, 0));
    CHECK_EQ(shk_freelist_check(fl, NULL), SHK_OK);
    fixture_drop(s, "corrupt");
}

int main(void)
{
    RUN(cache_fork_takes_own_slot);
    RUN(cache_corrupt_list);
    RUN(cache_threads_share_slot);
    RUN(cache_killed_idle_nothing_lost);
    RUN(cache_crash_points);
    RUN(cache_many_processes);
    RUN(cache_crash_torture);
    return check_summary();
}
