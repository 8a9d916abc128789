/*
 * heap_internal.h -- the free-list allocator (alloc_freelist.c) as the
 * layers above it use it: segment.c embeds one (the segment heap, growable)
 * after every segment header; alloc_freelist_open.c opens the ones made
 * inside a segment.  The free list sits on a mapping (mapping.h), never on
 * a segment.  alloc_freelist.c and alloc_cache.c (the per-process caches)
 * share the second half.
 */
#ifndef SHMKIT_HEAP_INTERNAL_H
#define SHMKIT_HEAP_INTERNAL_H

#include "internal.h"
#include "mapping.h"

/* Bytes of the free-list shared header. */
uint64_t shk_freelist_header_size(void);

/* Write a fresh free-list header at base+off managing [start, limit).
 * growable: the data region is backed on demand by shk_mapping_reserve. */
void shk_freelist_init_at(char *base, uint64_t off, uint64_t start, uint64_t limit,
                          int growable);

/* Check a free-list header held in a buffer (at buf+off) against the sizes
 * of its segment; never reads outside [buf+off, buf+off+header size).
 * `live`: the header is the mapped one, which other processes change while
 * we look; the file size is then read from that mapping, after the header
 * (file_size is ignored).  NULL: buf is a copy and file_size its size. */
int shk_freelist_validate_at(const char *buf, uint64_t off, uint64_t min_start,
                             uint64_t file_size, uint64_t max_size, const shk_mapping *live);

/* Open a handle on the free list whose header is at `off` of mapping m
 * (validated).  The handle holds no reference: the caller keeps m mapped
 * until shk_freelist_drop.  `owner` is only remembered, for
 * shk_freelist_segment. */
int shk_freelist_open_at(shk_mapping *m, uint64_t off, shk_segment *owner, shk_freelist **out);
/* Free a handle that shk_freelist_open_at made. */
void shk_freelist_drop(shk_freelist *fl);

/* Free a block (as shk_freelist_free) to the list of the stripe whose carve
 * made it, not the caller's: see STRIPES in alloc_freelist.c. */
int shk_freelist_free_home(shk_freelist *fl, uint64_t off);


/* ---- shared by alloc_freelist.c and alloc_cache.c ---- */

/* A block's header (16 bytes before the payload); see LAYOUT in
 * alloc_freelist.c. */
typedef struct shk_fl_block {
    _Atomic uint64_t link;  /* next block while on a free list or a cache */
    _Atomic uint32_t state; /* SHK_FL_LIVE / _FREE / _CACHED */
    /* class | home stripe << 8.  Atomic: a carver may rewrite it (the same
     * class; a block repaired that way gets home stripe 0). */
    _Atomic uint32_t cls;
} shk_fl_block;
#define SHK_FL_BLOCK_HDR 16u
#define SHK_FL_LIVE 0x4556494cu            /* "LIVE": handed out */
#define SHK_FL_FREE 0x45455246u            /* "FREE": on a free list */
#define SHK_FL_CACHED 0x48434143u          /* "CACH": in a process's cache */
#define SHK_FL_TOP_MASK ((1ull << 40) - 1) /* top word -> top offset */

/* Payload bytes of size class c (see alloc_freelist.c: 16-byte steps up to
 * 256, then four classes per power of two). */
static inline uint64_t shk_fl_class_size(unsigned c)
{
    if (c < 16)
        return (uint64_t)(c + 1) * 16;
    unsigned k = 8 + (c - 16) / 4;
    unsigned sub = (c - 16) % 4;
    return (1ull << k) + (uint64_t)(sub + 1) * (1ull << (k - 2));
}

/* The per-process caches (alloc_cache.c) hold blocks of the classes below
 * SHK_CACHE_CLASSES (up to 1 KiB), in SHK_CACHE_SLOTS slots of
 * SHK_CACHE_SLOT_BYTES each: the table is the last part of the free-list
 * header, zero when fresh. */
#define SHK_CACHE_CLASSES 24u
#define SHK_CACHE_SLOTS 32u
#define SHK_CACHE_SLOT_BYTES 512u
#define SHK_CACHE_TABLE_BYTES (SHK_CACHE_SLOTS * SHK_CACHE_SLOT_BYTES)

/* What a handle remembers of its cache slot (process-local). */
typedef struct shk_cache_local {
    /* slot + 1 (SHK_CACHE_NONE: none to be had) << 32 | fork generation
     * it was claimed in; 0: not looked for yet */
    _Atomic uint64_t w;
    _Atomic uint64_t id; /* this process's owner id (pid, start time) */
    int disabled;        /* tests of the shared lists turn caching off */
} shk_cache_local;
#define SHK_CACHE_NONE 0xffffffffu

/* The start of every shk_freelist handle: what alloc_cache.c reads. */
typedef struct shk_fl_common {
    char *base;
    uint64_t start;        /* first block */
    _Atomic uint64_t *top; /* the shared top word */
    char *table;           /* the shared cache table */
    shk_cache_local cache;
} shk_fl_common;

/* alloc_freelist.c for alloc_cache.c.  refill: up to `want` blocks of
 * class c (this process's stripe, then new ones, then other stripes'),
 * linked through `link` (the last 0), state CACHED; *n gets how many; 0 if
 * none.  flush: a chain of n CACHED blocks of class c that the caller owns
 * (detached from every cache) goes FREE onto this process's stripe. */
uint64_t shk_fl_refill(shk_freelist *fl, unsigned c, uint64_t want, uint64_t *n);
void shk_fl_flush(shk_freelist *fl, unsigned c, uint64_t first, uint64_t n);
/* The shared lists alone, beneath the caches (alloc_cache.c holds the
 * public shk_freelist_alloc/free/free_home/available/check/drop, which try
 * the cache first).  class_of: the class of an n-byte request, -1 if none.
 * alloc: a block of class c (or a larger one), its header offset; 0 if no
 * room.  live: the header offset of the live block at payload offset off
 * (0: none), its class in *c, and in *mine whether our stripe carved it.
 * free: header h (from live) FREE onto our stripe or (home) the carver's.
 * available: free-list and untouched bytes.  check: shk_freelist_check
 * without the caches; *cached_walk gets the CACHED blocks of the tiling. */
int shk_fl_class_of(uint64_t n);
uint64_t shk_fl_alloc(shk_freelist *fl, unsigned c);
uint64_t shk_fl_live(shk_freelist *fl, uint64_t off, unsigned *c, int *mine);
int shk_fl_free(shk_freelist *fl, uint64_t h, int home);
uint64_t shk_fl_available(const shk_freelist *fl);
int shk_fl_check(const shk_freelist *fl, shk_freelist_stats *st, uint64_t *cached_walk);

/* alloc_cache.c's own steps (tests call drain).  alloc: a block of class c
 * (c < SHK_CACHE_CLASSES) from this process's cache, its header offset in
 * *hdr, state LIVE: SHK_OK; SHK_EAGAIN: use the shared lists (no slot,
 * another thread in it, nothing to refill from); SHK_ECORRUPT.  free: the
 * LIVE block at header offset hdr into the cache: SHK_OK; SHK_EAGAIN: use
 * the shared lists; SHK_EBADOFF: it was not LIVE (a double free);
 * SHK_ECORRUPT. */
int shk_cache_alloc(shk_freelist *fl, unsigned c, uint64_t *hdr);
int shk_cache_free(shk_freelist *fl, uint64_t hdr, unsigned c);
/* Return every block of this process's cache to the shared lists (before
 * an allocation gives up with ENOMEM, and at close). */
void shk_cache_drain(shk_freelist *fl);
/* Bytes (block headers included) held in all caches. */
uint64_t shk_cache_bytes(const shk_freelist *fl);
/* Walk every cache's lists (check): *blocks, *bytes held; *unverified
 * lists that moved under every walk.  SHK_OK or SHK_ECORRUPT. */
int shk_cache_check(const shk_freelist *fl, uint64_t *blocks, uint64_t *bytes,
                    uint64_t *unverified);
/* Tests: turn this handle's cache off (on = 0) or on. */
void shk_freelist_cache_enable(shk_freelist *fl, int on);

#endif
