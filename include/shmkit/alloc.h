/*
 * shmkit/alloc.h -- the three shared-memory allocators.
 *
 *   shk_freelist  variable sizes, O(1) allocate/free through size classes,
 *                 lock-free (one Treiber stack of tagged offsets per class).
 *                 Every segment has one, growable, as its heap: the dict,
 *                 queue and stack allocate from it.
 *   shk_bump      one atomic compare-and-swap per allocation, reset() frees all.
 *   shk_slab      fixed-size slots tracked by an atomic bitmap.
 *
 * Each opens like every structure: shk_X_create_in builds one in the segment
 * heap and gives its offset, shk_X_open opens a handle on the one at an
 * offset, shk_X_open_named opens the one called `name` in the segment's
 * directory, creating it when absent if the size it is given is non-zero
 * (0: open only, SHK_ENOENT if absent; an existing one keeps its own size).
 *
 * All offsets are segment offsets (from the segment base), so a block can be
 * handed to another process as a plain integer.  Handles (the structs below)
 * are process-local and cheap; the allocator state lives in the segment.
 */
#ifndef SHMKIT_ALLOC_H
#define SHMKIT_ALLOC_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every block handed out is aligned to this many bytes. */
#define SHK_ALIGN 16u

/* ---------------- free-list allocator ---------------- */

typedef struct shk_freelist shk_freelist;

/* Largest single allocation the free list accepts (a size class must exist
 * for it): just under the largest segment. */
#define SHK_FREELIST_MAX_ALLOC (SHK_MAX_MAX_SIZE - (1ull << 20))

/* Build a fixed-capacity free-list allocator inside `seg` (its memory comes
 * from the segment heap); *off receives the offset of its shared header. */
int shk_freelist_create_in(shk_segment *seg, uint64_t capacity, uint64_t *off);
/* Open a handle on the allocator whose header is at `off` (validated). */
int shk_freelist_open(shk_segment *seg, uint64_t off, shk_freelist **out);
/* Open (or, capacity != 0, create) the free list called `name`. */
int shk_freelist_open_named(shk_segment *seg, const char *name, uint64_t capacity,
                            shk_freelist **out, int *created);
void shk_freelist_close(shk_freelist *fl);

/* Allocate n bytes (n >= 1); *off gets the block's offset, 16-aligned.
 * SHK_ENOMEM with nothing changed if no room; SHK_EINVAL if n is 0 or too
 * large for any size class. */
int shk_freelist_alloc(shk_freelist *fl, uint64_t n, uint64_t *off);
/* Free a block.  SHK_EBADOFF (nothing changed) for an offset that is not a
 * live block of this allocator, including a second free of the same block. */
int shk_freelist_free(shk_freelist *fl, uint64_t off);
/* Usable bytes of the live block at off (>= what was asked), 0 if `off` is
 * not a live block. */
uint64_t shk_freelist_usable(const shk_freelist *fl, uint64_t off);
/* Bytes that could still be handed out (free blocks + untouched space),
 * counting block headers.  Back to its initial value once all is freed. */
uint64_t shk_freelist_available(const shk_freelist *fl);
uint64_t shk_freelist_capacity(const shk_freelist *fl);
/* [start, end) of the data region, in segment offsets (end = high water). */
void shk_freelist_region(const shk_freelist *fl, uint64_t *start, uint64_t *end);
shk_segment *shk_freelist_segment(const shk_freelist *fl);

typedef struct shk_freelist_stats {
    uint64_t capacity, used_bytes, free_list_bytes, untouched_bytes;
    uint64_t live_blocks, free_blocks;
    /* Left by processes killed mid-operation (exact only when quiescent):
     * leaked = FREE but on no list (killed inside free/allocate),
     * abandoned = carved but header never written (killed inside carve). */
    uint64_t leaked_blocks, abandoned_blocks;
    /* Free lists that other processes changed under every walk check()
     * tried, so it could not verify them (0 when nobody else is active). */
    uint64_t unverified_lists;
    /* Blocks (and their bytes, headers included) held in the per-process
     * caches: freed, but neither live nor on a free list. */
    uint64_t cached_blocks, cached_bytes;
} shk_freelist_stats;
/* Walk the blocks tiling the region and every free list, and verify their
 * invariants (exact tiling, no cycle, every list node a FREE block of that
 * class inside the region).  SHK_OK or SHK_ECORRUPT.  Blocks a killed
 * process left behind are counted, not errors.  Safe while other processes
 * allocate and free: it never calls a healthy heap corrupt (a list walk
 * upset by a concurrent change is repeated, and after 64 tries counted in
 * unverified_lists); the statistics are exact only when nobody does. */
int shk_freelist_check(const shk_freelist *fl, shk_freelist_stats *stats);
/* Return the blocks cached by processes that have died (owner pid and
 * start time no longer a live process) to the free lists; *blocks (may be
 * NULL) gets how many.  Allocation does this by itself before it reports
 * SHK_ENOMEM, and a process taking a cache slot does it for that slot;
 * shk_segment_check() does it for the segment heap.  SHK_OK or
 * SHK_ECORRUPT. */
int shk_freelist_reclaim(shk_freelist *fl, uint64_t *blocks);

/* ---------------- bump allocator ---------------- */

typedef struct shk_bump shk_bump;
int shk_bump_create_in(shk_segment *seg, uint64_t capacity, uint64_t *off);
int shk_bump_open(shk_segment *seg, uint64_t off, shk_bump **out);
/* Open (or, capacity != 0, create) the bump allocator called `name`. */
int shk_bump_open_named(shk_segment *seg, const char *name, uint64_t capacity, shk_bump **out,
                        int *created);
void shk_bump_close(shk_bump *b);
int shk_bump_alloc(shk_bump *b, uint64_t n, uint64_t *off);
void shk_bump_reset(shk_bump *b);
uint64_t shk_bump_available(const shk_bump *b);
uint64_t shk_bump_capacity(const shk_bump *b);
void shk_bump_region(const shk_bump *b, uint64_t *start, uint64_t *end);

typedef struct shk_bump_stats {
    uint64_t capacity, used_bytes, available_bytes;
} shk_bump_stats;
/* Verify the shared header against the mapping and this handle (every
 * offset and length inside the segment, top 16-aligned in [start, limit]).
 * SHK_OK with *stats filled (may be NULL), or SHK_ECORRUPT. */
int shk_bump_check(const shk_bump *b, shk_bump_stats *stats);

/* ---------------- slab allocator ---------------- */

typedef struct shk_slab shk_slab;
int shk_slab_create_in(shk_segment *seg, uint64_t slot_size, uint64_t nslots, uint64_t *off);
int shk_slab_open(shk_segment *seg, uint64_t off, shk_slab **out);
/* Open (or, nslots != 0, create) the slab allocator called `name`. */
int shk_slab_open_named(shk_segment *seg, const char *name, uint64_t slot_size, uint64_t nslots,
                        shk_slab **out, int *created);
void shk_slab_close(shk_slab *s);
int shk_slab_alloc(shk_slab *s, uint64_t *off);
int shk_slab_free(shk_slab *s, uint64_t off);   /* SHK_EBADOFF if not live */
uint64_t shk_slab_available(const shk_slab *s); /* bytes in free slots     */
uint64_t shk_slab_slot_size(const shk_slab *s);
uint64_t shk_slab_slot_count(const shk_slab *s);
void shk_slab_region(const shk_slab *s, uint64_t *start, uint64_t *end);
int shk_slab_is_live(const shk_slab *s, uint64_t off);

typedef struct shk_slab_stats {
    uint64_t slot_size, slot_count, live_slots, free_slots;
    uint64_t capacity, available_bytes;
} shk_slab_stats;
/* Verify the shared header against the mapping and this handle, the
 * shared counters against their ranges and the bitmap's padding bits (set
 * past the last slot).  SHK_OK with *stats filled (may be NULL; the counts
 * come from the bitmap, exact when nobody allocates meanwhile), or
 * SHK_ECORRUPT. */
int shk_slab_check(const shk_slab *s, shk_slab_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
