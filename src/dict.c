/*
 * dict.c -- creating, opening and closing a SharedDict.
 * (design and layout: dict_internal.h)
 */
#include "dict_internal.h"

/* ------------------------------------------------------------ open/create */
typedef struct init_arg {
    uint64_t capacity_hint;
} init_arg;

/* Room for `hint` entries spread over the shards: a shard gets its share
 * plus slack for uneven hashing, so a hinted dict does not resize early. */
static uint64_t shard_hint(uint64_t hint, unsigned nshards)
{
    uint64_t per = (hint + nshards - 1) / nshards;
    return per + per / 8 + (per ? 4 : 0);
}

static inline uint64_t lanes_at(unsigned nshards)
{
    return sizeof(dict_shared) + (uint64_t)nshards * sizeof(dict_shard);
}
static inline uint64_t header_bytes(unsigned nshards, unsigned nlanes)
{
    return lanes_at(nshards) + (uint64_t)nlanes * sizeof(dict_lane);
}

/* Room the segment overhead takes before any object: its header, the
 * heap's and the directory (segment.c rounds them to a page; 64 KiB covers
 * them with the heap's first carve). */
#define SEGMENT_OVERHEAD (1ull << 16)

uint64_t shk_dict_estimate_size(uint64_t entries, uint64_t klen, uint64_t vlen)
{
    unsigned ns = SHK_DICT_SHARDS;
    /* Each shard's table is sized as shard_hint says, and a growth sizes
     * the next for twice the live entries; the table it replaced stays
     * with the heap, so count two. */
    unsigned l = shk_dict_log2_for(shard_hint(entries, ns));
    uint64_t tables = (uint64_t)ns * 2 * table_bytes(l);
    uint64_t per = shk_dict_entry_footprint(klen, vlen);
    uint64_t data = entries && per > UINT64_MAX / entries ? UINT64_MAX : entries * per;
    return shk_add_sat(shk_add_sat(data, tables),
                       header_bytes(ns, DICT_LANES) + SEGMENT_OVERHEAD);
}

static int dict_init(shk_segment *seg, void *arg, uint64_t *offset, uint64_t *size)
{
    init_arg *ia = arg;
    shk_dict tmp = {.seg = seg, .heap = shk_segment_heap(seg), .base = shk_segment_base(seg)};
    const unsigned ns = SHK_DICT_SHARDS, nl = DICT_LANES;
    /* The header's lines must be real cache lines (the layout keeps what
     * readers read apart from what writers write), and heap blocks are only
     * 16-aligned: take 48 bytes more and start on a line.  Object headers
     * are never freed, so the block's own start need not be kept. */
    uint64_t blk;
    int rc = shk_freelist_alloc(tmp.heap, header_bytes(ns, nl) + SHK_CACHELINE - 16, &blk);
    if (rc != SHK_OK)
        return rc;
    uint64_t h = shk_align_up(blk, SHK_CACHELINE);
    dict_shared *sh = (dict_shared *)(tmp.base + h);
    memset(sh, 0, header_bytes(ns, nl));
    dict_lane *lanes = (dict_lane *)((char *)sh + lanes_at(ns));
    for (unsigned i = 0; i < nl && rc == SHK_OK; i++)
        rc = shk_pmutex_init(&lanes[i].lock);
    unsigned l = shk_dict_log2_for(shard_hint(ia->capacity_hint, ns));
    unsigned made = 0;
    for (; made < ns && rc == SHK_OK; made++) {
        uint64_t t;
        rc = shk_dict_table_new(&tmp, l, &t);
        if (rc == SHK_OK && shk_pmutex_init(&sh->shard[made].s.lock) != SHK_OK) {
            shk_freelist_free(tmp.heap, t);
            rc = SHK_ESYS;
        }
        if (rc != SHK_OK)
            break;
        SHK_A(atomic_store_explicit(&sh->shard[made].table, tw_pack(1, l, t),
                                    memory_order_relaxed));
    }
    if (rc != SHK_OK) {
        while (made--)
            shk_freelist_free(tmp.heap, tw_off(sh->shard[made].table));
        shk_freelist_free(tmp.heap, blk);
        return rc;
    }
    uint64_t v0;
    if (getrandom(&v0, sizeof v0, 0) != sizeof v0)
        v0 = (uint64_t)shk_now_ns() * 0x9E3779B97F4A7C15ull;
    sh->magic = DICT_MAGIC;
    sh->version = DICT_VERSION;
    sh->header_size = (uint32_t)header_bytes(ns, nl);
    sh->nshards = ns;
    sh->nlanes = nl;
    SHK_A(atomic_store_explicit(&sh->next_ver, (v0 & VER_MASK & ~3ull) + 2,
                                memory_order_relaxed));
    /* The directory's release store of the entry publishes all of this. */
    *offset = h;
    *size = header_bytes(ns, nl);
    return SHK_OK;
}


/* Every field of the header a lookup or a writer trusts.  Other processes
 * go on writing meanwhile: a resize or clear can publish a new table and
 * scrub the magic of the one whose word we just read.  So a table that
 * fails is believed bad only if the shard still names it; otherwise the
 * new word is checked (the loop ends: a shard that is replaced without
 * pause for 2^16 checks is not what a healthy dict does). */
static int header_valid(shk_dict *d)
{
    const dict_shared *sh = d->sh;
    for (unsigned i = 0; i < sh->nlanes; i++) {
        uint64_t op = SHK_A(atomic_load_explicit(&d->lanes[i].op, memory_order_relaxed));
        if (lop(op) > OP_DEL || lshard(op) > d->shard_mask)
            return 0;
    }
    for (unsigned i = 0; i <= d->shard_mask; i++) {
        const dict_shard *s = &sh->shard[i];
        uint32_t op = SHK_A(atomic_load_explicit(&s->intent.op, memory_order_relaxed));
        if (op != OP_NONE && op != OP_RESIZE && op != OP_CLEAR)
            return 0;
        /* acquire: pairs with the publishing release store, so the magic
         * of the table it names is in place when we read it. */
        uint64_t tw = SHK_A(atomic_load_explicit(&s->table, memory_order_acquire));
        for (unsigned tries = 0;; tries++) {
            if (table_valid(d, tw) && *(uint64_t *)(d->base + tw_off(tw)) == TABLE_MAGIC)
                break;
            uint64_t now = SHK_A(atomic_load_explicit(&s->table, memory_order_acquire));
            if (now == tw || tries == 1u << 16)
                return 0;
            tw = now;
        }
    }
    return 1;
}

int shk_dict_create_in(shk_segment *seg, uint64_t capacity_hint, uint64_t *off)
{
    if (capacity_hint > table_limit(SHK_DICT_MAX_LOG2_CAP))
        return SHK_EINVAL;
    init_arg ia = {capacity_hint};
    uint64_t size;
    return dict_init(seg, &ia, off, &size);
}

int shk_dict_open_named(shk_segment *seg, const char *name, int create, uint64_t capacity_hint,
                        shk_dict **out, int *created)
{
    if (capacity_hint > table_limit(SHK_DICT_MAX_LOG2_CAP))
        return SHK_EINVAL;
    init_arg ia = {capacity_hint};
    uint64_t off;
    int rc = shk_segment_object(seg, name, SHK_TYPE_DICT, create ? dict_init : NULL, &ia, &off,
                                created);
    if (rc != SHK_OK)
        return rc;
    return shk_dict_open(seg, off, out);
}

int shk_dict_open(shk_segment *seg, uint64_t off, shk_dict **out)
{
    if (!shk_segment_contains(seg, off, sizeof(dict_shared)) || off % SHK_CACHELINE)
        return SHK_ECORRUPT;
    const dict_shared *hdr = (const dict_shared *)(shk_segment_base(seg) + off);
    unsigned ns = hdr->nshards, nl = hdr->nlanes;
    if (hdr->magic != DICT_MAGIC || hdr->version != DICT_VERSION || ns == 0 ||
        ns > SHK_DICT_SHARDS || (ns & (ns - 1)) || nl != DICT_LANES ||
        hdr->header_size != header_bytes(ns, nl) ||
        !shk_segment_contains(seg, off, header_bytes(ns, nl)))
        return SHK_ECORRUPT;
    shk_fork_watch();
    shk_dict *d = calloc(1, sizeof *d);
    if (!d)
        return SHK_ESYS;
    d->seg = seg;
    d->heap = shk_segment_heap(seg);
    d->base = shk_segment_base(seg);
    d->sh = (dict_shared *)(d->base + off);
    d->lanes = (dict_lane *)((char *)d->sh + lanes_at(ns));
    d->off = off;
    d->seed = shk_segment_hash_seed(seg);
    d->shard_mask = ns - 1;
    SHK_A(atomic_store_explicit(&d->lane_gen, shk_fork_gen() + 1, memory_order_relaxed));
    if (!header_valid(d)) {
        free(d);
        return SHK_ECORRUPT;
    }
    shk_segment_retain(seg);
    *out = d;
    return SHK_OK;
}

/* Offsets of the robust mutexes in the header (for the fuzzer, which must
 * not scribble on them): the shards' locks, then the lanes'. */
int shk_dict_mutex_span(unsigned i, uint64_t *start, uint64_t *end)
{
    if (i < SHK_DICT_SHARDS)
        *start = offsetof(dict_shared, shard) + i * sizeof(dict_shard) +
                 offsetof(dict_shard, s) + offsetof(dict_sline, lock);
    else if (i < SHK_DICT_SHARDS + DICT_LANES)
        *start = lanes_at(SHK_DICT_SHARDS) + (i - SHK_DICT_SHARDS) * sizeof(dict_lane) +
                 offsetof(dict_lane, lock);
    else
        return SHK_ENOTFOUND;
    *end = *start + sizeof(pthread_mutex_t);
    return SHK_OK;
}


void shk_dict_close(shk_dict *d)
{
    if (!d)
        return;
    shk_dict_lane_release_hint(d);
    shk_segment_close(d->seg);
    free(d);
}

shk_segment *shk_dict_segment(const shk_dict *d) { return d->seg; }
uint64_t shk_dict_offset(const shk_dict *d) { return d->off; }
