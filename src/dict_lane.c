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
        l->ver_next = SHK_A(
            atomic_fetch_add_explicit(&d->sh->next_ver, 2 * VER_BATCH, memory_order_relaxed));
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

static int pid_alive(uint32_t pid) { return pid != 0 && shk_pid_exists((pid_t)pid); }

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
                            &l->owner, &o, me, memory_order_relaxed, memory_order_relaxed))))
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
        return; /* garbage: nothing we could act on safely */
    }
    dict_shard *sh = &d->sh->shard[si];
    /* The writer's one shared step, its slot CAS, happened or not: what the
     * table references now says which, for both entries. */
    if (o == OP_SET && l->new_e && shk_segment_contains(d->seg, l->new_e, ENTRY_HDR) &&
        !shk_dict_entry_in_table(d, sh, l->new_e)) {
        /* Unpublished: its life holds our version, odd or even (publish in
         * dict_write.c), and it is ours alone.  Or published and since
         * replaced by a writer that retires it too: the version CAS lets
         * one of us free it, and a block already freed (and perhaps reused)
         * holds another life word, so it is left alone. */
        if (!shk_dict_entry_retire(d, l->new_e, l->new_ver))
            shk_dict_entry_retire(d, l->new_e, l->new_ver | 1);
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
