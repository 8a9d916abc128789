/*
 * array.c -- typed fixed-length arrays in shared memory with atomic element
 * operations.
 *
 * DESIGN
 *   An array is a header and `length` naturally aligned elements of one
 *   machine type (int8..int64, uint8..uint64, float32, float64), contiguous,
 *   so the data is a plain C array that numpy can map without a copy.
 *
 *   Every element operation is one atomic instruction, or a compare-and-swap
 *   loop on the element, at its own width (1, 2, 4 or 8 bytes):
 *     load / store ......... atomic load (acquire) / store (release)
 *     exchange ............. atomic exchange (acq_rel)
 *     compare_and_swap ..... atomic CAS (acq_rel)
 *     add_wrap ............. atomic fetch_add (acq_rel): modular, never fails
 *     add (checked) ........ CAS loop: reads old, refuses (nothing changed)
 *                            if old + delta leaves the type's range
 *     add_float ............ CAS loop on the float's bit pattern
 *   Lock-free, then, with nothing to repair after a crash: an element is
 *   either written or not.  A lock would add a failure mode (a dead holder)
 *   and cost more than the operation itself.
 *
 *   Memory order: acquire loads, release stores and acq_rel RMWs let an
 *   element serve as a flag or counter that publishes other data (the
 *   classic "write the results, then bump the done counter"), at no cost
 *   on x86 over relaxed.  Not seq_cst: a seq_cst store is an xchg on x86,
 *   several times dearer, and nothing here needs a single total order.
 *
 *   Floats: atomics are on the bit pattern (C11 has no atomic float RMW
 *   that is lock-free everywhere).  compare_and_swap compares bits, so
 *   0.0 and -0.0 differ and a NaN matches itself.
 *
 *   Checked integer add maps every element type onto one "biased" uint64
 *   scale that preserves order (signed: v + 2^63, unsigned: v), so one
 *   overflow test, on uint64 without any wider type, serves all eight
 *   integer types: new = b + magnitude fits iff magnitude <= bmax - b.
 *
 * LAYOUT (one heap block; `off` = offset of the header)
 *
 *   off +0   +----------------------------------------------+
 *            | magic "SHKARRY\x01"   u64                     |
 *            | version u32 | header_size u32 (= 64)          |
 *            | dtype   u32 | itemsize u32                    |
 *            | length  u64                                   |
 *            | nbytes  u64 = length * itemsize               |
 *            | data    u64 = off + 64 (segment offset)       |
 *            | reserved x2                                   |
 *   off +64  +----------------------------------------------+
 *            | element[0] element[1] ... element[length-1]   |
 *            +----------------------------------------------+
 *
 * INVARIANTS
 *   - The header is immutable after creation and validated field by field
 *     at open; the data lies inside the object's live heap block.
 *   - An element always holds a value of its type (no intermediate state is
 *     ever stored: every RMW writes its final value in one atomic step).
 */
#include "internal.h"

#include <float.h>
#include <math.h> /* INFINITY only: a constant, no libm */
#include <stdlib.h>
#include <string.h>

#define AR_MAGIC 0x01595252414b4853ull /* "SHKARRY\x01" little-endian */
#define AR_VERSION 1u
#define AR_HEADER 64u
#define BIAS63 (1ull << 63)

typedef struct ar_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t dtype;
    uint32_t itemsize;
    uint64_t length;
    uint64_t nbytes;
    uint64_t data; /* segment offset of element 0 */
    uint64_t reserved[2];
} ar_shared;
SHK_STATIC_ASSERT(sizeof(ar_shared) == AR_HEADER, "array header is 64 B");

struct shk_array {
    char *data;
    uint64_t length;
    uint32_t dtype;
    unsigned itemsize;
    uint64_t off;
    shk_segment *seg; /* retained */
};

/* ---------------------------------------------------------------- dtypes */

static const struct dtype_info {
    const char *name;
    unsigned size;
    int is_signed, is_float;
    char format;
} DT[SHK_DT_MAX_] = {
    [SHK_DT_INT8] = {"int8", 1, 1, 0, 'b'},       [SHK_DT_INT16] = {"int16", 2, 1, 0, 'h'},
    [SHK_DT_INT32] = {"int32", 4, 1, 0, 'i'},     [SHK_DT_INT64] = {"int64", 8, 1, 0, 'q'},
    [SHK_DT_UINT8] = {"uint8", 1, 0, 0, 'B'},     [SHK_DT_UINT16] = {"uint16", 2, 0, 0, 'H'},
    [SHK_DT_UINT32] = {"uint32", 4, 0, 0, 'I'},   [SHK_DT_UINT64] = {"uint64", 8, 0, 0, 'Q'},
    [SHK_DT_FLOAT32] = {"float32", 4, 1, 1, 'f'}, [SHK_DT_FLOAT64] = {"float64", 8, 1, 1, 'd'},
};

static inline int dt_valid(uint32_t dt) { return dt >= 1 && dt < SHK_DT_MAX_; }

unsigned shk_dtype_itemsize(uint32_t dt) { return dt_valid(dt) ? DT[dt].size : 0; }
int shk_dtype_is_signed(uint32_t dt) { return dt_valid(dt) && DT[dt].is_signed; }
int shk_dtype_is_float(uint32_t dt) { return dt_valid(dt) && DT[dt].is_float; }
const char *shk_dtype_name(uint32_t dt) { return dt_valid(dt) ? DT[dt].name : "invalid"; }
char shk_dtype_format(uint32_t dt) { return dt_valid(dt) ? DT[dt].format : 0; }

uint32_t shk_dtype_from_name(const char *name)
{
    if (!name)
        return 0;
    for (uint32_t dt = 1; dt < SHK_DT_MAX_; dt++)
        if (strcmp(DT[dt].name, name) == 0)
            return dt;
    return 0;
}

/* -------------------------------------------- raw element access by width */

static inline uint64_t width_mask(unsigned size)
{
    return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

static inline uint64_t raw_load(const char *p, unsigned size)
{
    /* acquire: see the top of the file. */
    switch (size) {
    case 1: return SHK_A(atomic_load_explicit((_Atomic uint8_t *)p, memory_order_acquire));
    case 2: return SHK_A(atomic_load_explicit((_Atomic uint16_t *)p, memory_order_acquire));
    case 4: return SHK_A(atomic_load_explicit((_Atomic uint32_t *)p, memory_order_acquire));
    default: return SHK_A(atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire));
    }
}

static inline void raw_store(char *p, unsigned size, uint64_t v)
{
    /* release: pairs with raw_load's acquire. */
    switch (size) {
    case 1:
        SHK_A(atomic_store_explicit((_Atomic uint8_t *)p, (uint8_t)v, memory_order_release));
        break;
    case 2:
        SHK_A(atomic_store_explicit((_Atomic uint16_t *)p, (uint16_t)v, memory_order_release));
        break;
    case 4:
        SHK_A(atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)v, memory_order_release));
        break;
    default:
        SHK_A(atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release));
        break;
    }
}

static inline uint64_t raw_exchange(char *p, unsigned size, uint64_t v)
{
    /* acq_rel: both a store that publishes and a load that consumes. */
    switch (size) {
    case 1:
        return SHK_A(
            atomic_exchange_explicit((_Atomic uint8_t *)p, (uint8_t)v, memory_order_acq_rel));
    case 2:
        return SHK_A(
            atomic_exchange_explicit((_Atomic uint16_t *)p, (uint16_t)v, memory_order_acq_rel));
    case 4:
        return SHK_A(
            atomic_exchange_explicit((_Atomic uint32_t *)p, (uint32_t)v, memory_order_acq_rel));
    default:
        return SHK_A(atomic_exchange_explicit((_Atomic uint64_t *)p, v, memory_order_acq_rel));
    }
}

static inline uint64_t raw_fetch_add(char *p, unsigned size, uint64_t v)
{
    /* acq_rel: a counter bump may publish (release) and observe (acquire). */
    switch (size) {
    case 1:
        return SHK_A(
            atomic_fetch_add_explicit((_Atomic uint8_t *)p, (uint8_t)v, memory_order_acq_rel));
    case 2:
        return SHK_A(atomic_fetch_add_explicit((_Atomic uint16_t *)p, (uint16_t)v,
                                               memory_order_acq_rel));
    case 4:
        return SHK_A(atomic_fetch_add_explicit((_Atomic uint32_t *)p, (uint32_t)v,
                                               memory_order_acq_rel));
    default:
        return SHK_A(atomic_fetch_add_explicit((_Atomic uint64_t *)p, v, memory_order_acq_rel));
    }
}

/* Strong CAS of the element from *expected to desired; on failure
 * *expected gets the current bits.  acq_rel on success (publish and
 * observe), acquire on failure (the caller recomputes from what it saw). */
static inline int raw_cas(char *p, unsigned size, uint64_t *expected, uint64_t desired)
{
    int ok;
    switch (size) {
    case 1: {
        uint8_t e = (uint8_t)*expected;
        ok = SHK_A(atomic_compare_exchange_strong_explicit((_Atomic uint8_t *)p, &e,
                                                           (uint8_t)desired,
                                                           memory_order_acq_rel,
                                                           memory_order_acquire));
        *expected = e;
        break;
    }
    case 2: {
        uint16_t e = (uint16_t)*expected;
        ok = SHK_A(atomic_compare_exchange_strong_explicit((_Atomic uint16_t *)p, &e,
                                                           (uint16_t)desired,
                                                           memory_order_acq_rel,
                                                           memory_order_acquire));
        *expected = e;
        break;
    }
    case 4: {
        uint32_t e = (uint32_t)*expected;
        ok = SHK_A(atomic_compare_exchange_strong_explicit((_Atomic uint32_t *)p, &e,
                                                           (uint32_t)desired,
                                                           memory_order_acq_rel,
                                                           memory_order_acquire));
        *expected = e;
        break;
    }
    default:
        ok = SHK_A(atomic_compare_exchange_strong_explicit((_Atomic uint64_t *)p, expected,
                                                           desired, memory_order_acq_rel,
                                                           memory_order_acquire));
        break;
    }
    return ok;
}

/* ------------------------------------------------ value <-> bit patterns */

static inline float f64_to_f32(double d)
{
    /* Round to nearest like IEEE; values past the float range go to +-inf
     * explicitly (a C conversion of an out-of-range value is undefined
     * behaviour without Annex F).  FLT_MAX + half an ulp (2^103) is the
     * first value that rounds to infinity. */
    const double lim = (double)FLT_MAX + 0x1p103;
    if (d >= lim)
        return INFINITY;
    if (d <= -lim)
        return -INFINITY;
    return (float)d;
}

static inline shk_scalar decode(uint64_t raw, uint32_t dt)
{
    shk_scalar v;
    unsigned size = DT[dt].size;
    if (DT[dt].is_float) {
        if (size == 4) {
            uint32_t b = (uint32_t)raw;
            float f;
            memcpy(&f, &b, 4);
            v.f = (double)f;
        } else {
            memcpy(&v.f, &raw, 8);
        }
    } else if (DT[dt].is_signed) {
        /* sign-extend from the element width, without relying on
         * implementation-defined right shifts of negative numbers */
        uint64_t sign = 1ull << (size * 8 - 1);
        uint64_t x = raw & width_mask(size);
        v.u = (x ^ sign) - sign; /* two's complement sign extension */
    } else {
        v.u = raw & width_mask(size);
    }
    return v;
}

/* Signed range of an integer dtype as int64 bounds. */
static inline int64_t smin(unsigned size)
{
    return size == 8 ? INT64_MIN : -(int64_t)(1ull << (size * 8 - 1));
}
static inline int64_t smax(unsigned size)
{
    return size == 8 ? INT64_MAX : (int64_t)((1ull << (size * 8 - 1)) - 1);
}

/* Encode v as dt's bit pattern; 0 if v is out of range of an integer
 * type. */
static inline int encode(shk_scalar v, uint32_t dt, uint64_t *raw)
{
    unsigned size = DT[dt].size;
    if (DT[dt].is_float) {
        if (size == 4) {
            float f = f64_to_f32(v.f);
            uint32_t b;
            memcpy(&b, &f, 4);
            *raw = b;
        } else {
            memcpy(raw, &v.f, 8);
        }
        return 1;
    }
    if (DT[dt].is_signed) {
        if (v.i < smin(size) || v.i > smax(size))
            return 0;
        *raw = (uint64_t)v.i & width_mask(size);
        return 1;
    }
    if (v.u > width_mask(size))
        return 0;
    *raw = v.u;
    return 1;
}

/* ----------------------------------------------------- create and open */

size_t shk_array_header_size(void) { return AR_HEADER; }

int shk_array_create_in(shk_segment *seg, uint32_t dtype, uint64_t length, uint64_t *off)
{
    if (!dt_valid(dtype) || length == 0 || length > SHK_ARRAY_MAX_BYTES / DT[dtype].size)
        return SHK_EINVAL;
    uint64_t nbytes = length * DT[dtype].size;
    uint64_t blk;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), AR_HEADER + nbytes, &blk);
    if (rc != SHK_OK)
        return rc;
    char *base = shk_segment_base(seg);
    ar_shared *sh = (ar_shared *)(base + blk);
    memset(sh, 0, sizeof *sh);
    sh->magic = AR_MAGIC;
    sh->version = AR_VERSION;
    sh->header_size = AR_HEADER;
    sh->dtype = dtype;
    sh->itemsize = DT[dtype].size;
    sh->length = length;
    sh->nbytes = nbytes;
    sh->data = blk + AR_HEADER;
    /* Recycled heap memory: zero every element.  Unreachable by others
     * until our caller publishes the directory entry (release). */
    memset(base + sh->data, 0, nbytes);
    *off = blk;
    return SHK_OK;
}

int shk_array_validate_header(const void *buf, size_t len, uint64_t off, uint64_t file_size)
{
    if (len < sizeof(ar_shared))
        return SHK_ECORRUPT;
    ar_shared h;
    memcpy(&h, buf, sizeof h); /* buf may be unaligned (fuzzers) */
    if (h.magic != AR_MAGIC || h.version != AR_VERSION || h.header_size != AR_HEADER)
        return SHK_ECORRUPT;
    if (!dt_valid(h.dtype) || h.itemsize != DT[h.dtype].size)
        return SHK_ECORRUPT;
    if (h.length == 0 || h.length > SHK_ARRAY_MAX_BYTES / h.itemsize ||
        h.nbytes != h.length * h.itemsize)
        return SHK_ECORRUPT;
    if (off % SHK_ALIGN || h.data != shk_add_sat(off, AR_HEADER))
        return SHK_ECORRUPT;
    if (shk_add_sat(h.data, h.nbytes) > file_size)
        return SHK_ECORRUPT;
    return SHK_OK;
}

int shk_array_open(shk_segment *seg, uint64_t off, shk_array **out)
{
    if (!shk_segment_contains(seg, off, AR_HEADER))
        return SHK_ECORRUPT;
    char *base = shk_segment_base(seg);
    int rc = shk_array_validate_header(base + off, AR_HEADER, off, shk_segment_file_size(seg));
    if (rc != SHK_OK)
        return rc;
    const ar_shared *sh = (const ar_shared *)(base + off);
    /* One live heap block must hold it all (see bitset.c). */
    if (shk_freelist_usable(shk_segment_heap(seg), off) < AR_HEADER + sh->nbytes)
        return SHK_ECORRUPT;
    shk_array *a = calloc(1, sizeof *a);
    if (!a)
        return SHK_ESYS;
    a->data = base + sh->data;
    a->length = sh->length;
    a->dtype = sh->dtype;
    a->itemsize = sh->itemsize;
    a->off = off;
    a->seg = seg;
    shk_segment_retain(seg);
    *out = a;
    return SHK_OK;
}

typedef struct {
    uint32_t dtype;
    uint64_t length;
} ar_init_arg;

static int init_array(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    const ar_init_arg *ia = arg;
    int rc = shk_array_create_in(seg, ia->dtype, ia->length, off);
    if (rc == SHK_OK)
        *size = AR_HEADER + ia->length * DT[ia->dtype].size;
    return rc;
}

int shk_array_open_named(shk_segment *seg, const char *name, uint32_t dtype, uint64_t length,
                         shk_array **out, int *created)
{
    if (dtype && !dt_valid(dtype))
        return SHK_EINVAL;
    ar_init_arg ia = {dtype, length};
    uint64_t off;
    int made = 0;
    int rc = shk_segment_object(seg, name, SHK_TYPE_ARRAY, dtype && length ? init_array : NULL,
                                &ia, &off, &made);
    if (rc != SHK_OK)
        return rc;
    shk_array *a;
    rc = shk_array_open(seg, off, &a);
    if (rc != SHK_OK)
        return rc;
    if ((dtype && a->dtype != dtype) || (length && a->length != length)) {
        shk_array_close(a);
        return SHK_EINVAL;
    }
    if (created)
        *created = made;
    *out = a;
    return SHK_OK;
}

void shk_array_close(shk_array *a)
{
    if (!a)
        return;
    shk_segment_close(a->seg);
    free(a);
}

uint32_t shk_array_dtype(const shk_array *a) { return a->dtype; }
uint64_t shk_array_length(const shk_array *a) { return a->length; }
unsigned shk_array_itemsize(const shk_array *a) { return a->itemsize; }
void *shk_array_data(shk_array *a) { return a->data; }
shk_segment *shk_array_segment(const shk_array *a) { return a->seg; }
uint64_t shk_array_offset(const shk_array *a) { return a->off; }

/* ---------------------------------------------------- element operations */

#define ELEM(a, i) ((a)->data + (i) * (a)->itemsize)

int shk_array_load(const shk_array *a, uint64_t i, shk_scalar *out)
{
    if (SHK_UNLIKELY(i >= a->length))
        return SHK_EINVAL;
    uint64_t raw = raw_load(ELEM(a, i), a->itemsize);
    if (out)
        *out = decode(raw, a->dtype);
    return SHK_OK;
}

int shk_array_store(shk_array *a, uint64_t i, shk_scalar v)
{
    uint64_t raw;
    if (SHK_UNLIKELY(i >= a->length) || !encode(v, a->dtype, &raw))
        return SHK_EINVAL;
    raw_store(ELEM(a, i), a->itemsize, raw);
    return SHK_OK;
}

int shk_array_exchange(shk_array *a, uint64_t i, shk_scalar v, shk_scalar *prev)
{
    uint64_t raw;
    if (SHK_UNLIKELY(i >= a->length) || !encode(v, a->dtype, &raw))
        return SHK_EINVAL;
    uint64_t old = raw_exchange(ELEM(a, i), a->itemsize, raw);
    if (prev)
        *prev = decode(old, a->dtype);
    return SHK_OK;
}

int shk_array_compare_and_swap(shk_array *a, uint64_t i, shk_scalar expected,
                               shk_scalar desired, shk_scalar *actual)
{
    uint64_t want, exp;
    if (SHK_UNLIKELY(i >= a->length) || !encode(desired, a->dtype, &want))
        return SHK_EINVAL;
    char *p = ELEM(a, i);
    int ok;
    if (!encode(expected, a->dtype, &exp)) {
        /* The element cannot hold `expected`, so it cannot equal it. */
        exp = raw_load(p, a->itemsize);
        ok = 0;
    } else if (DT[a->dtype].is_float && a->itemsize == 4 &&
               (double)f64_to_f32(expected.f) != expected.f && expected.f == expected.f) {
        /* A double that float32 cannot hold exactly never matches. */
        exp = raw_load(p, a->itemsize);
        ok = 0;
    } else {
        ok = raw_cas(p, a->itemsize, &exp, want);
    }
    if (actual)
        *actual = decode(exp, a->dtype);
    return ok;
}

/* Biased (order-preserving, unsigned) value of raw bits, and its range. */
static inline uint64_t to_biased(uint64_t raw, uint32_t dt)
{
    shk_scalar v = decode(raw, dt);
    return DT[dt].is_signed ? v.u + BIAS63 : v.u;
}

int shk_array_add_wide(shk_array *a, uint64_t i, int negative, uint64_t magnitude,
                       shk_scalar *prev)
{
    if (SHK_UNLIKELY(i >= a->length) || DT[a->dtype].is_float)
        return SHK_EINVAL;
    unsigned size = a->itemsize;
    int sgn = DT[a->dtype].is_signed;
    uint64_t bias = sgn ? BIAS63 : 0;
    uint64_t bmin = sgn ? (uint64_t)smin(size) + BIAS63 : 0;
    uint64_t bmax = sgn ? (uint64_t)smax(size) + BIAS63 : width_mask(size);
    char *p = ELEM(a, i);
    uint64_t old = raw_load(p, size);
    for (;;) {
        uint64_t b = to_biased(old, a->dtype), nb;
        if (!negative) {
            if (magnitude > bmax - b)
                return SHK_EINVAL; /* overflow: nothing changed */
            nb = b + magnitude;
        } else {
            if (magnitude > b - bmin)
                return SHK_EINVAL;
            nb = b - magnitude;
        }
        uint64_t seen = old;
        /* A kill here (between read and CAS) must leave the element as it
         * was: the torture tests stop a process exactly at this point. */
        SHK_CRASH_POINT("array.add");
        if (raw_cas(p, size, &seen, (nb - bias) & width_mask(size)))
            break;
        old = seen; /* lost a race: recompute from the value now there */
    }
    if (prev)
        *prev = decode(old, a->dtype);
    return SHK_OK;
}

int shk_array_add(shk_array *a, uint64_t i, int64_t delta, shk_scalar *prev)
{
    if (DT[a->dtype].is_float)
        return shk_array_add_float(a, i, (double)delta, prev);
    /* |INT64_MIN| = 2^63 fits uint64: negate in unsigned arithmetic. */
    return delta < 0 ? shk_array_add_wide(a, i, 1, 0 - (uint64_t)delta, prev)
                     : shk_array_add_wide(a, i, 0, (uint64_t)delta, prev);
}

int shk_array_add_wrap(shk_array *a, uint64_t i, uint64_t delta, shk_scalar *prev)
{
    if (SHK_UNLIKELY(i >= a->length) || DT[a->dtype].is_float)
        return SHK_EINVAL;
    uint64_t old = raw_fetch_add(ELEM(a, i), a->itemsize, delta & width_mask(a->itemsize));
    if (prev)
        *prev = decode(old, a->dtype);
    return SHK_OK;
}

int shk_array_add_float(shk_array *a, uint64_t i, double delta, shk_scalar *prev)
{
    if (SHK_UNLIKELY(i >= a->length) || !DT[a->dtype].is_float)
        return SHK_EINVAL;
    char *p = ELEM(a, i);
    uint64_t old = raw_load(p, a->itemsize);
    for (;;) {
        shk_scalar v = decode(old, a->dtype), nv;
        nv.f = v.f + delta;
        uint64_t raw = 0, seen = old;
        encode(nv, a->dtype, &raw); /* floats always encode */
        SHK_CRASH_POINT("array.add");
        if (raw_cas(p, a->itemsize, &seen, raw))
            break;
        old = seen;
    }
    if (prev)
        *prev = decode(old, a->dtype);
    return SHK_OK;
}

/* ----------------------------------------------------------------- check */

int shk_array_check(const shk_array *a)
{
    shk_segment *seg = a->seg;
    if (!shk_segment_contains(seg, a->off, AR_HEADER))
        return SHK_ECORRUPT;
    const char *base = shk_segment_base(seg);
    int rc = shk_array_validate_header(base + a->off, AR_HEADER, a->off,
                                       shk_segment_file_size(seg));
    if (rc != SHK_OK)
        return rc;
    const ar_shared *sh = (const ar_shared *)(base + a->off);
    if (sh->dtype != a->dtype || sh->length != a->length || a->data != base + sh->data)
        return SHK_ECORRUPT;
    if (shk_freelist_usable(shk_segment_heap(seg), a->off) < AR_HEADER + sh->nbytes)
        return SHK_ECORRUPT;
    return SHK_OK;
}
