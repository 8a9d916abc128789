/*
 * fuzz_common.h -- shared helpers of the libFuzzer targets in tests/fuzz/.
 *
 * Each target fuzz_<thing>.c defines LLVMFuzzerTestOneInput and is built by
 * `make fuzz` with clang -fsanitize=fuzzer,address,undefined against the
 * library sources, then run for FUZZ_SECONDS from its seed corpus in
 * tests/fuzz/corpus/<thing>/.  Inputs must never crash, never read outside
 * what they were given (ASan), and always end in a clean status.
 *
 * To add a target for a new structure: copy fuzz_bitset.c (in-segment
 * header fuzzing) and add seeds with gen_seeds.c.
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

#endif
