/*
 * dict_write.c -- SharedDict writers: prepare, commit (insert,
 * replace, compare-and-set) and delete, lock-free on the table slots.
 * (design and layout: dict_internal.h)
 */
#include "dict_internal.h"

/* ----------------------------------------------------------------- writes */

/* The lines a commit of this hash will write: its home slot's.  Asked for
 * as early as the hash is known, before the entry is allocated and built,
 * so that a transfer from the core that wrote it last overlaps that work.
 * A hint: nothing relies on it, and a stale table word only prefetches a
 * useless line. */
static inline void shard_prefetch(const shk_dict *d, uint64_t hash)
{
    dict_shard *sh = shard_of(d, hash);
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (SHK_LIKELY(table_valid(d, tw)))
        SHK_PREFETCH_W(&slots_of(d, tw)[(hash >> 32) & ((1ull << tw_log2(tw)) - 1)]);
}

int shk_dict_prepare(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint8_t vtype,
                     uint64_t vlen, shk_dict_txn *txn)
{
    if (klen > UINT32_MAX)
        return SHK_EINVAL;
    /* The hash first: its lines start moving while we allocate and build. */
    uint64_t h = shk_dict_hash(d, ktype, key, klen);
    shard_prefetch(d, h);
    uint64_t n = entry_size(klen, vlen);
    if (n > SHK_FREELIST_MAX_ALLOC)
        return SHK_ENOMEM;
    uint64_t e;
    int rc = shk_freelist_alloc(d->heap, n, &e);
    if (rc != SHK_OK)
        return rc == SHK_EINVAL ? SHK_ENOMEM : rc;
    dict_entry *en = entry_at(d, e);
    /* Odd until complete; relaxed: nobody can reach this block through the
     * dict before it is published, and a reader that reached it through a
     * stale pointer sees odd or a different version. */
    SHK_A(atomic_store_explicit(&en->life, LIFE_DEAD, memory_order_relaxed));
    atomic_thread_fence(memory_order_release);
    en->hash = h;
    en->klen = (uint32_t)klen;
    en->ktype = ktype;
    en->vtype = vtype;
    en->reserved = 0;
    en->vlen = vlen;
    char *k = d->base + e + ENTRY_HDR;
    memcpy(k, key, klen);
    memset(k + klen, 0, shk_align_up(klen, 16) - klen);
    txn->entry = e;
    txn->hash = h;
    txn->val = k + shk_align_up(klen, 16);
    txn->vlen = vlen;
    return SHK_OK;
}

void shk_dict_abort(shk_dict *d, shk_dict_txn *txn)
{
    if (txn->entry) {
        shk_freelist_free(d->heap, txn->entry);
        txn->entry = 0;
    }
}


/* Take one slot of the shard's reserve for the holder of lane l: from the
 * lane's own reservation, else a new one from the shard's `used` (one
 * shared RMW per many inserts).  0: the table is at its limit (grow). */
static int budget_take(dict_shard *sh, dict_lane *l, unsigned si, uint64_t tw)
{
    uint64_t b = l->budget[si], gen = tw_gen(tw);
    if ((b >> 32) == gen && (uint32_t)b) {
        l->budget[si] = b - 1;
        return 1;
    }
    uint64_t lim = table_limit(tw_log2(tw));
    uint64_t chunk = lim / (4 * DICT_LANES);
    chunk = chunk < 1 ? 1 : chunk > 4096 ? 4096 : chunk;
    uint32_t u = SHK_A(atomic_load_explicit(&sh->s.used, memory_order_relaxed));
    for (;;) {
        if (u >= lim)
            return 0;
        uint64_t take = chunk < lim - u ? chunk : lim - u;
        /* relaxed: a counter; the table word orders everything else. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(&sh->s.used, &u, (uint32_t)(u + take),
                                                        memory_order_relaxed,
                                                        memory_order_relaxed))) {
            l->budget[si] = gen << 32 | (take - 1);
            return 1;
        }
    }
}

/* Return a slot taken but not claimed to the lane's reserve, if the
 * reserve is of table tw. */
static inline void budget_give(dict_lane *l, unsigned si, uint64_t tw)
{
    uint64_t b = l->budget[si];
    if ((b >> 32) == tw_gen(tw) && (uint32_t)b + 1 < 0xffffffffull)
        l->budget[si] = b + 1;
}

static inline void count_add(dict_lane *l, unsigned si, int64_t n)
{
    /* Only the lane's holder writes it: a plain load and store.  Atomic
     * (relaxed) because len() reads it without the lane. */
    uint64_t c = (uint64_t)SHK_A(atomic_load_explicit(&l->count[si], memory_order_relaxed));
    SHK_A(
        atomic_store_explicit(&l->count[si], (int64_t)(c + (uint64_t)n), memory_order_relaxed));
}

/* Pin the entry a writer is about to replace or delete, so its block
 * cannot be freed and reused (with the same slot word) under the writer's
 * CAS.  1: pinned; 0: it has SHK_DICT_MAX_PINS pins already, so we go on
 * unpinned (those pins keep the block unless all of them are dropped within
 * our CAS window) rather than wait for one to go; -1: it changed since it
 * was found (probe again). */
static int entry_pin_for_cas(shk_dict *d, const shk_dict_ref *r)
{
    int rc = shk_dict_pin(d, r);
    return rc == SHK_OK ? 1 : rc == SHK_EFULL ? 0 : -1;
}

/* Outcomes of one attempt at a change, with the lane held. */
enum { TRY_DONE = 0, TRY_AGAIN = 1, TRY_FROZEN = 2, TRY_GROW = 3 };

/* The commit step of a set, shared by replace and insert: record the
 * intent (a crash may stop us anywhere after it), give the entry its
 * version, and CAS its slot word into slot idx of table tw if that still
 * holds `expect`, in place of entry `old` (version old_ver; 0 when the
 * slot is EMPTY).  1: published, the intent left for the caller to clear
 * when it is done; 0: the slot changed and nothing happened (entry odd
 * again, intent cleared).
 * Until the CAS succeeds the entry's life holds our version, odd or even,
 * never anything else: lane repair frees the entry only with a CAS from
 * that version, so it cannot free a block that was published, replaced,
 * freed by its replacer and reused (a reuser's life word differs). */
static int publish(shk_dict *d, dict_lane *l, unsigned si, const shk_dict_txn *txn, uint64_t tw,
                   uint64_t idx, uint64_t expect, uint64_t old, uint64_t old_ver,
                   unsigned pinned)
{
    dict_entry *en = entry_at(d, txn->entry);
    uint64_t ver = shk_dict_new_ver(d, l);
    l->new_e = txn->entry;
    l->new_ver = ver;
    l->old_e = old;
    l->old_ver = old_ver;
    l->table = tw;
    l->slot = idx;
    /* relaxed: the entry is ours alone; intent_set (release) orders it
     * before the intent for the lane's next holder. */
    SHK_A(atomic_store_explicit(&en->life, (ver | 1) << 16, memory_order_relaxed));
    intent_set(l, OP_SET, si, pinned);
    SHK_CRASH_POINT("dict.set.intent");
    /* relaxed: the slot CAS (release) publishes it. */
    SHK_A(atomic_store_explicit(&en->life, ver << 16, memory_order_relaxed));
    SHK_CRASH_POINT("dict.set.versioned");
    /* release: the commit point; a reader acquiring the slot sees a
     * complete entry with an even version. */
    if (SHK_A(atomic_compare_exchange_strong_explicit(&slots_of(d, tw)[idx], &expect,
                                                      slot_pack(txn->hash, txn->entry),
                                                      memory_order_release,
                                                      memory_order_relaxed)))
        return 1;
    SHK_A(atomic_store_explicit(&en->life, (ver | 1) << 16, memory_order_relaxed));
    intent_clear(l);
    return 0;
}

/* ---- one write: the loop every change runs ----
 * A change holds a lane, loads its shard's table word, probes for its key
 * and takes one step from what the probe found.  A step may ask to probe
 * again (an entry or slot changed under it), end the change, or leave the
 * lane to wait for a freeze to end or to grow the table.  write_run is
 * that loop; commit_step and delete_step are the two kinds of step. */
typedef struct write_op write_op;
typedef void (*write_step)(shk_dict *d, dict_lane *l, unsigned si, uint64_t tw, const wprobe *p,
                           write_op *op);

struct write_op {
    uint8_t ktype;
    const void *key;
    uint64_t klen, hash;
    int expect;                        /* the entry found must be:       */
    uint64_t expect_entry, expect_ver; /* this one (0: none at all)      */
    write_step step;
    int out, rc; /* what the step decided          */
    /* commit only */
    shk_dict_txn *txn;
    int mode;
    int *replaced;
};

static int write_run(shk_dict *d, write_op *op)
{
    dict_shard *sh = shard_of(d, op->hash);
    unsigned si = shard_index(d, sh);
    for (;;) {
        int rc = SHK_OK;
        dict_lane *l = shk_dict_lane_enter(d, &rc);
        if (!l)
            return rc;
        uint64_t tw = 0;
        op->out = TRY_AGAIN;
        while (op->out == TRY_AGAIN) {
            /* acquire: the table's slots and counters are visible. */
            tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
            if (tw & TW_FROZEN) {
                op->out = TRY_FROZEN;
                break;
            }
            if (SHK_UNLIKELY(!table_valid(d, tw))) {
                op->rc = SHK_ECORRUPT;
                op->out = TRY_DONE;
                break;
            }
            wprobe p;
            int pr = shk_dict_probe_w(d, tw, op->ktype, op->key, op->klen, op->hash, &p);
            if (pr < 0) {
                op->rc = pr;
                op->out = TRY_DONE;
            } else if (pr > 0) {
                op->step(d, l, si, tw, &p, op);
            }
        }
        lane_exit(l);
        if (op->out == TRY_DONE) {
            if (op->rc == SHK_OK)
                shk_dict_note_change(d);
            return op->rc;
        }
        rc = op->out == TRY_FROZEN ? shk_dict_shard_wait(d, sh) : shk_dict_grow(d, sh, tw);
        if (rc != SHK_OK)
            return rc;
    }
}

/* End the change with rc. */
static inline void step_done(write_op *op, int rc)
{
    op->rc = rc;
    op->out = TRY_DONE;
}

/* Pin the entry the probe found (no ABA while we CAS its slot, see PINS):
 * 1 pinned, 0 every pin taken (go on unpinned), -1 it changed since (probe
 * again).  -2: not the expected entry; the change ends with SHK_EAGAIN. */
static int step_pin_found(shk_dict *d, const wprobe *p, write_op *op)
{
    uint64_t old = slot_entry(p->word);
    if (op->expect && (old != op->expect_entry || p->ver != op->expect_ver)) {
        step_done(op, SHK_EAGAIN);
        return -2;
    }
    shk_dict_ref r = {.entry = old, .ver = p->ver};
    return entry_pin_for_cas(d, &r);
}

static void commit_step(shk_dict *d, dict_lane *l, unsigned si, uint64_t tw, const wprobe *p,
                        write_op *op)
{
    shk_dict_txn *txn = op->txn;
    dict_shard *sh = &d->sh->shard[si];
    if (p->found >= 0) {
        if (op->mode == SHK_DICT_INSERT) {
            step_done(op, SHK_EEXIST);
            return;
        }
        uint64_t old = slot_entry(p->word);
        int pinned = step_pin_found(d, p, op);
        if (pinned < 0)
            return; /* changed: probe again; or ended */
        if (!publish(d, l, si, txn, tw, (uint64_t)p->found, p->word, old, p->ver,
                     (unsigned)pinned)) {
            if (pinned)
                shk_dict_unpin(d, old);
            return;
        }
        SHK_CRASH_POINT("dict.set.published");
        shk_dict_entry_retire(d, old, p->ver);
        if (pinned)
            shk_dict_unpin(d, old);
        SHK_CRASH_POINT("dict.set.retired");
        intent_clear(l);
        if (op->replaced)
            *op->replaced = 1;
        step_done(op, SHK_OK);
        return;
    }
    if (op->expect && op->expect_entry) { /* expected an entry: there is none */
        step_done(op, SHK_EAGAIN);
        return;
    }
    if (p->empty < 0 || !budget_take(sh, l, si, tw)) {
        op->out = TRY_GROW;
        return;
    }
    /* The insert takes effect at this CAS: the slot is reachable from the
     * key's home with no other copy of the key before it, and fails only if
     * another writer claimed it first (see DELETE in dict_internal.h). */
    if (!publish(d, l, si, txn, tw, (uint64_t)p->empty, p->word, 0, 0, 0)) {
        budget_give(l, si, tw);
        return;
    }
    SHK_CRASH_POINT("dict.set.claimed");
    count_add(l, si, 1);
    SHK_CRASH_POINT("dict.set.retired");
    intent_clear(l);
    if (op->replaced)
        *op->replaced = 0;
    step_done(op, SHK_OK);
}

int shk_dict_commit(shk_dict *d, shk_dict_txn *txn, int mode, uint64_t expect_entry,
                    uint64_t expect_ver, int *replaced)
{
    if (!txn->entry)
        return SHK_EINVAL;
    dict_entry *en = entry_at(d, txn->entry);
    write_op op = {
        .ktype = en->ktype,
        .key = d->base + txn->entry + ENTRY_HDR,
        .klen = en->klen,
        .hash = txn->hash,
        .step = commit_step,
        .txn = txn,
        .mode = mode,
        .replaced = replaced,
        .expect = mode == SHK_DICT_EXPECT,
        .expect_entry = expect_entry,
        .expect_ver = expect_ver,
    };
    int rc = write_run(d, &op);
    if (rc == SHK_OK)
        txn->entry = 0;
    return rc;
}

int shk_dict_set(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint8_t vtype,
                 const void *val, uint64_t vlen)
{
    shk_dict_txn txn;
    int rc = shk_dict_prepare(d, ktype, key, klen, vtype, vlen, &txn);
    if (rc != SHK_OK)
        return rc;
    if (vlen)
        memcpy(txn.val, val, vlen);
    rc = shk_dict_commit(d, &txn, SHK_DICT_SET, 0, 0, NULL);
    if (rc != SHK_OK)
        shk_dict_abort(d, &txn);
    return rc;
}

/* DELETE: swap a tombstone in for the key's slot word (see DELETE in
 * dict_internal.h for why no slot is emptied). */
static void delete_step(shk_dict *d, dict_lane *l, unsigned si, uint64_t tw, const wprobe *p,
                        write_op *op)
{
    if (p->found < 0) {
        step_done(op, SHK_ENOTFOUND);
        return;
    }
    uint64_t old = slot_entry(p->word);
    int pinned = step_pin_found(d, p, op);
    if (pinned < 0)
        return; /* changed: probe again; or ended */
    uint64_t i = (uint64_t)p->found;
    _Atomic uint64_t *slots = slots_of(d, tw);
    l->new_e = 0;
    l->old_e = old;
    l->old_ver = p->ver;
    l->table = tw;
    l->slot = i;
    intent_set(l, OP_DEL, si, (unsigned)pinned);
    /* release: orders our reads of the entry before it is unlinked. */
    uint64_t w = p->word;
    if (!SHK_A(atomic_compare_exchange_strong_explicit(&slots[i], &w, SLOT_TOMB,
                                                       memory_order_release,
                                                       memory_order_relaxed))) {
        intent_clear(l);
        if (pinned)
            shk_dict_unpin(d, old);
        return;
    }
    SHK_CRASH_POINT("dict.delete.unlinked");
    shk_dict_entry_retire(d, old, p->ver);
    if (pinned)
        shk_dict_unpin(d, old);
    SHK_CRASH_POINT("dict.delete.retired");
    count_add(l, si, -1);
    intent_clear(l);
    step_done(op, SHK_OK);
}

int shk_dict_delete(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                    uint64_t expect_entry, uint64_t expect_ver)
{
    if (klen > UINT32_MAX)
        return SHK_ENOTFOUND;
    write_op op = {
        .ktype = ktype,
        .key = key,
        .klen = klen,
        .hash = shk_dict_hash(d, ktype, key, klen),
        .expect = expect_entry != 0,
        .expect_entry = expect_entry,
        .expect_ver = expect_ver,
        .step = delete_step,
    };
    return write_run(d, &op);
}
