/*
 * dict.c -- SharedDict: a process-shared hash map with lock-free readers,
 * lock-free writers and online growth.
 *
 * DESIGN
 *   An open-addressing table (linear probing) of 64-bit slots.  A slot holds
 *   either EMPTY (low 32 bits 0), a TOMBSTONE, BUSY (see DELETE), or a
 *   packed reference to an *entry*: the high 32 bits of the key's hash (the
 *   "tag") beside the entry's segment offset in 16-byte units.  An entry is
 *   one heap block holding the key, the value and their type tags; it is
 *   immutable once published.  The home slot of a key is tag & (capacity -
 *   1), so a resize only moves slot words and never touches an entry.
 *
 *   SHARDS.  The dict is SHK_DICT_SHARDS (16) independent shards, and a
 *   key's shard is its hash's low bits (the table uses the high 32, so the
 *   two choices are independent).  Each shard has its own table, slot
 *   reserve, resize/clear intent and robust lock, on its own cache lines.
 *
 *   WRITES are lock-free.  A set claims an EMPTY slot, or replaces its key's
 *   entry, with one compare-and-swap of the slot word; a delete swaps in a
 *   tombstone.  The new entry is allocated and filled before (so large
 *   values are copied with nothing held).  Why not a lock: on the 2-vCPU
 *   machines we measure on, moving a cache line between cores costs ~160 ns,
 *   more than a whole set, and a shard lock is one line every writer of the
 *   shard takes.  With a robust lock per shard two processes inserting into
 *   one dict lost 15-30 ns an insert against a dict each; without it the
 *   only lines they share are table lines, and only where their keys meet.
 *   What a lock used to keep is now kept by:
 *   - LANES.  A writer holds one *lane* (of DICT_LANES, each a robust
 *     process-shared mutex with lines of its own) for the length of one set
 *     or delete; a process prefers the same lane every time, so taking it
 *     touches no line another process wrote.  The lane holds the intent of
 *     the change in flight (for crash repair), a version batch, the
 *     writer's share of each shard's entry count (len() sums the lanes, less
 *     the shard's `base`), and its reserve of each shard's slots.
 *   - RESERVES.  A table may have at most 3/4 of its slots used (live +
 *     tombstones).  A writer takes slots for inserts from its lane's
 *     reserve, refilled from the shard's `used` in chunks (one shared RMW
 *     per many inserts); slots a delete empties go back to the reserve.
 *     `used` never falls short of the slots really used.  A writer whose
 *     refill fails grows the table.
 *   - FREEZING, for resize, clear and check().  Under the shard lock, set
 *     the table word's FROZEN bit, then take and release every lane once.
 *     Writers read the table word after taking their lane, so each one
 *     either finished before, or sees FROZEN and waits on the shard lock
 *     (sleeping on its futex).  The table is then the freezer's alone.
 *   - PINS.  A writer replacing or deleting an entry pins it first (below),
 *     so the entry's block cannot be freed and reused, and the slot word
 *     its CAS expects cannot come back with another meaning (no ABA).
 *
 *   Publication is the slot CAS (release): before it the entry is
 *   invisible, after it it is complete.  The replaced entry is then
 *   *retired*.
 *
 *   DELETE.  A deleted slot becomes a tombstone, unless the slot after it is
 *   EMPTY: then it and the tombstones just before it become EMPTY, so that
 *   insert/delete cycles do not fill the table.  To do that without a lock
 *   the deleter marks that EMPTY slot BUSY (a CAS, so an inserter's claim
 *   and the mark cannot both win), then its own slot and the tombstones
 *   before it, then writes EMPTY into all of them.  Lookups treat BUSY as
 *   EMPTY (no key lies beyond the run it ends); writers wait for it.  Every
 *   EMPTY a delete writes carries a fresh nonce in its high bits, so an
 *   inserter that read the slot as EMPTY before cannot claim it after.
 *   An insert then checks that its slot is reachable: that the path from
 *   the key's home holds no EMPTY, no BUSY and no other copy of the key (a
 *   delete running while we scanned may have emptied a slot behind us).
 *   Once the slot is claimed nothing can empty that path any more, so the
 *   check is final; if it fails the entry was never reachable and the
 *   claim is withdrawn (the slot left a tombstone) and retried.
 *   Tombstones are not reused by inserts (that would need the same check
 *   for copies of the key *after* the slot, racing with their inserters);
 *   a growth counts them (see Growth).
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
 *   The clearer locks and freezes every shard, gives each an empty table
 *   recorded in its intent (nothing visible yet), then commits with one
 *   release store of the dict's clear_epoch.  A shard whose own epoch is
 *   below clear_epoch reads as empty (shard_stale: readers, len() and
 *   iteration skip it); the clearer then publishes each shard's new table
 *   and epoch and retires the old entries.  If it dies after the commit,
 *   the next locker of each shard finishes that shard (recover); before
 *   it, the new tables are freed.
 *
 *   Growth: when a writer's reserve cannot be refilled, it takes the shard
 *   lock and freezes the shard.  If the table's really used slots leave room
 *   (the lanes merely hold unused reserves), a new table generation voids
 *   those reserves; else it builds a table sized for twice the used slots
 *   (live and tombstones; at most 16x what the live entries need), copies
 *   the live slot words, and publishes it with one release store of the
 *   shard's `table` word, which packs (FROZEN, table generation, log2
 *   capacity, offset).  The old table is freed at once: no writer is in it
 *   (frozen), and readers take capacity and offset from the table word they
 *   loaded (never from the possibly-reused table memory), bound every probe
 *   by that capacity, and re-load the table word before answering: if it
 *   changed, they retry.  So a reader still walking a freed and reused
 *   table can read garbage slots but never answers from them.  Memory of
 *   freed tables stays mapped (segments never shrink), so those reads are
 *   safe.  The heap grows the segment file on demand, in place: every
 *   process maps the segment's whole reservation (max_size, 64 GiB of
 *   address space by default) and growth is a posix_fallocate of the file
 *   (segment.c).  We rely on that rather than chained extents because
 *   readers and zero-copy views hold raw offsets and pointers that must
 *   never move, and because it keeps a lookup free of any extent
 *   translation.  That is what lets 10M entries fit in a dict created with
 *   default arguments.
 *
 * LAYOUT
 *   dict header (2 + 3 * nshards + 6 * nlanes cache lines on x86-64,
 *   starting on a cache line inside its heap block):
 *     +0   magic "SHKDICT1" | version | header size | nshards | nlanes |
 *          clear_epoch (atomic)
 *     +64  next_ver (atomic; taken in batches)
 *     +128 shard[nshards], 192 bytes each:
 *       +0   table (atomic: frozen:1 | tgen:25 | log2cap:6 | offset/16:32)
 *            | epoch | resizes | recoveries    (read by lookups and writers)
 *       +64  resize/clear intent: op, epoch (clear), new and old table words
 *       +128 robust process-shared shard lock | used (u32, slots reserved) |
 *            rebase (u32) | base (i64: len = sum of lane counts - base)
 *     then lane[nlanes], 384 bytes each:
 *       +0   robust process-shared lane lock | owner pid hint | nonce |
 *            op (op << 56 | shard << 48 | old entry pinned)
 *       +64  intent: new entry, its version, old entry, its version, table
 *            word and slot, version batch
 *       +128 count[16] (i64: entries this lane added - removed, per shard)
 *       +256 reserve[16] (table generation << 32 | slots, per shard)
 *   table (one heap block):
 *     +0   magic "SHKDTABL" | log2cap (u32) | reserved
 *     +16  slot[cap]    nonce << 32 = EMPTY, TOMB (0xffffffff),
 *                       lane+1 << 32 | 0xfffffffe = BUSY,
 *                       or tag32 << 32 | entry/16
 *   entry (one heap block):
 *     +0   life  (atomic: ver << 16 | pins)
 *     +8   hash  (full 64-bit)
 *     +16  klen (u32) | ktype (u8) | vtype (u8) | reserved (u16)
 *     +24  vlen (u64)
 *     +32  key bytes, zero-padded to 16
 *     +32+align16(klen)  value bytes (16-byte aligned: numpy data lives here)
 *
 * INVARIANTS (of each shard, whenever it is frozen and its lanes drained)
 *   - Every live slot references an entry with even ver whose hash's high
 *     32 bits equal the slot tag, and that is reachable from its home slot
 *     without crossing an EMPTY slot; no two live slots hold equal keys.
 *   - No slot is BUSY, and no lane has an intent.
 *   - sum of the lanes' counts - base = live slots (unless rebase is set);
 *     live + tombstones <= used <= 3/4 capacity.
 *   - An entry is referenced by at most one slot of the current table, and
 *     its hash's low bits name the shard.
 *   - epoch == clear_epoch (a lower epoch only while a clear is running or
 *     its clearer died, and then the intent is OP_CLEAR).
 *   - A retired entry has odd ver; it is freed once its pins reach 0.
 *
 * CRASH SAFETY
 *   A writer killed at any instant holds its lane's robust mutex, which
 *   passes with EOWNERDEAD to the next writer that takes the lane, or to a
 *   freezer draining the lanes, or to len()/stats(), which look for lanes
 *   with an intent.  It repairs the lane from the intent: BUSY marks of the
 *   lane become EMPTY; an insert's claim whose reachability check had not
 *   run is checked now and withdrawn if it fails; a new entry the table
 *   does not reference is freed,
 *   and an old entry it no longer references is retired (both with a
 *   version-checked CAS on the entry's life, so if a live writer replaced
 *   the entry meanwhile and retires it too, exactly one of them frees it);
 *   the writer's pin is dropped.  Whether the change reached the lane's
 *   count is unknown, so the shard is marked for a recount (`rebase`, done
 *   frozen by the next len(), stats() or check()).  A resizer, clearer or
 *   checker killed holding the shard lock is repaired by the next locker
 *   (recover): an unpublished resized table is freed, a published one has
 *   its predecessor freed, a clear is finished if clear_epoch shows it
 *   committed, else its new table is freed; the shard is unfrozen.
 *   Crash points (SHK_CRASH_POINT "dict.*") mark each step for the tests.
 *   Committed entries are never lost: a commit is its slot CAS.  The worst
 *   case is a leaked block (a crash between allocating and recording it,
 *   or between pinning an entry and recording the pin, or inside the
 *   allocator's own free), never a torn or lost entry, never a deadlock.
 *   A reader killed while pinning leaks that entry's block.
 */
#include "internal.h"
#include "hash.h"
#include "heap_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#define DICT_MAGIC 0x31544349444b4853ull    /* "SHKDICT1" */
#define TABLE_MAGIC 0x4c424154444b4853ull   /* "SHKDTABL" */
#define DICT_MAGIC 0x31544349444b4853ull    /* "SHKDICT1" */
#define TABLE_MAGIC 0x4c424154444b4853ull   /* "SHKDTABL" */
#define DICT_VERSION 3u
#define DICT_MAX_SHARDS 256u
#define DICT_LANES 16u                       /* a power of two, <= 255     */
#define TABLE_HDR 16u
#define ENTRY_HDR 32u

/* Slot words (see LAYOUT).  The low 32 bits say what a slot is. */
#define SLOT_TOMB 0xffffffffull
#define SLOT_BUSY_LO 0xfffffffeull
#define LIFE_DEAD (1ull << 16)               /* ver 1: odd, never live     */
#define VER_MASK ((1ull << 48) - 1)
#define TW_FROZEN (1ull << 63)               /* table word: writers wait   */

/* A shard's table holds at most LOAD_NUM/LOAD_DEN of its slots used (live
 * + tombstones). */
#define LOAD_NUM 3u
#define LOAD_DEN 4u

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

/* The shard lock's line: taken by resizes, clears, checks and writers
 * waiting for those, never by a plain set or delete. */
typedef struct dict_sline {
    _Alignas(SHK_CACHELINE) pthread_mutex_t lock;   /* robust, shared   */
    _Atomic uint32_t used;   /* slots reserved for use: >= live + tombs    */
    _Atomic uint32_t rebase; /* 1: base must be recomputed (a lane died)   */
    _Atomic int64_t base;    /* live entries = sum of lane counts - base   */
} dict_sline;

/* One shard: an independent table.  Three lines (on x86-64; more where
 * pthread_mutex_t is larger): the one every lookup and writer reads, the
 * rare intent of a resize or clear, and the shard lock's line. */
typedef struct dict_shard {
    /* line 0: read by every lookup and write, written by resize/clear */
    _Atomic uint64_t table;
    _Atomic uint64_t epoch;  /* the clear its table is from (see CLEAR)     */
    _Atomic uint64_t resizes;
    _Atomic uint64_t recoveries;
    char pad0[SHK_CACHELINE - 32];
    /* line 1: written by resize and clear only */
    dict_intent intent;
    char pad1[SHK_CACHELINE - sizeof(dict_intent)];
    /* line 2 */
    dict_sline s;
} dict_shard;
SHK_STATIC_ASSERT(offsetof(dict_shard, intent) == SHK_CACHELINE, "layout");
SHK_STATIC_ASSERT(offsetof(dict_shard, s) == 2 * SHK_CACHELINE, "layout");
#if defined(__x86_64__) && defined(__GLIBC__)
SHK_STATIC_ASSERT(sizeof(dict_sline) == SHK_CACHELINE, "one line on x86-64");
#endif

/* A lane: what one writer at a time (the holder of its robust mutex)
 * writes besides table slots, on lines no other writer touches while it
 * works: the intent of its change, its version batch, its share of each
 * shard's entry count and its reserve of each shard's slots. */
typedef struct dict_lane {
    _Alignas(SHK_CACHELINE) pthread_mutex_t lock;   /* robust, shared   */
    _Atomic uint32_t owner;  /* pid that prefers this lane (a hint)        */
    uint32_t nonce;          /* EMPTY words this lane wrote (see DELETE)    */
    _Atomic uint64_t op;     /* intent: op << 56 | shard << 48 | pinned     */
    /* the intent's fields, valid while op != OP_NONE */
    _Alignas(SHK_CACHELINE) uint64_t new_e, new_ver;  /* OP_SET           */
    uint64_t old_e, old_ver; /* the entry replaced or deleted, or 0        */
    uint64_t table;          /* the table it ran in                         */
    uint64_t slot;           /* the slot it changes                         */
    uint64_t ver_next, ver_end;        /* the version batch                */
    _Atomic int64_t count[SHK_DICT_SHARDS];   /* entries added - removed   */
    uint64_t budget[SHK_DICT_SHARDS];  /* table gen << 32 | slots reserved */
} dict_lane;
SHK_STATIC_ASSERT(SHK_DICT_SHARDS <= DICT_MAX_SHARDS, "shards");

static inline uint32_t lop(uint64_t op) { return (uint32_t)(op >> 56); }
static inline unsigned lshard(uint64_t op) { return (unsigned)(op >> 48) & 0xffu; }

typedef struct dict_shared {
    /* line 0: read by every lookup, written only by clear */
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t nshards;        /* a power of two, 1 .. SHK_DICT_SHARDS        */
    uint32_t nlanes;         /* DICT_LANES                                  */
    _Atomic uint64_t clear_epoch;  /* clears committed (see CLEAR)          */
    char pad0[SHK_CACHELINE - 32];
    /* line 1: written once per version batch */
    _Atomic uint64_t next_ver;
    char pad1[SHK_CACHELINE - 8];
    dict_shard shard[];      /* nshards of them, then nlanes dict_lanes     */
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

struct shk_dict {
    shk_segment *seg;
    shk_freelist *heap;
    char *base;
    dict_shared *sh;
    dict_lane *lanes;
    uint64_t off;
    uint64_t seed;
    uint64_t shard_mask;        /* nshards - 1 */
    /* Backed segment size last seen.  The file only grows, so an offset
     * below it is always safe; only beyond it do we ask the segment again.
     * Relaxed atomic: a per-process cache that threads may share. */
    _Atomic uint64_t backed;
    /* The lane this handle tries first, and the fork generation it was
     * chosen in (a forked child chooses its own).  Hints only: relaxed. */
    _Atomic unsigned lane_hint;
    _Atomic unsigned lane_gen;
};

/* ----------------------------------------------------------- small helpers */

static inline uint64_t tw_pack(uint64_t tgen, unsigned log2cap, uint64_t off)
{
    return ((tgen & 0x1ffffffull) << 38) | ((uint64_t)log2cap << 32) | (off >> 4);
}
static inline unsigned tw_log2(uint64_t w) { return (unsigned)(w >> 32) & 63u; }
static inline uint64_t tw_off(uint64_t w) { return (w & 0xffffffffull) << 4; }
static inline uint64_t tw_gen(uint64_t w) { return (w >> 38) & 0x1ffffffull; }
/* Equal tables (the FROZEN bit aside: it changes who may write, not what
 * the table holds). */
static inline int tw_same(uint64_t a, uint64_t b) { return ((a ^ b) & ~TW_FROZEN) == 0; }

static inline uint64_t slot_pack(uint64_t hash, uint64_t entry)
{
    return (hash & 0xffffffff00000000ull) | (entry >> 4);
}
static inline uint64_t slot_entry(uint64_t s) { return (s & 0xffffffffull) << 4; }
static inline int slot_empty(uint64_t s) { return (uint32_t)s == 0; }
static inline int slot_busy(uint64_t s) { return (s & 0xffffffffull) == SLOT_BUSY_LO; }
static inline int slot_live(uint64_t s)
{
    return (uint32_t)s != 0 && (s & 0xffffffffull) < SLOT_BUSY_LO;
}
static inline uint64_t busy_word(unsigned lane) { return (uint64_t)(lane + 1) << 32 | SLOT_BUSY_LO; }

static inline uint64_t table_bytes(unsigned log2cap)
{
    return TABLE_HDR + ((uint64_t)8 << log2cap);
}
/* Most slots a table of 2^l slots may have used. */
static inline uint64_t table_limit(unsigned l)
{
    return ((1ull << l) * LOAD_NUM) / LOAD_DEN;
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
    if (SHK_LIKELY(end <= SHK_A(atomic_load_explicit(&m->backed, memory_order_relaxed))))
        return 1;
    uint64_t fs = shk_segment_file_size(d->seg);
    SHK_A(atomic_store_explicit(&m->backed, fs, memory_order_relaxed));
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
static inline unsigned lane_index(const shk_dict *d, const dict_lane *l)
{
    return (unsigned)(l - d->lanes);
}

/* 1 if a clear has committed (clear_epoch) but not reached this shard yet:
 * its table still holds what the clear removed, so it reads as empty.
 * acquire on clear_epoch, then on epoch: a shard whose epoch is current has
 * its post-clear table visible to the table load that follows (the clearer
 * stores the table, then the epoch, both release; see CLEAR). */
static inline int shard_stale(const shk_dict *d, const dict_shard *sh)
{
    uint64_t c = SHK_A(atomic_load_explicit(&d->sh->clear_epoch, memory_order_acquire));
    return SHK_A(atomic_load_explicit(&sh->epoch, memory_order_acquire)) < c;
}

/* The next unique even version (called by the holder of lane l). */
static uint64_t new_ver(shk_dict *d, dict_lane *l)
{
    if (l->ver_next >= l->ver_end || l->ver_end - l->ver_next > 2 * VER_BATCH) {
        /* relaxed: versions only need to be unique, not ordered. */
        l->ver_next = SHK_A(atomic_fetch_add_explicit(&d->sh->next_ver, 2 * VER_BATCH,
                                                memory_order_relaxed));
        l->ver_end = l->ver_next + 2 * VER_BATCH;
    }
    uint64_t v = l->ver_next & VER_MASK;
    l->ver_next += 2;
    return v;
}

/* ------------------------------------------------------------ open/create */

/* Smallest power of two (at least the minimum) whose table holds
 * `entries` used slots. */
static unsigned log2_for(uint64_t entries)
{
    unsigned l = 3;
    while (l < SHK_DICT_MAX_LOG2_CAP && table_limit(l) < entries)
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

static inline uint64_t lanes_at(unsigned nshards)
{
    return sizeof(dict_shared) + (uint64_t)nshards * sizeof(dict_shard);
}
static inline uint64_t header_bytes(unsigned nshards, unsigned nlanes)
{
    return lanes_at(nshards) + (uint64_t)nlanes * sizeof(dict_lane);
}

static int dict_init(shk_segment *seg, void *arg, uint64_t *offset, uint64_t *size)
{
    init_arg *ia = arg;
    shk_dict tmp = {.seg = seg, .heap = shk_segment_heap(seg),
                    .base = shk_segment_base(seg)};
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
    unsigned l = log2_for(shard_hint(ia->capacity_hint, ns));
    unsigned made = 0;
    for (; made < ns && rc == SHK_OK; made++) {
        uint64_t t;
        rc = table_new(&tmp, l, &t);
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
    SHK_A(atomic_store_explicit(&sh->next_ver, (v0 & VER_MASK & ~3ull) + 2, memory_order_relaxed));
    /* The directory's release store of the entry publishes all of this. */
    *offset = h;
    *size = header_bytes(ns, nl);
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

int shk_dict_open(shk_segment *seg, const char *name, int create,
                  uint64_t capacity_hint, shk_dict **out, int *created)
{
    if (capacity_hint > table_limit(SHK_DICT_MAX_LOG2_CAP))
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
    unsigned ns = hdr->nshards, nl = hdr->nlanes;
    if (hdr->magic != DICT_MAGIC || hdr->version != DICT_VERSION ||
        ns == 0 || ns > SHK_DICT_SHARDS || (ns & (ns - 1)) || nl != DICT_LANES ||
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
    if (created)
        *created = cr;
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

static void lane_release_hint(shk_dict *d);

void shk_dict_close(shk_dict *d)
{
    if (!d)
        return;
    lane_release_hint(d);
    shk_segment_close(d->seg);
    free(d);
}

shk_segment *shk_dict_segment(const shk_dict *d) { return d->seg; }
uint64_t shk_dict_offset(const shk_dict *d) { return d->off; }

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
    uint64_t life = SHK_A(atomic_load_explicit(&en->life, memory_order_acquire));
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
    return ref->ktype == ktype && ref->klen == klen &&
           entry_at(d, ref->entry)->hash == hash && memcmp(ref->key, key, klen) == 0;
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
    uint64_t life = SHK_A(atomic_load_explicit(&entry_at(d, ref->entry)->life,
                                         memory_order_relaxed));
    if (life_ver(life) != ref->ver)
        return 0;
    return tw_same(SHK_A(atomic_load_explicit(&d->sh->shard[ref->shard & d->shard_mask].table,
                                        memory_order_relaxed)), ref->table);
}

/* How many times in a row a slot may name an entry that is not live while
 * neither the slot nor its table changes before the entry is called
 * corrupt.  A slot references an entry only while that entry is live (see
 * shk_dict_ref_valid), so in a healthy dict a failed snapshot through an
 * unchanged slot needs the block to be retired, reused and published
 * again in the same slot between two of our loads; a second look then
 * succeeds.  A few looks tell that from a corrupt entry, which fails every
 * time. */
#define SLOT_STUCK_LIMIT 8u

enum { SLOT_AGAIN = 1, SLOT_RESTART = 2 };

/* A snapshot of slot i's entry (word s, table tw of shard sh) failed or did
 * not validate.  SLOT_AGAIN: the slot changed, or may yet; load it again.
 * SLOT_RESTART: the table was replaced; probe again from the top.
 * SHK_ECORRUPT: the slot keeps naming an entry that is not live. */
static int slot_unstable(const dict_shard *sh, uint64_t tw,
                         const _Atomic uint64_t *slot, uint64_t s, unsigned *stuck)
{
    /* acquire: orders these loads after the failed snapshot's. */
    if (SHK_A(atomic_load_explicit(slot, memory_order_acquire)) != s) {
        *stuck = 0;
        return SLOT_AGAIN;
    }
    if (!tw_same(SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed)), tw))
        return SLOT_RESTART;
    if (++*stuck < SLOT_STUCK_LIMIT) {
        sched_yield();   /* let a writer preempted mid-publish go on */
        return SLOT_AGAIN;
    }
    return SHK_ECORRUPT;
}

int shk_dict_find_h(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                    uint64_t hash, shk_dict_ref *ref)
{
    uint64_t tag = hash >> 32;
    dict_shard *sh = shard_of(d, hash);
    uint32_t si = shard_index(d, sh);
    for (;;) {
        if (shard_stale(d, sh))
            return SHK_ENOTFOUND;
        /* acquire: the table's slots (zeroed and copied before the release
         * store of the table word) are visible. */
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
        if (SHK_UNLIKELY(!table_valid(d, tw)))
            return SHK_ECORRUPT;
        uint64_t mask = (1ull << tw_log2(tw)) - 1;
        _Atomic uint64_t *slots = slots_of(d, tw);
        uint64_t i = tag & mask;
        unsigned stuck = 0;
        int restart = 0;
        for (uint64_t n = 0; n <= mask && !restart;) {
            /* acquire: pairs with the release store that published the
             * entry, so its contents are visible. */
            uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
            /* A BUSY slot ends a probe like EMPTY: it is part of a run a
             * delete is emptying, and no key lies beyond such a run. */
            if (slot_empty(s) || slot_busy(s))
                break;
            if (s != SLOT_TOMB && (s >> 32) == tag) {
                if (entry_snapshot(d, slot_entry(s), ref)) {
                    ref_found_at(ref, tw, si, i, s);
                    if (ref_is_key(d, ref, ktype, key, klen, hash))
                        return SHK_OK;   /* the caller validates after reading */
                    /* A mismatch counts only if the slot referenced that
                     * entry while we compared: else it may hold our key. */
                    if (shk_dict_ref_valid(d, ref))
                        goto next;
                }
                int st = slot_unstable(sh, tw, &slots[i], s, &stuck);
                if (st == SHK_ECORRUPT)
                    return st;
                restart = st == SLOT_RESTART;
                continue;   /* SLOT_AGAIN: the same slot, loaded again */
            }
        next:
            stuck = 0;
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
static void entry_free(shk_dict *d, uint64_t e)
{
    shk_freelist_free_home(d->heap, e);
}

void shk_dict_unpin_seg(shk_segment *seg, uint64_t e)
{
    /* Works from the segment alone, so a view may outlive its dict handle. */
    if (!shk_segment_contains(seg, e, ENTRY_HDR))
        return;
    _Atomic uint64_t *lp = &((dict_entry *)(shk_segment_base(seg) + e))->life;
    uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
    for (;;) {
        if (life_pins(life) == 0)
            return;   /* not pinned: a caller bug; never underflow */
        uint64_t next = life - 1;
        int last_of_zombie = life_pins(next) == 0 && (life_ver(next) & 1);
        if (last_of_zombie)
            next = LIFE_DEAD;
        /* acq_rel: release orders our reads of the value before a reuse of
         * the block; acquire orders the free after the retirer's stores. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(lp, &life, next,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))) {
            if (last_of_zombie)
                shk_freelist_free_home(shk_segment_heap(seg), e);
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
    uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
    for (;;) {
        if (life_ver(life) != ver)
            return 0;
        uint64_t next = life_pins(life) ? (((ver | 1) << 16) | life_pins(life))
                                        : LIFE_DEAD;
        /* release: a reader that sees the odd ver after reading the entry
         * knows its copy may be torn; the free below publishes nothing. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(lp, &life, next,
                                                  memory_order_release,
                                                  memory_order_relaxed))) {
            if (next == LIFE_DEAD)
                entry_free(d, e);
            return 1;
        }
    }
}

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

/* ---- finding a key as a writer ----
 * Like a lookup, lock-free: other writers change slots meanwhile, and an
 * entry may be retired and its block reused while we compare its key.  A
 * match or mismatch counts only if the entry's life was unchanged across
 * the comparison (as for readers); else the probe is retried. */
typedef struct wprobe {
    int64_t found;           /* slot of the key, or -1                    */
    int64_t empty;           /* first EMPTY slot on the path, or -1       */
    uint64_t word;           /* the slot word at found / empty            */
    uint64_t ver;            /* found: the entry's version                 */
    uint64_t busy;           /* a BUSY word that ended the path, or 0     */
    uint64_t busy_at;        /* its slot                                   */
} wprobe;

/* Does live slot word s of table tw hold the key?  1 yes, 0 no, -1 its
 * entry changed while we compared (look again).  *ver: its version. */
static int slot_holds_key(shk_dict *d, uint64_t tw, uint64_t i, uint64_t s, uint8_t ktype,
                          const void *key, uint64_t klen, uint64_t hash, uint64_t *ver)
{
    shk_dict_ref r;
    if (!entry_snapshot(d, slot_entry(s), &r))
        return -1;
    int match = ref_is_key(d, &r, ktype, key, klen, hash);
    ref_found_at(&r, tw, (uint32_t)(hash & d->shard_mask), i, s);
    if (!shk_dict_ref_valid(d, &r))
        return -1;
    *ver = r.ver;
    return match;
}

/* 1: *p filled; 0: the table was replaced under us, probe again;
 * SHK_ECORRUPT: a slot keeps naming an entry that is not live. */
static int probe_w(shk_dict *d, uint64_t tw, uint8_t ktype, const void *key,
                   uint64_t klen, uint64_t hash, wprobe *p)
{
    uint64_t mask = (1ull << tw_log2(tw)) - 1, tag = hash >> 32;
    _Atomic uint64_t *slots = slots_of(d, tw);
    p->found = p->empty = -1;
    p->busy = 0;
    uint64_t i = tag & mask;
    unsigned stuck = 0;
    for (uint64_t n = 0; n <= mask;) {
        /* acquire: a published entry's contents are visible. */
        uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
        if (slot_empty(s)) {
            p->empty = (int64_t)i;
            p->word = s;
            return 1;
        }
        if (slot_busy(s)) {
            p->busy = s;
            p->busy_at = i;
            return 1;
        }
        if (s != SLOT_TOMB && (s >> 32) == tag) {
            uint64_t ver;
            int match = slot_holds_key(d, tw, i, s, ktype, key, klen, hash, &ver);
            if (match < 0) {
                int st = slot_unstable(shard_of(d, hash), tw, &slots[i], s, &stuck);
                if (st != SLOT_AGAIN)
                    return st == SLOT_RESTART ? 0 : st;
                continue;   /* the same slot, loaded again */
            }
            if (match) {
                p->found = (int64_t)i;
                p->word = s;
                p->ver = ver;
                return 1;
            }
        }
        stuck = 0;
        n++;
        i = (i + 1) & mask;
    }
    return 1;   /* a full table: no EMPTY (the caller grows it) */
}

/* After claiming slot j for a new key: is it reachable?  Deletes empty
 * slots (see DELETE) while we scan, so the path from the key's home to j
 * may have gained an EMPTY or BUSY slot, or another writer's copy of the
 * key, after we passed it.  Once j is ours, no delete can start emptying
 * slots between home and j (emptying needs an EMPTY slot after the run,
 * and they are all taken now), so what we see here stays true.  1: no
 * EMPTY, no BUSY, no other copy of the key: the insert took effect at the
 * claim.  0: the entry was never reachable (a lookup stopped before it or
 * found the other copy first), and the caller withdraws it. */
static int claim_valid(shk_dict *d, uint64_t tw, uint8_t ktype, const void *key,
                       uint64_t klen, uint64_t hash, uint64_t j)
{
    uint64_t mask = (1ull << tw_log2(tw)) - 1, tag = hash >> 32;
    _Atomic uint64_t *slots = slots_of(d, tw);
    unsigned stuck = 0;
    for (uint64_t i = tag & mask; i != j;) {
        uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
        if (slot_empty(s) || slot_busy(s))
            return 0;
        if (slot_live(s) && (s >> 32) == tag) {
            uint64_t ver;
            int match = slot_holds_key(d, tw, i, s, ktype, key, klen, hash, &ver);
            if (match < 0) {
                /* Being replaced: look again.  A slot that keeps naming a
                 * dead entry (corrupt) withdraws the claim; the retried
                 * probe reports the corruption. */
                if (slot_unstable(shard_of(d, hash), tw, &slots[i], s, &stuck) == SLOT_AGAIN)
                    continue;
                return 0;
            }
            if (match)
                return 0;
        }
        stuck = 0;
        i = (i + 1) & mask;
    }
    return 1;
}

/* Is entry e (whose key we read from its block, which may since have been
 * freed and reused) referenced by its shard's current table?  Used by
 * recovery; a reused block answers "no" or names the reuser's own live
 * entry, and both lead recovery to leave the block alone or to fail a
 * version-checked CAS. */
static int entry_in_table(shk_dict *d, dict_shard *sh, uint64_t e)
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

/* ---- lanes ----
 * A writer holds one lane (its robust mutex) for the length of one set or
 * delete.  The lane's lines are written by that writer alone, so its
 * intent record and counters cost no cache-line transfers (see WRITES). */

static int pid_alive(uint32_t pid)
{
    return pid != 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
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

static void lane_release_hint(shk_dict *d)
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
static int lane_lock(shk_dict *d, dict_lane *l)
{
    int rc = shk_pmutex_lock(&l->lock);
    if (rc == SHK_MUTEX_RECOVERED) {
        lane_recover(d, l);
        shk_pmutex_consistent(&l->lock);
        rc = SHK_OK;
    }
    return rc;
}

static dict_lane *lane_enter(shk_dict *d, int *err)
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
        int rc = pthread_mutex_trylock(&l->lock);
        if (rc == EBUSY)
            continue;
        if (k)
            SHK_A(atomic_store_explicit(&d->lane_hint, i, memory_order_relaxed));
        if (rc == EOWNERDEAD) {
            lane_recover(d, l);
            shk_pmutex_consistent(&l->lock);
            rc = 0;
        }
        if (rc == 0)
            return l;
        errno = rc;
        *err = SHK_ESYS;
        return NULL;
    }
    /* Every lane busy (more writers than lanes): wait for ours. */
    dict_lane *l = &d->lanes[h];
    int rc = lane_lock(d, l);
    if (rc != SHK_OK) {
        *err = rc;
        return NULL;
    }
    return l;
}

static inline void lane_exit(dict_lane *l) { shk_pmutex_unlock(&l->lock); }

/* An EMPTY word no inserter can have read before: a per-lane counter and
 * the lane's index in its high 32 bits (the low 32 say EMPTY). */
static inline uint64_t fresh_empty(const shk_dict *d, dict_lane *l)
{
    uint32_t v = (++l->nonce << 5) | (lane_index(d, l) + 1);
    return (uint64_t)v << 32;
}

/* Record the intent of a change (a crash may stop us anywhere after the
 * op store).  release: the fields are in place before op says they are. */
static inline void intent_set(dict_lane *l, uint32_t op, unsigned si, unsigned pinned)
{
    SHK_A(atomic_store_explicit(&l->op, (uint64_t)op << 56 | (uint64_t)si << 48 | pinned,
                          memory_order_release));
}
static inline void intent_clear(dict_lane *l)
{
    /* relaxed: the lane mutex's unlock publishes it to the next holder. */
    SHK_A(atomic_store_explicit(&l->op, 0, memory_order_relaxed));
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
            !claim_valid(d, tw, ne->ktype, d->base + l->new_e + ENTRY_HDR, ne->klen,
                         ne->hash, l->slot))
            SHK_A(atomic_store_explicit(&slots_of(d, tw)[l->slot], SLOT_TOMB, memory_order_release));
    }
    if (o == OP_SET && l->new_e && shk_segment_contains(d->seg, l->new_e, ENTRY_HDR) &&
        !entry_in_table(d, sh, l->new_e)) {
        /* Unpublished (ours alone), or published and since replaced by a
         * writer that retires it too: the version CAS lets one of us free it. */
        _Atomic uint64_t *lp = &entry_at(d, l->new_e)->life;
        if (SHK_A(atomic_load_explicit(lp, memory_order_relaxed)) == LIFE_DEAD)
            entry_free(d, l->new_e);
        else
            entry_retire(d, l->new_e, l->new_ver);
    }
    if (l->old_e && shk_segment_contains(d->seg, l->old_e, ENTRY_HDR)) {
        _Atomic uint64_t *lp = &entry_at(d, l->old_e)->life;
        uint64_t life = SHK_A(atomic_load_explicit(lp, memory_order_relaxed));
        if (!entry_in_table(d, sh, l->old_e))
            entry_retire(d, l->old_e, l->old_ver);
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
static void lanes_reap(shk_dict *d)
{
    for (unsigned i = 0; i < DICT_LANES; i++) {
        dict_lane *l = &d->lanes[i];
        if (SHK_A(atomic_load_explicit(&l->op, memory_order_relaxed)) == 0)
            continue;
        int rc = pthread_mutex_trylock(&l->lock);
        if (rc == EOWNERDEAD) {
            lane_recover(d, l);
            shk_pmutex_consistent(&l->lock);
        }
        if (rc == 0 || rc == EOWNERDEAD)
            shk_pmutex_unlock(&l->lock);
    }
}

/* Wait until the delete that marked a slot BUSY is done: it holds its
 * lane for a few stores, so spin briefly, then sleep on the lane's mutex
 * (which also repairs it if that writer died).  Called with no lane held:
 * a writer that waited for one lane while holding another could, once the
 * lanes change hands, wait in a cycle (ThreadSanitizer reported that lock
 * order in test_dict's churn test). */
static int wait_busy(shk_dict *d, _Atomic uint64_t *slot, uint64_t busy)
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
    int rc = lane_lock(d, l);
    if (rc == SHK_OK)
        lane_exit(l);
    return rc;
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

/* A writer found the shard frozen: wait for whoever froze it (sleeping on
 * the shard lock, which also repairs it if they died). */
static int shard_wait(shk_dict *d, dict_shard *sh)
{
    int rc = shard_lock(d, sh);
    if (rc == SHK_OK)
        shard_unlock(sh);
    return rc;
}

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

static void drain_lanes(shk_dict *d)
{
    for (unsigned i = 0; i < DICT_LANES; i++)
        if (lane_lock(d, &d->lanes[i]) == SHK_OK)
            lane_exit(&d->lanes[i]);
}

static void unfreeze(dict_shard *sh)
{
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    /* release: what we changed in the table is visible to writers after. */
    SHK_A(atomic_store_explicit(&sh->table, tw & ~TW_FROZEN, memory_order_release));
}

/* Sum of the lanes' counts for shard si.  Unsigned, wrapping: the counts
 * are deltas (a lane may delete what another added), and a corrupt header
 * must not make the sum undefined behaviour. */
static uint64_t lanes_count(const shk_dict *d, unsigned si)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < DICT_LANES; i++)
        n += (uint64_t)SHK_A(atomic_load_explicit(&d->lanes[i].count[si], memory_order_relaxed));
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
        if (rc != SHK_OK) {
            while (i--)
                shard_unlock(&d->sh->shard[i]);
            return rc;
        }
        freeze_mark(&d->sh->shard[i]);
    }
    drain_lanes(d);
    return SHK_OK;
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
    int rc = table_new(d, l, &nt);
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
static int grow(shk_dict *d, dict_shard *sh, uint64_t seen)
{
    int rc = shard_lock(d, sh);
    if (rc != SHK_OK)
        return rc;
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (!tw_same(tw, seen)) {
        shard_unlock(sh);
        return SHK_OK;      /* someone else grew it */
    }
    freeze_mark(sh);
    drain_lanes(d);
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
    unsigned need = log2_for(live * 2 + 2);
    l = log2_for(used * 2 + 2);
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

/* Return n slots to the lane's reserve (n slots became EMPTY, or a slot
 * taken was not used), if the reserve is of table tw. */
static inline void budget_give(dict_lane *l, unsigned si, uint64_t tw, uint64_t n)
{
    uint64_t b = l->budget[si];
    if ((b >> 32) == tw_gen(tw) && (uint32_t)b + n < 0xffffffffull)
        l->budget[si] = b + n;
}

static inline void count_add(dict_lane *l, unsigned si, int64_t n)
{
    /* Only the lane's holder writes it: a plain load and store.  Atomic
     * (relaxed) because len() reads it without the lane. */
    uint64_t c = (uint64_t)SHK_A(atomic_load_explicit(&l->count[si], memory_order_relaxed));
    SHK_A(atomic_store_explicit(&l->count[si], (int64_t)(c + (uint64_t)n), memory_order_relaxed));
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
enum { TRY_DONE = 0, TRY_AGAIN = 1, TRY_FROZEN = 2, TRY_GROW = 3, TRY_BUSY = 4 };

/* The commit step of a set, shared by replace and insert: record the
 * intent (a crash may stop us anywhere after it), give the entry its
 * version, and CAS its slot word into slot idx of table tw if that still
 * holds `expect`,
 * in place of entry `old` (version old_ver; 0 when the slot is EMPTY).
 * 1: published, the intent left for the caller to clear when it is done;
 * 0: the slot changed and nothing happened (entry unversioned again,
 * intent cleared). */
static int publish(shk_dict *d, dict_lane *l, unsigned si, const shk_dict_txn *txn,
                   uint64_t tw, uint64_t idx, uint64_t expect, uint64_t old,
                   uint64_t old_ver, unsigned pinned)
{
    dict_entry *en = entry_at(d, txn->entry);
    uint64_t ver = new_ver(d, l);
    l->new_e = txn->entry;
    l->new_ver = ver;
    l->old_e = old;
    l->old_ver = old_ver;
    l->table = tw;
    l->slot = idx;
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
    SHK_A(atomic_store_explicit(&en->life, LIFE_DEAD, memory_order_relaxed));
    intent_clear(l);
    return 0;
}

int shk_dict_commit(shk_dict *d, shk_dict_txn *txn, int mode,
                    uint64_t expect_entry, uint64_t expect_ver, int *replaced)
{
    if (!txn->entry)
        return SHK_EINVAL;
    dict_shard *sh = shard_of(d, txn->hash);
    unsigned si = shard_index(d, sh);
    dict_entry *en = entry_at(d, txn->entry);
    for (;;) {
        int rc = SHK_OK;
        dict_lane *l = lane_enter(d, &rc);
        if (!l)
            return rc;
        int out = TRY_AGAIN;
        uint64_t tw, busy = 0;
        _Atomic uint64_t *busy_slot = NULL;
        while (out == TRY_AGAIN) {
            /* acquire: the table's slots and counters are visible. */
            tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
            if (tw & TW_FROZEN) {
                out = TRY_FROZEN;
                break;
            }
            if (SHK_UNLIKELY(!table_valid(d, tw))) {
                rc = SHK_ECORRUPT;
                out = TRY_DONE;
                break;
            }
            wprobe p;
            int pr = probe_w(d, tw, en->ktype, d->base + txn->entry + ENTRY_HDR, en->klen,
                             txn->hash, &p);
            if (pr < 0) {
                rc = pr;
                out = TRY_DONE;
                break;
            }
            if (pr == 0)
                continue;
            _Atomic uint64_t *slots = slots_of(d, tw);
            if (p.busy) {
                busy = p.busy;
                busy_slot = &slots[p.busy_at];
                out = TRY_BUSY;
                break;
            }
            if (p.found >= 0) {
                uint64_t old = slot_entry(p.word);
                if (mode == SHK_DICT_INSERT) {
                    rc = SHK_EEXIST;
                    out = TRY_DONE;
                    break;
                }
                if (mode == SHK_DICT_EXPECT && (old != expect_entry || p.ver != expect_ver)) {
                    rc = SHK_EAGAIN;
                    out = TRY_DONE;
                    break;
                }
                /* Pinned, the old entry's block cannot be reused while we
                 * CAS its slot word (no ABA). */
                shk_dict_ref r = {.entry = old, .ver = p.ver};
                int pinned = entry_pin_for_cas(d, &r);
                if (pinned < 0)
                    continue;
                if (!publish(d, l, si, txn, tw, (uint64_t)p.found, p.word, old, p.ver,
                             (unsigned)pinned)) {
                    if (pinned)
                        shk_dict_unpin(d, old);
                    continue;
                }
                SHK_CRASH_POINT("dict.set.published");
                entry_retire(d, old, p.ver);
                if (pinned)
                    shk_dict_unpin(d, old);
                SHK_CRASH_POINT("dict.set.retired");
                intent_clear(l);
                if (replaced)
                    *replaced = 1;
                out = TRY_DONE;
                break;
            }
            if (mode == SHK_DICT_EXPECT && expect_entry) {
                rc = SHK_EAGAIN;
                out = TRY_DONE;
                break;
            }
            if (p.empty < 0 || !budget_take(sh, l, si, tw)) {
                out = TRY_GROW;
                break;
            }
            /* The expected EMPTY word carries the nonce of whoever emptied
             * the slot last, so a slot emptied and re-emptied under us
             * fails the CAS (DELETE). */
            if (!publish(d, l, si, txn, tw, (uint64_t)p.empty, p.word, 0, 0, 0)) {
                budget_give(l, si, tw, 1);
                continue;
            }
            SHK_CRASH_POINT("dict.set.claimed");
            if (!claim_valid(d, tw, en->ktype, d->base + txn->entry + ENTRY_HDR, en->klen,
                             txn->hash, (uint64_t)p.empty)) {
                /* Never reachable: take it back (the slot stays used, a
                 * tombstone) and try again. */
                SHK_A(atomic_store_explicit(&slots[p.empty], SLOT_TOMB, memory_order_release));
                SHK_A(atomic_store_explicit(&en->life, LIFE_DEAD, memory_order_release));
                intent_clear(l);
                continue;
            }
            SHK_CRASH_POINT("dict.set.published");
            count_add(l, si, 1);
            SHK_CRASH_POINT("dict.set.retired");
            intent_clear(l);
            if (replaced)
                *replaced = 0;
            out = TRY_DONE;
        }
        lane_exit(l);
        if (out == TRY_DONE) {
            if (rc == SHK_OK)
                txn->entry = 0;
            return rc;
        }
        rc = out == TRY_FROZEN ? shard_wait(d, sh)
           : out == TRY_BUSY   ? wait_busy(d, busy_slot, busy)
                               : grow(d, sh, tw);
        if (rc != SHK_OK)
            return rc;
    }
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

/* DELETE.  A deleted slot becomes a tombstone, unless the slot after it is
 * EMPTY: then no probe path continues past it, so it and the tombstones
 * just before it can become EMPTY, and insert/delete cycles do not fill
 * the table with tombstones.  Lock-free, that needs care: an inserter that
 * scanned past those slots could claim the EMPTY one after them and be cut
 * off from its home.  So the deleter first marks that EMPTY slot BUSY (a
 * CAS: an inserter's claim and our mark cannot both succeed), then its own
 * slot and the tombstones before it, and only then writes EMPTY into all of
 * them.  Inserters wait while a slot on their path is BUSY; lookups treat
 * it as EMPTY (the run it ends holds nothing they look for).  Each EMPTY
 * word written carries a fresh nonce in its high bits (readers test only
 * the low bits), so an inserter that read a slot as EMPTY before the run
 * and CASes it after fails and probes again. */
int shk_dict_delete(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                    uint64_t expect_entry, uint64_t expect_ver)
{
    if (klen > UINT32_MAX)
        return SHK_ENOTFOUND;
    uint64_t hash = shk_dict_hash(d, ktype, key, klen);
    dict_shard *sh = shard_of(d, hash);
    unsigned si = shard_index(d, sh);
    for (;;) {
        int rc = SHK_OK;
        dict_lane *l = lane_enter(d, &rc);
        if (!l)
            return rc;
        int out = TRY_AGAIN;
        while (out == TRY_AGAIN) {
            uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
            if (tw & TW_FROZEN) {
                out = TRY_FROZEN;
                break;
            }
            if (SHK_UNLIKELY(!table_valid(d, tw))) {
                rc = SHK_ECORRUPT;
                break;
            }
            wprobe p;
            int pr = probe_w(d, tw, ktype, key, klen, hash, &p);
            if (pr < 0) {
                rc = pr;
                break;
            }
            if (pr == 0)
                continue;
            if (p.found < 0) {
                rc = SHK_ENOTFOUND;
                break;
            }
            uint64_t old = slot_entry(p.word);
            if (expect_entry && (old != expect_entry || p.ver != expect_ver)) {
                rc = SHK_EAGAIN;
                break;
            }
            shk_dict_ref r = {.entry = old, .ver = p.ver};
            int pinned = entry_pin_for_cas(d, &r);
            if (pinned < 0)
                continue;
            uint64_t mask = (1ull << tw_log2(tw)) - 1, i = (uint64_t)p.found;
            _Atomic uint64_t *slots = slots_of(d, tw);
            l->new_e = 0;
            l->old_e = old;
            l->old_ver = p.ver;
            l->table = tw;
            l->slot = i;
            intent_set(l, OP_DEL, si, (unsigned)pinned);
            uint64_t mark = busy_word(lane_index(d, l)), w = p.word;
            uint64_t nx = SHK_A(atomic_load_explicit(&slots[(i + 1) & mask], memory_order_relaxed));
            int run = slot_empty(nx) &&
                SHK_A(atomic_compare_exchange_strong_explicit(&slots[(i + 1) & mask], &nx, mark,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
            /* release: orders our reads of the entry before it is unlinked. */
            if (!SHK_A(atomic_compare_exchange_strong_explicit(&slots[i], &w,
                                                         run ? mark : SLOT_TOMB,
                                                         memory_order_release,
                                                         memory_order_relaxed))) {
                if (run)   /* nothing was emptied: the old word is still right */
                    SHK_A(atomic_store_explicit(&slots[(i + 1) & mask], nx, memory_order_relaxed));
                intent_clear(l);
                if (pinned)
                    shk_dict_unpin(d, old);
                continue;
            }
            SHK_CRASH_POINT("dict.delete.unlinked");
            if (run) {
                uint64_t j = (i - 1) & mask, n = 0, t = SLOT_TOMB;
                while (n < mask &&
                       SHK_A(atomic_compare_exchange_strong_explicit(&slots[j], &t, mark,
                                                               memory_order_relaxed,
                                                               memory_order_relaxed))) {
                    n++;
                    j = (j - 1) & mask;
                    t = SLOT_TOMB;
                }
                SHK_CRASH_POINT("dict.delete.marked");
                /* relaxed: a reader that sees EMPTY answers as for BUSY. */
                uint64_t empty = fresh_empty(d, l);
                for (uint64_t k = (j + 1) & mask;; k = (k + 1) & mask) {
                    SHK_A(atomic_store_explicit(&slots[k], empty, memory_order_release));
                    if (k == ((i + 1) & mask))
                        break;
                }
                budget_give(l, si, tw, n + 1);
            }
            entry_retire(d, old, p.ver);
            if (pinned)
                shk_dict_unpin(d, old);
            SHK_CRASH_POINT("dict.delete.retired");
            count_add(l, si, -1);
            intent_clear(l);
            out = TRY_DONE;
        }
        lane_exit(l);
        if (out != TRY_FROZEN)
            return rc;
        rc = shard_wait(d, sh);
        if (rc != SHK_OK)
            return rc;
    }
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
     * already cleared), never corrupts. */
    SHK_A(atomic_store_explicit(&in->op, OP_NONE, memory_order_relaxed));
    _Atomic uint64_t *os = slots_of(d, tw);
    uint64_t ocap = 1ull << tw_log2(tw);
    for (uint64_t i = 0; i < ocap; i++) {
        uint64_t s = SHK_A(atomic_load_explicit(&os[i], memory_order_relaxed));
        if (!slot_live(s) || !in_seg(d, slot_entry(s), ENTRY_HDR))
            continue;
        uint64_t e = slot_entry(s);
        uint64_t life = SHK_A(atomic_load_explicit(&entry_at(d, e)->life,
                                             memory_order_relaxed));
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
    uint64_t epoch = SHK_A(atomic_load_explicit(&d->sh->clear_epoch, memory_order_relaxed)) + 1;
    unsigned made = 0;
    for (; made <= d->shard_mask; made++) {
        dict_shard *sh = &d->sh->shard[made];
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed)) & ~TW_FROZEN;
        uint64_t nt;
        rc = table_new(d, 3, &nt);
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
    return SHK_OK;
}

/* Recount the shards a dead writer left uncertain (frozen, briefly). */
static void rebase_pending(shk_dict *d)
{
    lanes_reap(d);
    for (unsigned i = 0; i <= d->shard_mask; i++) {
        dict_shard *sh = &d->sh->shard[i];
        if (!SHK_A(atomic_load_explicit(&sh->s.rebase, memory_order_relaxed)))
            continue;
        if (shard_lock(d, sh) != SHK_OK)
            continue;
        freeze_mark(sh);
        drain_lanes(d);
        uint64_t used, tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
        if (table_valid(d, tw))
            rebase(d, sh, recount(d, tw, &used));
        unfreeze(sh);
        shard_unlock(sh);
    }
}

/* A shard's entry count: the lanes' counts less base.  Writers move them
 * one at a time, so the sum may be a little below 0 for a moment; it can
 * never exceed the table's capacity by more than the writers in flight
 * (one per lane).  A count past that is corrupt: UINT64_MAX. */
static uint64_t shard_count(const shk_dict *d, const dict_shard *sh)
{
    if (shard_stale(d, sh))
        return 0;
    int64_t n = (int64_t)(lanes_count(d, shard_index(d, sh)) -
                          (uint64_t)SHK_A(atomic_load_explicit(&sh->s.base, memory_order_relaxed)));
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_relaxed));
    if (n > 0 && (uint64_t)n > (1ull << tw_log2(tw)) + DICT_LANES)
        return UINT64_MAX;
    return n > 0 ? (uint64_t)n : 0;
}

uint64_t shk_dict_count(const shk_dict *d)
{
    /* A snapshot only when no writer runs (like len() of any concurrent
     * map); exact then, after any dead writer's lane is repaired.  A shard
     * whose count is corrupt is recounted from its table once. */
    shk_dict *m = (shk_dict *)d;
    rebase_pending(m);
    for (int pass = 0;; pass++) {
        uint64_t n = 0;
        int bad = 0;
        for (unsigned i = 0; i <= d->shard_mask; i++) {
            dict_shard *sh = &d->sh->shard[i];
            uint64_t c = shard_count(d, sh);
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
        rebase_pending(m);
    }
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
        uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
        if (*table == 0)
            *table = tw;
        else if (!tw_same(*table, tw))
            return SHK_EAGAIN;
        if (!table_valid(d, tw))
            return SHK_ECORRUPT;
        uint64_t cap = 1ull << tw_log2(tw);
        _Atomic uint64_t *slots = slots_of(d, tw);
        unsigned stuck = 0;
        for (uint64_t i = *pos & 0xffffffffull; i < cap;) {
            uint64_t s = SHK_A(atomic_load_explicit(&slots[i], memory_order_acquire));
            if (!slot_live(s)) {
                i++;
                stuck = 0;
                continue;
            }
            if (entry_snapshot(d, slot_entry(s), ref)) {
                ref_found_at(ref, tw, (uint32_t)si, i, s);
                *pos = si << 32 | (i + 1);
                return SHK_OK;
            }
            /* Replaced or deleted meanwhile: what the slot holds now is the
             * answer (a replaced key must not be skipped). */
            int st = slot_unstable(sh, tw, &slots[i], s, &stuck);
            if (st == SHK_ECORRUPT)
                return st;
            if (st == SLOT_RESTART)
                return SHK_EAGAIN;
        }
        *pos = (si + 1) << 32;
        *table = 0;
    }
}

/* ------------------------------------------------------------ stats/check */

static void shard_stats(const shk_dict *d, const dict_shard *sh, shk_dict_stats *st)
{
    int stale = shard_stale(d, sh);
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->table, memory_order_acquire));
    uint64_t count = shard_count(d, sh);
    uint64_t used = stale ? 0 : SHK_A(atomic_load_explicit(&sh->s.used, memory_order_relaxed));
    if (count == UINT64_MAX)
        count = used;   /* corrupt: shk_dict_stats_get reports it in count */
    st->capacity += 1ull << tw_log2(tw);
    st->used_slots += used;
    st->tombstones += used > count ? used - count : 0;
    st->table_bytes += table_bytes(tw_log2(tw));
    st->resizes += SHK_A(atomic_load_explicit(&sh->resizes, memory_order_relaxed));
    st->recoveries += SHK_A(atomic_load_explicit(&sh->recoveries, memory_order_relaxed));
}

void shk_dict_stats_get(const shk_dict *d, shk_dict_stats *st)
{
    uint64_t count = shk_dict_count(d);   /* recounts a corrupt shard */
    memset(st, 0, sizeof *st);
    for (unsigned i = 0; i <= d->shard_mask; i++)
        shard_stats(d, &d->sh->shard[i], st);
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
        if (slot_busy(s))
            return SHK_ECORRUPT;   /* no delete runs: every lane is drained */
        used++;
        if (s == SLOT_TOMB)
            continue;
        live++;
        uint64_t e = slot_entry(s);
        if (!shk_segment_contains(d->seg, e, ENTRY_HDR) ||
            shk_freelist_usable(d->heap, e) == 0)
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
