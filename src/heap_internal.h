/*
 * heap_internal.h -- the free-list allocator (alloc_freelist.c) as the
 * layers above it use it: segment.c embeds one (the segment heap, growable)
 * after every segment header; alloc_freelist_open.c opens the ones made
 * inside a segment.  The free list sits on a mapping (mapping.h), never on
 * a segment.
 */
#ifndef SHMKIT_HEAP_INTERNAL_H
#define SHMKIT_HEAP_INTERNAL_H

#include "internal.h"
#include "mapping.h"

/* Bytes of the free-list shared header. */
uint64_t shk_freelist_header_size(void);

/* Write a fresh free-list header at base+off managing [start, limit).
 * growable: the data region is backed on demand by shk_mapping_reserve. */
void shk_freelist_init_at(char *base, uint64_t off, uint64_t start,
                          uint64_t limit, int growable);

/* Check a free-list header held in a buffer (at buf+off) against the sizes
 * of its segment; never reads outside [buf+off, buf+off+header size).
 * `live`: the header is the mapped one, which other processes change while
 * we look; the file size is then read from that mapping, after the header
 * (file_size is ignored).  NULL: buf is a copy and file_size its size. */
int shk_freelist_validate_at(const char *buf, uint64_t off, uint64_t min_start,
                             uint64_t file_size, uint64_t max_size,
                             const shk_mapping *live);

/* Open a handle on the free list whose header is at `off` of mapping m
 * (validated).  The handle holds no reference: the caller keeps m mapped
 * until shk_freelist_drop.  `owner` is only remembered, for
 * shk_freelist_segment. */
int shk_freelist_open_at(shk_mapping *m, uint64_t off, shk_segment *owner,
                         shk_freelist **out);
/* Free a handle that shk_freelist_open_at made. */
void shk_freelist_drop(shk_freelist *fl);

/* Free a block (as shk_freelist_free) to the list of the stripe whose carve
 * made it, not the caller's: see STRIPES in alloc_freelist.c. */
int shk_freelist_free_home(shk_freelist *fl, uint64_t off);

#endif
