/* Fuzz the bitset's header validation and open: the input is written over
 * a live heap block of a real segment (header then words) and opened; a
 * bitset that opens must lie inside that block, and every operation on it
 * stays in bounds.  Also fuzzes open at arbitrary offsets and the buffer
 * validator on exact-size copies. */
#include "fuzz_common.h"

/* A bitset that opened over the input: it lies in the block and every
 * operation stays in bounds and keeps the tail bits clear. */
static void exercise(const fuzz_block *fb, shk_bitset *b, const uint8_t *data, size_t size)
{
    (void)data;
    (void)size;
    char *w = shk_bitset_words(b);
    uint64_t nw = shk_bitset_nwords(b), n = shk_bitset_size(b);
    FUZZ_ASSERT(fuzz_in_block(fb, w, nw * 8, shk_bitset_header_size()));
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
}

FUZZ_BLOCK_TARGET("bitset", shk_bitset, shk_bitset_validate_header, shk_bitset_open,
                  shk_bitset_close, exercise)
