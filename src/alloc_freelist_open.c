/*
 * alloc_freelist_open.c -- free-list allocators made inside a segment, as
 * the public API opens them (shk_freelist_create_in, _open, _open_named,
 * _close).
 *
 * The allocator itself (alloc_freelist.c) works on a mapping and knows no
 * segment, so that the segment can embed one as its heap.  This file sits
 * above the segment: a handle it opens holds a reference on its segment
 * (the mapping stays until the handle is closed), and its memory comes
 * from the segment heap.
 */
#include "internal.h"
#include "heap_internal.h"

int shk_freelist_create_in(shk_segment *seg, uint64_t capacity, uint64_t *off)
{
    if (capacity == 0 || capacity > SHK_FREELIST_MAX_ALLOC)
        return SHK_EINVAL;
    uint64_t hsz = shk_freelist_header_size();
    uint64_t total = hsz + shk_align_up(capacity, SHK_ALIGN);
    uint64_t blk;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), total, &blk);
    if (rc != SHK_OK)
        return rc;
    shk_freelist_init_at(shk_segment_base(seg), blk, blk + hsz, blk + total, 0);
    *off = blk;
    return SHK_OK;
}

int shk_freelist_open(shk_segment *seg, uint64_t off, shk_freelist **out)
{
    int rc = shk_freelist_open_at(shk_segment_mapping(seg), off, seg, out);
    if (rc == SHK_OK)
        shk_segment_retain(seg);
    return rc;
}

int shk_freelist_open_named(shk_segment *seg, const char *name, uint64_t capacity,
                            shk_freelist **out, int *created)
{
    uint64_t off;
    int rc = shk_object_sized(seg, name, SHK_TYPE_FREELIST, shk_freelist_create_in, capacity,
                              &off, created);
    if (rc != SHK_OK)
        return rc;
    return shk_freelist_open(seg, off, out);
}

void shk_freelist_close(shk_freelist *fl)
{
    if (!fl)
        return;
    shk_segment *seg = shk_freelist_segment(fl);
    shk_freelist_drop(fl);
    shk_segment_close(seg);
}
