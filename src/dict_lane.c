/*
 * dict_lane.c -- the SharedDict writers' lanes: choosing and taking
 * one, version batches, and repairing a lane whose writer died.
 * (design and layout: dict_internal.h)
 */
#include "dict_internal.h"

/* The next unique even version (called by the holder of lane l). */
uint64_t shk_dict_new_ver(shk_dict *d, dict_lane *l)
{
    if (l->ver_next >= l->ver_end || l->ver_end - l->ver_next > 2 * VER_BATCH) {
        /* relaxed: versions only need to be unique, not ordered. */
        l->ver_next = SHK_A(atomic_fetch_add_explicit(&d->sh->next_ver, 2 * VER_BATCH,
                                                memory_order_relaxed));
        l->ver_end = l->ver_next + 2 * VER_BATCH;
    }
    /* even whatever next_ver holds (a corrupt odd one must not make every
     * new entry look retired) */
    uint64_t v = l->ver_next & VER_MASK & ~1ull;
    l->ver_next += 2;
    return v;
}


/* ---- lanes ----
 * A writer holds one lane (its robust mutex) for the length of one set or
 * delete.  The lane's lines are written by that writer alone, so its
 * intent record and counters cost no cache-line transfers (see WRITES). */

static int pid_alive(uint32_t pid)
{
    return pid != 0 && shk_pid_exists((pid_t)pid);
}

/* Choose the lane this handle tries first: one no live process prefers
 * (claimed with a CAS on its owner hint), else one by pid. */
static unsigned lane_pick(shk_dict *d)
{
    uint32_t me = (uint32_t)getpid();
    unsigned n = DICT_LANES, start = (me * 2654435761u) >> 28 & (n - 1);
    for (unsigned k = 0; k < n; k++) {
        dict_lane *l = &d->lanes[(start + k) & (n - 1)];
        uint32_t o = SHK_A(atomic_load_explicit(&l->owner, memory_order_relaxed));
        /* relaxed: the owner word is a hint; exclusion is the lane mutex. */
        if (o == me || ((o == 0 || !pid_alive(o)) &&
                        SHK_A(atomic_compare_exchange_strong_explicit(
                            &l->owner, &o, me, memory_order_relaxed,
                            memory_order_relaxed))))
            return (start + k) & (n - 1);
    }
    return start;
}

void shk_dict_lane_release_hint(shk_dict *d)
{
    if (SHK_A(atomic_load_explicit(&d->lane_gen, memory_order_relaxed)) != shk_fork_gen())
        return;
    dict_lane *l = &d->lanes[SHK_A(atomic_load_explicit(&d->lane_hint, memory_order_relaxed))];
    uint32_t me = (uint32_t)getpid();
    SHK_A(atomic_compare_exchange_strong_explicit(&l->owner, &me, 0, memory_order_relaxed,
                                            memory_order_relaxed));
}

static void lane_recover(shk_dict *d, dict_lane *l);

/* Lock lane l (blocking); repairs it if its holder died. */
int shk_dict_lane_lock(shk_dict *d, dict_lane *l)
{
    int rc = shk_pmutex_lock(&l->lock);
    if (rc == SHK_MUTEX_RECOVERED) {
        lane_recover(d, l);
        shk_pmutex_consistent(&l->lock);
        rc = SHK_OK;
    }
    return rc;
}

dict_lane *shk_dict_lane_enter(shk_dict *d, int *err)
{
    unsigned fg = shk_fork_gen();
    if (SHK_UNLIKELY(SHK_A(atomic_load_explicit(&d->lane_gen, memory_order_relaxed)) != fg)) {
        SHK_A(atomic_store_explicit(&d->lane_hint, lane_pick(d), memory_order_relaxed));
        SHK_A(atomic_store_explicit(&d->lane_gen, fg, memory_order_relaxed));
    }
    unsigned h = SHK_A(atomic_load_explicit(&d->lane_hint, memory_order_relaxed));
    for (unsigned k = 0; k < DICT_LANES; k++) {
        unsigned i = (h + k) & (DICT_LANES - 1);
        dict_lane *l = &d->lanes[i];
        int rc = shk_pmutex_trylock(&l->lock);
        if (rc == SHK_EAGAIN)
            continue;
        if (k)
            SHK_A(atomic_store_explicit(&d->lane_hint, i, memory_order_relaxed));
        if (rc == SHK_MUTEX_RECOVERED) {
            lane_recover(d, l);
            shk_pmutex_consistent(&l->lock);
            rc = SHK_OK;
        }
        if (rc == SHK_OK)
            return l;
        *err = rc;
        return NULL;
    }
    /* Every lane busy (more writers than lanes): wait for ours. */
    dict_lane *l = &d->lanes[h];
    int rc = shk_dict_lane_lock(d, l);
    if (rc != SHK_OK) {
        *err = rc;
        return NULL;
    }
    return l;
}




/* Repair lane l after its holder died (we hold it now, see CRASH SAFETY). */
static void lane_recover(shk_dict *d, dict_lane *l)
{
    uint64_t op = SHK_A(atomic_load_explicit(&l->op, memory_order_relaxed));
    uint32_t o = lop(op);
    if (o == OP_NONE)
        return;
    unsigned si = lshard(op);
    if ((o != OP_SET && o != OP_DEL) || si > d->shard_mask) {
        intent_clear(l);
        return;   /* garbage: nothing we could act on safely */
    }
    dict_shard *sh = &d->sh->shard[si];
    if (o == OP_DEL && table_valid(d, l->table) &&
        tw_same(SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire)), l->table)) {
        /* Our BUSY marks form one run ending at slot+1: make them EMPTY
         * (if the entry's slot is not among them the delete never
         * happened, and only slot+1 was marked). */
        uint64_t mask = (1ull << tw_log2(l->table)) - 1, mark = busy_word(lane_index(d, l));
        _Atomic uint64_t *slots = slots_of(d, l->table);
        uint64_t j = (l->slot + 1) & mask;
        uint64_t empty = fresh_empty(d, l);
        for (uint64_t n = 0; n <= mask &&
                 SHK_A(atomic_load_explicit(&slots[j], memory_order_relaxed)) == mark;
             n++, j = (j - 1) & mask)
            SHK_A(atomic_store_explicit(&slots[j], empty, memory_order_release));
    }
    if (o == OP_SET && !l->old_e && l->new_e &&
        shk_segment_contains(d->seg, l->new_e, ENTRY_HDR)) {
        /* An insert killed between claiming its slot and checking that the
         * slot is reachable: decide now, as it would have (the check is
         * final once the slot is claimed), and withdraw an unreachable
         * claim, which no lookup can have found. */
        const dict_entry *ne = entry_at(d, l->new_e);
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
        if (table_valid(d, l->table) && tw_same(tw, l->table) &&
            l->slot < (1ull << tw_log2(tw)) &&
            SHK_A(atomic_load_explicit(&slots_of(d, tw)[l->slot], memory_order_relaxed)) ==
                slot_pack(ne->hash, l->new_e) &&
            shk_segment_contains(d->seg, l->new_e + ENTRY_HDR, ne->klen) &&
            !shk_dict_claim_valid(d, tw, ne->ktype, d->base + l->new_e + ENTRY_HDR, ne->klen,
                         ne->hash, l->slot))
            SHK_A(atomic_store_explicit(&slots_of(d, tw)[l->slot], SLOT_TOMB, memory_order_release));
    }
    if (o == OP_SET && l->new_e && shk_segment_contains(d->seg, l->new_e, ENTRY_HDR) &&
        !shk_dict_entry_in_table(d, sh, l->new_e)) {
        /* Unpublished (ours alone), or published and since replaced by a
         * writer that retires it too: the version CAS lets one of us free it. */
        _Atomic uint64_t *lp = &entry_at(d, l->new_e)->life;
        if (SHK_A(atomic_load_explicit(lp, memory_order_relaxed)) == LIFE_DEAD)
            shk_dict_entry_free(d, l->new_e);
        else
            shk_dict_entry_retire(d, l->new_e, l->new_ver);
    }
    if (l->old_e && shk_segment_contains(d->seg, l->old_e, ENTRY_HDR)) {
        _Atomic uint64_t *lp = &entry_at(d, l->old_e)->life;
        uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
        if (!shk_dict_entry_in_table(d, sh, l->old_e))
            shk_dict_entry_retire(d, l->old_e, l->old_ver);
        /* The writer pinned the old entry (so its block could not be
         * reused under its CAS); drop that pin. */
        life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
        if ((op & 1) && life_pins(life) &&
            (life_ver(life) == l->old_ver || life_ver(life) == (l->old_ver | 1)))
            shk_dict_unpin(d, l->old_e);
    }
    /* Whether the change was counted in l->count is unknown: recount. */
    SHK_A(atomic_store_explicit(&sh->s.rebase, 1, memory_order_relaxed));
    intent_clear(l);
    SHK_A(atomic_fetch_add_explicit(&sh->recoveries, 1, memory_order_relaxed));
}

/* Repair every lane whose holder died mid-change (a lane nobody locks
 * again would otherwise keep its intent, and len() its miscount). */
void shk_dict_lanes_reap(shk_dict *d)
{
    for (unsigned i = 0; i < DICT_LANES; i++) {
        dict_lane *l = &d->lanes[i];
        if (SHK_A(atomic_load_explicit(&l->op, memory_order_relaxed)) == 0)
            continue;
        int rc = shk_pmutex_trylock(&l->lock);
        if (rc == SHK_MUTEX_RECOVERED) {
            lane_recover(d, l);
            shk_pmutex_consistent(&l->lock);
        }
        if (rc == SHK_OK || rc == SHK_MUTEX_RECOVERED)
            shk_pmutex_unlock(&l->lock);
    }
}

/* Wait until the delete that marked a slot BUSY is done: it holds its
 * lane for a few stores, so spin briefly, then sleep on the lane's mutex
 * (which also repairs it if that writer died).  Called with no lane held:
 * a writer that waited for one lane while holding another could, once the
 * lanes change hands, wait in a cycle (ThreadSanitizer reported that lock
 * order in test_dict's churn test). */
int shk_dict_wait_busy(shk_dict *d, _Atomic uint64_t *slot, uint64_t busy)
{
    for (int k = 0; k < 256; k++) {
        if (SHK_A(atomic_load_explicit(slot, memory_order_relaxed)) != busy)
            return SHK_OK;
        shk_cpu_relax();
    }
    uint64_t li = (busy >> 32) - 1;
    if (li >= DICT_LANES)
        return SHK_ECORRUPT;
    dict_lane *l = &d->lanes[li];
    int rc = shk_dict_lane_lock(d, l);
    if (rc == SHK_OK)
        lane_exit(l);
    return rc;
}

