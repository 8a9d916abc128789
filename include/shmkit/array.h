/*
 * shmkit/array.h -- typed fixed-length arrays in shared memory whose
 * elements are read and written atomically.
 *
 *   shk_array *a;
 *   shk_array_open_named(seg, "hits", SHK_DT_INT64, 1024, &a, NULL);
 *   shk_scalar prev;
 *   shk_array_add(a, 7, 1, &prev);       // atomic fetch-add, checked
 *
 * Elements are the machine types below, stored contiguously and naturally
 * aligned (little-endian on the platforms we support): shk_array_data()
 * is a plain C array of them, and the Python layer exports exactly that
 * memory through the buffer protocol (numpy shares it, zero copy).
 *
 * Every element operation here is atomic on that one element (loads
 * acquire, stores release, read-modify-writes acq_rel): any number of
 * processes may use them at once.  Operations on several elements (a slice)
 * are a sequence of element operations, not one atomic step.
 *
 * Values cross this API as an shk_scalar: the member matching the array's
 * kind is used -- .i for signed integers, .u for unsigned, .f for floats.
 */
#ifndef SHMKIT_ARRAY_H
#define SHMKIT_ARRAY_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_array shk_array; /* process-local handle */

/* Element types.  The values are part of the shared layout: never reuse. */
enum shk_dtype {
    SHK_DT_INT8 = 1,
    SHK_DT_INT16 = 2,
    SHK_DT_INT32 = 3,
    SHK_DT_INT64 = 4,
    SHK_DT_UINT8 = 5,
    SHK_DT_UINT16 = 6,
    SHK_DT_UINT32 = 7,
    SHK_DT_UINT64 = 8,
    SHK_DT_FLOAT32 = 9,
    SHK_DT_FLOAT64 = 10,
    SHK_DT_MAX_ = 11
};

typedef union shk_scalar {
    int64_t i;
    uint64_t u;
    double f;
} shk_scalar;

/* Facts about a dtype: bytes per element (0 if `dt` is not a dtype),
 * whether signed / float, its canonical name ("int64"...) and its
 * struct-module format character ('q'...). */
unsigned shk_dtype_itemsize(uint32_t dt);
int shk_dtype_is_signed(uint32_t dt);
int shk_dtype_is_float(uint32_t dt);
const char *shk_dtype_name(uint32_t dt);
char shk_dtype_format(uint32_t dt);
/* The dtype called `name` ("int8".."float64"), 0 if none. */
uint32_t shk_dtype_from_name(const char *name);

/* Most bytes of element data one array may hold (half the largest
 * segment). */
#define SHK_ARRAY_MAX_BYTES (32ull << 30)

/* Build an array of `length` elements of `dtype`, all zero, in the heap of
 * `seg`.  SHK_EINVAL for a bad dtype, length 0 or too many bytes;
 * SHK_ENOMEM if the segment has no room. */
int shk_array_create_in(shk_segment *seg, uint32_t dtype, uint64_t length, uint64_t *off);
/* Open a handle on the array whose header is at `off` (validated). */
int shk_array_open(shk_segment *seg, uint64_t off, shk_array **out);
/* Open the array `name` in `seg`, creating it (all zero) if absent and
 * dtype != 0.  dtype == 0 only attaches (SHK_ENOENT if absent).
 * SHK_EINVAL if it exists with another dtype or length than given (a
 * length of 0 accepts any). */
int shk_array_open_named(shk_segment *seg, const char *name, uint32_t dtype, uint64_t length,
                         shk_array **out, int *created);
void shk_array_close(shk_array *a);

uint32_t shk_array_dtype(const shk_array *a);
uint64_t shk_array_length(const shk_array *a);
unsigned shk_array_itemsize(const shk_array *a);
void *shk_array_data(shk_array *a); /* 16-byte aligned, in the segment */
shk_segment *shk_array_segment(const shk_array *a);
uint64_t shk_array_offset(const shk_array *a);

/* All element operations: SHK_EINVAL (nothing changed) if i >= length or
 * the value does not fit the element type; out-parameters may be NULL. */

/* Atomic load / store.  store: SHK_EINVAL if v is out of range of an
 * integer type; a float64 stored into float32 is rounded. */
int shk_array_load(const shk_array *a, uint64_t i, shk_scalar *out);
int shk_array_store(shk_array *a, uint64_t i, shk_scalar v);
/* Atomic exchange: store v, *prev gets the old value. */
int shk_array_exchange(shk_array *a, uint64_t i, shk_scalar v, shk_scalar *prev);
/* Atomic compare-and-swap: if the element equals `expected` (bitwise, for
 * floats) it becomes `desired` and the call returns 1; otherwise it returns
 * 0.  *actual (may be NULL) gets the value seen.  Expected values that the
 * element type cannot hold simply never match. */
int shk_array_compare_and_swap(shk_array *a, uint64_t i, shk_scalar expected,
                               shk_scalar desired, shk_scalar *actual);

/* Checked atomic add on an integer element: the element becomes
 * old + delta (delta = -magnitude if negative) if that fits the type;
 * otherwise SHK_EINVAL and nothing changes.  *prev gets old.  Covers every
 * delta that can give a valid result, e.g. -(2^64 - 1) on a uint64. */
int shk_array_add_wide(shk_array *a, uint64_t i, int negative, uint64_t magnitude,
                       shk_scalar *prev);
/* Same with an int64 delta; on float arrays it is a float add. */
int shk_array_add(shk_array *a, uint64_t i, int64_t delta, shk_scalar *prev);
/* Wrapping (modular) atomic add on an integer element: one fetch_add,
 * never fails for a valid index.  delta is truncated to the element
 * width. */
int shk_array_add_wrap(shk_array *a, uint64_t i, uint64_t delta, shk_scalar *prev);
/* Atomic float add (compare-and-swap loop) on a float element. */
int shk_array_add_float(shk_array *a, uint64_t i, double delta, shk_scalar *prev);

/* Validate the shared header (and that the data lies in its live heap
 * block): SHK_OK or SHK_ECORRUPT. */
int shk_array_check(const shk_array *a);
/* Validate an array header held in buf[0, len) that claims to sit at
 * segment offset `off` of a segment backed up to `file_size`; never reads
 * outside buf.  Used by open and by the fuzzers. */
int shk_array_validate_header(const void *buf, size_t len, uint64_t off, uint64_t file_size);
size_t shk_array_header_size(void);

#ifdef __cplusplus
}
#endif
#endif
