/*
 * dict_shard.c -- the SharedDict shard lock and what runs under it:
 * tables, resize, clear, crash recovery, entry counts, stats and check.
 * (design and layout: dict_internal.h)
 */
#include "dict_internal.h"


/* Smallest power of two (at least the minimum) whose table holds
 * `entries` used slots. */
unsigned shk_dict_log2_for(uint64_t entries)
{
    unsigned l = 3;
    while (l < SHK_DICT_MAX_LOG2_CAP && table_limit(l) < entries)
        l++;
    return l;
}

/* Allocate a zeroed table of 2^l slots; its offset in *off. */
int shk_dict_table_new(shk_dict *d, unsigned l, uint64_t *off)
{
    uint64_t t;
    int rc = shk_freelist_alloc(d->heap, table_bytes(l), &t);
    if (rc != SHK_OK)
        return rc;
    char *p = d->base + t;
    memset(p + 8, 0, table_bytes(l) - 8);
    *(uint32_t *)(p + 8) = l;
    *(uint64_t *)p = TABLE_MAGIC;
    *off = t;
    return SHK_OK;
}

static void table_free(shk_dict *d, uint64_t t)
{
    /* Scrub the magic first so check() and recovery never mistake a freed
     * table for a live one. */
    *(uint64_t *)(d->base + t) = 0;
    shk_freelist_free(d->heap, t);
}


/* ---- the shard lock: resizes, clears, checks ---- */

static void shard_finish_clear(shk_dict *d, dict_shard *sh);

/* Repair after a resizer, clearer or checker died holding the shard lock. */
static void recover(shk_dict *d, dict_shard *sh)
{
    dict_intent *in = &sh->intent;
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    uint32_t op = SHK_A(atomic_load_explicit(&in->op, memory_order_relaxed));
    if (op == OP_CLEAR) {
        /* Committed iff the clearer's clear_epoch store happened; then
         * finish it (it publishes the new table if that had not happened);
         * otherwise nothing was visible and the new table is ours alone. */
        uint64_t c = SHK_A(atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed));
        int valid = table_valid(d, in->table) && table_valid(d, in->old_table);
        if (c >= in->slot && valid && (tw_same(tw, in->old_table) || tw_same(tw, in->table)))
            shard_finish_clear(d, sh);
        else if (c < in->slot && !tw_same(tw, in->table) && table_valid(d, in->table))
            table_free(d, tw_off(in->table));
    } else if (op == OP_RESIZE) {
        if (!tw_same(tw, in->table)) {
            /* Not published: the new table is ours alone. */
            if (table_valid(d, in->table))
                table_free(d, tw_off(in->table));
        } else if (table_valid(d, in->old_table)) {
            /* Published, and the intent is cleared before the old table is
             * freed, so that has not happened yet: finish it. */
            table_free(d, tw_off(in->old_table));
        }
    }
    SHK_A(atomic_store_explicit(&in->op, OP_NONE, memory_order_relaxed));
    /* Writers may come back: they wait for this bit to clear. */
    tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (tw & TW_FROZEN)
        SHK_A(atomic_store_explicit(&sh->table, tw & ~TW_FROZEN, memory_order_release));
    SHK_A(atomic_store_explicit(&sh->s.rebase, 1, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&sh->recoveries, 1, memory_order_relaxed));
}

static int shard_lock(shk_dict *d, dict_shard *sh)
{
    int rc = shk_pmutex_lock(&sh->s.lock);
    if (rc == SHK_MUTEX_RECOVERED) {
        recover(d, sh);
        shk_pmutex_consistent(&sh->s.lock);
        return SHK_OK;
    }
    return rc;
}

static inline void shard_unlock(dict_shard *sh) { shk_pmutex_unlock(&sh->s.lock); }


/* FREEZING.  Under the shard lock: set FROZEN in the table word, then take
 * and release every lane once.  A writer works only while holding a lane
 * and reads the table word after taking it, so once every lane has been
 * passed, each writer either finished or will see FROZEN (the lane mutex
 * orders its read after our store) and wait.  The table is then ours. */
static void freeze_mark(dict_shard *sh)
{
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    /* relaxed: the lane unlocks in drain_lanes publish it (see above). */
    SHK_A(atomic_store_explicit(&sh->table, tw | TW_FROZEN, memory_order_relaxed));
}

/* SHK_OK, or the first error a lane lock gave (a lane whose lock words are
 * corrupt: no writer can take it either, so the freeze still holds). */
static int drain_lanes(shk_dict *d)
{
    int rc = SHK_OK;
    for (unsigned i = 0; i < DICT_LANES; i++) {
        int lk = shk_dict_lane_lock(d, &d->lanes[i]);
        if (lk == SHK_OK)
            lane_exit(&d->lanes[i]);
        else if (rc == SHK_OK)
            rc = lk;
    }
    return rc;
}

static void unfreeze(dict_shard *sh)
{
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    /* release: what we changed in the table is visible to writers after. */
    SHK_A(atomic_store_explicit(&sh->table, tw & ~TW_FROZEN, memory_order_release));
}

/* A writer found the shard frozen: wait for whoever froze it (sleeping on
 * the shard lock, which also repairs it if they died). */
int shk_dict_shard_wait(shk_dict *d, dict_shard *sh)
{
    int rc = shard_lock(d, sh);
    if (rc != SHK_OK)
        return rc;
    /* Every freezer unfreezes before it unlocks, and the repair of a dead
     * one unfreezes too (recover): a table still frozen now has no freezer
     * (a scribbled word) and would keep writers waiting for ever. */
    if (SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed)) & TW_FROZEN)
        unfreeze(sh);
    shard_unlock(sh);
    return SHK_OK;
}

/* Sum of the lanes' counts for shard si.  Unsigned, wrapping: the counts
 * are deltas (a lane may delete what another added), and a corrupt header
 * must not make the sum undefined behaviour. */
static uint64_t lanes_count(const shk_dict *d, unsigned si)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < DICT_LANES; i++)
        n += (uint64_t)SHK_A(
            atomic_load_explicit(&d->lanes[i].count[si], memory_order_relaxed));
    return n;
}

static uint64_t recount(shk_dict *d, uint64_t tw, uint64_t *used)
{
    _Atomic uint64_t *slots = slots_of(d, tw);
    uint64_t cap = 1ull << tw_log2(tw), live = 0, u = 0;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_relaxed));
        if (!slot_empty(s))
            u++;
        if (slot_live(s))
            live++;
    }
    *used = u;
    return live;
}

/* Frozen: make base agree with the table. */
static void rebase(shk_dict *d, dict_shard *sh, uint64_t live)
{
    unsigned si = shard_index(d, sh);
    SHK_A(atomic_store_explicit(&sh->s.base, (int64_t)(lanes_count(d, si) - live),
                                memory_order_relaxed));
    SHK_A(atomic_store_explicit(&sh->s.rebase, 0, memory_order_relaxed));
}

int shk_dict_lock(shk_dict *d)
{
    /* Every shard, in index order: two lockers of all shards cannot
     * deadlock, and a single-shard writer never holds two locks. */
    for (unsigned i = 0; i <= d->shard_mask; i++) {
        int rc = shard_lock(d, &d->sh->shard[i]);
        if (rc != SHK_OK) { /* a corrupt lock: let go of those we froze */
            while (i--) {
                unfreeze(&d->sh->shard[i]);
                shard_unlock(&d->sh->shard[i]);
            }
            return rc;
        }
        freeze_mark(&d->sh->shard[i]);
    }
    int rc = drain_lanes(d);
    if (rc != SHK_OK)
        shk_dict_unlock(d);
    return rc;
}

void shk_dict_unlock(shk_dict *d)
{
    for (unsigned i = d->shard_mask + 1; i--;) {
        unfreeze(&d->sh->shard[i]);
        shard_unlock(&d->sh->shard[i]);
    }
}

/* Frozen: replace the table by one of 2^l slots holding the same live
 * entries (l may equal the current size: a rebuild drops tombstones). */
static int resize_to(shk_dict *d, dict_shard *sh, unsigned l)
{
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed)) & ~TW_FROZEN;
    uint64_t nt;
    int rc = shk_dict_table_new(d, l, &nt);
    if (rc != SHK_OK)
        return rc;
    uint64_t ntw = tw_pack(tw_gen(tw) + 1, l, nt);
    sh->intent.table = ntw;
    sh->intent.old_table = tw;
    /* release: intent fields before op. */
    SHK_A(atomic_store_explicit(&sh->intent.op, OP_RESIZE, memory_order_release));
    _Atomic uint64_t *os = slots_of(d, tw), *ns = slots_of(d, ntw);
    uint64_t ocap = 1ull << tw_log2(tw), nmask = (1ull << l) - 1, live = 0;
    for (uint64_t i = 0; i < ocap; i++) {
        uint64_t s = SHK_A(atomic_load_explicit(&os[i], memory_order_relaxed));
        if (!slot_live(s))
            continue;
        uint64_t j = (s >> 32) & nmask;
        while (!slot_empty(SHK_A(atomic_load_explicit(&ns[j], memory_order_relaxed))))
            j = (j + 1) & nmask;
        SHK_A(atomic_store_explicit(&ns[j], s, memory_order_relaxed));
        live++;
        if (live == 1)
            SHK_CRASH_POINT("dict.resize.copying");
    }
    SHK_CRASH_POINT("dict.resize.built");
    SHK_A(atomic_store_explicit(&sh->s.used, (uint32_t)live, memory_order_relaxed));
    rebase(d, sh, live);
    /* release: readers and writers that load the new table word see its
     * slots and the counters above.  Not frozen: writers may go on. */
    SHK_A(atomic_store_explicit(&sh->table, ntw, memory_order_release));
    SHK_CRASH_POINT("dict.resize.published");
    SHK_A(atomic_store_explicit(&sh->intent.op, OP_NONE, memory_order_relaxed));
    table_free(d, tw_off(tw));
    SHK_A(atomic_fetch_add_explicit(&sh->resizes, 1, memory_order_relaxed));
    return SHK_OK;
}

/* A writer ran out of slots it may use in table `seen`.  Under the shard
 * lock, frozen: if the table really is near its limit, grow it (or
 * rebuild it, if tombstones fill it); if lanes merely hold unused
 * reservations, start a new table generation, which voids them. */
int shk_dict_grow(shk_dict *d, dict_shard *sh, uint64_t seen)
{
    int rc = shard_lock(d, sh);
    if (rc != SHK_OK)
        return rc;
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (!tw_same(tw, seen)) {
        shard_unlock(sh);
        return SHK_OK; /* someone else grew it */
    }
    freeze_mark(sh);
    (void)drain_lanes(d); /* a corrupt lane holds no writer */
    uint64_t used, live = recount(d, tw, &used);
    unsigned l0 = tw_log2(tw), l = l0;
    uint64_t lim = table_limit(l0);
    if (used * 4 <= lim * 3 && used + 1 <= lim) {
        /* Room enough: void the reservations by a new generation. */
        SHK_A(atomic_store_explicit(&sh->s.used, (uint32_t)used, memory_order_relaxed));
        rebase(d, sh, live);
        SHK_A(atomic_store_explicit(&sh->table, tw_pack(tw_gen(tw) + 1, l0, tw_off(tw)),
                                    memory_order_release));
        shard_unlock(sh);
        return SHK_OK;
    }
    /* Size for twice the used slots (live and tombstones), so that neither
     * a run of inserts nor the tombstones that deletes leave meanwhile
     * fill it again soon.  Deletes do not reuse tombstones (WRITES), and
     * with two processes deleting, each one's tombstones often sit before
     * the other's live keys until those go too; a table sized for the live
     * entries alone then filled with tombstones within a few hundred
     * inserts, and was rebuilt at equal size again and again (6,000
     * rebuilds in 4 s of bench_dict's shared inserts, against 94 like
     * this).  At most 16 times the size the live entries need, so a
     * pathological pattern cannot grow a table without bound; and a table
     * shrinks only when nearly all tombstones. */
    unsigned need = shk_dict_log2_for(live * 2 + 2);
    l = shk_dict_log2_for(used * 2 + 2);
    if (l > need + 4)
        l = need + 4;
    if (l < l0 && live * 16 > (1ull << l0))
        l = l0;
    rc = SHK_OK;
    if (table_limit(l) < live + 1)
        rc = SHK_ENOMEM;
    else
        rc = resize_to(d, sh, l);
    if (rc != SHK_OK)
        unfreeze(sh);
    shard_unlock(sh);
    return rc;
}


/* Finish a committed clear in one shard (frozen, under its lock, by the
 * clearer or by recover() after the clearer died): publish the empty table
 * its intent holds (if not yet), mark the shard current, then retire what
 * the old table held. */
static void shard_finish_clear(shk_dict *d, dict_shard *sh)
{
    dict_intent *in = &sh->intent;
    uint64_t tw = in->old_table;
    SHK_A(atomic_store_explicit(&sh->s.used, 0, memory_order_relaxed));
    rebase(d, sh, 0);
    /* release: readers that load the new table word see its zeroed slots,
     * writers the counters above. */
    SHK_A(atomic_store_explicit(&sh->table, in->table, memory_order_release));
    SHK_CRASH_POINT("dict.clear.published");
    /* release: a reader that sees the epoch sees the new table (above). */
    SHK_A(atomic_store_explicit(&sh->epoch, in->slot, memory_order_release));
    /* From here the old entries are unreachable for new readers; we retire
     * them one by one.  A crash in the loop leaks the rest (the intent is
     * already cleared), never corrupts.  release: a reader that sees the
     * intent cleared sees the epoch above (shard_stale). */
    SHK_A(atomic_store_explicit(&in->op, OP_NONE, memory_order_release));
    _Atomic uint64_t *os = slots_of(d, tw);
    uint64_t ocap = 1ull << tw_log2(tw);
    for (uint64_t i = 0; i < ocap; i++) {
        uint64_t s = SHK_A(atomic_load_explicit(&os[i], memory_order_relaxed));
        if (!slot_live(s) || !in_seg(d, slot_entry(s), ENTRY_HDR))
            continue;
        uint64_t e = slot_entry(s);
        uint64_t life = SHK_A(
            atomic_load_explicit(&entry_at(d, e)->life, memory_order_relaxed));
        if (!(life_ver(life) & 1))
            shk_dict_entry_retire(d, e, life_ver(life));
    }
    table_free(d, tw_off(tw));
}

int shk_dict_clear(shk_dict *d)
{
    int rc = shk_dict_lock(d);
    if (rc != SHK_OK)
        return rc;
    /* Prepare: every shard gets its empty table, recorded in its intent at
     * once (so a crash never leaks one), before anything is visible. */
    uint64_t epoch = SHK_A(atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed)) + 1;
    unsigned made = 0;
    for (; made <= d->shard_mask; made++) {
        dict_shard *sh = &d->sh->shard[made];
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed)) &
                      ~TW_FROZEN;
        uint64_t nt;
        rc = shk_dict_table_new(d, 3, &nt);
        if (rc != SHK_OK)
            break;
        sh->intent.slot = epoch;
        sh->intent.table = tw_pack(tw_gen(tw) + 1, 3, nt);
        sh->intent.old_table = tw;
        /* release: intent fields before op. */
        SHK_A(atomic_store_explicit(&sh->intent.op, OP_CLEAR, memory_order_release));
    }
    if (rc != SHK_OK) {
        while (made--) {
            dict_shard *sh = &d->sh->shard[made];
            SHK_A(atomic_store_explicit(&sh->intent.op, OP_NONE, memory_order_relaxed));
            table_free(d, tw_off(sh->intent.table));
        }
        shk_dict_unlock(d);
        return rc;
    }
    SHK_CRASH_POINT("dict.clear.prepared");
    /* release: the commit point of the whole clear.  From here every shard
     * reads as empty (shard_stale) until it is finished below, and a
     * recovering locker finishes it if we die. */
    SHK_A(atomic_store_explicit(&d->sh->clear_epoch, epoch, memory_order_release));
    SHK_CRASH_POINT("dict.clear.committed");
    for (unsigned i = 0; i <= d->shard_mask; i++)
        shard_finish_clear(d, &d->sh->shard[i]);
    shk_dict_unlock(d);
    shk_dict_note_change(d);
    return SHK_OK;
}

/* Recount the shards a dead writer left uncertain (frozen, briefly). */
static void rebase_pending(shk_dict *d)
{
    shk_dict_lanes_reap(d);
    for (unsigned i = 0; i <= d->shard_mask; i++) {
        dict_shard *sh = &d->sh->shard[i];
        if (!SHK_A(atomic_load_explicit(&sh->s.rebase, memory_order_relaxed)))
            continue;
        if (shard_lock(d, sh) != SHK_OK)
            continue;
        freeze_mark(sh);
        (void)drain_lanes(d); /* a corrupt lane holds no writer */
        uint64_t used, tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
        if (table_valid(d, tw))
            rebase(d, sh, recount(d, tw, &used));
        unfreeze(sh);
        shard_unlock(sh);
    }
}

/* A shard's entry count: the lanes' counts less base.  Writers move them
 * one at a time, so the sum may be a little below 0 for a moment, or above
 * the table's capacity, by at most the writers in flight (one per lane).
 * A count past that is corrupt: UINT64_MAX. */
static uint64_t shard_count(const shk_dict *d, const dict_shard *sh)
{
    int stale = shard_stale(d, sh);
    if (stale)
        return stale < 0 ? UINT64_MAX : 0;
    int64_t n = (int64_t)(lanes_count(d, shard_index(d, sh)) -
                          (uint64_t)SHK_A(
                              atomic_load_explicit(&sh->s.base, memory_order_relaxed)));
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (n < -(int64_t)DICT_LANES || (n > 0 && (uint64_t)n > (1ull << tw_log2(tw)) + DICT_LANES))
        return UINT64_MAX;
    return n > 0 ? (uint64_t)n : 0;
}

/* Each shard's entry count into counts[] (UINT64_MAX: corrupt), and their
 * sum, or SHK_DICT_COUNT_CORRUPT.  A snapshot only when no writer runs
 * (like len() of any concurrent map); exact then, after any dead writer's
 * lane is repaired.  A shard whose count is corrupt is recounted from its
 * table once. */
static uint64_t shard_counts(shk_dict *d, uint64_t counts[SHK_DICT_SHARDS])
{
    rebase_pending(d);
    for (int pass = 0;; pass++) {
        uint64_t n = 0;
        int bad = 0;
        for (unsigned i = 0; i <= d->shard_mask; i++) {
            dict_shard *sh = &d->sh->shard[i];
            uint64_t c = shard_count(d, sh);
            counts[i] = c;
            if (c == UINT64_MAX) {
                bad = 1;
                /* relaxed: rebase_pending takes the shard lock to act. */
                SHK_A(atomic_store_explicit(&sh->s.rebase, 1, memory_order_relaxed));
            }
            n += c;
        }
        if (!bad)
            return n;
        if (pass == 1)
            return SHK_DICT_COUNT_CORRUPT;
        rebase_pending(d);
    }
}

uint64_t shk_dict_count(const shk_dict *d)
{
    uint64_t counts[SHK_DICT_SHARDS];
    return shard_counts((shk_dict *)d, counts);
}


/* ------------------------------------------------------------ stats/check */

/* Add shard sh's statistics to *st, with `count` its entry count
 * (shard_counts): the lanes are summed once, so count and tombstones are
 * from the same reading. */
static void shard_stats(const shk_dict *d, const dict_shard *sh, uint64_t count,
                        shk_dict_stats *st)
{
    int stale = shard_stale(d, sh) != 0;
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
    uint64_t used = stale ? 0 : SHK_A(atomic_load_explicit(&sh->s.used, memory_order_relaxed));
    if (count == UINT64_MAX)
        count = used; /* corrupt: shk_dict_stats_get reports it in count */
    st->capacity += 1ull << tw_log2(tw);
    st->used_slots += used;
    st->tombstones += used > count ? used - count : 0;
    st->table_bytes += table_bytes(tw_log2(tw));
    st->resizes += SHK_A(atomic_load_explicit(&sh->resizes, memory_order_relaxed));
    st->recoveries += SHK_A(atomic_load_explicit(&sh->recoveries, memory_order_relaxed));
}

void shk_dict_stats_get(const shk_dict *d, shk_dict_stats *st)
{
    uint64_t counts[SHK_DICT_SHARDS];
    uint64_t count = shard_counts((shk_dict *)d, counts); /* recounts a corrupt shard */
    memset(st, 0, sizeof *st);
    for (unsigned i = 0; i <= d->shard_mask; i++)
        shard_stats(d, &d->sh->shard[i], counts[i], st);
    st->count = count;
}

/* Check shard si (frozen, every lane drained), adding its statistics to
 * *total. */
static int check_shard(shk_dict *d, unsigned si, shk_dict_stats *total)
{
    dict_shard *sh = &d->sh->shard[si];
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (!table_valid(d, tw) || *(uint64_t *)(d->base + tw_off(tw)) != TABLE_MAGIC ||
        *(uint32_t *)(d->base + tw_off(tw) + 8) != tw_log2(tw))
        return SHK_ECORRUPT;
    if (SHK_A(atomic_load_explicit(&sh->intent.op, memory_order_relaxed)) != OP_NONE ||
        SHK_A(atomic_load_explicit(&sh->epoch, memory_order_relaxed)) !=
            SHK_A(atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed)))
        return SHK_ECORRUPT;
    uint64_t cap = 1ull << tw_log2(tw), mask = cap - 1;
    _Atomic uint64_t *slots = slots_of(d, tw);
    uint64_t live = 0, used = 0;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_relaxed));
        if (slot_empty(s))
            continue;
        used++;
        if (s == SLOT_TOMB)
            continue;
        live++;
        uint64_t e = slot_entry(s);
        if (!shk_segment_contains(d->seg, e, ENTRY_HDR) || shk_freelist_usable(d->heap, e) == 0)
            return SHK_ECORRUPT;
        const dict_entry *en = entry_at(d, e);
        uint64_t life = SHK_A(atomic_load_explicit(&en->life, memory_order_relaxed));
        uint64_t esz = entry_size(en->klen, en->vlen);
        if ((life_ver(life) & 1) || esz > shk_freelist_usable(d->heap, e))
            return SHK_ECORRUPT;
        const char *key = d->base + e + ENTRY_HDR;
        if (shk_dict_hash(d, en->ktype, key, en->klen) != en->hash ||
            (en->hash >> 32) != (s >> 32) || (en->hash & d->shard_mask) != si)
            return SHK_ECORRUPT;
        /* reachable from its home slot without an EMPTY, no duplicate key
         * before it on the path */
        uint64_t dist = 0;
        for (uint64_t j = (s >> 32) & mask; j != i; j = (j + 1) & mask, dist++) {
            uint64_t t = SHK_A(atomic_load_explicit(&slots[j], memory_order_relaxed));
            if (slot_empty(t))
                return SHK_ECORRUPT;
            if (slot_live(t) && (t >> 32) == (s >> 32)) {
                const dict_entry *o = entry_at(d, slot_entry(t));
                if (o->ktype == en->ktype && o->klen == en->klen &&
                    memcmp(d->base + slot_entry(t) + ENTRY_HDR, key, en->klen) == 0)
                    return SHK_ECORRUPT;
            }
        }
        if (dist + 1 > total->max_probe)
            total->max_probe = dist + 1;
        total->entry_bytes += 16 + shk_freelist_usable(d->heap, e);
        total->key_bytes += en->klen;
        total->value_bytes += en->vlen;
    }
    /* used counts slots reserved by writers, so it bounds the real use */
    uint64_t reserved = SHK_A(atomic_load_explicit(&sh->s.used, memory_order_relaxed));
    if (SHK_A(atomic_load_explicit(&sh->s.rebase, memory_order_relaxed)))
        rebase(d, sh, live);
    if (live != shard_count(d, sh) || used > reserved || reserved > table_limit(tw_log2(tw)))
        return SHK_ECORRUPT;
    total->count += live;
    total->capacity += cap;
    total->used_slots += used;
    total->tombstones += used - live;
    total->table_bytes += table_bytes(tw_log2(tw));
    total->resizes += SHK_A(atomic_load_explicit(&sh->resizes, memory_order_relaxed));
    total->recoveries += SHK_A(atomic_load_explicit(&sh->recoveries, memory_order_relaxed));
    return SHK_OK;
}

int shk_dict_check(shk_dict *d, shk_dict_stats *out)
{
    /* All shards frozen at once, so the totals are one consistent state;
     * draining the lanes repaired any whose writer died. */
    int rc = shk_dict_lock(d);
    if (rc != SHK_OK)
        return rc;
    for (unsigned i = 0; i < DICT_LANES && rc == SHK_OK; i++)
        if (SHK_A(atomic_load_explicit(&d->lanes[i].op, memory_order_relaxed)) != 0)
            rc = SHK_ECORRUPT;
    shk_dict_stats st;
    memset(&st, 0, sizeof st);
    for (unsigned i = 0; i <= d->shard_mask && rc == SHK_OK; i++)
        rc = check_shard(d, i, &st);
    shk_dict_unlock(d);
    if (rc == SHK_OK && out)
        *out = st;
    return rc;
}
