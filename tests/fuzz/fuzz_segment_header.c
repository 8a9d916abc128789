/* Fuzz shk_segment_validate_header: arbitrary and truncated bytes that
 * claim to be a segment header (with its directory and heap header) always
 * give SHK_OK or SHK_ECORRUPT and never read outside the buffer. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *buf = fuzz_copy(data, size);
    int a = shk_segment_validate_header(buf, size, size);
    int b = shk_segment_validate_header(buf, size, UINT64_MAX);
    int c = shk_segment_validate_header(buf, size, 0);
    FUZZ_ASSERT(a == SHK_OK || a == SHK_ECORRUPT);
    FUZZ_ASSERT(b == SHK_OK || b == SHK_ECORRUPT);
    FUZZ_ASSERT(c == SHK_ECORRUPT);        /* nothing fits in 0 file bytes */
    free(buf);
    return 0;
}
