/* gen_seeds.c -- writes the seed corpus of the fuzz targets
 * (tests/fuzz/corpus/<target>/) from real objects made by the library:
 *
 *   make fuzz-seeds      (rebuild after a layout change, then commit)
 *
 * A smallest-possible segment holding a bitset, two arrays, a bump and a
 * slab allocator gives the attach and segment-header seeds; the object headers
 * (plus their first data bytes) give the bitset and array seeds, and the
 * dict, queue and stack header blocks the structures seeds. */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(const char *dir, const char *file, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static int init_bump(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    (void)arg;
    *size = 256;
    return shk_bump_create_in(seg, 256, off);
}

static int init_slab(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    (void)arg;
    *size = 4 * 32;
    return shk_slab_create_in(seg, 32, 4, off);
}

/* A fresh segment whose FIRST heap allocation is the object: the fuzz
 * targets put their input at the first allocation of a fresh segment, so
 * the header's self-offset fields match there. */
static shk_segment *fresh_max(const char *tag, uint64_t max_size)
{
    char name[64];
    snprintf(name, sizeof name, "shmkit-seedgen-%s-%d", tag, (int)getpid());
    shk_segment_unlink(name);
    shk_segment *s;
    if (shk_segment_create(name, 1, max_size, 0600, &s) != SHK_OK)
        exit(1);
    shk_segment_unlink(name);   /* the mapping stays until closed */
    return s;
}

static shk_segment *fresh(const char *tag) { return fresh_max(tag, 16 << 20); }

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    char d[512];
    shk_scalar v;

    /* 1. a whole small segment holding a bitset and two arrays (capped, so
     *    that growth cannot make the seed a whole 1 MiB step) */
    shk_segment *s = fresh_max("seg", 64 << 10);
    shk_bitset *b;
    shk_array *a16, *af;
    if (shk_bitset_open_named(s, "bitset", 100, &b, NULL) != SHK_OK ||
        shk_array_open_named(s, "array", SHK_DT_INT16, 20, &a16, NULL) != SHK_OK ||
        shk_array_open_named(s, "f", SHK_DT_FLOAT32, 3, &af, NULL) != SHK_OK)
        return 1;
    uint64_t boff, soff;
    if (shk_segment_object(s, "bump", SHK_TYPE_BUMP, init_bump, NULL, &boff, NULL) != SHK_OK ||
        shk_segment_object(s, "slab", SHK_TYPE_SLAB, init_slab, NULL, &soff, NULL) != SHK_OK)
        return 1;
    shk_bitset_set(b, 7);
    shk_bitset_set(b, 99);
    v.i = -5;
    shk_array_store(a16, 3, v);
    uint64_t fs = shk_segment_file_size(s);
    char *base = shk_segment_base(s);
    snprintf(d, sizeof d, "%s/segment_attach", root);
    mkdir(d, 0755);
    put(d, "small_segment.bin", base, fs);
    snprintf(d, sizeof d, "%s/segment_header", root);
    mkdir(d, 0755);
    put(d, "small_segment_header.bin", base, fs > 24576 ? 24576 : fs);
    printf("segment file: %llu bytes\n", (unsigned long long)fs);
    shk_bitset_close(b);
    shk_array_close(a16);
    shk_array_close(af);
    shk_segment_close(s);

    /* 2. object seeds, each the first allocation of its own segment */
    snprintf(d, sizeof d, "%s/bitset", root);
    mkdir(d, 0755);
    static const uint64_t sizes[] = {1, 64, 100, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        s = fresh("bits");
        if (shk_bitset_open_named(s, "b", sizes[k], &b, NULL) != SHK_OK)
            return 1;
        shk_bitset_set(b, sizes[k] - 1);
        char file[64];
        snprintf(file, sizeof file, "bitset%llu.bin", (unsigned long long)sizes[k]);
        uint64_t n = shk_bitset_header_size() + shk_bitset_nwords(b) * 8;
        put(d, file, shk_segment_base(s) + shk_bitset_offset(b), n > 256 ? 256 : n);
        shk_bitset_close(b);
        shk_segment_close(s);
    }
    snprintf(d, sizeof d, "%s/array", root);
    mkdir(d, 0755);
    for (uint32_t dt = 1; dt < SHK_DT_MAX_; dt++) {
        s = fresh("arr");
        shk_array *a;
        if (shk_array_open_named(s, "a", dt, 5, &a, NULL) != SHK_OK)
            return 1;
        v.i = 1;
        shk_array_store(a, 4, v);
        char file[64];
        snprintf(file, sizeof file, "%sx5.bin", shk_dtype_name(dt));
        put(d, file, shk_segment_base(s) + shk_array_offset(a),
            shk_array_header_size() + 5 * shk_array_itemsize(a));
        shk_array_close(a);
        shk_segment_close(s);
    }

    /* 4. the dict, queue and stack headers for fuzz_structures (its first
     *    byte picks the kind: 0 dict, 1 queue, 2 stack, 3 live queue) */
    snprintf(d, sizeof d, "%s/structures", root);
    mkdir(d, 0755);
    s = fresh("st");
    shk_dict *dc;
    shk_queue *q;
    shk_stack *st;
    shk_queue_config cfg = {4096, 0};
    if (shk_dict_open_named(s, "d", 1, 0, &dc, NULL) != SHK_OK ||
        shk_queue_open_named(s, "q", &cfg, &q, NULL) != SHK_OK ||
        shk_stack_open_named(s, "s", &st, NULL) != SHK_OK)
        return 1;
    shk_dict_set(dc, 1, "k", 1, 1, "v", 1);
    shk_queue_put(q, "item", 4, 0, 0);
    shk_stack_push(st, "node", 4, 0);
    static const char *const kinds[] = {"d", "q", "s"};
    for (int k = 0; k < 3; k++) {
        shk_object_info info;
        if (shk_segment_lookup(s, kinds[k], &info) != SHK_OK)
            return 1;
        uint64_t n = shk_freelist_usable(shk_segment_heap(s), info.offset);
        if (n == 0)
            n = info.size;   /* the dict's header starts inside its block */
        unsigned char *buf = malloc(n + 1);
        if (!buf)
            return 1;
        buf[0] = (unsigned char)k;
        memcpy(buf + 1, shk_segment_base(s) + info.offset, n);
        char file[64];
        snprintf(file, sizeof file, "seed-%s", kinds[k]);
        put(d, file, buf, n + 1);
        free(buf);
    }
    /* the LIVE kind (first byte 3): (offset, value) scribbles over the
     * queue's ring; with bit 7 set, 40 bytes of mutex words first */
    static const unsigned char live[] = {3, 0, 0, 0x11, 8, 0, 0x41, 9, 0, 0};
    put(d, "seed-live", live, sizeof live);
    unsigned char live_lock[1 + 40 + 3] = {3 | 0x80};
    memset(live_lock + 1, 0x01, 40);
    put(d, "seed-live-lock", live_lock, sizeof live_lock);
    shk_dict_close(dc);
    shk_queue_close(q);
    shk_stack_close(st);
    shk_segment_close(s);
    return 0;
}
