/* Unit tests of the sharded counter: exact sums from 16 forked processes,
 * no committed add lost to SIGKILL, a forked child on its own cell, cells
 * of dead processes reclaimed (their values kept), concurrent reset losing
 * nothing, and corrupt headers / owner words refused. */
#include "fixture.h"
#include "internal.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

TEST(basic)
{
    shk_segment *s = fixture_segment("ct1", 0, 0);
    shk_counter *c, *c2;
    int created = -1;
    CHECK_EQ(shk_counter_open_named(s, "c", 0, &c, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_counter_ncells(c), SHK_COUNTER_DEFAULT_CELLS);
    CHECK_EQ(shk_counter_value(c), 0);
    shk_counter_stats st;
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK_EQ(st.claimed, 0);            /* opening claims nothing */
    CHECK_EQ(st.mine, -1);
    shk_counter_add(c, 5);
    shk_counter_add(c, -2);
    CHECK_EQ(shk_counter_value(c), 3);
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK_EQ(st.claimed, 1);
    CHECK_EQ(st.live, 1);
    CHECK(st.mine >= 0);
    CHECK_EQ(st.value, 3);
    /* a second handle of the same process adds to the same cell */
    CHECK_EQ(shk_counter_open_named(s, "c", 4, &c2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(shk_counter_ncells(c2), SHK_COUNTER_DEFAULT_CELLS);  /* keeps its own */
    shk_counter_add(c2, 10);
    shk_counter_stats st2;
    CHECK_EQ(shk_counter_check(c2, &st2), SHK_OK);
    CHECK_EQ(st2.claimed, 1);
    CHECK_EQ(st2.mine, st.mine);
    CHECK_EQ(shk_counter_value(c), 13);
    /* wrap-around is modulo 2^64, not UB */
    shk_counter_add(c, INT64_MAX);
    shk_counter_add(c, INT64_MAX);
    CHECK_EQ(shk_counter_value(c), 11);   /* 13 + 2^64 - 2 */
    CHECK_EQ(shk_counter_reset(c), 11);
    CHECK_EQ(shk_counter_value(c2), 0);
    shk_counter_close(c2);
    shk_counter_close(c);

    /* names and arguments */
    CHECK_EQ(shk_counter_attach_named(s, "missing", &c), SHK_ENOENT);
    CHECK_EQ(shk_counter_open_named(s, "x", 3, &c, NULL), SHK_EINVAL);
    CHECK_EQ(shk_counter_open_named(s, "x", SHK_COUNTER_MAX_CELLS * 2, &c, NULL), SHK_EINVAL);
    CHECK_EQ(shk_segment_object_count(s), 1);
    shk_bitset *b;
    CHECK_EQ(shk_bitset_open_named(s, "c", 10, &b, NULL), SHK_ETYPE);
    CHECK_EQ(shk_bitset_open_named(s, "b", 10, &b, NULL), SHK_OK);
    CHECK_EQ(shk_counter_attach_named(s, "b", &c), SHK_ETYPE);
    shk_bitset_close(b);
    CHECK_EQ(shk_counter_open_named(s, "one", 1, &c, NULL), SHK_OK);
    shk_counter_add(c, 1);
    CHECK_EQ(shk_counter_value(c), 1);
    shk_counter_close(c);
    fixture_drop(s, "ct1");
}

/* Children that must all be alive at once (so that none is reaped, and its
 * cell rightly reclaimed, before the last has claimed one) add, say so on
 * `ready` (one byte) and live until the hold pipe's write end closes. */
typedef struct {
    int hold_r, hold_w, ready_w;
} hold_pipes;

static int hold_open(hold_pipes *h, int ready[2])
{
    int p[2];
    if (pipe(p) != 0 || pipe(ready) != 0)
        return -1;
    *h = (hold_pipes){p[0], p[1], ready[1]};
    return 0;
}

/* Wait until n children of h said they hold their cells. */
static int hold_ready(int ready_r, int n)
{
    char x;
    for (int i = 0; i < n; i++)
        if (read(ready_r, &x, 1) != 1)
            return -1;
    return 0;
}

static void hold_release(hold_pipes *h, int ready[2])
{
    close(h->hold_r);
    close(h->hold_w);
    close(ready[0]);
    close(ready[1]);
}

/* In a child that added: with hold pipes, say so and hold until released. */
static void child_hold(const hold_pipes *h)
{
    if (!h)
        return;
    close(h->hold_w);
    if (write(h->ready_w, "r", 1) != 1)
        _exit(1);
    char x;
    while (read(h->hold_r, &x, 1) > 0)
        ;
}

/* Fork P children that each add -1, 3, -1, 3, ... (n adds, or n adds of 1
 * with ones != 0) to c, hold if h is given, and exit. */
static void fork_adders(shk_counter *c, pid_t *pids, int P, int n, int ones,
                        const hold_pipes *h)
{
    for (int p = 0; p < P; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            for (int i = 0; i < n; i++)
                shk_counter_add(c, ones ? 1 : (i & 1) ? 3 : -1);
            child_hold(h);
            _exit(0);
        }
    }
}

/* 16 processes add exactly; each has a cell of its own. */
TEST(processes_exact)
{
    shk_segment *s = fixture_fork_segment("ct2", FIXTURE_FORK_MAX);
    shk_counter *c;
    CHECK_EQ(shk_counter_open_named(s, "c", 0, &c, NULL), SHK_OK);
    enum { P = 16 };
    const int N = check_scale(50000);
    pid_t pids[P];
    hold_pipes h;
    int ready[2];
    CHECK_EQ(hold_open(&h, ready), 0);
    fork_adders(c, pids, P, N, 0, &h);
    CHECK_EQ(hold_ready(ready[0], P), 0);
    hold_release(&h, ready);
    CHECK(check_reap(pids, P));
    long long expect = 0;
    for (int i = 0; i < N; i++)
        expect += (i & 1) ? 3 : -1;
    CHECK_EQ(shk_counter_value(c), P * expect);
    shk_counter_stats st;
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK_EQ(st.claimed, P);            /* 16 cells: nobody shared */
    CHECK_EQ(st.live, 0);               /* all reaped */
    shk_counter_close(c);
    fixture_drop(s, "ct2");
}

/* A forked child inherits a handle that has a cell; its first add claims
 * a cell of its own instead of the parent's. */
TEST(fork_child_own_cell)
{
    shk_segment *s = fixture_fork_segment("ct3", FIXTURE_FORK_MAX);
    shk_counter *c;
    CHECK_EQ(shk_counter_open_named(s, "c", 0, &c, NULL), SHK_OK);
    shk_counter_add(c, 1);
    shk_counter_stats st;
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    pid_t pid = fork();
    if (pid == 0) {
        shk_counter_stats cs;
        /* before its first add the child owns nothing */
        int ok = shk_counter_check(c, &cs) == SHK_OK && cs.mine == -1;
        shk_counter_add(c, 1);
        ok &= shk_counter_check(c, &cs) == SHK_OK && cs.mine >= 0 && cs.mine != st.mine &&
              cs.claimed == 2;
        _exit(ok ? 0 : 1);
    }
    CHECK(check_reap(&pid, 1));
    CHECK_EQ(shk_counter_value(c), 2);
    shk_counter_add(c, 1);              /* the parent keeps its cell */
    shk_counter_stats st2;
    CHECK_EQ(shk_counter_check(c, &st2), SHK_OK);
    CHECK_EQ(st2.mine, st.mine);
    CHECK_EQ(st2.value, 3);
    shk_counter_close(c);
    fixture_drop(s, "ct3");
}

/* Adders killed with SIGKILL mid-run: every add they committed is there,
 * at most the one in flight more. */
TEST(sigkill_loses_nothing)
{
    shk_segment *s = fixture_fork_segment("ct4", FIXTURE_FORK_MAX);
    shk_counter *c;
    CHECK_EQ(shk_counter_open_named(s, "c", 0, &c, NULL), SHK_OK);
    enum { P = 6 };
    /* committed[p]: adds child p completed (written after each add) */
    _Atomic int64_t *committed = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(committed != MAP_FAILED);
    pid_t pids[P];
    for (int p = 0; p < P; p++) {
        atomic_store(&committed[p], 0);
        pids[p] = fork();
        if (pids[p] == 0) {
            for (int64_t i = 1;; i++) {
                shk_counter_add(c, 1);
                atomic_store_explicit(&committed[p], i, memory_order_release);
            }
        }
    }
    /* let every child commit some adds, then kill them mid-run */
    for (int p = 0; p < P; p++)
        while (atomic_load(&committed[p]) < 1000)
            usleep(1000);
    for (int p = 0; p < P; p++)
        kill(pids[p], SIGKILL);
    int64_t sum = 0;
    for (int p = 0; p < P; p++) {
        int st;
        waitpid(pids[p], &st, 0);
        CHECK(WIFSIGNALED(st));
        sum += atomic_load(&committed[p]);
    }
    int64_t v = shk_counter_value(c);
    CHECK(v >= sum && v <= sum + P);
    shk_counter_stats st;
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK_EQ(st.claimed, P);
    CHECK_EQ(st.live, 0);
    munmap((void *)committed, 4096);
    shk_counter_close(c);
    fixture_drop(s, "ct4");
}

/* A child that adds n, then (hold_fd >= 0) stays alive until every write
 * end of that pipe is closed (it closes its own copy, close_fd). */
static pid_t child_add(shk_counter *c, int64_t n, const hold_pipes *h)
{
    pid_t pid = fork();
    if (pid == 0) {
        shk_counter_add(c, n);
        child_hold(h);
        _exit(0);
    }
    return pid;
}

/* Cells of dead processes are reclaimed, keeping their values; when every
 * cell has a live owner a newcomer shares one, still exactly. */
TEST(reclaim_and_share)
{
    shk_segment *s = fixture_fork_segment("ct5", FIXTURE_FORK_MAX);
    shk_counter *c;
    CHECK_EQ(shk_counter_open_named(s, "c", 2, &c, NULL), SHK_OK);
    /* both live until both have claimed (a child reaped before the other
     * claims would rightly have its cell reclaimed by it) */
    hold_pipes h;
    int ready[2];
    CHECK_EQ(hold_open(&h, ready), 0);
    pid_t pids[2];
    pids[0] = child_add(c, 100, &h);
    pids[1] = child_add(c, 200, &h);
    CHECK_EQ(hold_ready(ready[0], 2), 0);
    hold_release(&h, ready);
    CHECK(check_reap(pids, 2));
    shk_counter_stats st;
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK_EQ(st.claimed, 2);
    CHECK_EQ(st.live, 0);
    /* both cells belong to the dead: we reclaim one, the values stay */
    shk_counter_add(c, 1);
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK(st.mine >= 0);
    CHECK_EQ(st.live, 1);
    CHECK_EQ(st.value, 301);
    /* a live holder of the other cell, then one more: it shares */
    CHECK_EQ(hold_open(&h, ready), 0);
    pid_t holder = child_add(c, 10, &h);
    CHECK_EQ(hold_ready(ready[0], 1), 0);
    CHECK_EQ(shk_counter_check(c, &st), SHK_OK);
    CHECK_EQ(st.live, 2);
    pid_t pid = fork();
    if (pid == 0) {
        shk_counter_stats cs;
        shk_counter_add(c, 1000);
        _exit(shk_counter_check(c, &cs) == SHK_OK && cs.mine == -1 ? 0 : 1);
    }
    CHECK(check_reap(&pid, 1));
    hold_release(&h, ready);
    CHECK(check_reap(&holder, 1));
    CHECK_EQ(shk_counter_value(c), 1311);
    shk_counter_close(c);
    fixture_drop(s, "ct5");
}

/* reset() while others add: the totals it takes out plus what is left
 * equal every add made. */
TEST(reset_concurrent)
{
    shk_segment *s = fixture_fork_segment("ct6", FIXTURE_FORK_MAX);
    shk_counter *c;
    CHECK_EQ(shk_counter_open_named(s, "c", 0, &c, NULL), SHK_OK);
    enum { P = 4 };
    const int N = check_scale(100000);
    pid_t pids[P];
    fork_adders(c, pids, P, N, 1, NULL);
    int64_t taken = 0;
    for (int r = 0; r < 200; r++) {
        taken += shk_counter_reset(c);
        usleep(100);
    }
    CHECK(check_reap(pids, P));
    CHECK_EQ(taken + shk_counter_value(c), (long long)P * N);
    shk_counter_close(c);
    fixture_drop(s, "ct6");
}

TEST(corrupt)
{
    shk_segment *s = fixture_segment("ct7", 0, 0);
    shk_counter *c, *c2;
    CHECK_EQ(shk_counter_open_named(s, "c", 4, &c, NULL), SHK_OK);
    uint64_t off = shk_counter_offset(c);
    char *base = shk_segment_base(s);
    uint64_t fs = shk_segment_file_size(s);
    unsigned char hdr[64];
    memcpy(hdr, base + off, 64);
    /* every one-byte change of magic..cells (40 bytes) is refused; the
     * cells start at a 128-byte boundary, so a header claimed one boundary
     * further names other cells */
    fixture_check_validator(&(fixture_header){shk_counter_validate_header, hdr, 64, off, fs,
                                              63, off + 128, off + 64 + 100, 40});
    CHECK_EQ(shk_counter_validate_header(hdr, 64, off + 8, fs), SHK_ECORRUPT);
    /* a huge cell count */
    unsigned char h2[64];
    memcpy(h2, hdr, 64);
    uint64_t big = 1ull << 40;
    memcpy(h2 + 16, &big, 8);
    CHECK_EQ(shk_counter_validate_header(h2, 64, off, fs), SHK_ECORRUPT);

    /* corrupt the live header: open and check refuse it */
    uint64_t saved, bad = 8;     /* more cells than the block holds */
    memcpy(&saved, base + off + 16, 8);
    memcpy(base + off + 16, &bad, 8);
    CHECK_EQ(shk_counter_open(s, off, &c2), SHK_ECORRUPT);
    CHECK_EQ(shk_counter_attach_named(s, "c", &c2), SHK_ECORRUPT);
    CHECK_EQ(shk_counter_check(c, NULL), SHK_ECORRUPT);
    memcpy(base + off + 16, &saved, 8);
    CHECK_EQ(shk_counter_check(c, NULL), SHK_OK);
    /* offsets that are no counter */
    CHECK_EQ(shk_counter_open(s, off + 64, &c2), SHK_ECORRUPT);
    CHECK_EQ(shk_counter_open(s, 0, &c2), SHK_ECORRUPT);
    CHECK_EQ(shk_counter_open(s, UINT64_MAX - 8, &c2), SHK_ECORRUPT);

    /* an owner word that is no pid: check() reports it; a claim never
     * passes it to kill() and takes another cell, exactly */
    uint64_t cells;
    memcpy(&cells, base + off + 32, 8);
    for (int i = 0; i < 4; i++) {
        uint64_t garbage = UINT64_MAX - (uint64_t)i;   /* kill(-1, 0) if trusted */
        memcpy(base + cells + (uint64_t)i * 128 + 8, &garbage, 8);
    }
    CHECK_EQ(shk_counter_check(c, NULL), SHK_ECORRUPT);
    shk_counter_add(c, 7);               /* all cells "taken": shares one */
    CHECK_EQ(shk_counter_value(c), 7);
    shk_counter_close(c);
    fixture_drop(s, "ct7");
}

int main(void)
{
    RUN(basic);
    RUN(processes_exact);
    RUN(fork_child_own_cell);
    RUN(sigkill_loses_nothing);
    RUN(reclaim_and_share);
    RUN(reset_concurrent);
    RUN(corrupt);
    return check_summary();
}
