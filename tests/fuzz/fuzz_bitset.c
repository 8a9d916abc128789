/* Fuzz the bitset's header validation and open: the input is written over
 * a live heap block of a real segment (header then words) and opened; a
 * bitset that opens must lie inside that block, and every operation on it
 * stays in bounds.  Also fuzzes open at arbitrary offsets and the buffer
 * validator on exact-size copies. */
#include "fuzz_common.h"

#define BLOCK 1024u

static shk_segment *seg;
static uint64_t blk;

static void setup(void)
{
    if (seg)
        return;
    const char *name = fuzz_name("bitset");
    shk_segment_unlink(name);
    if (shk_segment_create(name, 0, 16 << 20, 0600, &seg) != SHK_OK ||
        shk_freelist_alloc(shk_segment_heap(seg), BLOCK, &blk) != SHK_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    char *base = shk_segment_base(seg);
    uint64_t fs = shk_segment_file_size(seg);

    /* 1. the pure validator on an exact-size copy, at the real offset and
     *    at one taken from the input */
    void *buf = fuzz_copy(data, size);
    int v = shk_bitset_validate_header(buf, size, blk, fs);
    FUZZ_ASSERT(v == SHK_OK || v == SHK_ECORRUPT);
    if (size >= 8) {
        v = shk_bitset_validate_header(buf, size, fuzz_u64(data), fuzz_u64(data) ^ fs);
        FUZZ_ASSERT(v == SHK_OK || v == SHK_ECORRUPT);
    }
    free(buf);

    /* 2. open at an arbitrary offset: fails cleanly or is a real bitset */
    shk_bitset *b;
    if (size >= 8) {
        uint64_t off = fuzz_u64(data) % (fs + 64);
        if (shk_bitset_open(seg, off, &b) == SHK_OK)
            shk_bitset_close(b);
    }

    /* 3. the input as the block's contents */
    memset(base + blk, 0, BLOCK);
    memcpy(base + blk, data, size < BLOCK ? size : BLOCK);
    int rc = shk_bitset_open(seg, blk, &b);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    if (rc != SHK_OK)
        return 0;
    char *w = shk_bitset_words(b);
    uint64_t nw = shk_bitset_nwords(b), n = shk_bitset_size(b);
    FUZZ_ASSERT(w >= base + blk + shk_bitset_header_size() &&
                w + nw * 8 <= base + blk + shk_freelist_usable(shk_segment_heap(seg), blk));
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
