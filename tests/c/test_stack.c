/* Unit tests of the lock-free stack: LIFO, sizes, peek, processes,
 * SIGKILL, corruption. */
#include "fixture.h"
#include "internal.h"
#include "lfstack.h"

#include <signal.h>
#include <sys/wait.h>

/* A 16 MiB reservation: enough for every test, cheap to fork. */
#define SEG_MAX (16ull << 20)

typedef struct buf_ctx {
    char buf[4096];
    uint64_t len;
    uint32_t tag;
    int calls;
} buf_ctx;

static void *buf_alloc(void *ctx, uint64_t len, uint32_t tag)
{
    buf_ctx *c = ctx;
    c->len = len;
    c->tag = tag;
    c->calls++;
    return len <= sizeof c->buf ? c->buf : NULL;
}

static void *big_alloc(void *ctx, uint64_t len, uint32_t tag)
{
    (void)tag;
    return len <= 5000 ? ctx : NULL;
}

static int pop_u64(shk_stack *s, uint64_t *v)
{
    buf_ctx c;
    c.len = 0;
    int rc = shk_stack_pop(s, buf_alloc, &c);
    if (rc == SHK_OK) {
        if (c.len != 8)
            return SHK_ECORRUPT;
        memcpy(v, c.buf, 8);
    }
    return rc;
}

TEST(lifo_basic)
{
    shk_segment *seg = fixture_segment("sbasic", 0, SEG_MAX);
    shk_stack *s = NULL, *s2 = NULL;
    int created = 0;
    CHECK_EQ(shk_stack_open_named(seg, "st", &s, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_stack_open_named(seg, "st", &s2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    uint64_t v;
    buf_ctx c;
    CHECK_EQ(pop_u64(s, &v), SHK_EEMPTY);
    CHECK_EQ(shk_stack_peek(s, buf_alloc, &c), SHK_EEMPTY);
    for (uint64_t i = 0; i < 1000; i++)
        CHECK_EQ(shk_stack_push(i % 2 ? s : s2, &i, 8, 3), SHK_OK);
    CHECK_EQ(shk_stack_size(s), 1000);
    CHECK_EQ(shk_stack_peek(s2, buf_alloc, &c), SHK_OK);
    CHECK_EQ(c.len, 8);
    CHECK_EQ(c.tag, 3);
    memcpy(&v, c.buf, 8);
    CHECK_EQ(v, 999);
    shk_stack_stats st;
    CHECK_EQ(shk_stack_check(s, &st, 0), SHK_OK);
    CHECK_EQ(st.items, 1000);
    CHECK_EQ(st.counter, 1000);
    for (uint64_t i = 1000; i-- > 0;) {
        CHECK_EQ(pop_u64(i % 3 ? s : s2, &v), SHK_OK);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(pop_u64(s, &v), SHK_EEMPTY);
    CHECK_EQ(shk_stack_size(s), 0);
    /* every node went back to the heap: only the header is live */
    shk_freelist_stats fs;
    CHECK_EQ(shk_freelist_check(shk_segment_heap(seg), &fs), SHK_OK);
    CHECK_EQ(fs.live_blocks, 1);
    shk_queue *q = NULL;
    CHECK_EQ(shk_queue_open_named(seg, "st", NULL, &q, NULL), SHK_ETYPE);
    shk_stack_close(s2);
    shk_stack_close(s);
    fixture_drop(seg, "sbasic");
}

TEST(sizes_and_errors)
{
    shk_segment *seg = fixture_segment("ssizes", 0, SEG_MAX);
    shk_stack *s = NULL;
    CHECK_EQ(shk_stack_open_named(seg, "st", &s, NULL), SHK_OK);
    static char in[5000];
    for (int i = 0; i < (int)sizeof in; i++)
        in[i] = (char)(i * 13);
    CHECK_EQ(shk_stack_push(s, NULL, 0, 1), SHK_OK);
    CHECK_EQ(shk_stack_push(s, in, 100, 2), SHK_OK);
    CHECK_EQ(shk_stack_push(s, in, 5000, 3), SHK_OK);
    CHECK_EQ(shk_stack_push(s, in, 8, 256), SHK_EINVAL);
    CHECK_EQ(shk_stack_push(s, NULL, 8, 1), SHK_EINVAL);
    CHECK_EQ(shk_stack_size(s), 3);
    buf_ctx c;
    /* too big for the caller's buffer: the item is put back */
    CHECK_EQ(shk_stack_pop(s, buf_alloc, &c), SHK_ENOMEM);
    CHECK_EQ(c.len, 5000);
    CHECK_EQ(shk_stack_size(s), 3);
    CHECK_EQ(shk_stack_peek(s, buf_alloc, &c), SHK_ENOMEM);
    CHECK_EQ(shk_stack_check(s, NULL, 0), SHK_OK);
    shk_stack_stats st;
    CHECK_EQ(shk_stack_check(s, &st, 0), SHK_OK);
    CHECK_EQ(st.bytes, 5100);
    /* a buffer that fits: the 5000 bytes come back intact, then LIFO */
    static char out[5000];
    CHECK_EQ(shk_stack_pop(s, big_alloc, out), SHK_OK);
    CHECK(memcmp(out, in, 5000) == 0);
    CHECK_EQ(shk_stack_pop(s, buf_alloc, &c), SHK_OK);
    CHECK_EQ(c.len, 100);
    CHECK_EQ(c.tag, 2);
    CHECK(memcmp(c.buf, in, 100) == 0);
    CHECK_EQ(shk_stack_pop(s, buf_alloc, &c), SHK_OK);
    CHECK_EQ(c.len, 0);
    CHECK_EQ(c.tag, 1);
    shk_stack_close(s);
    fixture_drop(seg, "ssizes");
}

TEST(processes_exactly_once)
{
    enum { P = 2 };
    const uint64_t N = (uint64_t)check_scale(20000);   /* fewer under valgrind */
    shk_segment *seg = fixture_segment("sprocs", 0, SEG_MAX);
    shk_stack *s = NULL;
    CHECK_EQ(shk_stack_open_named(seg, "st", &s, NULL), SHK_OK);
    shk_queue *res = NULL;
    CHECK_EQ(shk_queue_open_named(seg, "res", NULL, &res, NULL), SHK_OK);
    pid_t pids[2 * P];
    /* P processes push and pop concurrently; each reports what it popped */
    for (int p = 0; p < 2 * P; p++) {
        if ((pids[p] = fork()) == 0) {
            uint64_t n = 0, sum = 0, v;
            for (uint64_t i = 0; i < N; i++) {
                if (p < P) {
                    v = ((uint64_t)p << 32) | i;
                    if (shk_stack_push(s, &v, 8, 0) != SHK_OK)
                        _exit(1);
                }
                if (pop_u64(s, &v) == SHK_OK) {
                    n++;
                    sum += v;
                }
            }
            uint64_t r[2] = {n, sum};
            shk_queue_put(res, r, 16, 0, -1);
            _exit(0);
        }
    }
    CHECK(check_reap(pids, 2 * P));
    uint64_t n = 0, sum = 0, v, want = 0;
    for (int p = 0; p < 2 * P; p++) {
        uint64_t r[2], len;
        CHECK_EQ(shk_queue_get_into(res, r, 16, &len, NULL, 0), SHK_OK);
        n += r[0];
        sum += r[1];
    }
    while (pop_u64(s, &v) == SHK_OK) {
        n++;
        sum += v;
    }
    for (uint64_t p = 0; p < P; p++)
        for (uint64_t i = 0; i < N; i++)
            want += (p << 32) | i;
    CHECK_EQ(n, (uint64_t)P * N);
    CHECK_EQ(sum, want);
    shk_stack_stats sst;
    CHECK_EQ(shk_stack_check(s, &sst, 0), SHK_OK);
    CHECK_EQ(sst.items, 0);
    CHECK_EQ(sst.counter, 0);
    shk_queue_close(res);
    shk_stack_close(s);
    fixture_drop(seg, "sprocs");
}

TEST(sigkill)
{
    shk_segment *seg = fixture_segment("skill", 0, SEG_MAX);
    shk_stack *s = NULL;
    CHECK_EQ(shk_stack_open_named(seg, "st", &s, NULL), SHK_OK);
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            uint64_t v;
            for (uint64_t i = 0;; i++) {
                shk_stack_push(s, &i, 8, 0);
                if (i % 3)
                    pop_u64(s, &v);
            }
        }
        struct timespec d = {0, 300000 + (round % 5) * 200000};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        shk_stack_stats st;
        CHECK_EQ(shk_stack_check(s, &st, 1), SHK_OK);
        CHECK_EQ(shk_stack_check(s, &st, 0), SHK_OK);
        CHECK_EQ(st.counter, (int64_t)st.items);
        uint64_t v = 77;
        CHECK_EQ(shk_stack_push(s, &v, 8, 0), SHK_OK);
        CHECK_EQ(pop_u64(s, &v), SHK_OK);
        CHECK_EQ(v, 77);
    }
    shk_stack_close(s);
    fixture_drop(seg, "skill");
}

TEST(corruption)
{
    shk_segment *seg = fixture_segment("scorrupt", 0, SEG_MAX);
    shk_stack *s = NULL, *s2 = NULL;
    CHECK_EQ(shk_stack_open_named(seg, "st", &s, NULL), SHK_OK);
    uint64_t v = 9;
    CHECK_EQ(shk_stack_push(s, &v, 8, 0), SHK_OK);
    shk_object_info info;
    CHECK_EQ(shk_segment_lookup(seg, "st", &info), SHK_OK);
    char *base = shk_segment_base(seg);
    CHECK_EQ(shk_stack_open(seg, info.offset + 16, &s2), SHK_ECORRUPT);
    /* a node whose length runs off the segment */
    uint64_t head;
    memcpy(&head, base + info.offset + 16, 8);
    uint64_t node = shk_lf_off(head), saved, huge = 1ull << 35;
    memcpy(&saved, base + node + 8, 8);
    memcpy(base + node + 8, &huge, 8);
    buf_ctx c;
    CHECK_EQ(shk_stack_peek(s, buf_alloc, &c), SHK_ECORRUPT);
    CHECK_EQ(shk_stack_check(s, NULL, 0), SHK_ECORRUPT);
    memcpy(base + node + 8, &saved, 8);
    CHECK_EQ(pop_u64(s, &v), SHK_OK);
    CHECK_EQ(v, 9);
    shk_stack_close(s);
    fixture_drop(seg, "scorrupt");
}

int main(void)
{
    RUN(lifo_basic);
    RUN(sizes_and_errors);
    RUN(processes_exactly_once);
    RUN(sigkill);
    RUN(corruption);
    return check_summary();
}
