/*
 * dict_probe.c -- finding keys in a SharedDict table: entry snapshots,
 * lookups, the writer's probe, iteration; pinning and retiring entries.
 * (design and layout: dict_internal.h)
 */
#include "dict_internal.h"

uint64_t shk_dict_hash(const shk_dict *d, uint8_t ktype, const void *key, size_t klen)
{
    return shk_hash64(key, klen, key_seed(d, ktype));
}

/* Total bytes of an entry; UINT64_MAX on overflow. */

uint64_t shk_dict_entry_footprint(uint64_t klen, uint64_t vlen)
{
    /* Mirrors the free list's size classes (alloc_freelist.c): 16-byte steps
     * to 256, then four classes per power of two; plus its 16-byte header. */
    uint64_t n = entry_size(klen, vlen);
    if (n <= 256)
        return 16 + shk_align_up(n, 16);
    uint64_t m = n - 1;
    unsigned k = shk_log2_u64(m);
    uint64_t sub = (m >> (k - 2)) & 3u;
    return 16 + (1ull << k) + (sub + 1) * (1ull << (k - 2));
}

/* ------------------------------------------------------------------ reads */

/* Read the entry at `e` into ref if it is a consistent, live entry.
 * Returns 1 (ref filled, life1 even and unchanged), 0 if it changed or its
 * lengths do not fit the segment (the caller retries). */
static inline int entry_snapshot(const shk_dict *d, uint64_t e, shk_dict_ref *ref)
{
    ref->ver = 0; /* on failure: the life word seen (slot_unstable) */
    if (SHK_UNLIKELY(!in_seg(d, e, ENTRY_HDR)))
        return 0;
    const dict_entry *en = entry_at(d, e);
    /* acquire: pairs with the builder's release of an even ver, so the
     * entry's fields read below are at least that complete. */
    uint64_t life = SHK_A(atomic_load_explicit(&en->life, memory_order_acquire));
    ref->ver = life;
    if (life_ver(life) & 1)
        return 0;
    uint64_t klen = en->klen, vlen = en->vlen;
    uint64_t voff = shk_add_sat(e + ENTRY_HDR, shk_align_up(klen, 16));
    if (SHK_UNLIKELY(!in_seg(d, voff, vlen)))
        return 0;
    ref->entry = e;
    ref->ver = life_ver(life);
    ref->key = d->base + e + ENTRY_HDR;
    ref->val = d->base + voff;
    ref->klen = klen;
    ref->vlen = vlen;
    ref->ktype = en->ktype;
    ref->vtype = en->vtype;
    return 1;
}

/* Does the snapshot in ref hold this key?  (Meaningful only once ref is
 * validated: its bytes may be torn.) */
static inline int ref_is_key(const shk_dict *d, const shk_dict_ref *ref, uint8_t ktype,
                             const void *key, uint64_t klen, uint64_t hash)
{
    return ref->ktype == ktype && ref->klen == klen && entry_at(d, ref->entry)->hash == hash &&
           memcmp(ref->key, key, klen) == 0;
}

/* Fill the where-found fields of a snapshot taken through slot i of table
 * tw (whose word was s) in shard si. */
static inline void ref_found_at(shk_dict_ref *ref, uint64_t tw, uint32_t si, uint64_t i,
                                uint64_t s)
{
    ref->table = tw;
    ref->shard = si;
    ref->slot = i;
    ref->word = s;
}

/* Is what was read through ref the entry its slot referenced at one
 * instant?  The life word equal before and after (seqlock) proves the
 * bytes are one complete version V of the block; but the slot may have
 * been replaced after we loaded it, and the block retired, freed and
 * reused for another entry (another key, or an entry still being
 * published) before we loaded life: a consistent snapshot of the wrong
 * entry.  So the slot is re-read between the two life loads: life1 (t0) =
 * V, slot (t1) = the word we followed, life2 (t2) = V, with t0 < t1 < t2,
 * means the block held V throughout and the slot referenced it at t1 (a
 * slot references a block only while the block holds the entry published
 * there: retiring follows the replacing CAS).  The table word, re-read
 * last, proves slot i was in the shard's current table then. */
int shk_dict_ref_valid(const shk_dict *d, const shk_dict_ref *ref)
{
    /* acquire fence: every read of entry data (and life1) before it
     * happens before the loads below, so if a writer retired (or a reuser
     * overwrote) the block while we read, we see its new life value
     * (seqlock read side). */
    atomic_thread_fence(memory_order_acquire);
    const _Atomic uint64_t *slot = slots_of(d, ref->table) + ref->slot;
    /* acquire: orders the life2 load below after this load (t1 < t2). */
    if (SHK_A(atomic_load_explicit(slot, memory_order_acquire)) != ref->word)
        return 0;
    uint64_t life = SHK_A(
        atomic_load_explicit(&entry_at(d, ref->entry)->life, memory_order_relaxed));
    if (life_ver(life) != ref->ver)
        return 0;
    return tw_same(SHK_A(atomic_load_explicit(&d->sh->shard[ref->shard & d->shard_mask].table,
                                              memory_order_relaxed)),
                   ref->table);
}

/* Telling a corrupt entry from a busy one.  A slot references an entry
 * only while that entry is live (see shk_dict_ref_valid), so a snapshot
 * through a slot that failed although the slot and its table are unchanged
 * means either corruption or ABA: the block was retired, reused and
 * published again in the same slot between our loads (a hot key whose
 * entries alternate between two blocks does that all the time).  ABA moves
 * the block's life word on (DEAD, a builder's odd version, a new even one);
 * a corrupt entry shows the same life word every time.  So only looks that
 * see the very same word count, SLOT_STUCK_LIMIT of them in a row, with the
 * CPU yielded between them, before the entry is called corrupt. */
#define SLOT_STUCK_LIMIT 64u

typedef struct slot_watch {
    unsigned n; /* looks in a row that saw `life`              */
    uint64_t life;
} slot_watch;

enum { SLOT_AGAIN = 1, SLOT_RESTART = 2 };

/* A snapshot of slot i's entry (word s, table tw of shard sh) failed having
 * read life word `life`, or (changed) read but did not validate because
 * the entry changed meanwhile.  SLOT_AGAIN: load the slot again.
 * SLOT_RESTART: the table was replaced; probe again from the top.
 * SHK_ECORRUPT: the slot keeps naming an entry that is not live. */
static int slot_unstable(const dict_shard *sh, uint64_t tw, const _Atomic uint64_t *slot,
                         uint64_t s, int changed, uint64_t life, slot_watch *w)
{
    /* The table first: a reference that failed only because the table was
     * replaced would fail again on every look at the old one.  These loads
     * come after the snapshot's acquire load of the life word; relaxed
     * suffices for the table word (a change is all we look for), acquire
     * keeps the slot load below after it. */
    if (!tw_same(SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire)), tw))
        return SLOT_RESTART;
    if (SHK_A(atomic_load_explicit(slot, memory_order_relaxed)) != s || changed) {
        w->n = 0;
        return SLOT_AGAIN;
    }
    if (w->n == 0 || life != w->life) {
        w->n = 1;
        w->life = life;
    } else if (++w->n >= SLOT_STUCK_LIMIT) {
        return SHK_ECORRUPT;
    }
    sched_yield(); /* let a writer preempted mid-publish go on */
    return SLOT_AGAIN;
}

int shk_dict_find_h(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint64_t hash,
                    shk_dict_ref *ref)
{
    uint64_t tag = hash >> 32;
    dict_shard *sh = shard_of(d, hash);
    uint32_t si = shard_index(d, sh);
    for (;;) {
        int stale = shard_stale(d, sh);
        if (stale)
            return stale < 0 ? SHK_ECORRUPT : SHK_ENOTFOUND;
        /* acquire: the table's slots (zeroed and copied before the release
         * store of the table word) are visible. */
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
        if (SHK_UNLIKELY(!table_valid(d, tw)))
            return SHK_ECORRUPT;
        uint64_t mask = (1ull << tw_log2(tw)) - 1;
        _Atomic uint64_t *slots = slots_of(d, tw);
        uint64_t i = tag & mask;
        slot_watch watch = {0, 0};
        int restart = 0;
        for (uint64_t n = 0; n <= mask && !restart;) {
            /* acquire: pairs with the release store that published the
             * entry, so its contents are visible. */
            uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
            if (slot_empty(s))
                break;
            if (s != SLOT_TOMB && (s >> 32) == tag) {
                int changed = 1;
                if (entry_snapshot(d, slot_entry(s), ref)) {
                    ref_found_at(ref, tw, si, i, s);
                    if (ref_is_key(d, ref, ktype, key, klen, hash))
                        return SHK_OK; /* the caller validates after reading */
                    /* A mismatch counts only if the slot referenced that
                     * entry while we compared: else it may hold our key. */
                    if (shk_dict_ref_valid(d, ref))
                        goto next;
                } else {
                    changed = 0;
                }
                int st = slot_unstable(sh, tw, &slots[i], s, changed, ref->ver, &watch);
                if (st == SHK_ECORRUPT)
                    return st;
                restart = st == SLOT_RESTART;
                continue; /* SLOT_AGAIN: the same slot, loaded again */
            }
        next:
            watch.n = 0;
            n++;
            i = (i + 1) & mask;
        }
        if (restart)
            continue;
        /* A miss is an answer only if the table was not replaced meanwhile
         * (a freed table's memory may have been reused). */
        atomic_thread_fence(memory_order_acquire);
        if (tw_same(SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed)), tw))
            return SHK_ENOTFOUND;
    }
}

int shk_dict_find(shk_dict *d, uint8_t ktype, const void *key, size_t klen, shk_dict_ref *ref)
{
    return shk_dict_find_h(d, ktype, key, klen, shk_dict_hash(d, ktype, key, klen), ref);
}

int shk_dict_get(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint8_t *vtype,
                 void *buf, uint64_t cap, uint64_t *vlen)
{
    shk_dict_ref ref;
    for (;;) {
        int rc = shk_dict_find(d, ktype, key, klen, &ref);
        if (rc != SHK_OK)
            return rc;
        uint64_t n = ref.vlen;
        if (n <= cap)
            memcpy(buf, ref.val, n);
        uint8_t vt = ref.vtype;
        if (!shk_dict_ref_valid(d, &ref))
            continue;
        *vlen = n;
        if (vtype)
            *vtype = vt;
        return n <= cap ? SHK_OK : SHK_EINVAL;
    }
}

/* --------------------------------------------------------------- pinning */

int shk_dict_pin(shk_dict *d, const shk_dict_ref *ref)
{
    _Atomic uint64_t *lp = &entry_at(d, ref->entry)->life;
    uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
    for (;;) {
        if (life_ver(life) != ref->ver)
            return SHK_EAGAIN;
        if (life_pins(life) >= SHK_DICT_MAX_PINS)
            return SHK_EFULL;
        /* The CAS succeeds only while the block is still this entry (same
         * version), so it can never write into a reused block.  acquire:
         * what we read through the pin afterwards is that entry. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(lp, &life, life + 1,
                                                        memory_order_acquire,
                                                        memory_order_relaxed)))
            return SHK_OK;
    }
}

/* Free an entry block whose life we own (pins 0, retired), back to the heap
 * stripe that carved it, among its neighbours: reused by whoever freed it,
 * it would share cache lines with another process's live entries (STRIPES
 * in alloc_freelist.c). */
static void entry_free(shk_dict *d, uint64_t e) { shk_freelist_free_home(d->heap, e); }

void shk_dict_unpin_seg(shk_segment *seg, uint64_t e)
{
    /* Works from the segment alone, so a view may outlive its dict handle. */
    if (!shk_segment_contains(seg, e, ENTRY_HDR))
        return;
    _Atomic uint64_t *lp = &((dict_entry *)(shk_segment_base(seg) + e))->life;
    uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
    for (;;) {
        if (life_pins(life) == 0)
            return; /* not pinned: a caller bug; never underflow */
        uint64_t next = life - 1;
        int last_of_zombie = life_pins(next) == 0 && (life_ver(next) & 1);
        if (last_of_zombie)
            next = LIFE_DEAD;
        /* acq_rel: release orders our reads of the value before a reuse of
         * the block; acquire orders the free after the retirer's stores. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(lp, &life, next, memory_order_acq_rel,
                                                        memory_order_relaxed))) {
            if (last_of_zombie)
                shk_freelist_free_home(shk_segment_heap(seg), e);
            return;
        }
    }
}

void shk_dict_unpin(shk_dict *d, uint64_t e) { shk_dict_unpin_seg(d->seg, e); }

/* Retire a live entry that is no longer referenced by the table: free it,
 * or leave it to its last pin holder.  Returns 1 if it was still live. */
int shk_dict_entry_retire(shk_dict *d, uint64_t e, uint64_t ver)
{
    _Atomic uint64_t *lp = &entry_at(d, e)->life;
    uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
    for (;;) {
        if (life_ver(life) != ver)
            return 0;
        uint64_t next = life_pins(life) ? (((ver | 1) << 16) | life_pins(life)) : LIFE_DEAD;
        /* release: a reader that sees the odd ver after reading the entry
         * knows its copy may be torn; the free below publishes nothing. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(lp, &life, next, memory_order_release,
                                                        memory_order_relaxed))) {
            if (next == LIFE_DEAD)
                entry_free(d, e);
            return 1;
        }
    }
}


/* Does live slot word s of table tw hold the key?  1 yes, 0 no; -1 its
 * snapshot failed (*ver: the life word it saw), -2 its entry changed while
 * we compared (look again).  *ver: its version. */
static int slot_holds_key(shk_dict *d, uint64_t tw, uint64_t i, uint64_t s, uint8_t ktype,
                          const void *key, uint64_t klen, uint64_t hash, uint64_t *ver)
{
    shk_dict_ref r;
    if (!entry_snapshot(d, slot_entry(s), &r)) {
        *ver = r.ver;
        return -1;
    }
    int match = ref_is_key(d, &r, ktype, key, klen, hash);
    ref_found_at(&r, tw, (uint32_t)(hash & d->shard_mask), i, s);
    if (!shk_dict_ref_valid(d, &r))
        return -2;
    *ver = r.ver;
    return match;
}

/* 1: *p filled; 0: the table was replaced under us, probe again;
 * SHK_ECORRUPT: a slot keeps naming an entry that is not live. */
int shk_dict_probe_w(shk_dict *d, uint64_t tw, uint8_t ktype, const void *key, uint64_t klen,
                     uint64_t hash, wprobe *p)
{
    uint64_t mask = (1ull << tw_log2(tw)) - 1, tag = hash >> 32;
    _Atomic uint64_t *slots = slots_of(d, tw);
    p->found = p->empty = -1;
    uint64_t i = tag & mask;
    slot_watch watch = {0, 0};
    for (uint64_t n = 0; n <= mask;) {
        /* acquire: a published entry's contents are visible. */
        uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
        if (slot_empty(s)) {
            p->empty = (int64_t)i;
            p->word = s;
            return 1;
        }
        if (s != SLOT_TOMB && (s >> 32) == tag) {
            uint64_t ver = 0;
            int match = slot_holds_key(d, tw, i, s, ktype, key, klen, hash, &ver);
            if (match < 0) {
                int st = slot_unstable(shard_of(d, hash), tw, &slots[i], s, match == -2, ver,
                                       &watch);
                if (st != SLOT_AGAIN)
                    return st == SLOT_RESTART ? 0 : st;
                continue; /* the same slot, loaded again */
            }
            if (match) {
                p->found = (int64_t)i;
                p->word = s;
                p->ver = ver;
                return 1;
            }
        }
        watch.n = 0;
        n++;
        i = (i + 1) & mask;
    }
    return 1; /* a full table: no EMPTY (the caller grows it) */
}

/* Is entry e (whose key we read from its block, which may since have been
 * freed and reused) referenced by its shard's current table?  Used by
 * recovery; a reused block answers "no" or names the reuser's own live
 * entry, and both lead recovery to leave the block alone or to fail a
 * version-checked CAS. */
int shk_dict_entry_in_table(shk_dict *d, dict_shard *sh, uint64_t e)
{
    if (!shk_segment_contains(d->seg, e, ENTRY_HDR))
        return 0;
    const dict_entry *en = entry_at(d, e);
    if (!shk_segment_contains(d->seg, e + ENTRY_HDR, en->klen))
        return 0;
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
    if (!table_valid(d, tw))
        return 0;
    uint64_t mask = (1ull << tw_log2(tw)) - 1, tag = en->hash >> 32;
    _Atomic uint64_t *slots = slots_of(d, tw);
    uint64_t i = tag & mask;
    for (uint64_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
        uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
        if (slot_empty(s))
            return 0;
        if (slot_live(s) && slot_entry(s) == e)
            return 1;
    }
    return 0;
}


/* -------------------------------------------------------------- iteration */

/* *pos = shard << 32 | slot: a walk visits the shards in order, and *table
 * is the table word of the shard it is in (0: take the current one). */
int shk_dict_next(shk_dict *d, uint64_t *pos, uint64_t *table, shk_dict_ref *ref)
{
    if (*pos == 0)
        *table = 0;
    for (;;) {
        uint64_t si = *pos >> 32;
        if (si > d->shard_mask)
            return SHK_ENOTFOUND;
        dict_shard *sh = &d->sh->shard[si];
        int stale = shard_stale(d, sh);
        if (stale < 0)
            return SHK_ECORRUPT;
        if (stale) {
            *pos = (si + 1) << 32;
            *table = 0;
            continue;
        }
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
        if (*table == 0)
            *table = tw;
        else if (!tw_same(*table, tw))
            return SHK_EAGAIN;
        if (!table_valid(d, tw))
            return SHK_ECORRUPT;
        uint64_t cap = 1ull << tw_log2(tw);
        _Atomic uint64_t *slots = slots_of(d, tw);
        slot_watch watch = {0, 0};
        for (uint64_t i = *pos & 0xffffffffull; i < cap;) {
            uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
            if (!slot_live(s)) {
                i++;
                watch.n = 0;
                continue;
            }
            if (entry_snapshot(d, slot_entry(s), ref)) {
                ref_found_at(ref, tw, (uint32_t)si, i, s);
                *pos = si << 32 | (i + 1);
                return SHK_OK;
            }
            /* Replaced or deleted meanwhile: what the slot holds now is the
             * answer (a replaced key must not be skipped). */
            int st = slot_unstable(sh, tw, &slots[i], s, 0, ref->ver, &watch);
            if (st == SHK_ECORRUPT)
                return st;
            if (st == SLOT_RESTART)
                return SHK_EAGAIN;
        }
        *pos = (si + 1) << 32;
        *table = 0;
    }
}
