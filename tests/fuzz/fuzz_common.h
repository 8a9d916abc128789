/*
 * fuzz_common.h -- shared helpers of the libFuzzer targets in tests/fuzz/.
 *
 * Each target fuzz_<thing>.c defines LLVMFuzzerTestOneInput and is built by
 * `make fuzz` with clang -fsanitize=fuzzer,address,undefined against the
 * library sources, then run for FUZZ_SECONDS from its seed corpus in
 * tests/fuzz/corpus/<thing>/.  Inputs must never crash, never read outside
 * what they were given (ASan), and always end in a clean status.
 *
 * To add a target for a structure that lives in one heap block: write its
 * exercise() and FUZZ_BLOCK_TARGET(...) (below) as fuzz_bitset.c does, and
 * add seeds with gen_seeds.c.
 */
#ifndef SHMKIT_FUZZ_COMMON_H
#define SHMKIT_FUZZ_COMMON_H

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Abort (a finding) when an invariant the library promises is broken. */
#define FUZZ_ASSERT(c)                                                        \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "%s:%d: FUZZ_ASSERT failed: %s\n", __FILE__,      \
                    __LINE__, #c);                                            \
            abort();                                                          \
        }                                                                     \
    } while (0)

static char fuzz_seg_name[96];

static void fuzz_cleanup(void)
{
    if (fuzz_seg_name[0])
        shk_segment_unlink(fuzz_seg_name);
}

/* A segment name private to this fuzzing process, removed at exit. */
static inline const char *fuzz_name(const char *tag)
{
    if (!fuzz_seg_name[0]) {
        snprintf(fuzz_seg_name, sizeof fuzz_seg_name, "shmkit-fuzz-%s-%d", tag,
                 (int)getpid());
        atexit(fuzz_cleanup);
    }
    return fuzz_seg_name;
}

/* An exact-size heap copy of the input, so ASan flags any read past it. */
static inline void *fuzz_copy(const uint8_t *data, size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        abort();
    if (size)
        memcpy(p, data, size);
    return p;
}

static inline uint64_t fuzz_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- targets whose structure lives in one heap block ----
 * (fuzz_array.c, fuzz_bitset.c)  A private segment with one live heap
 * block of FUZZ_BLOCK bytes, made on the first input and reused. */
#define FUZZ_BLOCK 1024u

typedef struct {
    shk_segment *seg;
    uint64_t blk;           /* offset of the block */
} fuzz_block;

/* The structure's pure header validator (shk_<t>_validate_header). */
typedef int (*fuzz_validate_fn)(const void *buf, size_t len, uint64_t off,
                                uint64_t file_size);
/* Open at `off` and close again if it opened; returns the open status. */
typedef int (*fuzz_try_open_fn)(shk_segment *seg, uint64_t off);

/* The steps every block target starts with, leaving the input as the
 * block's contents for the target's own open and checks:
 *   1. the validator on an exact-size copy of the input (so ASan flags any
 *      read past it), at the real offset and at one taken from the input;
 *      it must answer SHK_OK or SHK_ECORRUPT;
 *   2. an open at an arbitrary offset from the input, which must fail
 *      cleanly or give a real structure;
 *   3. the block zeroed, then overwritten with (up to FUZZ_BLOCK bytes of)
 *      the input. */
static inline void fuzz_block_begin(fuzz_block *fb, const char *tag, const uint8_t *data,
                                    size_t size, fuzz_validate_fn validate,
                                    fuzz_try_open_fn try_open)
{
    if (!fb->seg) {
        const char *name = fuzz_name(tag);
        shk_segment_unlink(name);
        if (shk_segment_create(name, 0, 16 << 20, 0600, &fb->seg) != SHK_OK ||
            shk_freelist_alloc(shk_segment_heap(fb->seg), FUZZ_BLOCK, &fb->blk) != SHK_OK)
            abort();
        shk_segment_unlink(name);   /* only this mapping is used */
    }
    char *base = shk_segment_base(fb->seg);
    uint64_t fs = shk_segment_file_size(fb->seg);

    void *buf = fuzz_copy(data, size);
    int v = validate(buf, size, fb->blk, fs);
    FUZZ_ASSERT(v == SHK_OK || v == SHK_ECORRUPT);
    if (size >= 8) {
        v = validate(buf, size, fuzz_u64(data), fuzz_u64(data) ^ fs);
        FUZZ_ASSERT(v == SHK_OK || v == SHK_ECORRUPT);
    }
    free(buf);

    if (size >= 8)
        try_open(fb->seg, fuzz_u64(data) % (fs + 64));

    memset(base + fb->blk, 0, FUZZ_BLOCK);
    memcpy(base + fb->blk, data, size < FUZZ_BLOCK ? size : FUZZ_BLOCK);
}

/* LLVMFuzzerTestOneInput of a block target for structure `type`:
 * fuzz_block_begin(), then the structure opened over the input with
 * open_fn (SHK_OK or SHK_ECORRUPT, nothing else) and, if it opened,
 * exercise(&fb, handle, data, size) on it before close_fn. */
#define FUZZ_BLOCK_TARGET(tag, type, validate_fn, open_fn, close_fn, exercise)  \
    static fuzz_block fb;                                                      \
    static int try_open(shk_segment *seg, uint64_t off)                        \
    {                                                                          \
        type *h;                                                               \
        int rc = open_fn(seg, off, &h);                                        \
        if (rc == SHK_OK)                                                      \
            close_fn(h);                                                       \
        return rc;                                                             \
    }                                                                          \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)               \
    {                                                                          \
        fuzz_block_begin(&fb, tag, data, size, validate_fn, try_open);         \
        type *h;                                                               \
        int rc = open_fn(fb.seg, fb.blk, &h);                                  \
        FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);                       \
        if (rc == SHK_OK) {                                                    \
            exercise(&fb, h, data, size);                                      \
            close_fn(h);                                                       \
        }                                                                      \
        return 0;                                                              \
    }

/* Does [p, p + n) lie in the block past its first `header` bytes? */
static inline int fuzz_in_block(const fuzz_block *fb, const char *p, uint64_t n,
                                size_t header)
{
    const char *blk = (const char *)shk_segment_base(fb->seg) + fb->blk;
    return p >= blk + header &&
           p + n <= blk + shk_freelist_usable(shk_segment_heap(fb->seg), fb->blk);
}

#endif
