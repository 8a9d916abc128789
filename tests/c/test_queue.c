/* Unit tests of the MPMC queue: FIFO, wrap-around, out-of-line items,
 * limits, batches, blocking, processes, SIGKILL recovery, corruption. */
#include "fixture.h"
#include "queue_internal.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* A 16 MiB reservation: enough for every test, cheap to fork. */
#define SEG_MAX (16ull << 20)

/* A fresh segment `tag` holding queue "q" with a ring of `ring` bytes and
 * at most `maxsize` items (0 = unbounded). */
static shk_segment *open_queue(const char *tag, uint64_t ring, uint64_t maxsize,
                               shk_queue **q)
{
    shk_segment *s = fixture_segment(tag, 0, SEG_MAX);
    shk_queue_config cfg = {ring, maxsize};
    *q = NULL;
    CHECK_EQ(shk_queue_open_named(s, "q", &cfg, q, NULL), SHK_OK);
    return s;
}

/* End of a test: whatever it did, the queue must still be valid. */
static void close_queue(shk_segment *s, shk_queue *q, const char *tag)
{
    CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
    shk_queue_close(q);
    fixture_drop(s, tag);
}

static int get_u64(shk_queue *q, uint64_t *v, int64_t timeout)
{
    uint64_t len = 0;
    uint32_t tag = 0;
    int rc = shk_queue_get_into(q, v, sizeof *v, &len, &tag, timeout);
    if (rc == SHK_OK && (len != sizeof *v || tag != 7))
        return SHK_ECORRUPT;
    return rc;
}

TEST(fifo_basic)
{
    shk_segment *s = fixture_segment("qbasic", 0, SEG_MAX);
    shk_queue *q = NULL;
    int created = 0;
    CHECK_EQ(shk_queue_open_named(s, "q", NULL, &q, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_queue_ring_bytes(q), SHK_QUEUE_DEFAULT_RING);
    uint64_t v;
    CHECK_EQ(get_u64(q, &v, 0), SHK_EEMPTY);
    for (uint64_t i = 0; i < 1000; i++)
        CHECK_EQ(shk_queue_put(q, &i, sizeof i, 7, 0), SHK_OK);
    CHECK_EQ(shk_queue_size(q), 1000);
    CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
    /* A second handle through the directory sees the same queue. */
    shk_queue *q2 = NULL;
    CHECK_EQ(shk_queue_open_named(s, "q", NULL, &q2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    for (uint64_t i = 0; i < 1000; i++) {
        CHECK_EQ(get_u64(i % 2 ? q : q2, &v, 0), SHK_OK);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(get_u64(q, &v, 0), SHK_EEMPTY);
    CHECK_EQ(shk_queue_size(q), 0);
    shk_queue_stats st;
    CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
    CHECK_EQ(st.total_put, 1000);
    CHECK_EQ(st.total_got, 1000);
    /* Wrong type in the directory. */
    shk_stack *sk = NULL;
    CHECK_EQ(shk_stack_open_named(s, "q", &sk, NULL), SHK_ETYPE);
    shk_queue_close(q2);
    close_queue(s, q, "qbasic");
}

/* Variable sizes wrapping around a small ring many times, checked byte by
 * byte; sizes span inline, the inline limit and out-of-line. */
TEST(wrap_and_sizes)
{
    shk_queue *q;
    shk_segment *s = open_queue("qwrap", 4096, 0, &q);
    CHECK_EQ(shk_queue_inline_max(q), 512);
    static unsigned char in[5000], out[5000];
    uint64_t put_seq = 0, got_seq = 0;
    unsigned rng = 1;
    for (int round = 0; round < 3000; round++) {
        /* put a few, get a few */
        for (int k = 0; k < 3; k++) {
            rng = rng * 1103515245u + 12345u;
            uint64_t len = (rng >> 8) % 700;   /* 0..699: some OOL */
            if (round % 97 == 0)
                len = 4999;
            for (uint64_t b = 0; b < len; b++)
                in[b] = (unsigned char)(put_seq * 31 + b);
            int rc = shk_queue_put(q, in, len, (uint32_t)(put_seq & 255), 0);
            if (rc == SHK_EFULL)
                break;
            CHECK_EQ(rc, SHK_OK);
            /* remember len by regenerating: store it in the first bytes */
            put_seq++;
        }
        for (int k = 0; k < 3; k++) {
            uint64_t len;
            uint32_t tag;
            int rc = shk_queue_get_into(q, out, sizeof out, &len, &tag, 0);
            if (rc == SHK_EEMPTY)
                break;
            CHECK_EQ(rc, SHK_OK);
            CHECK_EQ(tag, got_seq & 255);
            int good = 1;
            for (uint64_t b = 0; b < len; b++)
                good &= out[b] == (unsigned char)(got_seq * 31 + b);
            CHECK(good);
            got_seq++;
        }
        if (round % 500 == 0)
            CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
    }
    CHECK(put_seq > 5000);
    shk_queue_stats st;
    CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
    CHECK_EQ(st.items, put_seq - got_seq);
    /* Drain, then the heap has all OOL blocks back. */
    uint64_t len;
    while (shk_queue_get_into(q, out, sizeof out, &len, NULL, 0) == SHK_OK)
        ;
    CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
    CHECK_EQ(st.out_of_line, 0);
    CHECK_EQ(st.used_bytes, 0);
    shk_freelist_stats fs;
    CHECK_EQ(shk_freelist_check(shk_segment_heap(s), &fs), SHK_OK);
    CHECK_EQ(fs.live_blocks, 2);   /* the queue header and its ring */
    close_queue(s, q, "qwrap");
}

TEST(limits)
{
    shk_queue *q;
    shk_segment *s = open_queue("qlim", 4096, 3, &q);
    CHECK_EQ(shk_queue_maxsize(q), 3);
    uint64_t v = 1;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_EFULL);
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 1000000), SHK_ETIMEDOUT);
    CHECK_EQ(shk_queue_wait_put(q, 8, 0), SHK_ETIMEDOUT);
    CHECK_EQ(shk_queue_size(q), 3);
    /* bad arguments change nothing */
    CHECK_EQ(shk_queue_put(q, &v, 8, 256, 0), SHK_EINVAL);
    CHECK_EQ(shk_queue_put(q, NULL, 8, 1, 0), SHK_EINVAL);
    CHECK_EQ(shk_queue_put(q, &v, SHK_QUEUE_MAX_ITEM + 1, 1, 0), SHK_EINVAL);
    /* get_into with a too-small buffer leaves the item */
    char small[4];
    uint64_t len = 0;
    CHECK_EQ(shk_queue_get_into(q, small, sizeof small, &len, NULL, 0), SHK_EINVAL);
    CHECK_EQ(len, 8);
    CHECK_EQ(shk_queue_size(q), 3);
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    shk_queue_close(q);

    /* byte-bounded: a 4 KiB ring fills with bytes, not a count */
    shk_queue_config cfg2 = {4096, 0};
    CHECK_EQ(shk_queue_open_named(s, "q2", &cfg2, &q, NULL), SHK_OK);
    char buf[500] = {0};
    int n = 0;
    while (shk_queue_put(q, buf, sizeof buf, 0, 0) == SHK_OK)
        n++;
    CHECK_EQ(n, 4096 / 512);
    CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
    shk_queue_close(q);
    /* a config the ring cannot honour */
    shk_queue_config bad = {SHK_QUEUE_MAX_RING * 2, 0};
    CHECK_EQ(shk_queue_open_named(s, "q3", &bad, &q, NULL), SHK_EINVAL);
    CHECK_EQ(shk_segment_lookup(s, "q3", NULL), SHK_ENOENT);
    fixture_drop(s, "qlim");
}

typedef struct collect {
    uint64_t vals[64];
    int n;
} collect;

static void *collect_alloc(void *ctx, uint64_t len, uint32_t tag)
{
    collect *c = ctx;
    (void)tag;
    if (len != 8 || c->n >= 64)
        return NULL;
    return &c->vals[c->n++];
}

TEST(batches)
{
    shk_queue *q;
    shk_segment *s = open_queue("qbatch", 4096, 50, &q);
    uint64_t vals[100];
    shk_queue_item items[100];
    for (int i = 0; i < 100; i++) {
        vals[i] = (uint64_t)i;
        items[i] = (shk_queue_item){&vals[i], 8, 7};
    }
    uint64_t done = 0;
    CHECK_EQ(shk_queue_put_many(q, items, 100, &done), SHK_EFULL);
    CHECK_EQ(done, 50);
    collect c = {{0}, 0};
    CHECK_EQ(shk_queue_get_many(q, 30, collect_alloc, &c, &done), SHK_OK);
    CHECK_EQ(done, 30);
    for (int i = 0; i < 30; i++)
        CHECK_EQ(c.vals[i], i);
    CHECK_EQ(shk_queue_put_many(q, items + 50, 50, &done), SHK_EFULL);
    CHECK_EQ(done, 30);
    c.n = 0;
    CHECK_EQ(shk_queue_get_many(q, 64, collect_alloc, &c, &done), SHK_OK);
    CHECK_EQ(done, 50);
    for (int i = 0; i < 50; i++)
        CHECK_EQ(c.vals[i], 30 + i);
    CHECK_EQ(shk_queue_get_many(q, 64, collect_alloc, &c, &done), SHK_EEMPTY);
    CHECK_EQ(done, 0);
    /* a bad item first: nothing put */
    shk_queue_item bad = {NULL, 8, 7};
    CHECK_EQ(shk_queue_put_many(q, &bad, 1, &done), SHK_EINVAL);
    CHECK_EQ(done, 0);
    CHECK_EQ(shk_queue_size(q), 0);
    /* a bad item in the middle: the ones before it are put */
    shk_queue_item two[3] = {{&vals[5], 8, 7}, {&vals[6], 8, 300}, {&vals[7], 8, 7}};
    CHECK_EQ(shk_queue_put_many(q, two, 3, &done), SHK_EINVAL);
    CHECK_EQ(done, 1);
    CHECK_EQ(shk_queue_size(q), 1);
    uint64_t five;
    CHECK_EQ(get_u64(q, &five, 0), SHK_OK);
    CHECK_EQ(five, 5);
    /* mixing OOL and inline items in one batch keeps the order */
    static char big[2000];
    shk_queue_item mix[3] = {{&vals[1], 8, 7}, {big, sizeof big, 9}, {&vals[2], 8, 7}};
    CHECK_EQ(shk_queue_put_many(q, mix, 3, &done), SHK_OK);
    CHECK_EQ(done, 3);
    uint64_t v;
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(v, 1);
    uint64_t len;
    uint32_t tag;
    CHECK_EQ(shk_queue_get_into(q, big, sizeof big, &len, &tag, 0), SHK_OK);
    CHECK_EQ(len, 2000);
    CHECK_EQ(tag, 9);
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(v, 2);
    close_queue(s, q, "qbatch");
}

/* A consumer blocked in get (futex) is woken by a producer process; a
 * producer blocked on a full queue is woken by a get. */
TEST(blocking_across_processes)
{
    shk_queue *q;
    shk_segment *s = open_queue("qblock", 4096, 2, &q);
    pid_t pid = fork();
    if (pid == 0) {
        /* child: 100 items through a 2-slot queue, blocking on full */
        for (uint64_t i = 0; i < 100; i++)
            if (shk_queue_put(q, &i, 8, 7, -1) != SHK_OK)
                _exit(1);
        _exit(0);
    }
    uint64_t v;
    for (uint64_t i = 0; i < 100; i++) {
        CHECK_EQ(get_u64(q, &v, 5000000000LL), SHK_OK);
        CHECK_EQ(v, i);
        if (i % 10 == 0) {
            struct timespec d = {0, 2000000};
            nanosleep(&d, NULL);   /* let the producer block on full */
        }
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ(get_u64(q, &v, 1000000), SHK_ETIMEDOUT);
    shk_queue_stats qs;
    CHECK_EQ(shk_queue_check(q, &qs), SHK_OK);
    CHECK_EQ(qs.get_waiters, 0);
    CHECK_EQ(qs.put_waiters, 0);
    close_queue(s, q, "qblock");
}

/* 2 producers x 2 consumers, every item exactly once, FIFO per producer. */
TEST(mpmc_exactly_once)
{
    enum { P = 2, C = 2 };
    const uint64_t N = (uint64_t)check_scale(20000);   /* fewer under valgrind */
    shk_queue *res = NULL;
    shk_queue *q;
    shk_segment *s = open_queue("qmpmc", 8192, 0, &q);
    CHECK_EQ(shk_queue_open_named(s, "res", NULL, &res, NULL), SHK_OK);
    pid_t pids[P + C];
    for (int p = 0; p < P; p++) {
        if ((pids[p] = fork()) == 0) {
            for (uint64_t i = 0; i < N; i++) {
                uint64_t v = ((uint64_t)p << 32) | i;
                if (shk_queue_put(q, &v, 8, 7, -1) != SHK_OK)
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int c = 0; c < C; c++) {
        if ((pids[P + c] = fork()) == 0) {
            /* per consumer: items seen, and FIFO per producer */
            uint64_t last[P], sum = 0, n = 0;
            for (int p = 0; p < P; p++)
                last[p] = UINT64_MAX;
            for (;;) {
                uint64_t v;
                int rc = get_u64(q, &v, -1);
                if (rc != SHK_OK)
                    _exit(2);
                if (v == UINT64_MAX)
                    break;
                unsigned p = (unsigned)(v >> 32);
                uint64_t i = v & 0xffffffffu;
                if (p >= P || (last[p] != UINT64_MAX && i <= last[p]))
                    _exit(3);
                last[p] = i;
                sum += v;
                n++;
            }
            uint64_t r[2] = {n, sum};
            shk_queue_put(res, r, sizeof r, 7, -1);
            _exit(0);
        }
    }
    int ok = check_reap(pids, P);
    uint64_t stop = UINT64_MAX;
    for (int c = 0; c < C; c++)
        CHECK_EQ(shk_queue_put(q, &stop, 8, 7, -1), SHK_OK);
    ok &= check_reap(pids + P, C);
    CHECK(ok);
    uint64_t n = 0, sum = 0, want = 0;
    for (int c = 0; c < C; c++) {
        uint64_t r[2], len;
        CHECK_EQ(shk_queue_get_into(res, r, sizeof r, &len, NULL, 0), SHK_OK);
        n += r[0];
        sum += r[1];
    }
    for (uint64_t p = 0; p < P; p++)
        for (uint64_t i = 0; i < N; i++)
            want += (p << 32) | i;
    CHECK_EQ(n, (uint64_t)P * N);
    CHECK_EQ(sum, want);
    CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
    shk_queue_close(res);
    close_queue(s, q, "qmpmc");
}

/* Children hammer the queue and are SIGKILLed at random instants (some
 * while holding the lock): the queue must stay usable and valid. */
TEST(sigkill_recovery)
{
    shk_queue *q;
    shk_segment *s = open_queue("qkill", 4096, 0, &q);
    static char buf[3000];
    for (int round = 0; round < 30; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (uint64_t i = 0;; i++) {
                uint64_t len = (i * 37) % 700;   /* inline and OOL */
                shk_queue_put(q, buf, len, 1, 0);
                shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0);
                if (i % 3 == 0)
                    shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0);
            }
        }
        struct timespec d = {0, 200000 + (round % 7) * 300000};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st));
        CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
        uint64_t v = 42, len;
        CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
        while (shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0) == SHK_OK)
            ;
        CHECK_EQ(shk_queue_size(q), 0);
    }
    shk_queue_stats st;
    CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
    CHECK_EQ(st.items, 0);
    printf("  sigkill_recovery: %llu lock recoveries in 30 kills\n",
           (unsigned long long)st.recoveries);
    close_queue(s, q, "qkill");
}

TEST(corruption_detected)
{
    shk_queue *q;
    shk_segment *s = open_queue("qcorrupt", 4096, 0, &q);
    uint64_t v = 5;
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    shk_object_info info;
    CHECK_EQ(shk_segment_lookup(s, "q", &info), SHK_OK);
    char *base = shk_segment_base(s);
    uint64_t ring_off;
    memcpy(&ring_off, base + info.offset + 16, 8);
    /* a torn record length */
    uint32_t saved;
    memcpy(&saved, base + ring_off, 4);
    uint32_t huge = 0x7fffffff;
    memcpy(base + ring_off, &huge, 4);
    CHECK_EQ(get_u64(q, &v, 0), SHK_ECORRUPT);
    CHECK_EQ(shk_queue_check(q, NULL), SHK_ECORRUPT);
    memcpy(base + ring_off, &saved, 4);
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(v, 5);
    /* a bad header: open refuses it */
    shk_queue *q2 = NULL;
    uint64_t saved_size;
    memcpy(&saved_size, base + info.offset + 24, 8);
    uint64_t bad = 12345;
    memcpy(base + info.offset + 24, &bad, 8);
    CHECK_EQ(shk_queue_open(s, info.offset, &q2), SHK_ECORRUPT);
    bad = 1ull << 40;
    memcpy(base + info.offset + 24, &bad, 8);
    CHECK_EQ(shk_queue_open(s, info.offset, &q2), SHK_ECORRUPT);
    memcpy(base + info.offset + 24, &saved_size, 8);
    CHECK_EQ(shk_queue_open(s, info.offset + 8, &q2), SHK_ECORRUPT);
    CHECK_EQ(shk_queue_open(s, info.offset, &q2), SHK_OK);
    shk_queue_close(q2);
    close_queue(s, q, "qcorrupt");
}

/* Run op(q) in a child with a 10 s alarm: a hang or a signal fails the
 * test instead of stopping the run.  Returns op's status. */
static int in_child(shk_queue *q, int (*op)(shk_queue *))
{
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        int rc = op(q);
        _exit(rc == SHK_ECORRUPT ? 0 : rc == SHK_OK ? 1 : 2);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? SHK_ECORRUPT : SHK_OK;
}

static int put_one(shk_queue *q)
{
    uint64_t v = 1;
    return shk_queue_put(q, &v, 8, 7, -1);
}
static int get_one(shk_queue *q)
{
    uint64_t v;
    return get_u64(q, &v, -1);
}
static int check_q(shk_queue *q) { return shk_queue_check(q, NULL); }

/* Lock words that cannot be a robust mutex (garbage fills, a foreign kind,
 * an owner thread that does not exist) give SHK_ECORRUPT: never a hang on a
 * futex nobody will wake, never a bare system error. */
TEST(garbage_lock_words)
{
    shk_queue *q;
    shk_segment *s = open_queue("qlockjunk", 4096, 0, &q);
    uint64_t v = 5;
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    shk_object_info info;
    CHECK_EQ(shk_segment_lookup(s, "q", &info), SHK_OK);
    /* Each lock in turn: put_lock stops puts, get_lock gets; both, check. */
    uint64_t a, b;
    for (unsigned which = 0; shk_queue_mutex_span(which, &a, &b) == SHK_OK; which++) {
        int (*op)(shk_queue *) = which == 0 ? put_one : get_one;
        char *lock = shk_segment_base(s) + info.offset + a;
        char saved[sizeof(shk_mutex)];
        memcpy(saved, lock, sizeof saved);
        const int fills[] = {0x01, 0xff, 0x5a, 0x80, 0};
        for (int i = 0; i < 5; i++) {
            memset(lock, fills[i], sizeof(pthread_mutex_t));
            if (fills[i] == 0) {   /* the kind kept, FUTEX_WAITERS with no owner */
                memcpy(lock, saved, sizeof saved);
                uint32_t w = 0x80000000u;
                memcpy(lock, &w, 4);
            }
            CHECK_EQ(in_child(q, op), SHK_ECORRUPT);
            CHECK_EQ(in_child(q, check_q), SHK_ECORRUPT);
            memcpy(lock, saved, sizeof saved);
        }
        /* A well-formed mutex held by a thread that no longer exists (and
         * so was never on a robust list the kernel would clean up). */
        pid_t dead = fork();
        if (dead == 0)
            _exit(0);
        waitpid(dead, NULL, 0);
        uint32_t word = (uint32_t)dead;
        memcpy(lock, &word, 4);
        CHECK_EQ(in_child(q, op), SHK_ECORRUPT);
        memcpy(lock, saved, sizeof saved);
    }
    CHECK_EQ(b - a, sizeof(pthread_mutex_t));
    /* Put back, it works again. */
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(v, 5);
    close_queue(s, q, "qlockjunk");
}

/* A byte of a record damaged in the ring (header or payload) gives
 * SHK_ECORRUPT from get and check, never the damaged bytes. */
TEST(ring_damage_detected)
{
    shk_queue *q;
    shk_segment *s = open_queue("qdamage", 4096, 0, &q);
    shk_object_info info;
    CHECK_EQ(shk_segment_lookup(s, "q", &info), SHK_OK);
    char *base = shk_segment_base(s);
    uint64_t ring_off;
    memcpy(&ring_off, base + info.offset + 16, 8);
    char item[100];
    for (int i = 0; i < 100; i++)
        item[i] = (char)i;
    /* each byte of the first record (8 header + 100 payload) in turn */
    for (int at = 0; at < 108; at++) {
        CHECK_EQ(shk_queue_put(q, item, sizeof item, 1, 0), SHK_OK);
        CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
        char buf[200];
        uint64_t len;
        uint64_t pos;
        memcpy(&pos, base + info.offset + offsetof(q_shared, head), 8);
        char *p = base + ring_off + ((pos + (uint64_t)at) & 4095);
        *p ^= 0x20;
        CHECK_EQ(shk_queue_check(q, NULL), SHK_ECORRUPT);
        CHECK_EQ(shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0), SHK_ECORRUPT);
        *p ^= 0x20;
        CHECK_EQ(shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0), SHK_OK);
        CHECK(len == sizeof item && memcmp(buf, item, len) == 0);
    }
    close_queue(s, q, "qdamage");
}

/* A consumer killed while blocked in get leaves its waiter registration;
 * the next put finds nobody asleep and drops it. */
TEST(dead_waiter_repaired)
{
    shk_queue *q;
    shk_segment *s = open_queue("qwaiter", 4096, 0, &q);
    for (int round = 0; round < 2; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            uint64_t v;
            get_u64(q, &v, -1);
            _exit(0);
        }
        shk_queue_stats st;
        for (int i = 0; i < 10000; i++) {
            CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
            if (st.get_waiters == 1)
                break;
            struct timespec d = {0, 1000000};
            nanosleep(&d, NULL);
        }
        CHECK_EQ(st.get_waiters, 1);
        kill(pid, round ? SIGTERM : SIGKILL);
        waitpid(pid, NULL, 0);
        CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
        CHECK_EQ(st.get_waiters, 1);   /* left behind */
        uint64_t v = 3;
        CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
        CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
        CHECK_EQ(st.get_waiters, 0);   /* repaired by the put */
        CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    }
    close_queue(s, q, "qwaiter");
}

/* With maxsize 0, items that no longer fit inline spill out of line: the
 * ring bounds the number of items (ring/24), not their bytes. */
TEST(spill_out_of_line)
{
    shk_queue *q;
    shk_segment *s = open_queue("qspill", 65536, 0, &q);
    static char item[4096];
    uint64_t n = 0;
    while (shk_queue_put(q, item, sizeof item, 1, 0) == SHK_OK) {
        item[0] = (char)++n;
        if (n > 10000)
            break;
    }
    /* 15 inline (4104-byte records), then 24-byte records in the rest */
    CHECK_EQ(n, 15 + (65536 - 15 * 4104) / SHK_QUEUE_MIN_RECORD);
    CHECK(shk_queue_used_bytes(q) + SHK_QUEUE_MIN_RECORD > 65536);
    shk_queue_stats st;
    CHECK_EQ(shk_queue_check(q, &st), SHK_OK);
    CHECK_EQ(st.items, n);
    CHECK(st.out_of_line > 0 && st.out_of_line < n);
    /* put_many spills too */
    char buf[4096];
    uint64_t len;
    for (uint64_t i = 0; i < 20; i++)
        CHECK_EQ(shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0), SHK_OK);
    shk_queue_item items[20];
    for (int i = 0; i < 20; i++)
        items[i] = (shk_queue_item){item, sizeof item, 1};
    uint64_t done = 0;
    CHECK_EQ(shk_queue_put_many(q, items, 20, &done), SHK_OK);
    CHECK_EQ(done, 20);
    for (uint64_t i = 0; i < n; i++) {
        CHECK_EQ(shk_queue_get_into(q, buf, sizeof buf, &len, NULL, 0), SHK_OK);
        CHECK_EQ(len, sizeof item);
        if (i + 20 < n)
            CHECK_EQ(buf[0], (char)(i + 20));
    }
    close_queue(s, q, "qspill");
}

/* JoinableQueue: task_done/join, too many task_done, a consumer killed
 * between get and task_done reclaimed by join, a corrupt ledger offset. */
TEST(joinable)
{
    shk_queue *q;
    shk_segment *s = open_queue("qjoin", 4096, 0, &q);
    uint64_t u = 0, r = 0, v = 1;
    CHECK_EQ(shk_queue_task_done(q), SHK_EINVAL);       /* not joinable */
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    CHECK_EQ(shk_queue_make_joinable(q), SHK_OK);
    CHECK_EQ(shk_queue_make_joinable(q), SHK_OK);        /* idempotent */
    CHECK_EQ(shk_queue_tasks(q, &u, &r), SHK_OK);
    CHECK_EQ(u, 1);
    CHECK_EQ(shk_queue_task_done(q), SHK_EEMPTY);       /* nothing taken */
    CHECK_EQ(shk_queue_wait_join(q, 0), SHK_ETIMEDOUT);
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(shk_queue_wait_join(q, 0), SHK_ETIMEDOUT);
    CHECK_EQ(shk_queue_task_done(q), SHK_OK);
    CHECK_EQ(shk_queue_wait_join(q, 0), SHK_OK);
    CHECK_EQ(shk_queue_task_done(q), SHK_EEMPTY);
    /* a child takes two items and is killed before task_done */
    for (v = 0; v < 3; v++)
        CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t x;
        int ok = get_u64(q, &x, 0) == SHK_OK && get_u64(q, &x, 0) == SHK_OK;
        if (write(fds[1], "x", 1) != 1 || !ok)
            _exit(1);
        pause();
        _exit(0);
    }
    char c;
    CHECK_EQ(read(fds[0], &c, 1), 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    int rc;
    while ((rc = shk_queue_wait_join(q, 0)) == SHK_EAGAIN)
        ;
    CHECK_EQ(rc, SHK_ETIMEDOUT);                         /* one still queued */
    CHECK_EQ(shk_queue_tasks(q, &u, &r), SHK_OK);
    CHECK_EQ(u, 1);
    CHECK_EQ(r, 2);
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    CHECK_EQ(shk_queue_task_done(q), SHK_OK);
    CHECK_EQ(shk_queue_wait_join(q, -1), SHK_OK);
    close_queue(s, q, "qjoin");

    /* a ledger offset pointing into the ring is corruption */
    s = open_queue("qjoin2", 4096, 0, &q);
    CHECK_EQ(shk_queue_make_joinable(q), SHK_OK);
    shk_queue_close(q);
    uint64_t off;
    CHECK_EQ(shk_segment_object(s, "q", SHK_TYPE_QUEUE, NULL, NULL, &off, NULL), SHK_OK);
    _Atomic uint64_t *tasks_off = (_Atomic uint64_t *)(shk_segment_base(s) + off + 48);
    uint64_t ring_off = *(uint64_t *)(shk_segment_base(s) + off + 16);
    atomic_store(tasks_off, ring_off);
    CHECK_EQ(shk_queue_open(s, off, &q), SHK_OK);
    CHECK_EQ(shk_queue_task_done(q), SHK_ECORRUPT);
    CHECK_EQ(shk_queue_wait_join(q, 0), SHK_ECORRUPT);
    CHECK_EQ(get_u64(q, &v, 0), SHK_ECORRUPT);
    shk_queue_close(q);
    fixture_drop(s, "qjoin2");
}

/* The shared header of the queue "q" of segment s. */
static q_shared *header_of(shk_segment *s)
{
    shk_object_info info;
    CHECK_EQ(shk_segment_lookup(s, "q", &info), SHK_OK);
    return (q_shared *)(shk_segment_base(s) + info.offset);
}

/* A consumer killed between its head store and its total bump leaves the
 * count one too high, and a get_lock recoverer killed before its repair
 * leaves the repair note set: the next get repairs (taking both locks in
 * order), and so does a producer that finds the queue full by the stale
 * count with no consumer around. */
TEST(repair_note)
{
    shk_queue *q;
    shk_segment *s = open_queue("qnote", 4096, 3, &q);
    q_shared *sh = header_of(s);
    uint64_t v;
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 1; shk_queue_size(q) < 3; i++)
            CHECK_EQ(shk_queue_put(q, &i, 8, 7, 0), SHK_OK);
        CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
        uint64_t before = atomic_load(&sh->recoveries);
        /* the dead consumer's state: head moved, total_got not */
        atomic_store(&sh->total_got, atomic_load(&sh->total_got) - 1);
        atomic_store(&sh->repair, 1);
        CHECK_EQ(shk_queue_size(q), 3); /* stale until repaired */
        if (round == 0) {
            /* a producer: full by the count, repairs, and the put fits */
            uint64_t x = 9;
            CHECK_EQ(shk_queue_put(q, &x, 8, 7, 0), SHK_OK);
            CHECK_EQ(shk_queue_size(q), 3);
        } else {
            /* a consumer */
            CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
            CHECK_EQ(shk_queue_size(q), 1);
        }
        CHECK_EQ(atomic_load(&sh->repair), 0);
        CHECK_EQ(atomic_load(&sh->recoveries), before + 1);
        CHECK_EQ(shk_queue_check(q, NULL), SHK_OK);
        while (get_u64(q, &v, 0) == SHK_OK)
            ;
    }
    close_queue(s, q, "qnote");
}

/* A repair may cut the ring (a damaged record) below a tail another
 * handle has cached: that handle must read tail again, not read past it
 * (SEEN). */
TEST(repair_cut_drops_cached_tail)
{
    shk_queue *a, *b;
    shk_segment *s = open_queue("qcut", 4096, 0, &a);
    int created;
    CHECK_EQ(shk_queue_open_named(s, "q", NULL, &b, &created), SHK_OK);
    q_shared *sh = header_of(s);
    char *ring = shk_segment_base(s) + sh->ring_off;
    for (uint64_t i = 1; i <= 3; i++)
        CHECK_EQ(shk_queue_put(b, &i, 8, 7, 0), SHK_OK); /* records at 0, 16, 32 */
    uint64_t v;
    CHECK_EQ(get_u64(a, &v, 0), SHK_OK); /* a has seen tail 48 */
    CHECK_EQ(v, 1);
    ring[16 + 8] ^= 0x55;               /* damage record 2 */
    atomic_store(&sh->repair, 1);       /* and have the next get repair */
    CHECK_EQ(get_u64(b, &v, 0), SHK_EEMPTY); /* the ring is cut at 16 */
    CHECK_EQ(atomic_load(&sh->tail), 16);
    CHECK_EQ(get_u64(a, &v, 0), SHK_EEMPTY);
    uint64_t x = 42;
    CHECK_EQ(shk_queue_put(b, &x, 8, 7, 0), SHK_OK);
    CHECK_EQ(get_u64(a, &v, 0), SHK_OK);
    CHECK_EQ(v, 42);
    CHECK_EQ(get_u64(a, &v, 0), SHK_EEMPTY); /* not record 3, cut away */
    CHECK_EQ(shk_queue_check(b, NULL), SHK_OK);
    shk_queue_close(b);
    close_queue(s, a, "qcut");
}

static _Atomic int put_rc = 1;
static void *blocking_put(void *arg)
{
    uint64_t x = 77;
    atomic_store(&put_rc, shk_queue_put((shk_queue *)arg, &x, 8, 7, -1));
    return NULL;
}

/* A producer asleep on a queue full only by a dead consumer's count is
 * woken by the repair (which bumps not_full), while the consumer that
 * recovered get_lock still holds it, so the producer could not repair. */
TEST(repair_wakes_producers)
{
    shk_queue *q;
    shk_segment *s = open_queue("qrw", 4096, 1, &q);
    q_shared *sh = header_of(s);
    uint64_t v = 1;
    CHECK_EQ(shk_queue_put(q, &v, 8, 7, 0), SHK_OK);
    CHECK_EQ(get_u64(q, &v, 0), SHK_OK);
    /* a consumer killed between its head store and its total: count 1 */
    atomic_store(&sh->total_got, atomic_load(&sh->total_got) - 1);
    /* its recoverer, between leaving the note and dropping get_lock */
    CHECK_EQ(shk_mutex_lock(&sh->get_lock), SHK_OK);
    atomic_store(&sh->repair, 1);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, blocking_put, q), 0);
    /* the producer found the queue full and registered as a waiter */
    while ((atomic_load(&sh->put_waiters) & WAITER_MASK) == 0)
        sched_yield();
    uint32_t seq = atomic_load(&sh->not_full);
    shk_mutex_unlock(&sh->get_lock);
    CHECK_EQ(shk_queue_check(q, NULL), SHK_OK); /* takes both locks: repairs */
    CHECK(atomic_load(&sh->not_full) != seq);    /* and wakes */
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&put_rc), SHK_OK);
    CHECK_EQ(shk_queue_size(q), 1);
    close_queue(s, q, "qrw");
}

static shk_queue *slice_q;
static _Atomic int slice_rc = 1;
static void *blocking_wait(void *arg)
{
    (void)arg;
    atomic_store(&slice_rc, shk_queue_wait_get(slice_q, 20 * 1000000000ll));
    return NULL;
}

/* A producer killed after its commit but before its wake leaves a
 * sleeping consumer no wake-up: its wait must still end (SHK_OK: look
 * again) after one sleep slice (WAIT_SLICE_NS), not sleep out its 20 s
 * timeout (SHK_ETIMEDOUT), and the item is there. */
TEST(lost_wake_costs_a_slice)
{
    shk_segment *s = open_queue("qslice", 4096, 0, &slice_q);
    q_shared *sh = header_of(s);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, blocking_wait, NULL), 0);
    while ((atomic_load(&sh->get_waiters) & WAITER_MASK) == 0)
        sched_yield();
    struct timespec nap = {0, 20 * 1000 * 1000}; /* let it fall asleep */
    nanosleep(&nap, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        shk_crash_arm("queue.put.wake");
        uint64_t x = 5;
        shk_queue_put(slice_q, &x, 8, 7, 0);
        _exit(3); /* not reached: killed at the point */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&slice_rc), SHK_OK);
    uint64_t v;
    CHECK_EQ(get_u64(slice_q, &v, 0), SHK_OK);
    CHECK_EQ(v, 5);
    close_queue(s, slice_q, "qslice");
}

int main(void)
{
    RUN(fifo_basic);
    RUN(wrap_and_sizes);
    RUN(limits);
    RUN(batches);
    RUN(blocking_across_processes);
    RUN(mpmc_exactly_once);
    RUN(sigkill_recovery);
    RUN(corruption_detected);
    RUN(garbage_lock_words);
    RUN(ring_damage_detected);
    RUN(dead_waiter_repaired);
    RUN(spill_out_of_line);
    RUN(joinable);
    RUN(repair_note);
    RUN(repair_cut_drops_cached_tail);
    RUN(repair_wakes_producers);
    RUN(lost_wake_costs_a_slice);
    return check_summary();
}
