/* Fuzz the bitset's header validation and open: the input is written over
 * a live heap block of a real segment (header then words) and opened; a
 * bitset that opens must lie inside that block, and every operation on it
 * stays in bounds.  Also fuzzes open at arbitrary offsets and the buffer
 * validator on exact-size copies. */
#include "fuzz_common.h"

static fuzz_block fb;

static int try_open(shk_segment *seg, uint64_t off)
{
    shk_bitset *b;
    int rc = shk_bitset_open(seg, off, &b);
    if (rc == SHK_OK)
        shk_bitset_close(b);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1-2: the validator and open at arbitrary offsets; 3: the input as the
     * block's contents */
    fuzz_block_begin(&fb, "bitset", data, size, shk_bitset_validate_header, try_open);
    shk_bitset *b;
    int rc = shk_bitset_open(fb.seg, fb.blk, &b);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    if (rc != SHK_OK)
        return 0;
    char *w = shk_bitset_words(b);
    uint64_t nw = shk_bitset_nwords(b), n = shk_bitset_size(b);
    FUZZ_ASSERT(fuzz_in_block(&fb, w, nw * 8, shk_bitset_header_size()));
    uint64_t count = 0;
    int ck = shk_bitset_check(b, &count);
    FUZZ_ASSERT(ck == SHK_OK || ck == SHK_ECORRUPT);
    FUZZ_ASSERT(shk_bitset_count(b) <= n);
    int64_t f = shk_bitset_find_next_set(b, 0);
    FUZZ_ASSERT(f == -1 || (f >= 0 && (uint64_t)f < n));
    f = shk_bitset_find_next_clear(b, n - 1);
    FUZZ_ASSERT(f == -1 || (uint64_t)f == n - 1);
    int prev = shk_bitset_set(b, n - 1);
    FUZZ_ASSERT(prev == 0 || prev == 1);
    FUZZ_ASSERT(shk_bitset_test(b, n - 1) == 1);
    FUZZ_ASSERT(shk_bitset_set(b, n) == SHK_EINVAL);
    shk_bitset_set_all(b);
    FUZZ_ASSERT(shk_bitset_all(b) && shk_bitset_count(b) == n);
    FUZZ_ASSERT(shk_bitset_check(b, NULL) == SHK_OK);   /* set_all keeps the tail clear */
    shk_bitset_clear_all(b);
    FUZZ_ASSERT(!shk_bitset_any(b));
    shk_bitset_close(b);
    return 0;
}
