/* Fuzz the array's header validation and open, like fuzz_bitset.c: an
 * array that opens lies inside its heap block, and every element operation
 * stays in bounds and keeps the element type's range. */
#include "fuzz_common.h"

/* An array that opened over the input: it lies in the block and every
 * element operation keeps to the bounds and the element type's range. */
static void exercise(const fuzz_block *fb, shk_array *a, const uint8_t *data, size_t size)
{
    char *d = shk_array_data(a);
    uint64_t n = shk_array_length(a);
    unsigned isz = shk_array_itemsize(a);
    FUZZ_ASSERT(isz == shk_dtype_itemsize(shk_array_dtype(a)));
    FUZZ_ASSERT(fuzz_in_block(fb, d, n * isz, shk_array_header_size()));
    FUZZ_ASSERT(shk_array_check(a) == SHK_OK);
    /* element operations with values taken from the input */
    shk_scalar x, prev, cur;
    x.u = size >= 16 ? fuzz_u64(data + 8) : 0;
    for (uint64_t i = 0; i < n && i < 64; i++) {
        int s = shk_array_store(a, i, x);
        FUZZ_ASSERT(s == SHK_OK || s == SHK_EINVAL);
        FUZZ_ASSERT(shk_array_load(a, i, &cur) == SHK_OK);
        if (s == SHK_OK && !shk_dtype_is_float(shk_array_dtype(a)))
            FUZZ_ASSERT(cur.u == x.u);
        if (!shk_dtype_is_float(shk_array_dtype(a))) {
            int r = shk_array_add(a, i, (int64_t)x.u, &prev);
            FUZZ_ASSERT(r == SHK_OK || r == SHK_EINVAL);
            if (r == SHK_EINVAL) {       /* refused: unchanged */
                shk_array_load(a, i, &prev);
                FUZZ_ASSERT(prev.u == cur.u);
            }
            shk_array_add_wrap(a, i, x.u, NULL);
        } else {
            shk_array_add_float(a, i, x.f, NULL);
        }
        shk_array_compare_and_swap(a, i, cur, x, NULL);
    }
    FUZZ_ASSERT(shk_array_load(a, n, &cur) == SHK_EINVAL);
}

FUZZ_BLOCK_TARGET("array", shk_array, shk_array_validate_header, shk_array_open,
                  shk_array_close, exercise)
