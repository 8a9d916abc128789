/*
 * heap_internal.h -- what segment.c needs from alloc_freelist.c to embed a
 * growable free-list allocator (the segment heap) in every segment header.
 */
#ifndef SHMKIT_HEAP_INTERNAL_H
#define SHMKIT_HEAP_INTERNAL_H

#include "internal.h"

/* Bytes of the free-list shared header. */
uint64_t shk_freelist_header_size(void);

/* Write a fresh free-list header at base+off managing [start, limit).
 * growable: the data region is backed on demand by shk_segment_reserve. */
void shk_freelist_init_at(char *base, uint64_t off, uint64_t start,
                          uint64_t limit, int growable);

/* Check a free-list header held in a buffer (at buf+off) against the sizes
 * of its segment; never reads outside [buf+off, buf+off+header size).
 * `live`: the header is the mapped one, which other processes change while
 * we look; the file size is then read from that segment, after the header
 * (file_size is ignored).  NULL: buf is a copy and file_size its size. */
int shk_freelist_validate_at(const char *buf, uint64_t off, uint64_t min_start,
                             uint64_t file_size, uint64_t max_size,
                             const shk_segment *live);

/* Open a handle; `segment_heap` handles do not hold a segment reference
 * (the segment owns them). */
int shk_freelist_open_internal(shk_segment *seg, uint64_t off, int segment_heap,
                               shk_freelist **out);

/* Free a block (as shk_freelist_free) to the list of the stripe whose carve
 * made it, not the caller's: see STRIPES in alloc_freelist.c. */
int shk_freelist_free_home(shk_freelist *fl, uint64_t off);

#endif
