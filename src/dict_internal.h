/*
 * dict_internal.h -- SharedDict, a process-shared hash map with lock-free
 * readers, lock-free writers and online growth: its design, its layout in
 * shared memory, and what its sources share.
 *
 * THE SOURCES, each using only those above it:
 *   dict_watch.c  change notification: the change counter, the watcher
 *                 count, the futex wait (WATCH)
 *   dict_probe.c  finding keys: entry snapshots, lookups, the writer's
 *                 probe, iteration; pins and retirement of entries
 *   dict_lane.c   the writers' lanes: taking one, versions, crash repair
 *   dict_shard.c  the shard lock: tables, resize, clear, recovery, counts,
 *                 stats and check
 *   dict_write.c  set, insert, replace and delete
 *   dict.c        create, open and close
 *
 * DESIGN
 *   An open-addressing table (linear probing) of 64-bit slots.  A slot holds
 *   either EMPTY (0), a TOMBSTONE, or a packed reference to an *entry*: the
 *   high 32 bits of the key's hash (the "tag") beside the entry's segment offset in 16-byte units.  An entry is
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
 *   What a lock would keep is kept by:
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
 *     per many inserts); a slot taken but not claimed goes back to it.
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
 *   DELETE.  A deleted slot becomes a tombstone (one CAS), and stays one
 *   until a growth rebuilds the table (growth counts tombstones as used,
 *   see Growth).  Nothing turns a slot of a table back to EMPTY: a slot goes
 *   EMPTY -> entry (a claim) -> entry of the same key (a replace) ->
 *   TOMBSTONE, and only a new table (resize, clear) starts from EMPTY.  So
 *   EMPTY is one word, 0, and inserts need no more:
 *   - A claim is reachable.  A writer holds its lane from its probe to its
 *     CAS, so the table is not replaced meanwhile (FREEZING); the slots the
 *     probe passed between the key's home and the first EMPTY slot stay
 *     non-EMPTY, and none of them comes to hold the key (a slot holds one
 *     key from its claim until its tombstone; tombstones are not reused).
 *     The insert's CAS of that EMPTY slot therefore publishes an entry
 *     reachable from its home, with no other copy of the key before it:
 *     the insert takes effect at the CAS, and nothing is checked or taken
 *     back afterwards.
 *   - No ABA on EMPTY.  The CAS expects the EMPTY word the probe read; a
 *     slot that leaves EMPTY never comes back to it in that table, so the
 *     CAS fails exactly when another writer claimed the slot first (two
 *     inserters of one key race for the same slot; the loser probes again
 *     and finds the winner).
 *   Emptying runs of tombstones at delete time would save rebuilds, but it
 *   breaks both points: a lock-free delete that empties slots behind an
 *   inserter makes the inserter's claim unreachable after the fact, and
 *   taking such a claim back races with writers that already found it (a
 *   chaos-build linearizability run caught a replacer's entry freed under
 *   a live slot).  Tombstones are not reused by inserts either (that would
 *   need a check for copies of the key *after* the slot, racing with their
 *   inserters).
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
 * WATCH (waiting for a change)
 *   `changes` is a futex word that writers bump after every successful set,
 *   delete or clear, but only while `watchers` > 0.  A watcher increments
 *   `watchers` first, then reads `changes`, and sleeps while it still holds
 *   the value it read.  A writer, after its commit, issues a seq_cst fence
 *   and reads `watchers`: either it sees the watcher (bumps and wakes), or
 *   the watcher's increment came after the fence, so the watcher's later
 *   reads see the change itself.  Nobody watching, a write costs the fence
 *   and one load of line 0, which every lookup reads and only clear and
 *   watch registration write.  A watcher killed while registered leaves
 *   `watchers` raised: writers then bump and wake (a syscall) needlessly.
 *
 * LAYOUT
 *   dict header (2 + 3 * nshards + 6 * nlanes cache lines on x86-64,
 *   starting on a cache line inside its heap block):
 *     +0   magic "SHKDICT1" | version | header size | nshards | nlanes |
 *          clear_epoch (atomic) | watchers (u32)
 *     +64  next_ver (atomic; taken in batches) | changes (u32 futex word)
 *     +128 shard[nshards], 192 bytes each:
 *       +0   table (atomic: frozen:1 | tgen:25 | log2cap:6 | offset/16:32)
 *            | epoch | resizes | recoveries    (read by lookups and writers)
 *       +64  resize/clear intent: op, epoch (clear), new and old table words
 *       +128 robust process-shared shard lock | used (u32, slots reserved) |
 *            rebase (u32) | base (i64: len = sum of lane counts - base)
 *     then lane[nlanes], 384 bytes each:
 *       +0   robust process-shared lane lock | owner pid hint | reserved |
 *            op (op << 56 | shard << 48 | old entry pinned)
 *       +64  intent: new entry, its version, old entry, its version, table
 *            word and slot, version batch
 *       +128 count[16] (i64: entries this lane added - removed, per shard)
 *       +256 reserve[16] (table generation << 32 | slots, per shard)
 *   table (one heap block):
 *     +0   magic "SHKDTABL" | log2cap (u32) | reserved
 *     +16  slot[cap]    0 = EMPTY (any word whose low 32 bits are 0 reads
 *                       as EMPTY), TOMB (0xffffffff), or tag32 << 32 |
 *                       entry/16 (entries lie below 64 GiB: entry/16 <
 *                       0xffffffff)
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
 *   - No lane has an intent.
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
 *   with an intent.  A writer changes the table with one CAS (a claim, a
 *   replace or a tombstone), which happened or did not, so the repair only
 *   settles the entries on either side of it: a new entry the table does
 *   not reference (the CAS did not happen, or a later writer replaced it)
 *   is freed, and an old entry it no longer references is retired, both
 *   with a CAS on the entry's life from the version the intent records (an
 *   unpublished entry holds that version, odd or even: see publish in
 *   dict_write.c), so if a live writer replaced the entry meanwhile and
 *   retires it too, exactly one of them frees it, and a block that was
 *   freed and reused is left alone; the writer's pin is dropped.  Whether
 *   the change reached the lane's count is unknown, so the shard is marked
 *   for a recount (`rebase`, done frozen by the next len(), stats() or
 *   check()).  A resizer, clearer or checker killed holding the shard lock is repaired by the next locker
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
#ifndef SHMKIT_DICT_INTERNAL_H
#define SHMKIT_DICT_INTERNAL_H

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

#define DICT_MAGIC 0x31544349444b4853ull  /* "SHKDICT1" */
#define TABLE_MAGIC 0x4c424154444b4853ull /* "SHKDTABL" */
#define DICT_VERSION 3u
#define DICT_MAX_SHARDS 256u
#define DICT_LANES 16u /* a power of two, <= 255     */
#define TABLE_HDR 16u
#define ENTRY_HDR 32u

/* Slot words (see LAYOUT).  The low 32 bits say what a slot is. */
#define SLOT_TOMB 0xffffffffull
#define LIFE_DEAD (1ull << 16) /* ver 1: odd, never live     */
#define VER_MASK ((1ull << 48) - 1)
#define TW_FROZEN (1ull << 63) /* table word: writers wait   */

/* A shard's table holds at most LOAD_NUM/LOAD_DEN of its slots used (live
 * + tombstones). */
#define LOAD_NUM 3u
#define LOAD_DEN 4u

enum { OP_NONE = 0, OP_SET = 1, OP_DEL = 2, OP_RESIZE = 3, OP_CLEAR = 4 };

/* The intent of a table replacement (resize, clear): rare, so it has a
 * line of its own. */
typedef struct dict_intent {
    _Atomic uint32_t op; /* OP_NONE, OP_RESIZE or OP_CLEAR              */
    uint32_t reserved;
    uint64_t slot;      /* OP_CLEAR: the clear's epoch                 */
    uint64_t table;     /* the new table word                          */
    uint64_t old_table; /* the table it replaces                       */
} dict_intent;

/* The shard lock's line: taken by resizes, clears, checks and writers
 * waiting for those, never by a plain set or delete. */
typedef struct dict_sline {
    _Alignas(SHK_CACHELINE) pthread_mutex_t lock; /* robust, shared   */
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
    _Atomic uint64_t epoch; /* the clear its table is from (see CLEAR)     */
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
    _Alignas(SHK_CACHELINE) pthread_mutex_t lock; /* robust, shared   */
    _Atomic uint32_t owner; /* pid that prefers this lane (a hint)        */
    uint32_t reserved;
    _Atomic uint64_t op; /* intent: op << 56 | shard << 48 | pinned     */
    /* the intent's fields, valid while op != OP_NONE */
    _Alignas(SHK_CACHELINE) uint64_t new_e, new_ver; /* OP_SET           */
    uint64_t old_e, old_ver;                /* the entry replaced or deleted, or 0        */
    uint64_t table;                         /* the table it ran in                         */
    uint64_t slot;                          /* the slot it changes                         */
    uint64_t ver_next, ver_end;             /* the version batch                */
    _Atomic int64_t count[SHK_DICT_SHARDS]; /* entries added - removed   */
    uint64_t budget[SHK_DICT_SHARDS];       /* table gen << 32 | slots reserved */
} dict_lane;
SHK_STATIC_ASSERT(SHK_DICT_SHARDS <= DICT_MAX_SHARDS, "shards");

static inline uint32_t lop(uint64_t op) { return (uint32_t)(op >> 56); }
static inline unsigned lshard(uint64_t op) { return (unsigned)(op >> 48) & 0xffu; }

typedef struct dict_shared {
    /* line 0: read by every lookup, written only by clear */
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t nshards;             /* a power of two, 1 .. SHK_DICT_SHARDS        */
    uint32_t nlanes;              /* DICT_LANES                                  */
    _Atomic uint64_t clear_epoch; /* clears committed (see CLEAR)          */
    _Atomic uint32_t watchers;    /* handles watching for changes (WATCH)  */
    uint32_t pad_w;
    char pad0[SHK_CACHELINE - 40];
    /* line 1: written once per version batch, and by every change while
     * anyone watches */
    _Atomic uint64_t next_ver;
    _Atomic uint32_t changes; /* futex word: bumped per change (WATCH) */
    char pad1[SHK_CACHELINE - 12];
    dict_shard shard[]; /* nshards of them, then nlanes dict_lanes     */
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
    uint64_t shard_mask; /* nshards - 1 */
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
static inline int slot_live(uint64_t s)
{
    return (uint32_t)s != 0 && (uint32_t)s != (uint32_t)SLOT_TOMB;
}

static inline uint64_t table_bytes(unsigned log2cap)
{
    return TABLE_HDR + ((uint64_t)8 << log2cap);
}
/* Most slots a table of 2^l slots may have used. */
static inline uint64_t table_limit(unsigned l) { return ((1ull << l) * LOAD_NUM) / LOAD_DEN; }
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

static inline uint64_t entry_size(uint64_t klen, uint64_t vlen)
{
    return shk_add_sat(ENTRY_HDR + shk_align_up(klen, 16), vlen);
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
 * stores the table, then the epoch, both release; see CLEAR).
 * -1 if the epochs are corrupt: every shard was at clear_epoch - 1 or later
 * when we loaded clear_epoch (a clear starts only once the last one has
 * finished every shard), and a shard behind has a clear intent until the
 * clearer stores its epoch, which it does before clearing the intent
 * (release), so an intent seen cleared (acquire) means the epoch is
 * current on a second look. */
static inline int shard_stale(const shk_dict *d, const dict_shard *sh)
{
    uint64_t c = SHK_A(atomic_load_explicit(&d->sh->clear_epoch, memory_order_acquire));
    uint64_t e = SHK_A(atomic_load_explicit(&sh->epoch, memory_order_acquire));
    if (SHK_LIKELY(e >= c))
        return 0;
    if (c - e > 1)
        return -1;
    if (SHK_A(atomic_load_explicit(&sh->intent.op, memory_order_acquire)) == OP_CLEAR)
        return 1;
    return SHK_A(atomic_load_explicit(&sh->epoch, memory_order_relaxed)) >= c ? 0 : -1;
}


/* ---- finding a key as a writer ----
 * Like a lookup, lock-free: other writers change slots meanwhile, and an
 * entry may be retired and its block reused while we compare its key.  A
 * match or mismatch counts only if the entry's life was unchanged across
 * the comparison (as for readers); else the probe is retried. */
typedef struct wprobe {
    int64_t found; /* slot of the key, or -1                    */
    int64_t empty; /* first EMPTY slot on the path, or -1       */
    uint64_t word; /* the slot word at found / empty            */
    uint64_t ver;  /* found: the entry's version                 */
} wprobe;

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

static inline void lane_exit(dict_lane *l) { shk_pmutex_unlock(&l->lock); }

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

/* ---- what each source gives those below it in THE SOURCES ---- */

/* dict_probe.c */
int shk_dict_entry_retire(shk_dict *d, uint64_t e, uint64_t ver);
int shk_dict_probe_w(shk_dict *d, uint64_t tw, uint8_t ktype, const void *key, uint64_t klen,
                     uint64_t hash, wprobe *p);
int shk_dict_entry_in_table(shk_dict *d, dict_shard *sh, uint64_t e);

/* dict_lane.c */
uint64_t shk_dict_new_ver(shk_dict *d, dict_lane *l);
void shk_dict_lane_release_hint(shk_dict *d);
int shk_dict_lane_lock(shk_dict *d, dict_lane *l);
dict_lane *shk_dict_lane_enter(shk_dict *d, int *err);
void shk_dict_lanes_reap(shk_dict *d);

/* dict_watch.c.  After a successful change: wake the watchers, if any
 * (see WATCH). */
void shk_dict_wake_watchers(shk_dict *d);
static inline void shk_dict_note_change(shk_dict *d)
{
    /* Orders the commit before the load of watchers, against the
     * watcher's increment (seq_cst) before its load of changes. */
    if (SHK_UNLIKELY(shk_fenced_load_u32(&d->sh->watchers) != 0))
        shk_dict_wake_watchers(d);
}

/* dict_shard.c */
unsigned shk_dict_log2_for(uint64_t entries);
int shk_dict_table_new(shk_dict *d, unsigned l, uint64_t *off);
int shk_dict_shard_wait(shk_dict *d, dict_shard *sh);
int shk_dict_grow(shk_dict *d, dict_shard *sh, uint64_t seen);
#endif
