/* Fuzz the whole attach path: the input becomes the bytes of a shm file,
 * which is attached; if it validates, every directory entry is opened as
 * its type, checked and exercised, and the heap is checked.  Nothing may
 * crash, touch unbacked memory (SIGBUS) or leak. */
#include "fuzz_common.h"

#include <fcntl.h>
#include <sys/mman.h>

static void exercise_object(shk_segment *s, const shk_object_info *info)
{
    switch (info->type) {
    case SHK_TYPE_BITSET: {
        shk_bitset *b;
        if (shk_bitset_open(s, info->offset, &b) != SHK_OK)
            return;
        uint64_t n = shk_bitset_size(b);
        FUZZ_ASSERT(shk_segment_contains(s, shk_off(shk_segment_base(s), shk_bitset_words(b)),
                                         shk_bitset_nwords(b) * 8));
        shk_bitset_check(b, NULL);
        shk_bitset_count(b);
        shk_bitset_find_next_set(b, 0);
        shk_bitset_find_next_clear(b, n / 2);
        int prev = shk_bitset_flip(b, n - 1);
        FUZZ_ASSERT(prev == 0 || prev == 1);
        shk_bitset_flip(b, n - 1);
        FUZZ_ASSERT(shk_bitset_test(b, n) == SHK_EINVAL);
        shk_bitset_close(b);
        break;
    }
    case SHK_TYPE_ARRAY: {
        shk_array *a;
        if (shk_array_open(s, info->offset, &a) != SHK_OK)
            return;
        uint64_t n = shk_array_length(a);
        FUZZ_ASSERT(shk_segment_contains(s, shk_off(shk_segment_base(s), shk_array_data(a)),
                                         n * shk_array_itemsize(a)));
        shk_array_check(a);
        shk_scalar v;
        FUZZ_ASSERT(shk_array_load(a, n - 1, &v) == SHK_OK);
        shk_array_exchange(a, n - 1, v, NULL);
        shk_array_add_wrap(a, 0, 0, NULL);
        FUZZ_ASSERT(shk_array_load(a, n, &v) == SHK_EINVAL);
        shk_array_close(a);
        break;
    }
    case SHK_TYPE_COUNTER: {
        shk_counter *c;
        if (shk_counter_open(s, info->offset, &c) != SHK_OK)
            return;
        shk_counter_check(c, NULL);
        int64_t v = shk_counter_value(c);
        shk_counter_add(c, 1);           /* claims a cell: garbage owners too */
        shk_counter_add(c, -1);
        FUZZ_ASSERT(shk_counter_value(c) == v);
        shk_counter_close(c);
        break;
    }
    case SHK_TYPE_FREELIST: {
        shk_freelist *fl;
        if (shk_freelist_open(s, info->offset, &fl) != SHK_OK)
            return;
        shk_freelist_check(fl, NULL);
        shk_freelist_close(fl);
        break;
    }
    case SHK_TYPE_BUMP: {
        shk_bump *b;
        if (shk_bump_open(s, info->offset, &b) != SHK_OK)
            return;
        uint64_t off, start, end;
        if (shk_bump_alloc(b, 16, &off) == SHK_OK) {
            shk_bump_region(b, &start, &end);
            FUZZ_ASSERT(off >= start && off + 16 <= end);
            FUZZ_ASSERT(shk_segment_contains(s, off, 16));
            memset(shk_segment_base(s) + off, 0xab, 16);
        }
        shk_bump_close(b);
        break;
    }
    case SHK_TYPE_SLAB: {
        shk_slab *sl;
        if (shk_slab_open(s, info->offset, &sl) != SHK_OK)
            return;
        uint64_t off;
        if (shk_slab_alloc(sl, &off) == SHK_OK) {
            FUZZ_ASSERT(shk_segment_contains(s, off, shk_slab_slot_size(sl)));
            memset(shk_segment_base(s) + off, 0xcd, shk_slab_slot_size(sl));
            FUZZ_ASSERT(shk_slab_free(sl, off) == SHK_OK);
        }
        shk_slab_close(sl);
        break;
    }
    default:
        break;   /* other structures: their owners add them here */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A header whose magic is right but whose state is INIT makes attach
     * wait up to 2 s for a creator that does not exist: correct, but it
     * would only slow the fuzzer down. */
    if (size >= 20 && data[16] == 0 && data[17] == 0 && data[18] == 0 && data[19] == 0)
        return 0;
    const char *name = fuzz_name("segment_attach");
    char path[128];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0)
            abort();
        done += (size_t)w;
    }
    close(fd);
    shk_segment *s;
    int rc = shk_segment_attach(name, &s);
    shk_segment_unlink(name);   /* the mapping stays; nothing left behind */
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    if (rc != SHK_OK)
        return 0;
    shk_freelist_check(shk_segment_heap(s), NULL);
    shk_segment_info info;
    shk_segment_info_get(s, &info);
    uint32_t n = shk_segment_object_count(s);
    FUZZ_ASSERT(n <= SHK_DIR_CAPACITY);
    for (uint32_t i = 0; i < n; i++) {
        shk_object_info oi;
        if (shk_segment_object_at(s, i, &oi) == SHK_OK)
            exercise_object(s, &oi);
    }
    shk_object_info oi;
    shk_segment_lookup(s, "bitset", &oi);
    shk_segment_close(s);
    return 0;
}
