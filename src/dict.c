/*
 * dict.c -- SharedDict: a process-shared hash map with lock-free readers,
 * robust-locked writers and online growth.
 *
 * DESIGN
 *   An open-addressing table (linear probing) of 64-bit slots.  A slot holds
 *   either EMPTY (0), a TOMBSTONE, or a packed reference to an *entry*: the
 *   high 32 bits of the key's hash (the "tag") beside the entry's segment
 *   offset in 16-byte units.  An entry is one heap block holding the key, the
 *   value and their type tags; it is immutable once published.  The home
 *   slot of a key is tag & (capacity - 1), so a resize only moves slot words
 *   and never touches (or even reads) an entry.
 *
 *   SHARDS.  The dict is SHK_DICT_SHARDS (16) independent shards, and a
 *   key's shard is its hash's low bits (the table uses the high 32, so the
 *   two choices are independent).  Each shard is everything described
 *   below: its own table, counters, intent record and robust writer lock,
 *   on its own cache lines.  One lock per dict made every writer of every
 *   key queue on one line and, when contended, on futex sleeps: two
 *   processes writing at once ran slower than one.  With shards, writers of
 *   different keys meet in the same shard 1 time in 16, and a writer still
 *   holds exactly one lock, so growth, tombstones and crash repair stay the
 *   simple single-lock design, per shard.  Only clear() and whole-dict
 *   checks take every lock (in index order, so they cannot deadlock).
 *
 *   Writes (set, delete, resize) take their shard's robust process-shared
 *   mutex.  The new entry is allocated and filled *before* the lock
 *   (shk_dict_prepare), so the critical section is a probe plus a few
 *   stores; large values are copied with no lock held.  Gets (the hot path)
 *   never take it.  The lock is adaptive: a short trylock spin (critical
 *   sections are ~100 ns), then a futex sleep inside the robust mutex.
 *
 *   Publication is one release store of the slot word: before it the entry
 *   is invisible, after it it is complete.  Replacing a key stores the new
 *   slot word over the old one; the old entry is then *retired*.
 *
 *   Readers never lock and never write shared memory (except pins, below).
 *   The free list reuses a retired block at once, for anything, in any
 *   process, so a reader may hold the offset of a block that is no longer
 *   its entry.  Each entry therefore starts with a `life` word:
 *
 *       life = ver << 16 | pins        ver even: live entry (unique version)
 *                                      ver odd:  being built / retired
 *
 *   A writer builds an entry with an odd ver, makes it even (release) when
 *   complete, and before freeing it stores DEAD (odd).  A reader loads life
 *   (acquire), reads key and value, issues an acquire fence and re-loads
 *   life: equal even versions prove it read one complete, live entry
 *   (a seqlock without writers on the read side).  Versions come from a
 *   per-dict 48-bit counter with a random start, taken by each handle in
 *   batches of 1024 (a forked child takes a new batch), so a block reused by
 *   another dict or another structure will not show the same version again
 *   (the chance is 2^-47 per reuse).  A block reused by another structure is
 *   written without this protocol; what makes the re-check still see DEAD is
 *   that our DEAD store precedes the free list's release push, which the
 *   reuser's acquire pop precedes its writes (multi-copy-atomic hardware:
 *   x86-64, ARMv8).  Every length read from an entry is checked
 *   against the backed segment before use, so a torn read stays inside the
 *   mapping and then fails validation.
 *
 *   Views (the Python get_view) *pin* an entry: a CAS on `life` that only
 *   succeeds while ver is still the one found, so it can never touch a block
 *   that was reused.  Retiring a pinned entry makes it a zombie (odd ver,
 *   pins > 0) instead of freeing it; the last unpin frees it.
 *
 *   CLEAR must empty all shards at once, for readers and across a crash.
 *   The clearer locks every shard, gives each an empty table recorded in
 *   its intent (nothing visible yet), then commits with one release store
 *   of the dict's clear_epoch.  A shard whose own epoch is below clear_epoch
 *   reads as empty (shard_stale: readers, len() and iteration skip it); the
 *   clearer then publishes each shard's new table and epoch and retires the
 *   old entries.  If it dies after the commit, the next locker of each shard
 *   finishes that shard (recover); before it, the new tables are freed.
 *
 *   Growth: when live + tombstones would pass 3/4 of the slots, the writer
 *   builds a table of twice the needed size, copies the slot words, and
 *   publishes it with one release store of the dict's `table` word, which
 *   packs (table generation, log2 capacity, offset).  The old table is freed
 *   at once.  Readers take capacity and offset from the table word they
 *   loaded (never from the possibly-reused table memory), bound every probe
 *   by that capacity, and re-load the table word before answering: if it
 *   changed, they retry.  So a reader still walking a freed and reused table
 *   can read garbage slots but never answers from them.  Memory of freed
 *   tables stays mapped (segments never shrink), so those reads are safe.
 *   The heap grows the segment file on demand, in place: every process maps
 *   the segment's whole reservation (max_size, 64 GiB of address space by
 *   default) and growth is a posix_fallocate of the file (segment.c).  We
 *   rely on that rather than chained extents because readers and zero-copy
 *   views hold raw offsets and pointers that must never move, and because it
 *   keeps a lookup free of any extent translation.  That is what lets 10M
 *   entries fit in a dict created with default arguments.
 *
 * LAYOUT
 *   dict header (2 + 3 * nshards cache lines on x86-64, starting on a
 *   cache line inside its heap block):
 *     +0   magic "SHKDICT1" | version | header size | nshards |
 *          clear_epoch (atomic)
 *     +64  next_ver (atomic; taken in batches)
 *     +128 shard[nshards], 192 bytes each:
 *       +0   table (atomic: tgen:26 | log2cap:6 | offset/16:32) | epoch |
 *            resizes | recoveries          (read by lookups)
 *       +64  resize/clear intent: op, epoch (clear), new and old table words
 *       +128 the writers' line, written by every set and delete:
 *            robust process-shared mutex | count (u32) | used (u32) |
 *            set/delete intent: new entry/16, old entry/16,
 *            op << 56 | old entry's version
 *   table (one heap block):
 *     +0   magic "SHKDTABL" | log2cap (u32) | reserved
 *     +16  slot[cap]    0 = EMPTY, TOMB, or tag32 << 32 | entry/16
 *   entry (one heap block):
 *     +0   life  (atomic: ver << 16 | pins)
 *     +8   hash  (full 64-bit)
 *     +16  klen (u32) | ktype (u8) | vtype (u8) | reserved (u16)
 *     +24  vlen (u64)
 *     +32  key bytes, zero-padded to 16
 *     +32+align16(klen)  value bytes (16-byte aligned: numpy data lives here)
 *
 * INVARIANTS (of each shard, whenever its writer lock is free)
 *   - Every live slot references an entry with even ver whose hash's high
 *     32 bits equal the slot tag, and that is reachable from its home slot
 *     without crossing an EMPTY slot; no two live slots hold equal keys.
 *   - count = live slots, used = live + tombstone slots < 3/4 capacity.
 *   - An entry is referenced by at most one slot of the current table, and
 *     its hash's low bits name the shard.
 *   - epoch == clear_epoch (a lower epoch only while a clear is running or
 *     its clearer died, and then the intent is OP_CLEAR).
 *   - A retired entry has odd ver; it is freed once its pins reach 0.
 *
 * CRASH SAFETY
 *   A writer killed at any instant: the robust mutex of its shard passes to
 *   the next writer with SHK_MUTEX_RECOVERED, which replays the shard's
 *   intent record (written before each multi-step change): if the slot
 *   holds the new entry the change committed and the old entry is retired
 *   if it is still that version; if not, the new entry (never reachable,
 *   so ours alone) is freed and nothing changed.  An unpublished resized
 *   table is freed; a published one has its predecessor freed, since the
 *   intent is cleared only before that step.  A clear is finished if
 *   clear_epoch shows it committed, else its new table is freed (see
 *   CLEAR).  Then count and used are recomputed.
 *   Crash points (SHK_CRASH_POINT "dict.*") mark each step for the tests.
 *   Committed entries are never lost: a commit is its slot store.  The worst
 *   case is a leaked block (a crash between allocating and recording it, or
 *   inside the allocator's own free), never a torn or lost entry, never a
 *   deadlock.  A reader killed while pinning leaks that entry's block.
 */
#include "internal.h"
#include "hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DICT_MAGIC 0x31544349444b4853ull    /* "SHKDICT1" */
#define TABLE_MAGIC 0x4c424154444b4853ull   /* "SHKDTABL" */
#define DICT_VERSION 2u
#define DICT_MAX_SHARDS 256u
#define TABLE_HDR 16u
#define ENTRY_HDR 32u

#define SLOT_EMPTY 0ull
#define SLOT_TOMB 0xffffffffull
#define LIFE_DEAD (1ull << 16)               /* ver 1: odd, never live     */
#define VER_MASK ((1ull << 48) - 1)

enum { OP_NONE = 0, OP_SET = 1, OP_DEL = 2, OP_RESIZE = 3, OP_CLEAR = 4 };

/* The intent of a table replacement (resize, clear): rare, so it has a
 * line of its own. */
typedef struct dict_intent {
    _Atomic uint32_t op;     /* OP_NONE, OP_RESIZE or OP_CLEAR              */
    uint32_t reserved;
    uint64_t slot;           /* OP_CLEAR: the clear's epoch                 */
    uint64_t table;          /* the new table word                          */
    uint64_t old_table;      /* the table it replaces                       */
} dict_intent;

/* The writers' line: the lock and everything a set or delete writes besides
 * its slot (the counters and the intent of the change), so that a change
 * takes two lines from a core that wrote this shard last, not three. */
typedef struct dict_wline {
    _Alignas(SHK_CACHELINE) pthread_mutex_t lock;   /* robust, shared   */
    _Atomic uint32_t count;  /* live entries (< 2^31 per shard)            */
    _Atomic uint32_t used;   /* live + tombstone slots                      */
    uint32_t new_e;          /* OP_SET: the new entry / 16                  */
    uint32_t old_e;          /* OP_SET/DEL: the entry replaced, deleted / 16 */
    _Atomic uint64_t op_ver; /* op << 56 | the old entry's version          */
} dict_wline;

/* One shard: an independent table with its own writer lock.  Three lines
 * (on x86-64; more where pthread_mutex_t is larger): the one every lookup
 * reads, the rare intent of a resize or clear, and the writers' line. */
typedef struct dict_shard {
    /* line 0: read by every lookup, written only by resize/clear */
    _Atomic uint64_t table;
    _Atomic uint64_t epoch;  /* the clear its table is from (see CLEAR)     */
    _Atomic uint64_t resizes;
    _Atomic uint64_t recoveries;
    char pad0[SHK_CACHELINE - 32];
    /* line 1: written by resize and clear only */
    dict_intent intent;
    char pad1[SHK_CACHELINE - sizeof(dict_intent)];
    /* line 2: written by every change */
    dict_wline w;
} dict_shard;
SHK_STATIC_ASSERT(offsetof(dict_shard, intent) == SHK_CACHELINE, "layout");
SHK_STATIC_ASSERT(offsetof(dict_shard, w) == 2 * SHK_CACHELINE, "layout");
SHK_STATIC_ASSERT(sizeof(dict_wline) % SHK_CACHELINE == 0, "whole lines");
#if defined(__x86_64__) && defined(__GLIBC__)
SHK_STATIC_ASSERT(sizeof(dict_wline) == SHK_CACHELINE, "one line on x86-64");
#endif

static inline uint32_t wop(uint64_t op_ver) { return (uint32_t)(op_ver >> 56); }
static inline uint64_t wver(uint64_t op_ver) { return op_ver & VER_MASK; }

typedef struct dict_shared {
    /* line 0: read by every lookup, written only by clear */
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t nshards;        /* a power of two, 1 .. DICT_MAX_SHARDS        */
    uint32_t reserved;
    _Atomic uint64_t clear_epoch;  /* clears committed (see CLEAR)          */
    char pad0[SHK_CACHELINE - 32];
    /* line 1: written once per version batch */
    _Atomic uint64_t next_ver;
    char pad1[SHK_CACHELINE - 8];
    dict_shard shard[];      /* nshards of them                             */
} dict_shared;
SHK_STATIC_ASSERT(offsetof(dict_shared, shard) == 2 * SHK_CACHELINE, "layout");

typedef struct dict_entry {
    _Atomic uint64_t life;
    uint64_t hash;
    uint32_t klen;
    uint8_t ktype;
    uint8_t vtype;
    uint16_t reserved;
    uint64_t vlen;
} dict_entry;
SHK_STATIC_ASSERT(sizeof(dict_entry) == ENTRY_HDR, "entry header");

/* Versions a handle reserved from next_ver, a batch at a time so that
 * commits do not all bounce one shared counter between cores.  One batch
 * per shard, used only under that shard's writer lock.  A forked child
 * inherits the handle, so a batch is dropped when the fork generation
 * changes (internal.h), or parent and child would hand out equal versions. */
typedef struct ver_batch {
    uint64_t next, end;
    unsigned fork_gen;          /* shk_fork_gen() when it was taken */
} ver_batch;

struct shk_dict {
    shk_segment *seg;
    shk_freelist *heap;
    char *base;
    dict_shared *sh;
    uint64_t off;
    uint64_t seed;
    uint64_t shard_mask;        /* nshards - 1 */
    /* Backed segment size last seen.  The file only grows, so an offset
     * below it is always safe; only beyond it do we ask the segment again.
     * Relaxed atomic: a per-process cache that threads may share. */
    _Atomic uint64_t backed;
    ver_batch ver[];            /* one per shard */
};

/* ----------------------------------------------------------- small helpers */

static inline uint64_t tw_pack(uint64_t tgen, unsigned log2cap, uint64_t off)
{
    return ((tgen & 0x3ffffffull) << 38) | ((uint64_t)log2cap << 32) | (off >> 4);
}
static inline unsigned tw_log2(uint64_t w) { return (unsigned)(w >> 32) & 63u; }
static inline uint64_t tw_off(uint64_t w) { return (w & 0xffffffffull) << 4; }
static inline uint64_t tw_gen(uint64_t w) { return w >> 38; }

static inline uint64_t slot_pack(uint64_t hash, uint64_t entry)
{
    return (hash & 0xffffffff00000000ull) | (entry >> 4);
}
static inline uint64_t slot_entry(uint64_t s) { return (s & 0xffffffffull) << 4; }
static inline int slot_live(uint64_t s) { return s != SLOT_EMPTY && s != SLOT_TOMB; }

static inline uint64_t table_bytes(unsigned log2cap)
{
    return TABLE_HDR + ((uint64_t)8 << log2cap);
}
static inline _Atomic uint64_t *slots_of(const shk_dict *d, uint64_t tw)
{
    return (_Atomic uint64_t *)(d->base + tw_off(tw) + TABLE_HDR);
}
static inline dict_entry *entry_at(const shk_dict *d, uint64_t off)
{
    return (dict_entry *)(d->base + off);
}
/* [off, off+len) lies in the backed segment (shk_segment_contains with a
 * cached bound: the hot path is one comparison). */
static inline int in_seg(const shk_dict *d, uint64_t off, uint64_t len)
{
    uint64_t end = shk_add_sat(off, len);
    shk_dict *m = (shk_dict *)d;
    if (SHK_LIKELY(end <= atomic_load_explicit(&m->backed, memory_order_relaxed)))
        return 1;
    uint64_t fs = shk_segment_file_size(d->seg);
    atomic_store_explicit(&m->backed, fs, memory_order_relaxed);
    return end <= fs;
}

static inline uint64_t life_ver(uint64_t life) { return life >> 16; }
static inline uint64_t life_pins(uint64_t life) { return life & 0xffffu; }

static inline uint64_t key_seed(const shk_dict *d, uint8_t ktype)
{
    return d->seed ^ ((uint64_t)ktype * 0x9E3779B97F4A7C15ull);
}

uint64_t shk_dict_hash(const shk_dict *d, uint8_t ktype, const void *key, size_t klen)
{
    return shk_hash64(key, klen, key_seed(d, ktype));
}

/* Total bytes of an entry; UINT64_MAX on overflow. */
static inline uint64_t entry_size(uint64_t klen, uint64_t vlen)
{
    return shk_add_sat(ENTRY_HDR + shk_align_up(klen, 16), vlen);
}

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

#define VER_BATCH 1024u

/* The shard of a key: the hash's low bits (the table uses the high 32). */
static inline dict_shard *shard_of(const shk_dict *d, uint64_t hash)
{
    return &d->sh->shard[hash & d->shard_mask];
}
static inline unsigned shard_index(const shk_dict *d, const dict_shard *sh)
{
    return (unsigned)(sh - d->sh->shard);
}

/* 1 if a clear has committed (clear_epoch) but not reached this shard yet:
 * its table still holds what the clear removed, so it reads as empty.
 * acquire on clear_epoch, then on epoch: a shard whose epoch is current has
 * its post-clear table visible to the table load that follows (the clearer
 * stores the table, then the epoch, both release; see CLEAR). */
static inline int shard_stale(const shk_dict *d, const dict_shard *sh)
{
    uint64_t c = atomic_load_explicit(&d->sh->clear_epoch, memory_order_acquire);
    return atomic_load_explicit(&sh->epoch, memory_order_acquire) < c;
}

/* The next unique even version (called under sh's writer lock). */
static uint64_t new_ver(shk_dict *d, dict_shard *sh)
{
    ver_batch *b = &d->ver[shard_index(d, sh)];
    unsigned fg = shk_fork_gen();
    if (b->next == b->end || b->fork_gen != fg) {
        b->fork_gen = fg;
        /* relaxed: versions only need to be unique, not ordered. */
        b->next = atomic_fetch_add_explicit(&d->sh->next_ver, 2 * VER_BATCH,
                                            memory_order_relaxed);
        b->end = b->next + 2 * VER_BATCH;
    }
    uint64_t v = b->next & VER_MASK;
    b->next += 2;
    return v;
}

/* ------------------------------------------------------------ open/create */

static unsigned log2_for(uint64_t entries)
{
    /* smallest power of two with entries <= 3/4 of it, at least the minimum */
    unsigned l = 3;
    while (l < SHK_DICT_MAX_LOG2_CAP && ((1ull << l) / 4) * 3 < entries)
        l++;
    return l;
}

/* Allocate a zeroed table of 2^l slots; its offset in *off. */
static int table_new(shk_dict *d, unsigned l, uint64_t *off)
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

static inline uint64_t header_bytes(unsigned nshards)
{
    return sizeof(dict_shared) + (uint64_t)nshards * sizeof(dict_shard);
}

static int dict_init(shk_segment *seg, void *arg, uint64_t *offset, uint64_t *size)
{
    init_arg *ia = arg;
    shk_dict tmp = {.seg = seg, .heap = shk_segment_heap(seg),
                    .base = shk_segment_base(seg)};
    const unsigned ns = SHK_DICT_SHARDS;
    /* The header's lines must be real cache lines (the layout keeps what
     * readers read apart from what writers write), and heap blocks are only
     * 16-aligned: take 48 bytes more and start on a line.  Object headers
     * are never freed, so the block's own start need not be kept. */
    uint64_t blk;
    int rc = shk_freelist_alloc(tmp.heap, header_bytes(ns) + SHK_CACHELINE - 16, &blk);
    if (rc != SHK_OK)
        return rc;
    uint64_t h = shk_align_up(blk, SHK_CACHELINE);
    dict_shared *sh = (dict_shared *)(tmp.base + h);
    memset(sh, 0, header_bytes(ns));
    unsigned l = log2_for(shard_hint(ia->capacity_hint, ns));
    unsigned made = 0;
    for (; made < ns; made++) {
        uint64_t t;
        rc = table_new(&tmp, l, &t);
        if (rc == SHK_OK && shk_pmutex_init(&sh->shard[made].w.lock) != SHK_OK) {
            shk_freelist_free(tmp.heap, t);
            rc = SHK_ESYS;
        }
        if (rc != SHK_OK)
            break;
        atomic_store_explicit(&sh->shard[made].table, tw_pack(1, l, t),
                              memory_order_relaxed);
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
    sh->header_size = (uint32_t)header_bytes(ns);
    sh->nshards = ns;
    atomic_store_explicit(&sh->next_ver, (v0 & VER_MASK & ~3ull) + 2, memory_order_relaxed);
    /* The directory's release store of the entry publishes all of this. */
    *offset = h;
    *size = header_bytes(ns);
    return SHK_OK;
}

static inline int table_valid(const shk_dict *d, uint64_t tw)
{
    unsigned l = tw_log2(tw);
    uint64_t t = tw_off(tw);
    if (l < 3 || l > SHK_DICT_MAX_LOG2_CAP || t % 16)
        return 0;
    if (!in_seg(d, t, table_bytes(l)))
        return 0;
    return 1;
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
    for (unsigned i = 0; i <= d->shard_mask; i++) {
        const dict_shard *s = &sh->shard[i];
        uint32_t op = atomic_load_explicit(&s->intent.op, memory_order_relaxed);
        if (wop(atomic_load_explicit(&s->w.op_ver, memory_order_relaxed)) > OP_DEL ||
            (op != OP_NONE && op != OP_RESIZE && op != OP_CLEAR))
            return 0;
        /* acquire: pairs with the publishing release store, so the magic
         * of the table it names is in place when we read it. */
        uint64_t tw = atomic_load_explicit(&s->table, memory_order_acquire);
        for (unsigned tries = 0;; tries++) {
            if (table_valid(d, tw) && *(uint64_t *)(d->base + tw_off(tw)) == TABLE_MAGIC)
                break;
            uint64_t now = atomic_load_explicit(&s->table, memory_order_acquire);
            if (now == tw || tries == 1u << 16)
                return 0;
            tw = now;
        }
    }
    return 1;
}

int shk_dict_open(shk_segment *seg, const char *name, int create,
                  uint64_t capacity_hint, shk_dict **out, int *created)
{
    if (capacity_hint > (3ull << (SHK_DICT_MAX_LOG2_CAP - 2)))
        return SHK_EINVAL;
    init_arg ia = {capacity_hint};
    uint64_t off;
    int cr = 0;
    int rc = shk_segment_object(seg, name, SHK_TYPE_DICT, create ? dict_init : NULL,
                                &ia, &off, &cr);
    if (rc != SHK_OK)
        return rc;
    if (!shk_segment_contains(seg, off, sizeof(dict_shared)) || off % SHK_CACHELINE)
        return SHK_ECORRUPT;
    const dict_shared *hdr = (const dict_shared *)(shk_segment_base(seg) + off);
    unsigned ns = hdr->nshards;
    if (hdr->magic != DICT_MAGIC || hdr->version != DICT_VERSION ||
        ns == 0 || ns > DICT_MAX_SHARDS || (ns & (ns - 1)) ||
        hdr->header_size != header_bytes(ns) ||
        !shk_segment_contains(seg, off, header_bytes(ns)))
        return SHK_ECORRUPT;
    shk_fork_watch();
    shk_dict *d = calloc(1, sizeof *d + ns * sizeof(ver_batch));
    if (!d)
        return SHK_ESYS;
    d->seg = seg;
    d->heap = shk_segment_heap(seg);
    d->base = shk_segment_base(seg);
    d->sh = (dict_shared *)(d->base + off);
    d->off = off;
    d->seed = shk_segment_hash_seed(seg);
    d->shard_mask = ns - 1;
    if (!header_valid(d)) {
        free(d);
        return SHK_ECORRUPT;
    }
    shk_segment_retain(seg);
    if (created)
        *created = cr;
    *out = d;
    return SHK_OK;
}

int shk_dict_mutex_span(unsigned i, uint64_t *start, uint64_t *end)
{
    if (i >= SHK_DICT_SHARDS)
        return SHK_ENOTFOUND;
    *start = offsetof(dict_shared, shard) + i * sizeof(dict_shard) +
             offsetof(dict_shard, w) + offsetof(dict_wline, lock);
    *end = *start + sizeof(pthread_mutex_t);
    return SHK_OK;
}

void shk_dict_close(shk_dict *d)
{
    if (!d)
        return;
    shk_segment_close(d->seg);
    free(d);
}

shk_segment *shk_dict_segment(const shk_dict *d) { return d->seg; }
uint64_t shk_dict_offset(const shk_dict *d) { return d->off; }

uint64_t shk_dict_count(const shk_dict *d)
{
    /* relaxed: each shard's count is exact under its lock; the sum is a
     * snapshot only when no writer runs (like len() of any concurrent map). */
    uint64_t n = 0;
    for (unsigned i = 0; i <= d->shard_mask; i++)
        if (!shard_stale(d, &d->sh->shard[i]))
            n += atomic_load_explicit(&d->sh->shard[i].w.count, memory_order_relaxed);
    return n;
}

/* ------------------------------------------------------------------ reads */

/* Read the entry at `e` into ref if it is a consistent, live entry.
 * Returns 1 (ref filled, life1 even and unchanged), 0 if it changed or its
 * lengths do not fit the segment (the caller retries). */
static inline int entry_snapshot(const shk_dict *d, uint64_t e, shk_dict_ref *ref)
{
    if (SHK_UNLIKELY(!in_seg(d, e, ENTRY_HDR)))
        return 0;
    const dict_entry *en = entry_at(d, e);
    /* acquire: pairs with the builder's release of an even ver, so the
     * entry's fields read below are at least that complete. */
    uint64_t life = atomic_load_explicit(&en->life, memory_order_acquire);
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

int shk_dict_ref_valid(const shk_dict *d, const shk_dict_ref *ref)
{
    /* acquire fence: every read of entry data before it happens before the
     * loads below, so if a writer retired (or a reuser overwrote) the block
     * while we read, we see its new life value (seqlock read side). */
    atomic_thread_fence(memory_order_acquire);
    uint64_t life = atomic_load_explicit(&entry_at(d, ref->entry)->life,
                                         memory_order_relaxed);
    if (life_ver(life) != ref->ver)
        return 0;
    return atomic_load_explicit(&d->sh->shard[ref->shard & d->shard_mask].table,
                                memory_order_relaxed) == ref->table;
}

int shk_dict_find_h(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                    uint64_t hash, shk_dict_ref *ref)
{
    uint64_t tag = hash >> 32;
    dict_shard *sh = shard_of(d, hash);
    for (;;) {
        if (shard_stale(d, sh))
            return SHK_ENOTFOUND;
        /* acquire: the table's slots (zeroed and copied before the release
         * store of the table word) are visible. */
        uint64_t tw = atomic_load_explicit(&sh->table, memory_order_acquire);
        if (SHK_UNLIKELY(!table_valid(d, tw)))
            return SHK_ECORRUPT;
        uint64_t mask = (1ull << tw_log2(tw)) - 1;
        _Atomic uint64_t *slots = slots_of(d, tw);
        uint64_t i = tag & mask;
        int retry = 0;
        for (uint64_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
            /* acquire: pairs with the release store that published the
             * entry, so its contents are visible. */
            uint64_t s = atomic_load_explicit(&slots[i], memory_order_acquire);
            if (s == SLOT_EMPTY)
                break;
            if (s == SLOT_TOMB || (s >> 32) != tag)
                continue;
            if (!entry_snapshot(d, slot_entry(s), ref)) {
                retry = 1;
                break;
            }
            ref->table = tw;
            ref->shard = shard_index(d, sh);
            int match = ref->ktype == ktype && ref->klen == klen &&
                        entry_at(d, ref->entry)->hash == hash &&
                        memcmp(ref->key, key, klen) == 0;
            if (match)
                return SHK_OK;   /* the caller validates after reading */
            /* A mismatch counts only if the entry was stable while compared:
             * otherwise the slot may have held our key. */
            if (!shk_dict_ref_valid(d, ref)) {
                retry = 1;
                break;
            }
        }
        if (retry)
            continue;
        /* A miss is an answer only if the table was not replaced meanwhile
         * (a freed table's memory may have been reused). */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&sh->table, memory_order_relaxed) == tw)
            return SHK_ENOTFOUND;
    }
}

int shk_dict_find(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                  shk_dict_ref *ref)
{
    return shk_dict_find_h(d, ktype, key, klen, shk_dict_hash(d, ktype, key, klen), ref);
}

int shk_dict_get(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                 uint8_t *vtype, void *buf, uint64_t cap, uint64_t *vlen)
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
    uint64_t life = atomic_load_explicit(lp, memory_order_relaxed);
    for (;;) {
        if (life_ver(life) != ref->ver)
            return SHK_EAGAIN;
        if (life_pins(life) >= SHK_DICT_MAX_PINS)
            return SHK_EFULL;
        /* The CAS succeeds only while the block is still this entry (same
         * version), so it can never write into a reused block.  acquire:
         * what we read through the pin afterwards is that entry. */
        if (atomic_compare_exchange_weak_explicit(lp, &life, life + 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return SHK_OK;
    }
}

/* Free an entry block whose life we own (pins 0, retired). */
static void entry_free(shk_dict *d, uint64_t e)
{
    shk_freelist_free(d->heap, e);
}

void shk_dict_unpin_seg(shk_segment *seg, uint64_t e)
{
    /* Works from the segment alone, so a view may outlive its dict handle. */
    if (!shk_segment_contains(seg, e, ENTRY_HDR))
        return;
    _Atomic uint64_t *lp = &((dict_entry *)(shk_segment_base(seg) + e))->life;
    uint64_t life = atomic_load_explicit(lp, memory_order_relaxed);
    for (;;) {
        if (life_pins(life) == 0)
            return;   /* not pinned: a caller bug; never underflow */
        uint64_t next = life - 1;
        int last_of_zombie = life_pins(next) == 0 && (life_ver(next) & 1);
        if (last_of_zombie)
            next = LIFE_DEAD;
        /* acq_rel: release orders our reads of the value before a reuse of
         * the block; acquire orders the free after the retirer's stores. */
        if (atomic_compare_exchange_weak_explicit(lp, &life, next,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            if (last_of_zombie)
                shk_freelist_free(shk_segment_heap(seg), e);
            return;
        }
    }
}

void shk_dict_unpin(shk_dict *d, uint64_t e)
{
    shk_dict_unpin_seg(d->seg, e);
}

/* Retire a live entry that is no longer referenced by the table: free it,
 * or leave it to its last pin holder.  Returns 1 if it was still live. */
static int entry_retire(shk_dict *d, uint64_t e, uint64_t ver)
{
    _Atomic uint64_t *lp = &entry_at(d, e)->life;
    uint64_t life = atomic_load_explicit(lp, memory_order_relaxed);
    for (;;) {
        if (life_ver(life) != ver)
            return 0;
        uint64_t next = life_pins(life) ? (((ver | 1) << 16) | life_pins(life))
                                        : LIFE_DEAD;
        /* release: a reader that sees the odd ver after reading the entry
         * knows its copy may be torn; the free below publishes nothing. */
        if (atomic_compare_exchange_weak_explicit(lp, &life, next,
                                                  memory_order_release,
                                                  memory_order_relaxed)) {
            if (next == LIFE_DEAD)
                entry_free(d, e);
            return 1;
        }
    }
}

/* ----------------------------------------------------------------- writes */

/* A shard counter changes only under its lock: a plain load and store, no
 * locked RMW.  Atomic (relaxed) because len() and stats() read it
 * without the lock. */
static inline void counter_add(_Atomic uint32_t *c, int32_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint32_t)d,
                          memory_order_relaxed);
}

/* The lines a commit of this hash will write: its shard's writers' line and
 * its home slot.  Another process's writes to the same shard usually left
 * them in its cache, and moving a line between cores costs more than a
 * whole set (~160 ns on the 2-vCPU VMs we measure on, against ~50 ns), so
 * a commit that asks for them only when it takes the lock stalls there.
 * Asked for as early as the hash is known, before the entry is allocated
 * and built, the transfer overlaps that work.  Two processes inserting into
 * one dict lose 15-30 ns an insert to these transfers (bench_dict.c's
 * "shared inserts"; more with the prefetch after the allocation or none),
 * and nothing when their keys fall in disjoint shards.  The loss is split
 * between the lock line and the table lines: a lock-free prototype lost as
 * much (docs/dict.md, "Known limits").  A hint: nothing relies on it, and
 * a stale table word only prefetches a useless line. */
static inline void shard_prefetch(const shk_dict *d, uint64_t hash)
{
    dict_shard *sh = shard_of(d, hash);
    SHK_PREFETCH_W(&sh->w);
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    if (SHK_LIKELY(table_valid(d, tw)))
        SHK_PREFETCH_W(&slots_of(d, tw)[(hash >> 32) & ((1ull << tw_log2(tw)) - 1)]);
}

int shk_dict_prepare(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                     uint8_t vtype, uint64_t vlen, shk_dict_txn *txn)
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
    atomic_store_explicit(&en->life, LIFE_DEAD, memory_order_relaxed);
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

/* ---- under the writer lock ---- */

/* Probe the current table for the key of entry `want` (or key bytes).
 * *found: slot index of the key or -1; *free_slot: first tombstone/empty
 * slot on the path (where an insert goes). */
typedef struct probe {
    int64_t found;
    int64_t free_slot;
    uint64_t slot_word;
} probe;

static void probe_key(shk_dict *d, uint64_t tw, uint8_t ktype, const void *key,
                      uint64_t klen, uint64_t hash, probe *p)
{
    uint64_t mask = (1ull << tw_log2(tw)) - 1, tag = hash >> 32;
    _Atomic uint64_t *slots = slots_of(d, tw);
    p->found = -1;
    p->free_slot = -1;
    uint64_t i = tag & mask;
    for (uint64_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
        /* relaxed: we hold the writer lock, slots change only under it. */
        uint64_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (s == SLOT_EMPTY) {
            if (p->free_slot < 0)
                p->free_slot = (int64_t)i;
            return;
        }
        if (s == SLOT_TOMB) {
            if (p->free_slot < 0)
                p->free_slot = (int64_t)i;
            continue;
        }
        if ((s >> 32) != tag)
            continue;
        const dict_entry *en = entry_at(d, slot_entry(s));
        if (en->hash == hash && en->ktype == ktype && en->klen == klen &&
            memcmp(d->base + slot_entry(s) + ENTRY_HDR, key, klen) == 0) {
            p->found = (int64_t)i;
            p->slot_word = s;
            return;
        }
    }
}

static uint64_t recount(shk_dict *d, uint64_t tw, uint64_t *used)
{
    _Atomic uint64_t *slots = slots_of(d, tw);
    uint64_t cap = 1ull << tw_log2(tw), live = 0, u = 0;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (s != SLOT_EMPTY)
            u++;
        if (slot_live(s))
            live++;
    }
    *used = u;
    return live;
}

/* Repair after a writer died holding the lock (see CRASH SAFETY). */
static void shard_finish_clear(shk_dict *d, dict_shard *sh);

static void recover(shk_dict *d, dict_shard *sh)
{
    dict_intent *in = &sh->intent;
    dict_wline *w = &sh->w;
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    uint64_t ov = atomic_load_explicit(&w->op_ver, memory_order_relaxed);
    uint32_t wo = wop(ov);
    uint32_t op = atomic_load_explicit(&in->op, memory_order_relaxed);
    if (wo == OP_SET || wo == OP_DEL) {
        /* Find the key where it is now (by probing) to learn whether the
         * change was published. */
        uint64_t new_e = (uint64_t)w->new_e << 4, old_e = (uint64_t)w->old_e << 4;
        uint64_t ke = wo == OP_SET ? new_e : old_e;
        uint64_t cur = 0;
        if (shk_segment_contains(d->seg, ke, ENTRY_HDR)) {
            const dict_entry *en = entry_at(d, ke);
            if (shk_segment_contains(d->seg, ke + ENTRY_HDR, en->klen)) {
                probe p;
                probe_key(d, tw, en->ktype, d->base + ke + ENTRY_HDR, en->klen,
                          en->hash, &p);
                if (p.found >= 0)
                    cur = slot_entry(p.slot_word);
            }
        }
        int done = wo == OP_SET ? cur == new_e : cur != old_e;
        if (done) {
            if (old_e)
                entry_retire(d, old_e, wver(ov));
        } else if (wo == OP_SET && shk_segment_contains(d->seg, new_e, ENTRY_HDR)) {
            /* Never published, so never reachable (nor pinned): ours alone,
             * whatever stage it reached. */
            atomic_store_explicit(&entry_at(d, new_e)->life, LIFE_DEAD,
                                  memory_order_relaxed);
            entry_free(d, new_e);
        }
        atomic_store_explicit(&w->op_ver, 0, memory_order_relaxed);
    } else if (op == OP_CLEAR) {
        /* Committed iff the clearer's clear_epoch store happened; then
         * finish it (it publishes the new table if that had not happened);
         * otherwise nothing was visible and the new table is ours alone. */
        uint64_t c = atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed);
        int valid = table_valid(d, in->table) && table_valid(d, in->old_table);
        if (c >= in->slot && valid && (tw == in->old_table || tw == in->table))
            shard_finish_clear(d, sh);
        else if (c < in->slot && tw != in->table && table_valid(d, in->table))
            table_free(d, tw_off(in->table));
    } else if (op == OP_RESIZE) {
        if (tw != in->table) {
            /* Not published: the new table is ours alone. */
            if (table_valid(d, in->table))
                table_free(d, tw_off(in->table));
        } else if (table_valid(d, in->old_table)) {
            /* Published, and the intent is cleared before the old table is
             * freed, so that has not happened yet: finish it. */
            table_free(d, tw_off(in->old_table));
        }
    }
    tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    atomic_store_explicit(&in->op, OP_NONE, memory_order_relaxed);
    uint64_t used;
    uint64_t live = recount(d, tw, &used);
    atomic_store_explicit(&w->count, (uint32_t)live, memory_order_relaxed);
    atomic_store_explicit(&w->used, (uint32_t)used, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->recoveries, 1, memory_order_relaxed);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int shard_lock(shk_dict *d, dict_shard *sh)
{
    /* Critical sections are a probe and a few stores (~100 ns), far shorter
     * than a futex sleep and wake-up (~several us), so a contended writer
     * first retries trylock briefly, then blocks in the robust mutex (which
     * sleeps on a futex).  This is an adaptive mutex, not a sleep loop. */
    int rc = EBUSY;
    for (int i = 0; i < 64; i++) {
        rc = pthread_mutex_trylock(&sh->w.lock);
        if (rc != EBUSY)
            break;
        cpu_relax();
    }
    if (rc == 0)
        return SHK_OK;
    if (rc == EBUSY)
        rc = shk_pmutex_lock(&sh->w.lock);
    else
        rc = rc == EOWNERDEAD ? SHK_MUTEX_RECOVERED : SHK_ESYS;
    if (rc == SHK_MUTEX_RECOVERED) {
        recover(d, sh);
        shk_pmutex_consistent(&sh->w.lock);
        return SHK_OK;
    }
    return rc;
}

static inline void shard_unlock(dict_shard *sh) { shk_pmutex_unlock(&sh->w.lock); }

int shk_dict_lock(shk_dict *d)
{
    /* Every shard, in index order: two lockers of all shards cannot
     * deadlock, and a single-shard writer never holds two locks. */
    for (unsigned i = 0; i <= d->shard_mask; i++) {
        int rc = shard_lock(d, &d->sh->shard[i]);
        if (rc != SHK_OK) {
            while (i--)
                shard_unlock(&d->sh->shard[i]);
            return rc;
        }
    }
    return SHK_OK;
}

void shk_dict_unlock(shk_dict *d)
{
    for (unsigned i = d->shard_mask + 1; i--;)
        shard_unlock(&d->sh->shard[i]);
}

/* Replace the table by one of 2^l slots holding the same live entries. */
static int resize_to(shk_dict *d, dict_shard *sh, unsigned l)
{
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    uint64_t nt;
    int rc = table_new(d, l, &nt);
    if (rc != SHK_OK)
        return rc;
    uint64_t ntw = tw_pack(tw_gen(tw) + 1, l, nt);
    sh->intent.table = ntw;
    sh->intent.old_table = tw;
    /* release: intent fields before op (see commit). */
    atomic_store_explicit(&sh->intent.op, OP_RESIZE, memory_order_release);
    _Atomic uint64_t *os = slots_of(d, tw), *ns = slots_of(d, ntw);
    uint64_t ocap = 1ull << tw_log2(tw), nmask = (1ull << l) - 1, live = 0;
    for (uint64_t i = 0; i < ocap; i++) {
        uint64_t s = atomic_load_explicit(&os[i], memory_order_relaxed);
        if (!slot_live(s))
            continue;
        uint64_t j = (s >> 32) & nmask;
        while (atomic_load_explicit(&ns[j], memory_order_relaxed) != SLOT_EMPTY)
            j = (j + 1) & nmask;
        atomic_store_explicit(&ns[j], s, memory_order_relaxed);
        live++;
        if (live == 1)
            SHK_CRASH_POINT("dict.resize.copying");
    }
    SHK_CRASH_POINT("dict.resize.built");
    /* release: readers that load the new table word see its slots. */
    atomic_store_explicit(&sh->table, ntw, memory_order_release);
    SHK_CRASH_POINT("dict.resize.published");
    atomic_store_explicit(&sh->w.used, (uint32_t)live, memory_order_relaxed);
    atomic_store_explicit(&sh->intent.op, OP_NONE, memory_order_relaxed);
    table_free(d, tw_off(tw));
    atomic_fetch_add_explicit(&sh->resizes, 1, memory_order_relaxed);
    return SHK_OK;
}

/* Make room for one more used slot. */
static int ensure_room(shk_dict *d, dict_shard *sh)
{
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    uint64_t cap = 1ull << tw_log2(tw);
    uint64_t used = atomic_load_explicit(&sh->w.used, memory_order_relaxed);
    if ((used + 1) * 4 <= cap * 3)
        return SHK_OK;
    uint64_t live = atomic_load_explicit(&sh->w.count, memory_order_relaxed);
    /* Size for twice the live entries so that a run of inserts does not
     * resize again soon; if mostly tombstones, this rebuilds at equal size. */
    unsigned l = log2_for((live + 1) * 2);
    if (l < tw_log2(tw) && live * 4 > cap)
        l = tw_log2(tw);
    if ((live + 1) * 4 > (3ull << SHK_DICT_MAX_LOG2_CAP))
        return SHK_ENOMEM;
    return resize_to(d, sh, l);
}

int shk_dict_commit(shk_dict *d, shk_dict_txn *txn, int mode,
                    uint64_t expect_entry, uint64_t expect_ver, int *replaced)
{
    if (!txn->entry)
        return SHK_EINVAL;
    dict_shard *sh = shard_of(d, txn->hash);
    dict_entry *en = entry_at(d, txn->entry);
    int rc = shard_lock(d, sh);
    if (rc != SHK_OK)
        return rc;
    rc = ensure_room(d, sh);
    if (rc != SHK_OK)
        goto out;
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    probe p;
    probe_key(d, tw, en->ktype, d->base + txn->entry + ENTRY_HDR, en->klen,
              txn->hash, &p);
    uint64_t old = 0, old_ver = 0;
    if (p.found >= 0) {
        old = slot_entry(p.slot_word);
        old_ver = life_ver(atomic_load_explicit(&entry_at(d, old)->life,
                                                memory_order_relaxed));
    }
    if (mode == SHK_DICT_INSERT && p.found >= 0) {
        rc = SHK_EEXIST;
        goto out;
    }
    if (mode == SHK_DICT_EXPECT &&
        (old != expect_entry || (old && old_ver != expect_ver))) {
        rc = SHK_EAGAIN;
        goto out;
    }
    if (p.found < 0 && p.free_slot < 0) {
        rc = SHK_ENOMEM;    /* cannot happen below 3/4 load */
        goto out;
    }
    uint64_t slot = (uint64_t)(p.found >= 0 ? p.found : p.free_slot);
    _Atomic uint64_t *sp = &slots_of(d, tw)[slot];
    uint64_t prev = atomic_load_explicit(sp, memory_order_relaxed);
    uint64_t ver = new_ver(d, sh);
    dict_wline *w = &sh->w;
    w->new_e = (uint32_t)(txn->entry >> 4);
    w->old_e = (uint32_t)(old >> 4);
    /* release: the intent's fields are in place before op says they are
     * (a crash may stop us anywhere after this store). */
    atomic_store_explicit(&w->op_ver, (uint64_t)OP_SET << 56 | old_ver, memory_order_release);
    SHK_CRASH_POINT("dict.set.intent");
    /* relaxed: the slot's release store below publishes the version with the
     * rest of the entry. */
    atomic_store_explicit(&en->life, ver << 16, memory_order_relaxed);
    SHK_CRASH_POINT("dict.set.versioned");
    /* release: the commit point.  A reader acquiring this slot word sees a
     * complete entry with an even version. */
    atomic_store_explicit(sp, slot_pack(txn->hash, txn->entry), memory_order_release);
    SHK_CRASH_POINT("dict.set.published");
    if (old) {
        entry_retire(d, old, old_ver);
    } else {
        counter_add(&w->count, 1);
        if (prev == SLOT_EMPTY)
            counter_add(&w->used, 1);
    }
    SHK_CRASH_POINT("dict.set.retired");
    atomic_store_explicit(&w->op_ver, 0, memory_order_relaxed);
    txn->entry = 0;
    if (replaced)
        *replaced = old != 0;
out:
    shard_unlock(sh);
    return rc;
}

int shk_dict_set(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                 uint8_t vtype, const void *val, uint64_t vlen)
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

int shk_dict_delete(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                    uint64_t expect_entry, uint64_t expect_ver)
{
    if (klen > UINT32_MAX)
        return SHK_ENOTFOUND;
    uint64_t hash = shk_dict_hash(d, ktype, key, klen);
    dict_shard *sh = shard_of(d, hash);
    /* The slot line then moves here while the lock's line does, not after
     * it, inside the critical section where every other writer of the
     * shard waits for it. */
    shard_prefetch(d, hash);
    int rc = shard_lock(d, sh);
    if (rc != SHK_OK)
        return rc;
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    probe p;
    probe_key(d, tw, ktype, key, klen, hash, &p);
    if (p.found < 0) {
        rc = SHK_ENOTFOUND;
        goto out;
    }
    uint64_t old = slot_entry(p.slot_word);
    uint64_t old_ver = life_ver(atomic_load_explicit(&entry_at(d, old)->life,
                                                     memory_order_relaxed));
    if (expect_entry && (old != expect_entry || old_ver != expect_ver)) {
        rc = SHK_EAGAIN;
        goto out;
    }
    uint64_t mask = (1ull << tw_log2(tw)) - 1;
    _Atomic uint64_t *slots = slots_of(d, tw);
    dict_wline *w = &sh->w;
    w->new_e = 0;
    w->old_e = (uint32_t)(old >> 4);
    /* release: the intent's fields are in place before op says they are
     * (a crash may stop us anywhere after this store). */
    atomic_store_explicit(&w->op_ver, (uint64_t)OP_DEL << 56 | old_ver, memory_order_release);
    /* If the next slot is EMPTY no probe path continues past this one, so it
     * can become EMPTY rather than a tombstone. */
    uint64_t next = atomic_load_explicit(&slots[((uint64_t)p.found + 1) & mask],
                                         memory_order_relaxed);
    uint64_t repl = next == SLOT_EMPTY ? SLOT_EMPTY : SLOT_TOMB;
    /* release: orders our earlier reads of the entry; readers that see the
     * tombstone do not touch the entry. */
    atomic_store_explicit(&slots[p.found], repl, memory_order_release);
    SHK_CRASH_POINT("dict.delete.unlinked");
    counter_add(&w->count, -1);
    if (repl == SLOT_EMPTY) {
        counter_add(&w->used, -1);
        /* The tombstones just before an EMPTY slot end no probe path that
         * holds a key (every key is reachable from its home without
         * crossing an EMPTY, so none lies beyond them on their paths): they
         * become EMPTY too.  Without this, insert/delete cycles leave runs
         * of tombstones that every later probe walks (and, for two writing
         * processes, lines each one's probe takes from the other).  relaxed:
         * a reader that sees EMPTY a slot earlier answers the same. */
        uint64_t j = ((uint64_t)p.found - 1) & mask;
        for (uint64_t n = 0; n < mask &&
                 atomic_load_explicit(&slots[j], memory_order_relaxed) == SLOT_TOMB;
             n++, j = (j - 1) & mask) {
            atomic_store_explicit(&slots[j], SLOT_EMPTY, memory_order_relaxed);
            counter_add(&w->used, -1);
        }
    }
    entry_retire(d, old, old_ver);
    SHK_CRASH_POINT("dict.delete.retired");
    atomic_store_explicit(&w->op_ver, 0, memory_order_relaxed);
out:
    shard_unlock(sh);
    return rc;
}

/* Finish a committed clear in one shard: publish the empty table its
 * intent holds (if not yet), mark the shard current, then retire what the
 * old table held.  Under the shard's lock (by the clearer, or by recover()
 * after the clearer died). */
static void shard_finish_clear(shk_dict *d, dict_shard *sh)
{
    dict_intent *in = &sh->intent;
    uint64_t tw = in->old_table;
    /* release: readers that load the new table word see its zeroed slots. */
    atomic_store_explicit(&sh->table, in->table, memory_order_release);
    SHK_CRASH_POINT("dict.clear.published");
    /* release: a reader that sees the epoch sees the new table (above). */
    atomic_store_explicit(&sh->epoch, in->slot, memory_order_release);
    atomic_store_explicit(&sh->w.count, 0, memory_order_relaxed);
    atomic_store_explicit(&sh->w.used, 0, memory_order_relaxed);
    /* From here the old entries are unreachable for new readers; we retire
     * them one by one.  A crash in the loop leaks the rest (the intent is
     * already cleared), never corrupts. */
    atomic_store_explicit(&in->op, OP_NONE, memory_order_relaxed);
    _Atomic uint64_t *os = slots_of(d, tw);
    uint64_t ocap = 1ull << tw_log2(tw);
    for (uint64_t i = 0; i < ocap; i++) {
        uint64_t s = atomic_load_explicit(&os[i], memory_order_relaxed);
        if (!slot_live(s) || !in_seg(d, slot_entry(s), ENTRY_HDR))
            continue;
        uint64_t e = slot_entry(s);
        uint64_t life = atomic_load_explicit(&entry_at(d, e)->life,
                                             memory_order_relaxed);
        if (!(life_ver(life) & 1))
            entry_retire(d, e, life_ver(life));
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
    uint64_t epoch = atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed) + 1;
    unsigned made = 0;
    for (; made <= d->shard_mask; made++) {
        dict_shard *sh = &d->sh->shard[made];
        uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
        uint64_t nt;
        rc = table_new(d, 3, &nt);
        if (rc != SHK_OK)
            break;
        sh->intent.slot = epoch;
        sh->intent.table = tw_pack(tw_gen(tw) + 1, 3, nt);
        sh->intent.old_table = tw;
        /* release: intent fields before op (see commit). */
        atomic_store_explicit(&sh->intent.op, OP_CLEAR, memory_order_release);
    }
    if (rc != SHK_OK) {
        while (made--) {
            dict_shard *sh = &d->sh->shard[made];
            atomic_store_explicit(&sh->intent.op, OP_NONE, memory_order_relaxed);
            table_free(d, tw_off(sh->intent.table));
        }
        shk_dict_unlock(d);
        return rc;
    }
    SHK_CRASH_POINT("dict.clear.prepared");
    /* release: the commit point of the whole clear.  From here every shard
     * reads as empty (shard_stale) until it is finished below, and a
     * recovering writer finishes it if we die. */
    atomic_store_explicit(&d->sh->clear_epoch, epoch, memory_order_release);
    SHK_CRASH_POINT("dict.clear.committed");
    for (unsigned i = 0; i <= d->shard_mask; i++)
        shard_finish_clear(d, &d->sh->shard[i]);
    shk_dict_unlock(d);
    return SHK_OK;
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
        if (shard_stale(d, sh)) {
            *pos = (si + 1) << 32;
            *table = 0;
            continue;
        }
        uint64_t tw = atomic_load_explicit(&sh->table, memory_order_acquire);
        if (*table == 0)
            *table = tw;
        else if (*table != tw)
            return SHK_EAGAIN;
        if (!table_valid(d, tw))
            return SHK_ECORRUPT;
        uint64_t cap = 1ull << tw_log2(tw);
        _Atomic uint64_t *slots = slots_of(d, tw);
        for (uint64_t i = *pos & 0xffffffffull; i < cap; i++) {
            uint64_t s = atomic_load_explicit(&slots[i], memory_order_acquire);
            if (!slot_live(s))
                continue;
            if (!entry_snapshot(d, slot_entry(s), ref))
                continue;   /* retired meanwhile: it is gone */
            ref->table = tw;
            ref->shard = (uint32_t)si;
            *pos = si << 32 | (i + 1);
            return SHK_OK;
        }
        *pos = (si + 1) << 32;
        *table = 0;
    }
}

/* ------------------------------------------------------------ stats/check */

static void shard_stats(const shk_dict *d, const dict_shard *sh, shk_dict_stats *st)
{
    int stale = shard_stale(d, sh);
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_acquire);
    uint64_t count = stale ? 0 : atomic_load_explicit(&sh->w.count, memory_order_relaxed);
    uint64_t used = stale ? 0 : atomic_load_explicit(&sh->w.used, memory_order_relaxed);
    st->count += count;
    st->capacity += 1ull << tw_log2(tw);
    st->used_slots += used;
    st->tombstones += used > count ? used - count : 0;
    st->table_bytes += table_bytes(tw_log2(tw));
    st->resizes += atomic_load_explicit(&sh->resizes, memory_order_relaxed);
    st->recoveries += atomic_load_explicit(&sh->recoveries, memory_order_relaxed);
}

void shk_dict_stats_get(const shk_dict *d, shk_dict_stats *st)
{
    memset(st, 0, sizeof *st);
    for (unsigned i = 0; i <= d->shard_mask; i++)
        shard_stats(d, &d->sh->shard[i], st);
}

/* Check shard si (locked), adding its statistics to *total. */
static int check_shard(shk_dict *d, unsigned si, shk_dict_stats *total)
{
    const dict_shard *sh = &d->sh->shard[si];
    uint64_t count = atomic_load_explicit(&sh->w.count, memory_order_relaxed);
    uint64_t used_count = atomic_load_explicit(&sh->w.used, memory_order_relaxed);
    uint64_t tw = atomic_load_explicit(&sh->table, memory_order_relaxed);
    if (!table_valid(d, tw) || *(uint64_t *)(d->base + tw_off(tw)) != TABLE_MAGIC ||
        *(uint32_t *)(d->base + tw_off(tw) + 8) != tw_log2(tw))
        return SHK_ECORRUPT;
    if (atomic_load_explicit(&sh->intent.op, memory_order_relaxed) != OP_NONE ||
        atomic_load_explicit(&sh->w.op_ver, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&sh->epoch, memory_order_relaxed) !=
            atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed))
        return SHK_ECORRUPT;
    uint64_t cap = 1ull << tw_log2(tw), mask = cap - 1;
    _Atomic uint64_t *slots = slots_of(d, tw);
    uint64_t live = 0, used = 0;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (s == SLOT_EMPTY)
            continue;
        used++;
        if (s == SLOT_TOMB)
            continue;
        live++;
        uint64_t e = slot_entry(s);
        if (!shk_segment_contains(d->seg, e, ENTRY_HDR) ||
            shk_freelist_usable(d->heap, e) == 0)
            return SHK_ECORRUPT;
        const dict_entry *en = entry_at(d, e);
        uint64_t life = atomic_load_explicit(&en->life, memory_order_relaxed);
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
            uint64_t t = atomic_load_explicit(&slots[j], memory_order_relaxed);
            if (t == SLOT_EMPTY)
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
    if (live != count || used != used_count || used * 4 > cap * 3 + 4)
        return SHK_ECORRUPT;
    /* the counters are exact here: add them like stats() does */
    shard_stats(d, sh, total);
    return SHK_OK;
}

int shk_dict_check(shk_dict *d, shk_dict_stats *out)
{
    /* All shards locked at once, so the totals are one consistent state. */
    int rc = shk_dict_lock(d);
    if (rc != SHK_OK)
        return rc;
    shk_dict_stats st;
    memset(&st, 0, sizeof st);
    for (unsigned i = 0; i <= d->shard_mask && rc == SHK_OK; i++)
        rc = check_shard(d, i, &st);
    shk_dict_unlock(d);
    if (rc == SHK_OK && out)
        *out = st;
    return rc;
}
