/*
 * shmkit/counter.h -- a sharded counter in shared memory: increments from
 * many processes at once scale with the cores, because each process adds
 * to a cell (cache line) of its own; the value is the sum of the cells.
 *
 *   shk_counter *c;
 *   shk_counter_open_named(seg, "hits", 0, &c, NULL);   // 0: default cells
 *   shk_counter_add(c, 1);                               // one atomic add
 *   int64_t v = shk_counter_value(c);                    // sum of the cells
 *
 * Exactness: every add is one atomic fetch_add, so no add is ever lost or
 * counted twice, whatever the number of processes, threads, forks and kills
 * (an add is in the counter or not; a process killed mid-add either did it
 * or did not).  value() is exact when no add is in flight (quiescent: every
 * add happened-before the read, e.g. the adders were joined).  While adds
 * run it returns the committed adds plus some of those in flight: for a
 * counter that only grows, a value between the sum before and the sum after
 * the read.  Values are int64 and wrap modulo 2^64 like two's complement.
 *
 * reset() exchanges each cell with 0 and returns the total it took out; an
 * add that runs meanwhile is either in that total or stays in the counter,
 * never lost.  See src/counter.c for the design and layout.
 */
#ifndef SHMKIT_COUNTER_H
#define SHMKIT_COUNTER_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_counter shk_counter; /* process-local handle */

/* Cells of a counter: a power of two in [1, SHK_COUNTER_MAX_CELLS];
 * 0 at creation means SHK_COUNTER_DEFAULT_CELLS.  Each cell is 128 bytes;
 * more cells than processes that add at once buys nothing. */
#define SHK_COUNTER_DEFAULT_CELLS 256u
#define SHK_COUNTER_MAX_CELLS 65536u

/* Build a counter (value 0) with `ncells` cells in the heap of `seg`; *off
 * gets the offset of its shared header.  SHK_EINVAL if ncells is not 0 or a
 * power of two up to SHK_COUNTER_MAX_CELLS, SHK_ENOMEM if no room. */
int shk_counter_create_in(shk_segment *seg, uint32_t ncells, uint64_t *off);

/* Open a handle on the counter whose header is at `off` (validated:
 * SHK_ECORRUPT if it is not a sane counter lying inside a live heap block).
 * The handle holds a reference on the segment. */
int shk_counter_open(shk_segment *seg, uint64_t off, shk_counter **out);

/* Open the counter called `name` in `seg`, creating it if absent (ncells as
 * for create_in).  SHK_ETYPE if `name` is another kind of object, SHK_EINVAL
 * for a bad ncells.  An existing counter keeps its own cell count. */
int shk_counter_open_named(shk_segment *seg, const char *name, uint32_t ncells,
                           shk_counter **out, int *created);

/* Attach only: SHK_ENOENT if `name` is absent. */
int shk_counter_attach_named(shk_segment *seg, const char *name, shk_counter **out);

void shk_counter_close(shk_counter *c);

/* Add n (may be negative) to the counter: one relaxed atomic add on this
 * process's own cell (claimed at the first add of the process). */
void shk_counter_add(shk_counter *c, int64_t n);

/* The sum of every cell (exact when quiescent, see above). */
int64_t shk_counter_value(const shk_counter *c);

/* Set every cell to 0 and return the total taken out (see above). */
int64_t shk_counter_reset(shk_counter *c);

uint32_t shk_counter_ncells(const shk_counter *c);
shk_segment *shk_counter_segment(const shk_counter *c);
uint64_t shk_counter_offset(const shk_counter *c);

typedef struct shk_counter_stats {
    int64_t value;    /* sum of the cells                               */
    uint32_t ncells;  /* cells of the counter                           */
    uint32_t claimed; /* cells with an owner (live or dead)             */
    uint32_t live;    /* cells whose owner is a live process            */
    int32_t mine;     /* this process's cell, -1 if none yet or shared  */
} shk_counter_stats;

/* Validate the shared header and every cell's owner word: SHK_OK or
 * SHK_ECORRUPT.  *stats (may be NULL) gets the figures above. */
int shk_counter_check(const shk_counter *c, shk_counter_stats *stats);

/* Validate a counter header held in buf[0, len) that claims to sit at
 * segment offset `off` of a segment whose backed size is `file_size`.
 * Never reads outside buf.  Used by open and by the fuzzers. */
int shk_counter_validate_header(const void *buf, size_t len, uint64_t off, uint64_t file_size);

/* Bytes of the shared header (what validate_header needs to see). */
size_t shk_counter_header_size(void);

#ifdef __cplusplus
}
#endif
#endif
