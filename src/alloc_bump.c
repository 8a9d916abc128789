/*
 * alloc_bump.c -- the bump allocator: allocation is one compare-and-swap on
 * a shared `top`, reset() frees everything at once.
 *
 * DESIGN
 *   A CAS loop rather than a bare fetch-add: with fetch-add, a request that
 *   does not fit would already have moved `top` past the end and would have
 *   to move it back, and meanwhile a smaller request that fits could fail.
 *   The CAS never moves `top` unless the block fits, so an allocation that
 *   fails changes nothing.  Uncontended it is one atomic instruction, like a
 *   fetch-add.  A process killed at any point cannot corrupt anything: the
 *   only shared write is the CAS itself.
 *
 * LAYOUT
 *   header: magic, version | start | limit | top (atomic, own cache line)
 *   data:   [start, limit), blocks handed out from `top` upwards, 16-aligned
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define BUMP_MAGIC 0x504d5542544b4853ull /* "SHKTBUMP" */
#define BUMP_VERSION 1u

typedef struct bump_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t reserved;
    uint64_t start;
    uint64_t limit;
    char pad[SHK_CACHELINE - 32];
    _Atomic uint64_t top;
    char pad2[SHK_CACHELINE - 8];
} bump_shared;

struct shk_bump {
    shk_segment *seg;
    bump_shared *sh;
    uint64_t start, limit;
};

int shk_bump_create_in(shk_segment *seg, uint64_t capacity, uint64_t *off)
{
    if (capacity == 0 || capacity > SHK_FREELIST_MAX_ALLOC)
        return SHK_EINVAL;
    uint64_t total = sizeof(bump_shared) + shk_align_up(capacity, SHK_ALIGN);
    uint64_t blk;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), total, &blk);
    if (rc != SHK_OK)
        return rc;
    bump_shared *sh = (bump_shared *)(shk_segment_base(seg) + blk);
    memset(sh, 0, sizeof *sh);
    sh->magic = BUMP_MAGIC;
    sh->version = BUMP_VERSION;
    sh->start = blk + sizeof(bump_shared);
    sh->limit = blk + total;
    SHK_A(atomic_store_explicit(&sh->top, sh->start, memory_order_relaxed));
    *off = blk;
    return SHK_OK;
}

/* SHK_OK if the header at `off` of `seg` is a sane bump allocator (every
 * offset inside the mapping, top 16-aligned between start and limit),
 * else SHK_ECORRUPT; *top gets the top it checked. */
static int header_check(const shk_segment *seg, uint64_t off, uint64_t *top)
{
    /* Headers are heap blocks, 16-aligned: a misaligned offset (corrupt
     * directory entry) would be a misaligned atomic access. */
    if (off % SHK_ALIGN || !shk_segment_contains(seg, off, sizeof(bump_shared)))
        return SHK_ECORRUPT;
    bump_shared *sh = (bump_shared *)(shk_segment_base(seg) + off);
    /* relaxed: one position, checked against the fixed header fields. */
    *top = SHK_A(atomic_load_explicit(&sh->top, memory_order_relaxed));
    if (sh->magic != BUMP_MAGIC || sh->version != BUMP_VERSION ||
        sh->start != off + sizeof(bump_shared) || sh->limit < sh->start ||
        (sh->limit - sh->start) % SHK_ALIGN ||
        !shk_segment_contains(seg, sh->start, sh->limit - sh->start) || *top < sh->start ||
        *top > sh->limit || (*top - sh->start) % SHK_ALIGN)
        return SHK_ECORRUPT;
    return SHK_OK;
}

int shk_bump_open(shk_segment *seg, uint64_t off, shk_bump **out)
{
    uint64_t top;
    if (header_check(seg, off, &top) != SHK_OK)
        return SHK_ECORRUPT;
    bump_shared *sh = (bump_shared *)(shk_segment_base(seg) + off);
    shk_bump *b = calloc(1, sizeof *b);
    if (!b)
        return SHK_ESYS;
    b->seg = seg;
    b->sh = sh;
    b->start = sh->start;
    b->limit = sh->limit;
    shk_segment_retain(seg);
    *out = b;
    return SHK_OK;
}

int shk_bump_open_named(shk_segment *seg, const char *name, uint64_t capacity, shk_bump **out,
                        int *created)
{
    uint64_t off;
    int rc = shk_object_sized(seg, name, SHK_TYPE_BUMP, shk_bump_create_in, capacity, &off,
                              created);
    if (rc != SHK_OK)
        return rc;
    return shk_bump_open(seg, off, out);
}

void shk_bump_close(shk_bump *b)
{
    if (!b)
        return;
    shk_segment_close(b->seg);
    free(b);
}

int shk_bump_alloc(shk_bump *b, uint64_t n, uint64_t *off)
{
    if (n == 0 || n > b->limit - b->start)
        return n == 0 ? SHK_EINVAL : SHK_ENOMEM;
    uint64_t sz = shk_align_up(n, SHK_ALIGN);
    /* relaxed: the position is all we share; block contents are published
     * by whatever the caller stores the offset in. */
    uint64_t old = SHK_A(atomic_load_explicit(&b->sh->top, memory_order_relaxed));
    do {
        if (sz > b->limit - old)
            return SHK_ENOMEM;
    } while (!SHK_A(atomic_compare_exchange_weak_explicit(&b->sh->top, &old, old + sz,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed)));
    *off = old;
    return SHK_OK;
}

void shk_bump_reset(shk_bump *b)
{
    /* release: orders the caller's last writes to the old blocks before the
     * reset; reset() is only meaningful once no block is in use, which is
     * the caller's contract (as in the shared-allocator package). */
    SHK_A(atomic_store_explicit(&b->sh->top, b->start, memory_order_release));
}

uint64_t shk_bump_available(const shk_bump *b)
{
    uint64_t top = SHK_A(atomic_load_explicit(&b->sh->top, memory_order_relaxed));
    return b->limit - top;
}

uint64_t shk_bump_capacity(const shk_bump *b) { return b->limit - b->start; }

void shk_bump_region(const shk_bump *b, uint64_t *start, uint64_t *end)
{
    *start = b->start;
    *end = SHK_A(atomic_load_explicit(&b->sh->top, memory_order_acquire));
}

int shk_bump_check(const shk_bump *b, shk_bump_stats *stats)
{
    uint64_t off = (uint64_t)((const char *)b->sh - shk_segment_base(b->seg)), top;
    /* The shared header must still say what this handle opened. */
    if (header_check(b->seg, off, &top) != SHK_OK || b->sh->start != b->start ||
        b->sh->limit != b->limit)
        return SHK_ECORRUPT;
    if (stats) {
        stats->capacity = b->limit - b->start;
        stats->used_bytes = top - b->start;
        stats->available_bytes = b->limit - top;
    }
    return SHK_OK;
}
