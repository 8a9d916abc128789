/*
 * alloc_freelist.c -- the free-list allocator: variable sizes, O(1), lock-free.
 *
 * DESIGN
 *   Requests are rounded up to one of 128 size classes: 16-byte steps up to
 *   256 bytes, then four classes per power of two up to 64 GiB (at most 25 %
 *   internal waste).  Each class keeps a lock-free Treiber stack of its free
 *   blocks (lfstack.h: shk_lfstack_*), whose head word carries an ABA tag
 *   beside the block offset.  allocate = pop from the class, or carve a new
 *   block from the untouched region with one CAS on `top`; free = push.
 *   Blocks are never split or merged, so a block's class, written in its
 *   header when carved, never changes and a free is always O(1).
 *
 *   Lock-free rather than robust-locked because the hot path is then two
 *   uncontended CAS per allocate+free pair (~10 ns), and because a process
 *   killed at any instant cannot block the others: the worst a kill can do
 *   is leak the one block it was freeing (state FREE but not yet on a list),
 *   which shk_freelist_check() reports.
 *
 *   When its class is empty and the untouched region has no room, an
 *   allocation takes a block from a larger class (it keeps its own class and
 *   returns to it when freed), so memory freed in one class is not lost to
 *   the others.  The segment heap is "growable": carving past the backed part
 *   of the segment grows the file first (shk_mapping_reserve).
 *
 *   The allocator works on a mapping (mapping.h), not on a segment: the
 *   segment embeds its heap and sits above it.  Handles on free lists made
 *   inside a segment (create_in, open, close) are alloc_freelist_open.c's.
 *
 * STRIPES
 *   A class's list head is one cache line that every allocate and free of
 *   that class writes; two processes allocating and freeing the same small
 *   size (dict entries, queue items) would bounce it between their cores on
 *   every call.  So the classes of blocks up to 1 KiB have FL_NSTRIPE lists
 *   each, on separate lines.  A handle takes a stripe round-robin from
 *   `next_stripe` when it first allocates (a forked child takes its own),
 *   pushes its frees there and pops from there first.  When its own list
 *   is empty it carves from memory the file already backs, and only then
 *   looks at the other stripes, before the file grows; it moves a whole
 *   list to its own stripe (steal), so memory freed by one
 *   process is always reused by another (never stranded) and a process's
 *   blocks stay together.  New blocks of these classes are carved in runs
 *   of up to 4 KiB (carve) for the same reason: blocks of two processes
 *   sharing a cache line slow down every write to either.  Larger
 *   classes have one list: their calls are rare next to the copy they pay
 *   for.  Crash safety is unchanged: each list is the same Treiber stack.
 *   A block remembers the stripe whose carve made it (its home), and
 *   shk_freelist_free_home() returns it there rather than to the freer's
 *   stripe.  The dict frees entries that way: a process that replaced
 *   another's entry would otherwise reuse that block for its own next entry,
 *   among the other process's live entries, and the two would false-share
 *   those lines for as long as both lived (2-process updates of keys that
 *   one process created in turn: 0.9-1.2x one process, 1.0-1.8x home).
 *   Plain frees stay local: a queue's consumer frees every item its
 *   producer allocated, and one remote push per item would cost more.
 *
 * CACHES
 *   In front of the lists of blocks up to 1 KiB sits a cache per process
 *   (alloc_cache.c: its own essay): allocate and free go to it first, and
 *   it visits these lists a batch at a time (shk_fl_refill, shk_fl_flush).
 *   The segment heap has caches, and so does an allocator of at least
 *   FL_CACHE_MIN_CAPACITY; a smaller one does not (memory in one process's
 *   cache is not available to the others).
 *
 * LAYOUT
 *   header (at the allocator's offset):
 *     magic, version, flags | start | limit | top word (atomic) |
 *     next_stripe | class[128] (stripe 0) | striped[3][24] (stripes 1-3) |
 *     cache table (SHK_CACHE_TABLE_BYTES: alloc_cache.c)
 *     top word = (class of the last carved block + 1) << 40 | top offset
 *     class[c] = { head (tag:32 | offset/16:32), free_bytes, free_blocks }
 *                one cache line each, so classes do not false-share.
 *   blocks, contiguous from `start` to `top`:
 *     +0  link   (atomic u64: next free block while on a free list)
 *     +8  state  (atomic u32: LIVE, FREE or CACHED magic)
 *     +12 class | home stripe << 8  (u32, immutable once carved)
 *     +16 payload: class_size(class) bytes; the offset handed out
 *
 * INVARIANTS
 *   - Blocks tile [start, top) exactly, and every block's class is known:
 *     from its header, or, for the last carved block, from the top word.  A
 *     carver killed after its CAS and before writing the header leaves that
 *     block with a garbage header; the next carver rewrites its class (the
 *     same value) before carving, so check() can always walk the tiling and
 *     reports such a block as abandoned instead of failing.
 *   - A block is on one of its class's lists iff its state is FREE, and on
 *     a cache list iff it is CACHED (except for the instant between a
 *     state change and the push or pop).
 *   - The sum of free_bytes over class c's stripes >= bytes of blocks on
 *     c's lists: free adds before it pushes, allocate subtracts after it
 *     pops (a stripe's own counter may wrap: lists move between stripes).
 */
#include "internal.h"
#include "heap_internal.h"
#include "lfstack.h"

#include <stdlib.h>
#include <string.h>

#define FL_MAGIC 0x5453494c45455246ull /* "FREELIST" */
#define FL_VERSION 4u
#define FL_FLAG_GROWABLE 1u
#define FL_NCLASS 128
#define FL_SMALL_CLASSES 16
/* Classes below FL_STRIPED (blocks up to 1 KiB) have FL_NSTRIPE free lists
 * each; see STRIPES. */
#define FL_NSTRIPE 4u
#define FL_STRIPED 24u
#define BLOCK_HDR SHK_FL_BLOCK_HDR
#define STATE_LIVE SHK_FL_LIVE
#define STATE_FREE SHK_FL_FREE

typedef struct fl_class {
    _Atomic uint64_t head;
    _Atomic uint64_t free_bytes;
    _Atomic uint64_t free_blocks;
    char pad[SHK_CACHELINE - 24];
} fl_class;

typedef struct fl_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t flags;
    uint64_t start;
    uint64_t limit;
    _Atomic uint64_t top;         /* top word: see LAYOUT */
    _Atomic uint32_t next_stripe; /* hands out stripes round-robin */
    char pad[SHK_CACHELINE - 44];
    fl_class cls[FL_NCLASS];                      /* stripe 0 */
    fl_class striped[FL_NSTRIPE - 1][FL_STRIPED]; /* stripes 1.. */
    char cache[SHK_CACHE_TABLE_BYTES];            /* alloc_cache.c */
} fl_shared;
SHK_STATIC_ASSERT(sizeof(fl_class) == SHK_CACHELINE, "class is a line");
SHK_STATIC_ASSERT(sizeof(fl_shared) % SHK_CACHELINE == 0, "header lines");

typedef shk_fl_block fl_block;

#define TOP_BITS 40
/* A fixed-capacity allocator smaller than this has no per-process caches */
#define FL_CACHE_MIN_CAPACITY (16ull << 20)
#define CARVE_BYTES 4096u /* a small class carves this much at once */
#define CARVE_MAX 64u     /* ... but at most this many blocks */
static inline uint64_t top_of(uint64_t w) { return w & ((1ull << TOP_BITS) - 1); }
/* class of the last carve's blocks, or -1 if none */
static inline int last_cls_of(uint64_t w) { return (int)((w >> TOP_BITS) & 0xffu) - 1; }
/* how many blocks the last carve made (they end at top) */
static inline uint64_t last_n_of(uint64_t w) { return w >> 48; }
static inline uint64_t top_word(uint64_t top, unsigned cls, uint64_t n)
{
    return (n << 48) | ((uint64_t)(cls + 1) << TOP_BITS) | top;
}
static inline uint32_t cls_get(const fl_block *b)
{
    return SHK_A(atomic_load_explicit(&b->cls, memory_order_relaxed)) & 0xffu;
}
/* The stripe whose carve made the block (see STRIPES: free_home). */
static inline unsigned home_get(const fl_block *b)
{
    return (SHK_A(atomic_load_explicit(&b->cls, memory_order_relaxed)) >> 8) & 0xffu;
}
SHK_STATIC_ASSERT(sizeof(fl_block) == BLOCK_HDR, "block header is 16 B");
SHK_STATIC_ASSERT(SHK_CACHE_CLASSES <= FL_STRIPED, "cached classes are striped");
SHK_STATIC_ASSERT(sizeof(fl_class) % SHK_CACHELINE == 0 &&
                      offsetof(fl_shared, cache) % SHK_CACHELINE == 0,
                  "table lines");

struct shk_freelist {
    shk_fl_common m; /* first: alloc_cache.c reads it */
    shk_mapping *map;
    shk_segment *owner; /* only remembered: shk_freelist_segment */
    char *base;
    fl_shared *sh;
    uint64_t start, limit;
    int growable;
    /* This process's stripe, and the fork generation it was taken in (a
     * forked child takes its own).  Relaxed atomics: threads sharing the
     * handle may race to re-pick; any stripe is correct. */
    _Atomic unsigned stripe;
    _Atomic unsigned stripe_gen;
};

/* The free list of class c in stripe s (s < stripes_of(c)). */
static inline unsigned stripes_of(unsigned c) { return c < FL_STRIPED ? FL_NSTRIPE : 1u; }
static inline fl_class *class_line(fl_shared *sh, unsigned s, unsigned c)
{
    return s == 0 ? &sh->cls[c] : &sh->striped[s - 1][c];
}

static unsigned my_stripe(shk_freelist *fl)
{
    unsigned g = shk_fork_gen();
    if (SHK_LIKELY(SHK_A(atomic_load_explicit(&fl->stripe_gen, memory_order_relaxed)) == g))
        return SHK_A(atomic_load_explicit(&fl->stripe, memory_order_relaxed));
    /* relaxed: a stripe is a placement hint, not a synchronisation. */
    unsigned s = SHK_A(
                     atomic_fetch_add_explicit(&fl->sh->next_stripe, 1, memory_order_relaxed)) %
                 FL_NSTRIPE;
    SHK_A(atomic_store_explicit(&fl->stripe, s, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&fl->stripe_gen, g, memory_order_relaxed));
    return s;
}

/* This process's list of class c (the only one, for an unstriped class). */
static inline fl_class *own_list(shk_freelist *fl, unsigned c)
{
    return class_line(fl->sh, c < FL_STRIPED ? my_stripe(fl) : 0, c);
}

/* ------------------------------------------------------------ size classes */

static inline uint64_t class_size(unsigned c) { return shk_fl_class_size(c); }

static inline int class_of(uint64_t n)
{
    if (n <= 256)
        return (int)((n + 15) / 16) - 1;
    uint64_t m = n - 1;
    unsigned k = shk_log2_u64(m);
    unsigned sub = (unsigned)(m >> (k - 2)) & 3u;
    unsigned c = FL_SMALL_CLASSES + (k - 8) * 4 + sub;
    return c < FL_NCLASS ? (int)c : -1;
}

/* --------------------------------------------------------------- plumbing */

uint64_t shk_freelist_header_size(void) { return sizeof(fl_shared); }

void shk_freelist_init_at(char *base, uint64_t off, uint64_t start, uint64_t limit,
                          int growable)
{
    fl_shared *sh = (fl_shared *)(base + off);
    memset(sh, 0, sizeof *sh);
    sh->magic = FL_MAGIC;
    sh->version = FL_VERSION;
    sh->flags = growable ? FL_FLAG_GROWABLE : 0;
    sh->start = shk_align_up(start, SHK_ALIGN);
    sh->limit = limit & ~(uint64_t)(SHK_ALIGN - 1);
    SHK_A(atomic_store_explicit(&sh->top, sh->start, memory_order_relaxed));
}

int shk_freelist_validate_at(const char *buf, uint64_t off, uint64_t min_start,
                             uint64_t file_size, uint64_t max_size, const shk_mapping *live)
{
    const fl_shared *sh = (const fl_shared *)(buf + off);
    if (sh->magic != FL_MAGIC || sh->version != FL_VERSION)
        return SHK_ECORRUPT;
    /* Other processes carve and grow while a live header is checked, so
     * read in the order that keeps each bound ahead of what it bounds:
     * list heads, then top, then the file size.  A listed block was carved
     * below a top that only grows, and top moves only below a file size
     * already published (carve's release CAS after its reserve), so each
     * later read is at least what the earlier values need.  Read the other
     * way round, a healthy heap failed: an attacher took the file size,
     * another process grew the file and carved past it, and the attacher's
     * top was then beyond its file size. */
    uint64_t heads[FL_NCLASS * FL_NSTRIPE];
    unsigned nh = 0;
    for (unsigned c = 0; c < FL_NCLASS; c++)
        for (unsigned st = 0; st < stripes_of(c); st++)
            /* acquire: the carve of the block a head names (and its top)
             * happens before our read of top below. */
            heads[nh++] = shk_lf_off(
                SHK_A(atomic_load_explicit(&class_line((fl_shared *)sh, st, c)->head,
                                           memory_order_acquire)));
    uint64_t tw = SHK_A(atomic_load_explicit(&sh->top, memory_order_acquire));
    if (live)
        file_size = shk_mapping_file_size(live);
    uint64_t top = top_of(tw);
    if (last_cls_of(tw) >= FL_NCLASS ||
        (last_cls_of(tw) >= 0 &&
         (last_n_of(tw) == 0 || last_n_of(tw) > CARVE_MAX ||
          last_n_of(tw) * (BLOCK_HDR + class_size((unsigned)last_cls_of(tw))) >
              top_of(tw) - sh->start)))
        return SHK_ECORRUPT;
    if (sh->start < min_start || sh->start % SHK_ALIGN || sh->limit < sh->start ||
        sh->limit > max_size || top < sh->start || top > sh->limit || top > file_size)
        return SHK_ECORRUPT;
    if (!(sh->flags & FL_FLAG_GROWABLE) && sh->limit > file_size)
        return SHK_ECORRUPT;
    for (unsigned i = 0; i < nh; i++)
        if (heads[i] != 0 && (heads[i] < sh->start || heads[i] + BLOCK_HDR > top))
            return SHK_ECORRUPT;
    return SHK_OK;
}

int shk_freelist_open_at(shk_mapping *m, uint64_t off, shk_segment *owner, shk_freelist **out)
{
    /* Headers are heap blocks, 16-aligned: a misaligned offset (corrupt
     * directory entry) would be a misaligned atomic access. */
    if (off % SHK_ALIGN || !shk_mapping_contains(m, off, sizeof(fl_shared)))
        return SHK_ECORRUPT;
    char *base = m->base;
    if (shk_freelist_validate_at(base, off, off + sizeof(fl_shared), 0, m->max_size, m) !=
        SHK_OK)
        return SHK_ECORRUPT;
    shk_freelist *fl = calloc(1, sizeof *fl);
    if (!fl)
        return SHK_ESYS;
    fl->map = m;
    fl->owner = owner;
    fl->base = base;
    fl->sh = (fl_shared *)(base + off);
    fl->start = fl->sh->start;
    fl->limit = fl->sh->limit;
    fl->growable = (fl->sh->flags & FL_FLAG_GROWABLE) != 0;
    fl->m.base = base;
    fl->m.start = fl->start;
    fl->m.top = &fl->sh->top;
    fl->m.table = fl->sh->cache;
    /* Caches hold memory other processes cannot have (up to ~8 KiB per
     * class used, per process): only for the segment heap, which grows
     * instead, and for allocators big enough not to notice. */
    fl->m.cache.disabled = !fl->growable && fl->limit - fl->start < FL_CACHE_MIN_CAPACITY;
    shk_fork_watch();
    /* a generation that never matches: the first allocation picks a stripe */
    SHK_A(atomic_store_explicit(&fl->stripe_gen, shk_fork_gen() - 1, memory_order_relaxed));
    *out = fl;
    return SHK_OK;
}

/* ------------------------------------------------------- allocate and free */

static inline fl_block *block_at(const shk_freelist *fl, uint64_t hdr_off)
{
    return (fl_block *)(fl->base + hdr_off);
}

/* Carve new blocks of class c from [top, limit): a run of up to
 * CARVE_BYTES for a striped class (the first is returned, the others go to
 * `own`, this process's list), else one block.  A run keeps one process's blocks together:
 * carving them one by one interleaves processes block by block, and two
 * processes writing the two halves of a cache line slow each other down on
 * every write for as long as the blocks live.  Without `grow`, only memory
 * the segment file already backs is used.  With `chain` (for a cache
 * refill), the whole run is returned instead, linked, state CACHED, and
 * *chain gets its length.  0 if no room. */
static uint64_t carve(shk_freelist *fl, unsigned c, fl_class *own, int grow, uint64_t *chain)
{
    uint64_t bsz = BLOCK_HDR + class_size(c);
    uint64_t n = 1;
    if (c < FL_STRIPED) {
        n = CARVE_BYTES / bsz;
        n = n < 1 ? 1 : n > CARVE_MAX ? CARVE_MAX : n;
    }
    /* relaxed: the top word is only a position (and a class); the block's
     * contents are published by whatever structure the caller stores its
     * offset in, or by the push below. */
    uint64_t w = SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_relaxed));
    uint64_t old;
    for (;;) {
        old = top_of(w);
        uint64_t end = shk_add_sat(old, bsz * n);
        int room = end <= fl->limit;
        if (room && fl->growable)
            room = grow ? shk_mapping_reserve(fl->map, end) == SHK_OK
                        : end <= shk_mapping_file_size(fl->map);
        if (!room) {
            if (n == 1)
                return 0;
            n = 1; /* a full run does not fit: one block may */
            continue;
        }
        int prev = last_cls_of(w);
        if (prev >= 0) {
            /* Repair the previous carve in case its carver died before
             * writing the headers: their class is the one the word records.
             * Only wrong headers are written (a load first), so a healthy
             * run's lines, in use by their owner, are not stolen. */
            uint64_t pb = BLOCK_HDR + class_size((unsigned)prev);
            uint64_t pn = last_n_of(w);
            for (uint64_t j = 1; j <= pn && pn * pb <= old - fl->start; j++) {
                fl_block *pbk = block_at(fl, old - j * pb);
                if (cls_get(pbk) != (uint32_t)prev)
                    SHK_A(
                        atomic_store_explicit(&pbk->cls, (uint32_t)prev, memory_order_relaxed));
            }
        }
        /* release: the reserve above (file_size >= end) happens before
         * the new top is seen; validate_at reads top, then file_size. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(&fl->sh->top, &w, top_word(end, c, n),
                                                        memory_order_release,
                                                        memory_order_relaxed)))
            break;
    }
    SHK_CRASH_POINT("freelist.carve");
    uint32_t tag = c | (c < FL_STRIPED ? my_stripe(fl) << 8 : 0u);
    for (uint64_t j = 0; j < n; j++) {
        fl_block *b = block_at(fl, old + j * bsz);
        SHK_A(atomic_store_explicit(&b->cls, tag, memory_order_relaxed));
        SHK_A(atomic_store_explicit(&b->link, chain && j + 1 < n ? old + (j + 1) * bsz : 0,
                                    memory_order_relaxed));
        SHK_A(atomic_store_explicit(&b->state,
                                    chain ? SHK_FL_CACHED
                                    : j   ? STATE_FREE
                                          : STATE_LIVE,
                                    memory_order_relaxed));
    }
    if (chain) {
        *chain = n;
        return old;
    }
    if (n > 1) {
        /* relaxed: statistics, raised before the pushes (INVARIANTS). */
        SHK_A(atomic_fetch_add_explicit(&own->free_bytes, (n - 1) * bsz, memory_order_relaxed));
        SHK_A(atomic_fetch_add_explicit(&own->free_blocks, n - 1, memory_order_relaxed));
        for (uint64_t j = n - 1; j >= 1; j--)
            shk_lfstack_push(&own->head, fl->base, old + j * bsz);
    }
    return old;
}

static inline uint64_t pop_list(shk_freelist *fl, fl_class *k)
{
    uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_relaxed)));
    uint64_t h = shk_lfstack_pop(&k->head, fl->base, top);
    if (h == 0)
        return 0;
    SHK_CRASH_POINT("freelist.pop");
    fl_block *b = block_at(fl, h);
    /* relaxed: the counters are statistics; the block is ours alone now. */
    SHK_A(atomic_fetch_sub_explicit(&k->free_bytes, BLOCK_HDR + class_size(cls_get(b)),
                                    memory_order_relaxed));
    SHK_A(atomic_fetch_sub_explicit(&k->free_blocks, 1, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&b->state, STATE_LIVE, memory_order_relaxed));
    return h;
}

/* Move another stripe's whole list of class c to `own` (ours, empty) and
 * pop from it.  Taking blocks one by one from a list two processes share
 * would hand them out interleaved (the false sharing carve runs avoid);
 * taking the whole list keeps each process's blocks together and costs two
 * CAS, whatever its length.  The free counters stay with the stripe they
 * were counted in: only their sum over a class's stripes means anything
 * (unsigned, so it wraps exactly).  0 if every other stripe is empty. */
static uint64_t steal(shk_freelist *fl, unsigned c, fl_class *own)
{
    uint64_t h = 0;
    for (unsigned st = 0; h == 0 && st < stripes_of(c); st++) {
        fl_class *k = class_line(fl->sh, st, c);
        /* relaxed peek: skip empty lists without a CAS on their line */
        if (k == own || !SHK_A(atomic_load_explicit(&k->head, memory_order_relaxed)))
            continue;
        uint64_t chain = shk_lfstack_take_all(&k->head);
        if (chain == 0)
            continue;
        /* A kill here leaks the chain (FREE blocks on no list: check()
         * reports them), never corrupts a list. */
        SHK_CRASH_POINT("freelist.steal");
        uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_relaxed)));
        shk_lfstack_push_chain(&own->head, fl->base, chain, top,
                               (top - fl->start) / (2 * BLOCK_HDR) + 1);
        h = pop_list(fl, own);
    }
    return h;
}

/* Take up to `want` blocks from list k as a chain for a cache (see
 * shk_fl_refill): the whole list is detached (one CAS), its first blocks
 * are cut off and the rest goes back onto `back` (one CAS).  A link that
 * leaves the region, or a node that is not a FREE block of class c, ends
 * the chain taken there and what follows it is dropped (check() reports
 * the list's damage before, the blocks as leaked after).  A kill between
 * the two CAS leaks the list (FREE blocks on no list), as in steal. */
static uint64_t take_some(shk_freelist *fl, unsigned c, fl_class *k, fl_class *back,
                          uint64_t want, uint64_t *n)
{
    /* relaxed peek: skip an empty list without a CAS on its line */
    if (!SHK_A(atomic_load_explicit(&k->head, memory_order_relaxed)))
        return 0;
    uint64_t first = shk_lfstack_take_all(&k->head);
    if (first == 0)
        return 0;
    SHK_CRASH_POINT("freelist.refill");
    uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_relaxed)));
    uint64_t bsz = BLOCK_HDR + class_size(c);
    uint64_t cnt = 0, node = first, last = 0, rest = 0;
    while (cnt < want) {
        if (node < fl->start || node % SHK_ALIGN || shk_add_sat(node, bsz) > top)
            break;
        fl_block *b = block_at(fl, node);
        if (cls_get(b) != c ||
            SHK_A(atomic_load_explicit(&b->state, memory_order_relaxed)) != STATE_FREE)
            break;
        SHK_A(atomic_store_explicit(&b->state, SHK_FL_CACHED, memory_order_relaxed));
        cnt++;
        last = node;
        node = SHK_A(atomic_load_explicit(&b->link, memory_order_relaxed));
        if (node == 0)
            break;
    }
    if (cnt == 0)
        return 0;
    if (cnt == want)
        rest = node;
    SHK_A(atomic_store_explicit(&block_at(fl, last)->link, 0, memory_order_relaxed));
    /* relaxed: statistics, lowered after the take (INVARIANTS) */
    SHK_A(atomic_fetch_sub_explicit(&k->free_bytes, cnt * bsz, memory_order_relaxed));
    SHK_A(atomic_fetch_sub_explicit(&k->free_blocks, cnt, memory_order_relaxed));
    if (rest)
        shk_lfstack_push_chain(&back->head, fl->base, rest, top,
                               (top - fl->start) / (2 * BLOCK_HDR) + 1);
    *n = cnt;
    return first;
}

uint64_t shk_fl_refill(shk_freelist *fl, unsigned c, uint64_t want, uint64_t *n)
{
    /* The order of shk_fl_alloc: our stripe, memory the file backs, the
     * other stripes (their remainder comes to ours, as steal moves whole
     * lists), then growth. */
    fl_class *own = own_list(fl, c);
    uint64_t h = take_some(fl, c, own, own, want, n);
    if (h == 0)
        h = carve(fl, c, own, 0, n);
    for (unsigned st = 0; h == 0 && st < stripes_of(c); st++) {
        fl_class *k = class_line(fl->sh, st, c);
        if (k != own)
            h = take_some(fl, c, k, own, want, n);
    }
    if (h == 0)
        h = carve(fl, c, own, 1, n);
    return h;
}

void shk_fl_flush(shk_freelist *fl, unsigned c, uint64_t first, uint64_t n)
{
    uint64_t bsz = BLOCK_HDR + class_size(c);
    fl_class *own = own_list(fl, c);
    /* The caller walked and checked the chain (alloc_cache.c).  release:
     * a check() that walked a cache list and then sees a block FREE sees
     * the cache list's new head word too (it re-reads it to tell a change
     * from damage). */
    uint64_t node = first;
    for (uint64_t j = 0; j < n && node; j++) {
        fl_block *b = block_at(fl, node);
        SHK_A(atomic_store_explicit(&b->state, STATE_FREE, memory_order_release));
        node = SHK_A(atomic_load_explicit(&b->link, memory_order_relaxed));
    }
    /* relaxed: statistics, raised before the push (INVARIANTS). */
    SHK_A(atomic_fetch_add_explicit(&own->free_bytes, n * bsz, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&own->free_blocks, n, memory_order_relaxed));
    uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_relaxed)));
    shk_lfstack_push_chain(&own->head, fl->base, first, top, n + 1);
}

int shk_fl_class_of(uint64_t n)
{
    return n == 0 || n > SHK_FREELIST_MAX_ALLOC ? -1 : class_of(n);
}

/* Allocate from the shared lists (and new memory): a header offset, 0 if
 * there is no room. */
uint64_t shk_fl_alloc(shk_freelist *fl, unsigned c)
{
    /* Our stripe first; then new blocks from memory the file already backs
     * (taking another stripe's list now would only make its owner take it
     * back when it next runs dry); then the other stripes' lists, before
     * the file grows, so free blocks are never stranded. */
    fl_class *own = own_list(fl, c);
    uint64_t h = pop_list(fl, own);
    if (h == 0)
        h = carve(fl, c, own, 0, NULL);
    if (h == 0)
        h = steal(fl, c, own);
    if (h == 0)
        h = carve(fl, c, own, 1, NULL);
    /* No room for a new block: any free block of a larger class will do. */
    for (unsigned d = c + 1; h == 0 && d < FL_NCLASS; d++) {
        fl_class *od = own_list(fl, d);
        h = pop_list(fl, od);
        if (h == 0)
            h = steal(fl, d, od);
    }
    return h;
}

/* The header offset of a live block whose payload is at `off`, or 0. */
static uint64_t live_header(const shk_freelist *fl, uint64_t off)
{
    uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_acquire)));
    if (off % SHK_ALIGN || off < fl->start + BLOCK_HDR || off >= top)
        return 0;
    uint64_t h = off - BLOCK_HDR;
    const fl_block *b = block_at(fl, h);
    uint32_t c = cls_get(b);
    if (c >= FL_NCLASS || shk_add_sat(off, class_size(c)) > top)
        return 0;
    if (SHK_A(atomic_load_explicit(&b->state, memory_order_relaxed)) != STATE_LIVE)
        return 0;
    return h;
}

uint64_t shk_fl_live(shk_freelist *fl, uint64_t off, unsigned *c, int *mine)
{
    uint64_t h = live_header(fl, off);
    if (h) {
        const fl_block *b = block_at(fl, h);
        *c = cls_get(b);
        *mine = *c >= FL_STRIPED || home_get(b) == my_stripe(fl);
    }
    return h;
}

int shk_fl_free(shk_freelist *fl, uint64_t h, int home)
{
    fl_block *b = block_at(fl, h);
    uint32_t c = cls_get(b);
    uint32_t expect = STATE_LIVE;
    /* The CAS makes a double free (even a concurrent one) fail cleanly:
     * exactly one freer moves LIVE -> FREE.  relaxed: the push publishes. */
    if (!SHK_A(atomic_compare_exchange_strong_explicit(&b->state, &expect, STATE_FREE,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed)))
        return SHK_EBADOFF;
    SHK_CRASH_POINT("freelist.free");
    unsigned hs = home_get(b);
    fl_class *k = home && hs < stripes_of(c) ? class_line(fl->sh, hs, c) : own_list(fl, c);
    SHK_A(atomic_fetch_add_explicit(&k->free_bytes, BLOCK_HDR + class_size(c),
                                    memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&k->free_blocks, 1, memory_order_relaxed));
    shk_lfstack_push(&k->head, fl->base, h);
    return SHK_OK;
}

uint64_t shk_freelist_usable(const shk_freelist *fl, uint64_t off)
{
    uint64_t h = live_header(fl, off);
    return h ? class_size(cls_get(block_at(fl, h))) : 0;
}

uint64_t shk_fl_available(const shk_freelist *fl)
{
    uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_relaxed)));
    uint64_t n = fl->limit - top;
    for (unsigned c = 0; c < FL_NCLASS; c++)
        for (unsigned st = 0; st < stripes_of(c); st++)
            n += SHK_A(atomic_load_explicit(&class_line(fl->sh, st, c)->free_bytes,
                                            memory_order_relaxed));
    return n;
}

uint64_t shk_freelist_capacity(const shk_freelist *fl) { return fl->limit - fl->start; }

void shk_freelist_region(const shk_freelist *fl, uint64_t *start, uint64_t *end)
{
    *start = fl->start;
    *end = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_acquire)));
}

shk_segment *shk_freelist_segment(const shk_freelist *fl) { return fl->owner; }

/* ------------------------------------------------------------------ check */

/* One walk of free list (c, its stripe) for shk_lfstack_check: nodes FREE,
 * of class c, inside [start, top), no cycle.  top is read after the head
 * word (a block is carved before it is ever pushed, so that top lies beyond
 * every node of that list); the cycle guard is the most blocks [start, top)
 * can hold. */
typedef struct list_walk {
    const shk_freelist *fl;
    unsigned c;
    uint64_t n; /* nodes of the last walk */
} list_walk;

static int walk_list(uint64_t head_word, void *ctx)
{
    list_walk *lw = ctx;
    const shk_freelist *fl = lw->fl;
    uint64_t top = top_of(SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_acquire)));
    uint64_t max_nodes = (top - fl->start) / (BLOCK_HDR + class_size(0));
    lw->n = 0;
    for (uint64_t node = shk_lf_off(head_word); node;) {
        /* the bounds first: block_at of a wild offset is itself undefined
         * behaviour */
        if (node < fl->start || node + BLOCK_HDR > top || node % SHK_ALIGN)
            return 1;
        const fl_block *b = block_at(fl, node);
        if (cls_get(b) != lw->c ||
            SHK_A(atomic_load_explicit(&b->state, memory_order_relaxed)) != STATE_FREE ||
            ++lw->n > max_nodes)
            return 1;
        node = SHK_A(atomic_load_explicit(&b->link, memory_order_relaxed));
    }
    return 0;
}

int shk_fl_check(const shk_freelist *fl, shk_freelist_stats *st, uint64_t *cached_walk_out)
{
    shk_freelist_stats s;
    memset(&s, 0, sizeof s);
    uint64_t tw = SHK_A(atomic_load_explicit(&fl->sh->top, memory_order_acquire));
    uint64_t top = top_of(tw);
    int last = last_cls_of(tw);
    if (top < fl->start || top > fl->limit || last >= FL_NCLASS)
        return SHK_ECORRUPT;
    /* The last carve's run [last_h, top) may have no headers yet (its
     * carver died): its class comes from the top word. */
    uint64_t last_run = last >= 0 ? last_n_of(tw) * (BLOCK_HDR + class_size((unsigned)last))
                                  : 0;
    if (last_run > top - fl->start)
        return SHK_ECORRUPT;
    uint64_t last_h = top - last_run;
    /* 1. Walk the blocks tiling [start, top). */
    uint64_t free_walk = 0, cached_walk = 0;
    for (uint64_t h = fl->start; h < top;) {
        if (h + BLOCK_HDR > top)
            return SHK_ECORRUPT;
        const fl_block *b = block_at(fl, h);
        uint32_t state = SHK_A(atomic_load_explicit(&b->state, memory_order_relaxed));
        uint32_t c = h >= last_h ? (uint32_t)last : cls_get(b);
        if (c >= FL_NCLASS)
            return SHK_ECORRUPT;
        uint64_t bsz = BLOCK_HDR + class_size(c);
        if (state == STATE_LIVE && cls_get(b) == c) {
            s.live_blocks++;
            s.used_bytes += bsz;
        } else if (state == STATE_FREE && cls_get(b) == c) {
            free_walk++;
        } else if (state == SHK_FL_CACHED && cls_get(b) == c) {
            cached_walk++;
        } else {
            s.abandoned_blocks++; /* its carver died before the header */
        }
        h = shk_add_sat(h, bsz);
        if (h > top)
            return SHK_ECORRUPT;
    }
    /* 2. Walk every list (walk_list).  Other processes may pop and push
     *    meanwhile: shk_lfstack_check tells a list they moved (walked
     *    again, at worst counted as unverified) from a corrupt one.  The
     *    cycle guard does not use the count of the walk above: blocks freed
     *    since then are rightly on lists. */
    for (unsigned c = 0; c < FL_NCLASS; c++) {
        for (unsigned sp = 0; sp < stripes_of(c); sp++) {
            list_walk lw = {fl, c, 0};
            int rc = shk_lfstack_check(&class_line(fl->sh, sp, c)->head, walk_list, &lw);
            if (rc == SHK_ECORRUPT)
                return rc;
            if (rc == SHK_EAGAIN) {
                s.unverified_lists++;
                continue;
            }
            s.free_blocks += lw.n;
            s.free_list_bytes += lw.n * (BLOCK_HDR + class_size(c));
        }
    }
    s.capacity = fl->limit - fl->start;
    s.untouched_bytes = fl->limit - top;
    /* FREE blocks on no list were being freed or allocated by a process
     * that was killed (or is still running: check() is exact only when the
     * allocator is quiescent).  They are leaked, not corrupt. */
    s.leaked_blocks = free_walk > s.free_blocks ? free_walk - s.free_blocks : 0;
    *cached_walk_out = cached_walk;
    if (st)
        *st = s;
    return SHK_OK;
}
