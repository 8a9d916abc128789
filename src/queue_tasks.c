/*
 * queue_tasks.c -- the task ledger of a joinable queue: task_done, join and
 * the reclaim of a dead consumer's items.  (design: JOINABLE in
 * queue_internal.h)
 */
#include "queue_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* get_lock held: the validated ledger (NULL if the queue is not joinable). */
int shk_q_tasks_of(shk_queue *q, q_tasks **out)
{
    /* relaxed: set once under get_lock, which we hold. */
    uint64_t off = SHK_A(atomic_load_explicit(&q->sh->tasks_off, memory_order_relaxed));
    if (off == q->tasks_off) {
        *out = q->tasks;
        return SHK_OK;
    }
    /* bounds first: the address is formed only for an offset inside the
     * segment */
    uint64_t hoff = (uint64_t)((char *)q->sh - q->base);
    if (off % 8 || !shk_segment_contains(q->seg, off, sizeof(q_tasks)) ||
        (off < shk_add_sat(hoff, sizeof(q_shared)) && hoff < off + sizeof(q_tasks)) ||
        (off < q->sh->ring_off + q->ring_size && q->sh->ring_off < off + sizeof(q_tasks)))
        return SHK_ECORRUPT;
    q_tasks *t = (q_tasks *)(q->base + off);
    if (t->magic != T_MAGIC || t->ncells != T_CELLS)
        return SHK_ECORRUPT;
    q->tasks = t;
    q->tasks_off = off;
    *out = t;
    return SHK_OK;
}

/* Who we are: pid and start time, re-read after a fork (shk_fork_gen:
 * getpid() is a system call, too slow for every get). */
static void know_me(shk_queue *q)
{
    unsigned gen = shk_fork_gen();
    if (q->me_pid == 0 || q->me_gen != gen) {
        q->me_pid = getpid();
        q->me_gen = gen;
        q->me_start = shk_proc_start(q->me_pid);
        q->me_cell = -1;
    }
}

/* get_lock held: this process's cell, or NULL if it has none. */
static t_cell *find_cell(shk_queue *q, q_tasks *t)
{
    know_me(q);
    uint32_t pid = (uint32_t)q->me_pid;
    if (q->me_cell == (int)T_SHARED) /* the table was full: stay there */
        return &t->cells[T_SHARED];
    if (q->me_cell >= 0 && t->cells[q->me_cell].pid == pid &&
        t->cells[q->me_cell].start == q->me_start)
        return &t->cells[q->me_cell];
    for (unsigned i = 0; i < T_SHARED; i++)
        if (t->cells[i].pid == pid && t->cells[i].start == q->me_start) {
            q->me_cell = (int)i;
            return &t->cells[i];
        }
    return NULL;
}

/* get_lock held: is the process of cell c gone? */
static int cell_dead(const t_cell *c)
{
    return !shk_proc_alive((pid_t)c->pid, c->start, UINT64_MAX);
}

/* get_lock held: this process's cell, claimed if need be (a full table of live
 * processes gives the shared last cell). */
t_cell *shk_q_claim_cell(shk_queue *q, q_tasks *t)
{
    t_cell *c = find_cell(q, t);
    if (c)
        return c;
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < T_SHARED; i++) {
            c = &t->cells[i];
            if (c->pid != 0 && !(pass == 1 && cell_dead(c)))
                continue;
            /* A dead process's cell (second pass, rare: a full table) is
             * reclaimed here: its items count as done. */
            t->reclaimed += c->taken;
            c->start = q->me_start;
            c->taken = 0;
            c->pid = (uint32_t)q->me_pid;
            q->me_cell = (int)i;
            return c;
        }
    q->me_cell = (int)T_SHARED;
    return &t->cells[T_SHARED];
}

/* get_lock held: items put and not yet marked done. */
uint64_t shk_q_unfinished(const shk_queue *q, const q_tasks *t)
{
    uint64_t n = shk_q_count(q);
    for (unsigned i = 0; i < T_CELLS; i++)
        n += t->cells[i].taken;
    return n;
}

/* get_lock held: after unfinished may have reached 0.  1 if joiners must be
 * woken (after unlocking). */
static int signal_joiners(const shk_queue *q, q_tasks *t)
{
    /* relaxed: join_waiters rises under this lock; a stale non-zero costs a
     * syscall, and every joiner re-checks at least every JOIN_POLL_NS. */
    if (SHK_A(atomic_load_explicit(&t->join_waiters, memory_order_relaxed)) == 0 ||
        shk_q_unfinished(q, t) != 0)
        return 0;
    SHK_A(atomic_fetch_add_explicit(&t->join_seq, 1, memory_order_relaxed));
    return 1;
}

/* get_lock, and find the ledger: SHK_OK with it held and *t set (NULL:
 * not joinable), else unlocked. */
static int lock_tasks(shk_queue *q, q_tasks **t)
{
    int rc = shk_q_lock_get(q);
    if (rc != SHK_OK)
        return rc;
    rc = shk_q_tasks_of(q, t);
    if (rc != SHK_OK)
        shk_q_unlock_get(q);
    return rc;
}

int shk_queue_make_joinable(shk_queue *q)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    shk_q_unlock_get(q);
    if (t)
        return SHK_OK;
    uint64_t off;
    rc = shk_freelist_alloc(q->heap, sizeof(q_tasks), &off);
    if (rc != SHK_OK)
        return rc;
    t = (q_tasks *)(q->base + off);
    memset(t, 0, sizeof *t);
    t->magic = T_MAGIC;
    t->ncells = T_CELLS;
    rc = shk_q_lock_get(q);
    if (rc != SHK_OK) {
        shk_freelist_free(q->heap, off);
        return rc;
    }
    int mine = SHK_A(atomic_load_explicit(&q->sh->tasks_off, memory_order_relaxed)) == 0;
    if (mine)
        /* relaxed: published to every reader by the unlock (release). */
        SHK_A(atomic_store_explicit(&q->sh->tasks_off, off, memory_order_relaxed));
    rc = shk_q_tasks_of(q, &t);
    shk_q_unlock_get(q);
    if (!mine)
        shk_freelist_free(q->heap, off);
    return rc;
}

int shk_queue_task_done(shk_queue *q)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    if (!t) {
        shk_q_unlock_get(q);
        return SHK_EINVAL;
    }
    t_cell *c = find_cell(q, t);
    for (unsigned i = 0; (!c || c->taken == 0) && i < T_CELLS; i++)
        c = &t->cells[i]; /* an item another process took */
    if (c->taken == 0) {
        shk_q_unlock_get(q);
        return SHK_EEMPTY;
    }
    c->taken--;
    int wake = signal_joiners(q, t);
    shk_q_unlock_get(q);
    if (wake)
        shk_futex_wake(&t->join_seq, INT_MAX);
    return SHK_OK;
}

/* Count the items of dead consumers done (outside get_lock but for two
 * short holds: /proc is read between them). */
static int reclaim_dead(shk_queue *q, q_tasks *t)
{
    struct {
        uint32_t pid;
        uint64_t start;
    } snap[T_SHARED];
    int rc = shk_q_lock_get(q);
    if (rc != SHK_OK)
        return rc;
    for (unsigned i = 0; i < T_SHARED; i++) {
        snap[i].pid = t->cells[i].taken ? t->cells[i].pid : 0;
        snap[i].start = t->cells[i].start;
    }
    shk_q_unlock_get(q);
    know_me(q);
    int any = 0;
    for (unsigned i = 0; i < T_SHARED; i++) {
        t_cell probe = {snap[i].pid, 0, snap[i].start, 0};
        if (snap[i].pid == 0 || snap[i].pid == (uint32_t)q->me_pid || !cell_dead(&probe))
            snap[i].pid = 0;
        else
            any = 1;
    }
    if (!any)
        return SHK_OK;
    rc = shk_q_lock_get(q);
    if (rc != SHK_OK)
        return rc;
    for (unsigned i = 0; i < T_SHARED; i++) {
        t_cell *c = &t->cells[i];
        if (snap[i].pid && c->pid == snap[i].pid && c->start == snap[i].start) {
            t->reclaimed += c->taken;
            c->taken = 0;
            c->pid = 0;
        }
    }
    int wake = signal_joiners(q, t);
    shk_q_unlock_get(q);
    if (wake)
        shk_futex_wake(&t->join_seq, INT_MAX);
    return SHK_OK;
}

int shk_queue_wait_join(shk_queue *q, int64_t timeout_ns)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    shk_q_unlock_get(q);
    if (!t)
        return SHK_EINVAL;
    rc = reclaim_dead(q, t);
    if (rc != SHK_OK)
        return rc;
    /* put_lock once: a producer killed between counting an item and
     * committing it is repaired now, even if no producer comes (JOINABLE) */
    if ((rc = shk_q_lock_put(q)) != SHK_OK)
        return rc;
    shk_q_unlock_put(q);
    if ((rc = shk_q_lock_get(q)) != SHK_OK)
        return rc;
    if (shk_q_unfinished(q, t) == 0) {
        shk_q_unlock_get(q);
        return SHK_OK;
    }
    if (timeout_ns == 0) {
        shk_q_unlock_get(q);
        return SHK_ETIMEDOUT;
    }
    /* relaxed: ordered by get_lock against signal_joiners. */
    SHK_A(atomic_fetch_add_explicit(&t->join_waiters, 1, memory_order_relaxed));
    uint32_t seq = SHK_A(atomic_load_explicit(&t->join_seq, memory_order_relaxed));
    shk_q_unlock_get(q);
    int64_t nap = timeout_ns < 0 || timeout_ns > JOIN_POLL_NS ? JOIN_POLL_NS : timeout_ns;
    rc = shk_futex_wait(&t->join_seq, seq, nap);
    /* relaxed: a counter; a joiner killed asleep leaves it high, which
     * costs task_done one wake syscall when unfinished reaches 0. */
    uint32_t w = SHK_A(atomic_load_explicit(&t->join_waiters, memory_order_relaxed));
    while (w != 0 && !SHK_A(atomic_compare_exchange_weak_explicit(&t->join_waiters, &w, w - 1,
                                                                  memory_order_relaxed,
                                                                  memory_order_relaxed)))
        ;
    if (rc == SHK_EINTR)
        return rc;
    return timeout_ns > 0 && nap == timeout_ns && rc == SHK_ETIMEDOUT ? SHK_ETIMEDOUT
                                                                      : SHK_EAGAIN;
}

int shk_queue_tasks(shk_queue *q, uint64_t *unfinished_out, uint64_t *reclaimed)
{
    q_tasks *t;
    int rc = lock_tasks(q, &t);
    if (rc != SHK_OK)
        return rc;
    if (t) {
        *unfinished_out = shk_q_unfinished(q, t);
        *reclaimed = t->reclaimed;
    }
    shk_q_unlock_get(q);
    return t ? SHK_OK : SHK_EINVAL;
}
