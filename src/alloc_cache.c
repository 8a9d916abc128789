/*
 * alloc_cache.c -- per-process caches in front of the free-list allocator.
 *
 * WHY
 *   Every allocate and free of the shared free lists (alloc_freelist.c) is
 *   a CAS on a list head plus two counter updates, on lines that every
 *   process using that class and stripe writes.  With four stripes, more
 *   than four processes allocating one size share heads, and the aggregate
 *   rate falls as processes are added.  So each process keeps a small cache
 *   of free blocks per size class, in the manner of Bonwick's magazines
 *   (and of mimalloc's per-thread heaps): an allocate pops from it and a
 *   free pushes to it, touching only lines that process owns; the shared
 *   lists are visited once per batch, to refill an empty cache or to hand
 *   back half of a full one.
 *
 * DESIGN
 *   The free-list header ends in a table of SHK_CACHE_SLOTS slots
 *   (SHK_CACHE_SLOT_BYTES each, so two slots never share a cache line or
 *   an adjacent-line pair).  A slot holds, for each of the classes below
 *   SHK_CACHE_CLASSES (blocks up to 1 KiB), a list of blocks in state
 *   CACHED linked through their `link` word, and its length.
 *
 *   Owner.  A slot is owned by one process, named by an owner id: its pid
 *   and its start time (clock ticks since boot, /proc/<pid>/stat), so a
 *   pid reused by another process does not inherit the slot.  A handle
 *   claims a slot at its first cached call in each fork generation (a
 *   forked child has a new pid and claims its own; it never touches its
 *   parent's): it probes from hash(pid) for a slot it already owns (another
 *   handle of the process took it), then a free one (CAS 0 -> id), then one
 *   whose owner is dead (CAS dead id -> id, after which the dead owner's
 *   blocks go back to the shared lists).  A live owner keeps its slot until
 *   it dies: an owner word only ever changes from 0 or from a dead id.  If
 *   no slot can be had, the handle uses the shared lists for that
 *   generation (correct, only slower).
 *
 *   Lock.  The threads of a process share its slot, so a slot has a lock
 *   word: 0, or the id of the process in it.  An operation takes it with
 *   one CAS 0 -> id on the slot's own line (uncontended: no other process
 *   touches it), and if another thread of the process holds it, does not
 *   wait: it uses the shared lists.  A process killed while holding its
 *   lock leaves its id there; whoever takes the slot next (it is dead, so
 *   that is a claim or a reclaim) replaces a lock id that is not its own.
 *
 *   Magazines.  A class's list holds at most cap(c) blocks (8 KiB of them,
 *   8 to 128 blocks).  An allocate from an empty list refills it with
 *   cap(c)/2 blocks from the shared lists (shk_fl_refill: one CAS to take a
 *   list, one to put back the rest) or one carve of new blocks; a free into
 *   a full list first hands its older half back (shk_fl_flush: one CAS).
 *   An allocation that finds nothing anywhere first drains its own cache
 *   and reclaims dead processes' caches before it reports ENOMEM; closing a
 *   handle drains its process's cache.  Blocks in live processes' caches
 *   are not handed to others: up to ~8 KiB per class used, per process, is
 *   the price of not sharing lines.
 *
 *   Reclaim.  shk_freelist_reclaim() (and a claim that takes a dead
 *   process's slot) marks the slot with its own id and RECLAIMING (so no
 *   handle of the reclaiming process mistakes it for its own), takes the
 *   lock, detaches each list and flushes it to the shared lists, then frees
 *   the slot (or, for a claim, keeps it).  A reclaimer killed midway leaves
 *   its own (now dead) id: the next reclaimer starts again, finding only
 *   the lists not yet detached.
 *
 * CRASH SAFETY
 *   A list's head word is written (release) only after the block it names
 *   is CACHED with its link set, so a list always consists of CACHED blocks
 *   of its class, whenever the owner is killed.  A kill loses at most the
 *   blocks in flight: a block being freed or allocated (CACHED on no list),
 *   or a batch being moved to or from the shared lists.  check() counts
 *   them as leaked, as it does the shared lists' in-flight blocks.
 *
 * CHECK
 *   Each list's head word carries a tag bumped on every change, so check()
 *   (other processes) walks a list with shk_lfstack_check: a walk upset by
 *   the owner is repeated, one that failed on an unchanged list is
 *   corruption.  A state store that removes a block from a list (LIVE on
 *   allocation, FREE on a flush) is a release store after the head change,
 *   so a walker that saw the new state sees the new head.
 *
 * TRUST
 *   Nothing in the table is trusted: every offset is checked against the
 *   region before it is used, every walk is bounded by cap(c), a list node
 *   that is not a CACHED block of its class, or a list longer than cap(c),
 *   is SHK_ECORRUPT; an owner word whose pid cannot be a pid is left alone
 *   (never passed to kill()).
 */
#include "internal.h"
#include "heap_internal.h"
#include "lfstack.h"

#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cache_list {
    _Atomic uint64_t head;  /* shk_lf_pack(tag, first block) */
    _Atomic uint32_t count; /* blocks on the list (the owner's count) */
    uint32_t pad;
} cache_list;

typedef struct cache_slot {
    _Atomic uint64_t owner; /* owner id (see ID), 0: free */
    _Atomic uint64_t lock;  /* id of the process in the slot, 0: none */
    char pad[SHK_CACHELINE - 16];
    cache_list list[SHK_CACHE_CLASSES];
} cache_slot;
SHK_STATIC_ASSERT(sizeof(cache_slot) <= SHK_CACHE_SLOT_BYTES, "slot fits");
SHK_STATIC_ASSERT(SHK_CACHE_SLOT_BYTES % 128 == 0, "slots on line pairs");

/* ID: RECLAIMING << 63 | pid << 41 | start time mod 2^41 ticks (at 100 Hz,
 * 700 years).  Linux pids are below 2^22 (PID_MAX_LIMIT). */
#define ID_START_BITS 41
#define ID_START_MASK ((1ull << ID_START_BITS) - 1)
#define ID_PID_MASK ((1ull << 22) - 1)
#define ID_RECLAIMING (1ull << 63)
static inline pid_t id_pid(uint64_t id) { return (pid_t)((id >> ID_START_BITS) & ID_PID_MASK); }

#define CACHE_BYTES 8192u
#define CACHE_MIN 8u
#define CACHE_MAX 128u
#define LOCK_TRIES 1000 /* a reclaim waits this many yields for a thread */

static inline uint64_t bsize(unsigned c) { return SHK_FL_BLOCK_HDR + shk_fl_class_size(c); }
static inline uint32_t cap(unsigned c)
{
    uint64_t n = CACHE_BYTES / bsize(c);
    return n < CACHE_MIN ? CACHE_MIN : n > CACHE_MAX ? CACHE_MAX : (uint32_t)n;
}

static inline shk_fl_common *common(const shk_freelist *fl) { return (shk_fl_common *)fl; }
static inline cache_slot *slot_at(const shk_fl_common *m, unsigned i)
{
    return (cache_slot *)(m->table + (size_t)i * SHK_CACHE_SLOT_BYTES);
}
static inline shk_fl_block *blk(const shk_fl_common *m, uint64_t h)
{
    return (shk_fl_block *)(m->base + h);
}

/* A block of class c at header offset h, inside the region, in `state`? */
static int node_ok(const shk_fl_common *m, uint64_t h, unsigned c, uint64_t top, uint32_t state)
{
    if (h < m->start || h % SHK_ALIGN || shk_add_sat(h, bsize(c)) > top)
        return 0;
    const shk_fl_block *b = blk(m, h);
    return (SHK_A(atomic_load_explicit(&b->cls, memory_order_relaxed)) & 0xffu) == c &&
           SHK_A(atomic_load_explicit(&b->state, memory_order_relaxed)) == state;
}

static inline uint64_t top_now(const shk_fl_common *m)
{
    /* acquire: blocks carved below the top we read are initialised (their
     * class written) before we check them. */
    return SHK_A(atomic_load_explicit(m->top, memory_order_acquire)) & SHK_FL_TOP_MASK;
}

/* ------------------------------------------------------------ ownership */

/* 1 unless the process `id` names is known to be gone: its pid does not
 * exist, is a zombie, or is another process (a different start time).  An
 * id whose pid cannot be a pid counts as alive: never touched. */
static int owner_alive(uint64_t id)
{
    pid_t pid = id_pid(id);
    if (pid <= 0)
        return 1;
    if (!shk_pid_exists(pid))
        return 0;
    return shk_proc_alive(pid, id & ID_START_MASK, ID_START_MASK);
}

static uint64_t self_id(void)
{
    pid_t pid = getpid();
    uint64_t st = shk_proc_start(pid);
    if (st == SHK_START_UNKNOWN)
        st = 0;
    return ((uint64_t)pid & ID_PID_MASK) << ID_START_BITS | (st & ID_START_MASK);
}

/* Take the lock of a slot we own (claimed or reclaiming) from whoever the
 * lock word names: 0, or a dead process (its previous owner) is replaced
 * at once; a thread of ours is waited for (LOCK_TRIES yields).  0 if it
 * stayed busy. */
static int lock_take(cache_slot *s, uint64_t mine, uint64_t self)
{
    for (int i = 0; i < LOCK_TRIES; i++) {
        /* acquire: the previous holder's list changes happen before ours */
        uint64_t v = SHK_A(atomic_load_explicit(&s->lock, memory_order_acquire));
        if (v == self) { /* another thread of this process */
            sched_yield();
            continue;
        }
        /* acquire on success: as above; on failure we look again */
        if (SHK_A(atomic_compare_exchange_strong_explicit(&s->lock, &v, mine,
                                                          memory_order_acquire,
                                                          memory_order_relaxed)))
            return 1;
    }
    return 0;
}

static inline int lock_try(cache_slot *s, uint64_t id)
{
    uint64_t v = 0;
    /* acquire: the list as the last holder (another thread of ours) left
     * it.  relaxed on failure: we do not enter. */
    return SHK_A(atomic_compare_exchange_strong_explicit(&s->lock, &v, id, memory_order_acquire,
                                                         memory_order_relaxed));
}

static inline void lock_drop(cache_slot *s)
{
    /* release: our list changes happen before the next holder's */
    SHK_A(atomic_store_explicit(&s->lock, 0, memory_order_release));
}

/* Walk list c of slot s from its head word: SHK_OK with its length (at most
 * cap(c)) in *n, or SHK_ECORRUPT. */
static int list_len(const shk_fl_common *m, uint64_t head_word, unsigned c, uint64_t top,
                    uint64_t *n)
{
    uint64_t k = 0;
    for (uint64_t h = shk_lf_off(head_word); h;) {
        if (k == cap(c) || !node_ok(m, h, c, top, SHK_FL_CACHED))
            return SHK_ECORRUPT;
        k++;
        h = SHK_A(atomic_load_explicit(&blk(m, h)->link, memory_order_relaxed));
    }
    *n = k;
    return SHK_OK;
}

/* Detach every list of slot s (we hold its lock) and flush it to the
 * shared lists.  *moved += blocks returned. */
static int drain_slot(shk_freelist *fl, cache_slot *s, uint64_t *moved)
{
    shk_fl_common *m = common(fl);
    uint64_t top = top_now(m);
    for (unsigned c = 0; c < SHK_CACHE_CLASSES; c++) {
        cache_list *k = &s->list[c];
        /* acquire: pairs with the owner's release of the head, so the
         * links and states along the list are visible (the owner may be a
         * dead process). */
        uint64_t hw = SHK_A(atomic_load_explicit(&k->head, memory_order_acquire));
        uint64_t n;
        if (shk_lf_off(hw) == 0)
            continue;
        if (list_len(m, hw, c, top, &n) != SHK_OK)
            return SHK_ECORRUPT;
        /* release: the new head before the blocks turn FREE (CHECK) */
        SHK_A(atomic_store_explicit(&k->head, shk_lf_pack(shk_lf_tag(hw) + 1, 0),
                                    memory_order_release));
        SHK_A(atomic_store_explicit(&k->count, 0, memory_order_relaxed));
        SHK_CRASH_POINT("freelist.cache_drain");
        shk_fl_flush(fl, c, shk_lf_off(hw), n);
        if (moved)
            *moved += n;
    }
    return SHK_OK;
}

static inline uint32_t id_hash(uint64_t id)
{
    return (uint32_t)(((uint64_t)id_pid(id) * 0x9e3779b97f4a7c15ull) >> 32);
}

/* Take over slot s from its dead owner `dead` (CAS) and return its blocks
 * to the shared lists.  keep: the slot stays ours (a claim), else it is
 * freed (a reclaim).  SHK_OK, SHK_EAGAIN (another process took it first,
 * or its lock stayed busy), SHK_ECORRUPT. */
static int take_dead(shk_freelist *fl, cache_slot *s, uint64_t dead, uint64_t self, int keep,
                     uint64_t *moved)
{
    uint64_t mine = keep ? self : self | ID_RECLAIMING;
    /* acq_rel: acquire, to see what the dead owner (or a dead reclaimer)
     * left; release, so a later claimer of ours sees our id with the
     * slot's state. */
    if (!SHK_A(atomic_compare_exchange_strong_explicit(&s->owner, &dead, mine,
                                                       memory_order_acq_rel,
                                                       memory_order_relaxed)))
        return SHK_EAGAIN;
    if (!lock_take(s, mine, self))
        return SHK_EAGAIN; /* a thread of ours is in it: it is ours anyway */
    int rc = drain_slot(fl, s, moved);
    if (!keep && rc == SHK_OK)
        /* release: the slot's empty lists before its next owner's claim */
        SHK_A(atomic_store_explicit(&s->owner, 0, memory_order_release));
    lock_drop(s);
    return rc;
}

/* Find this process a slot (see Owner).  Its index, or SHK_CACHE_NONE. */
static unsigned claim(shk_freelist *fl, uint64_t self)
{
    shk_fl_common *m = common(fl);
    uint32_t h0 = id_hash(self);
    for (int pass = 0; pass < 3; pass++) {
        for (unsigned k = 0; k < SHK_CACHE_SLOTS; k++) {
            unsigned i = (h0 + k) % SHK_CACHE_SLOTS;
            cache_slot *s = slot_at(m, i);
            /* acquire: a slot found ours shows what our other handle did */
            uint64_t o = SHK_A(atomic_load_explicit(&s->owner, memory_order_acquire));
            if (o == self)
                return i;
            if (pass == 1 && o == 0) {
                /* acq_rel: acquire what a reclaimer left (empty lists);
                 * release our id. */
                if (SHK_A(atomic_compare_exchange_strong_explicit(&s->owner, &o, self,
                                                                  memory_order_acq_rel,
                                                                  memory_order_relaxed)))
                    return i;
            } else if (pass == 2 && o != 0 && !owner_alive(o)) {
                int rc = take_dead(fl, s, o, self, 1, NULL);
                if (rc == SHK_OK)
                    return i;
            }
        }
    }
    return SHK_CACHE_NONE;
}

/* This handle's slot in the current fork generation, or NULL. */
static inline cache_slot *my_slot(shk_freelist *fl, uint64_t *id)
{
    shk_fl_common *m = common(fl);
    if (m->cache.disabled)
        return NULL;
    unsigned g = shk_fork_gen();
    /* acquire: pairs with the release below, so `id` is this generation's */
    uint64_t w = atomic_load_explicit(&m->cache.w, memory_order_acquire);
    if (SHK_UNLIKELY((uint32_t)w != g || (w >> 32) == 0)) {
        uint64_t self = self_id();
        unsigned i = claim(fl, self);
        /* relaxed, then release: process-local; threads racing here claim
         * the same slot (it is found as ours) and store the same values. */
        atomic_store_explicit(&m->cache.id, self, memory_order_relaxed);
        w = (uint64_t)(i == SHK_CACHE_NONE ? SHK_CACHE_NONE : i + 1) << 32 | g;
        atomic_store_explicit(&m->cache.w, w, memory_order_release);
    }
    uint32_t si = (uint32_t)(w >> 32);
    if (si == SHK_CACHE_NONE)
        return NULL;
    *id = atomic_load_explicit(&m->cache.id, memory_order_relaxed);
    return slot_at(m, si - 1);
}

/* ----------------------------------------------------- allocate and free */

/* Enter this process's slot (its lock taken): list c, with the slot in *s;
 * NULL if there is no slot or another thread of ours is in it. */
static inline cache_list *enter(shk_freelist *fl, unsigned c, cache_slot **s)
{
    uint64_t id;
    *s = my_slot(fl, &id);
    return *s && lock_try(*s, id) ? &(*s)->list[c] : NULL;
}

int shk_cache_alloc(shk_freelist *fl, unsigned c, uint64_t *hdr)
{
    shk_fl_common *m = common(fl);
    cache_slot *s;
    cache_list *k = enter(fl, c, &s);
    if (!k)
        return SHK_EAGAIN;
    /* relaxed: only we write the list, and the lock ordered us after the
     * last writer (another thread of ours). */
    uint64_t hw = SHK_A(atomic_load_explicit(&k->head, memory_order_relaxed));
    uint32_t cnt = SHK_A(atomic_load_explicit(&k->count, memory_order_relaxed));
    if (shk_lf_off(hw) == 0) {
        uint64_t n = 0;
        uint64_t first = shk_fl_refill(fl, c, cap(c) / 2, &n);
        if (first == 0) {
            lock_drop(s);
            return SHK_EAGAIN; /* the shared path looks at larger classes */
        }
        hw = shk_lf_pack(shk_lf_tag(hw) + 1, first);
        cnt = (uint32_t)n;
        /* release: the chain's links and states before the head (CHECK) */
        SHK_A(atomic_store_explicit(&k->head, hw, memory_order_release));
        SHK_A(atomic_store_explicit(&k->count, cnt, memory_order_relaxed));
    }
    uint64_t h = shk_lf_off(hw);
    if (!node_ok(m, h, c, top_now(m), SHK_FL_CACHED)) {
        lock_drop(s);
        return SHK_ECORRUPT;
    }
    shk_fl_block *b = blk(m, h);
    uint64_t next = SHK_A(atomic_load_explicit(&b->link, memory_order_relaxed));
    /* release: a list walker that meets h after our head change sees it
     * (CHECK); the state store below is release for the same reason. */
    SHK_A(atomic_store_explicit(&k->head, shk_lf_pack(shk_lf_tag(hw) + 1, next),
                                memory_order_release));
    SHK_A(atomic_store_explicit(&k->count, cnt ? cnt - 1 : 0, memory_order_relaxed));
    SHK_CRASH_POINT("freelist.cache_alloc");
    SHK_A(atomic_store_explicit(&b->state, SHK_FL_LIVE, memory_order_release));
    lock_drop(s);
    *hdr = h;
    return SHK_OK;
}

/* List c is full: keep its first (most recently freed) half, flush the
 * rest to the shared lists. */
static int flush_half(shk_freelist *fl, cache_list *k, unsigned c)
{
    shk_fl_common *m = common(fl);
    uint64_t top = top_now(m);
    uint64_t hw = SHK_A(atomic_load_explicit(&k->head, memory_order_relaxed));
    uint64_t keep = cap(c) / 2, last = 0, h = shk_lf_off(hw), n = 0, j = 0;
    for (; j < keep && h; j++) {
        if (!node_ok(m, h, c, top, SHK_FL_CACHED))
            return SHK_ECORRUPT;
        last = h;
        h = SHK_A(atomic_load_explicit(&blk(m, h)->link, memory_order_relaxed));
    }
    uint64_t rest = h;
    if (list_len(m, shk_lf_pack(0, rest), c, top, &n) != SHK_OK)
        return SHK_ECORRUPT;
    if (rest == 0 || last == 0) {
        /* shorter than its count said (damage): the count follows the list */
        SHK_A(atomic_store_explicit(&k->count, (uint32_t)j, memory_order_relaxed));
        return SHK_OK;
    }
    SHK_A(atomic_store_explicit(&blk(m, last)->link, 0, memory_order_relaxed));
    /* release: the cut (a new tag) before the flushed blocks turn FREE */
    SHK_A(atomic_store_explicit(&k->head, shk_lf_pack(shk_lf_tag(hw) + 1, shk_lf_off(hw)),
                                memory_order_release));
    SHK_A(atomic_store_explicit(&k->count, (uint32_t)keep, memory_order_relaxed));
    SHK_CRASH_POINT("freelist.cache_flush");
    shk_fl_flush(fl, c, rest, n);
    return SHK_OK;
}

int shk_cache_free(shk_freelist *fl, uint64_t hdr, unsigned c)
{
    shk_fl_common *m = common(fl);
    cache_slot *s;
    cache_list *k = enter(fl, c, &s);
    if (!k)
        return SHK_EAGAIN;
    /* relaxed: as in shk_cache_alloc */
    uint32_t cnt = SHK_A(atomic_load_explicit(&k->count, memory_order_relaxed));
    if (cnt >= cap(c)) {
        int rc = flush_half(fl, k, c);
        if (rc != SHK_OK) {
            lock_drop(s);
            return rc;
        }
        cnt = SHK_A(atomic_load_explicit(&k->count, memory_order_relaxed));
    }
    shk_fl_block *b = blk(m, hdr);
    uint32_t expect = SHK_FL_LIVE;
    /* The CAS makes a double free (even a concurrent one, from another
     * process) fail cleanly.  relaxed: the head store publishes. */
    if (!SHK_A(atomic_compare_exchange_strong_explicit(&b->state, &expect, SHK_FL_CACHED,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))) {
        lock_drop(s);
        return SHK_EBADOFF;
    }
    SHK_CRASH_POINT("freelist.cache_free");
    uint64_t hw = SHK_A(atomic_load_explicit(&k->head, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&b->link, shk_lf_off(hw), memory_order_relaxed));
    /* release: the block's state and link before the head that names it */
    SHK_A(atomic_store_explicit(&k->head, shk_lf_pack(shk_lf_tag(hw) + 1, hdr),
                                memory_order_release));
    SHK_A(atomic_store_explicit(&k->count, cnt + 1, memory_order_relaxed));
    lock_drop(s);
    return SHK_OK;
}

void shk_cache_drain(shk_freelist *fl)
{
    shk_fl_common *m = common(fl);
    if (m->cache.disabled)
        return;
    /* Only a slot already claimed in this generation: never claim one to
     * drain it. */
    uint64_t w = atomic_load_explicit(&m->cache.w, memory_order_acquire);
    uint32_t si = (uint32_t)(w >> 32);
    if ((uint32_t)w != shk_fork_gen() || si == 0 || si == SHK_CACHE_NONE)
        return;
    cache_slot *s = slot_at(m, si - 1);
    uint64_t id = atomic_load_explicit(&m->cache.id, memory_order_relaxed);
    if (!lock_try(s, id))
        return;
    (void)drain_slot(fl, s, NULL); /* damage: check() reports it */
    lock_drop(s);
}

int shk_freelist_reclaim(shk_freelist *fl, uint64_t *blocks)
{
    shk_fl_common *m = common(fl);
    uint64_t self = self_id(), moved = 0;
    int rc = SHK_OK;
    for (unsigned i = 0; i < SHK_CACHE_SLOTS && rc != SHK_ECORRUPT; i++) {
        cache_slot *s = slot_at(m, i);
        /* relaxed: take_dead's CAS acquires what the slot holds */
        uint64_t o = SHK_A(atomic_load_explicit(&s->owner, memory_order_relaxed));
        if (o == 0 || o == self || owner_alive(o))
            continue;
        int r = take_dead(fl, s, o, self, 0, &moved);
        if (r == SHK_ECORRUPT)
            rc = r;
    }
    if (blocks)
        *blocks = moved;
    return rc;
}

/* ------------------------------------------------------ statistics, check */

uint64_t shk_cache_bytes(const shk_freelist *fl)
{
    const shk_fl_common *m = common(fl);
    uint64_t n = 0;
    for (unsigned i = 0; i < SHK_CACHE_SLOTS; i++) {
        cache_slot *s = slot_at(m, i);
        /* relaxed: statistics; a free slot's counts are 0 */
        if (SHK_A(atomic_load_explicit(&s->owner, memory_order_relaxed)) == 0)
            continue;
        for (unsigned c = 0; c < SHK_CACHE_CLASSES; c++) {
            uint32_t k = SHK_A(atomic_load_explicit(&s->list[c].count, memory_order_relaxed));
            n += (uint64_t)(k < cap(c) ? k : cap(c)) * bsize(c);
        }
    }
    return n;
}

typedef struct cache_walk {
    const shk_fl_common *m;
    unsigned c;
    uint64_t n;
} cache_walk;

static int walk_cache(uint64_t head_word, void *ctx)
{
    cache_walk *cw = ctx;
    return list_len(cw->m, head_word, cw->c, top_now(cw->m), &cw->n) != SHK_OK;
}

int shk_cache_check(const shk_freelist *fl, uint64_t *blocks, uint64_t *bytes,
                    uint64_t *unverified)
{
    const shk_fl_common *m = common(fl);
    for (unsigned i = 0; i < SHK_CACHE_SLOTS; i++) {
        cache_slot *s = slot_at(m, i);
        for (unsigned c = 0; c < SHK_CACHE_CLASSES; c++) {
            cache_walk cw = {m, c, 0};
            int rc = shk_lfstack_check(&s->list[c].head, walk_cache, &cw);
            if (rc == SHK_ECORRUPT)
                return rc;
            if (rc == SHK_EAGAIN) {
                (*unverified)++;
                continue;
            }
            *blocks += cw.n;
            *bytes += cw.n * bsize(c);
        }
    }
    return SHK_OK;
}

void shk_freelist_cache_enable(shk_freelist *fl, int on)
{
    shk_fl_common *m = common(fl);
    if (!on)
        shk_cache_drain(fl);
    m->cache.disabled = !on;
}

/* -------------------------------------- the free list's public entry points
 * (the cache first, then the shared lists beneath: alloc_freelist.c) */

int shk_freelist_alloc(shk_freelist *fl, uint64_t n, uint64_t *off)
{
    int c = shk_fl_class_of(n);
    if (c < 0)
        return SHK_EINVAL;
    uint64_t h;
    if ((unsigned)c < SHK_CACHE_CLASSES) {
        int rc = shk_cache_alloc(fl, (unsigned)c, &h);
        if (rc != SHK_EAGAIN) {
            if (rc == SHK_OK)
                *off = h + SHK_FL_BLOCK_HDR;
            return rc;
        }
    }
    h = shk_fl_alloc(fl, (unsigned)c);
    if (h == 0 && shk_cache_bytes(fl) != 0) {
        /* Before giving up: our own cache, and the caches of dead
         * processes, back to the shared lists. */
        shk_cache_drain(fl);
        shk_freelist_reclaim(fl, NULL);
        h = shk_fl_alloc(fl, (unsigned)c);
    }
    if (h == 0)
        return SHK_ENOMEM;
    *off = h + SHK_FL_BLOCK_HDR;
    return SHK_OK;
}

/* Free into our cache, else onto our stripe's list or (home) the list of
 * the stripe whose carve made the block.  A home free goes through the
 * cache only for a block our stripe carved: see STRIPES in
 * alloc_freelist.c for why the others go home. */
static int free_to(shk_freelist *fl, uint64_t off, int home)
{
    unsigned c;
    int mine;
    uint64_t h = shk_fl_live(fl, off, &c, &mine);
    if (h == 0)
        return SHK_EBADOFF;
    if (c < SHK_CACHE_CLASSES && (!home || mine)) {
        int rc = shk_cache_free(fl, h, c);
        if (rc != SHK_EAGAIN)
            return rc;
    }
    return shk_fl_free(fl, h, home);
}

int shk_freelist_free(shk_freelist *fl, uint64_t off) { return free_to(fl, off, 0); }
int shk_freelist_free_home(shk_freelist *fl, uint64_t off) { return free_to(fl, off, 1); }

uint64_t shk_freelist_available(const shk_freelist *fl)
{
    return shk_fl_available(fl) + shk_cache_bytes(fl);
}

int shk_freelist_check(const shk_freelist *fl, shk_freelist_stats *st)
{
    shk_freelist_stats s;
    uint64_t cached_walk = 0;
    int rc = shk_fl_check(fl, &s, &cached_walk);
    if (rc != SHK_OK)
        return rc;
    rc = shk_cache_check(fl, &s.cached_blocks, &s.cached_bytes, &s.unverified_lists);
    if (rc != SHK_OK)
        return rc;
    /* CACHED blocks on no cache list: a process killed between the state
     * change and the list change (exact only when quiescent) */
    if (cached_walk > s.cached_blocks)
        s.leaked_blocks += cached_walk - s.cached_blocks;
    if (st)
        *st = s;
    return SHK_OK;
}

void shk_freelist_drop(shk_freelist *fl)
{
    if (!fl)
        return;
    shk_cache_drain(fl);
    free(fl);
}
