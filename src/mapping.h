/*
 * mapping.h -- the bottom layer of a segment: this process's mapping of the
 * shm file and the file's growth (mapping.c).  The heap (alloc_freelist.c)
 * sits on it; the segment (segment.c) owns one per handle and sits above
 * the heap.  Not installed.
 */
#ifndef SHMKIT_MAPPING_H
#define SHMKIT_MAPPING_H

#include "internal.h"

/* One process's mapping of a segment file.  base, fd and max_size are
 * fixed once mapped.  The shared file_size record and the grow lock live
 * in the mapped bytes, where the layer above put them (shk_mapping_bind);
 * `verified` is this process's own bound on what the file holds. */
typedef struct shk_mapping {
    char *base;
    int fd;            /* owned: closed by shk_mapping_close */
    uint64_t max_size; /* bytes mapped */
    /* Bytes of the file this process has seen exist (fstat, capped at
     * max_size).  The shared file_size is believed only up to this bound;
     * a larger claim is checked with one fstat, which also moves the bound
     * when the file really grew.  Relaxed atomic: a per-process cache. */
    _Atomic uint64_t verified;
    _Atomic uint64_t *file_size; /* shared: bytes backed (release-stored) */
    shk_mutex *grow_lock;        /* shared: serialises growth */
} shk_mapping;

/* Map max_size bytes of the shm file fd (file_bytes long now) into m.
 * With floor > 0, an address-space refusal (ENOMEM, or valgrind's EINVAL)
 * halves the reservation, not below floor; m->max_size says what was
 * mapped.  SHK_OK (m then owns fd), or SHK_ESYS with errno set (fd stays
 * the caller's). */
int shk_mapping_open(shk_mapping *m, int fd, uint64_t max_size, uint64_t floor,
                     uint64_t file_bytes);
/* Where the shared file_size record and grow lock are (inside the mapping). */
void shk_mapping_bind(shk_mapping *m, _Atomic uint64_t *file_size, shk_mutex *grow_lock);
/* Unmap and close the file. */
void shk_mapping_close(shk_mapping *m);

/* Bytes backed now: the shared file_size, believed only as far as this
 * process has seen the file reach (one fstat when it claims more).  Inline:
 * every bounds check of every structure asks it. */
uint64_t shk_mapping_file_size_slow(const shk_mapping *m, uint64_t fs);
static inline uint64_t shk_mapping_file_size(const shk_mapping *m)
{
    /* acquire: pairs with the grower's release, so bytes below the value
     * read are backed. */
    uint64_t fs = SHK_A(atomic_load_explicit(m->file_size, memory_order_acquire));
    /* relaxed: a per-process cache; fstat is the authority. */
    if (SHK_LIKELY(fs <= SHK_A(atomic_load_explicit(&m->verified, memory_order_relaxed))))
        return fs;
    return shk_mapping_file_size_slow(m, fs);
}
/* 1 if [off, off+len) lies inside the backed bytes. */
int shk_mapping_contains(const shk_mapping *m, uint64_t off, uint64_t len);
/* Grow the file so that at least min_size bytes are backed (geometric
 * steps, capped at max_size).  SHK_OK, SHK_ENOMEM (beyond max_size, or
 * /dev/shm full), SHK_ECORRUPT (the grow lock's words) or SHK_ESYS. */
int shk_mapping_reserve(shk_mapping *m, uint64_t min_size);

/* The mapping of a segment handle (segment.c), for the layers above the
 * segment that open a free list on it (alloc_freelist_open.c). */
shk_mapping *shk_segment_mapping(shk_segment *seg);

#endif
