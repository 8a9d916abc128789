/*
 * alloc_slab.c -- the slab allocator: fixed-size slots tracked by an atomic
 * bitmap (bit set = slot in use).
 *
 * DESIGN
 *   allocate scans the bitmap from a shared rotating hint for a word that is
 *   not full and claims one clear bit with fetch_or; free clears the bit with
 *   fetch_and.  Both are single atomic RMWs on one word, so the allocator is
 *   lock-free and a process killed at any instant leaves it consistent (at
 *   worst the slot it had just claimed stays claimed, like any live slot of
 *   a dead process).  A double free sees the bit already clear and fails
 *   without changing anything.  The scan is O(slots/64) in the worst case;
 *   the hint makes it O(1) on average while the slab is not nearly full.
 *
 * LAYOUT
 *   header: magic, version | slot_size | nslots | nwords | data offset |
 *           free_slots (atomic) | hint (atomic)
 *   bitmap: nwords x atomic u64; bits past nslots in the last word are set
 *           at creation, and alloc masks them too, so they are never
 *           handed out even if the shared bitmap is corrupted
 *   data:   nslots x slot_size bytes, 16-aligned
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define SLAB_MAGIC 0x42414c53544b4853ull /* "SHKTSLAB" */
#define SLAB_VERSION 1u

typedef struct slab_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t reserved;
    uint64_t slot_size;
    uint64_t nslots;
    uint64_t nwords;
    uint64_t data; /* segment offset of slot 0 */
    _Atomic uint64_t free_slots;
    _Atomic uint64_t hint; /* word to start the next scan at */
} slab_shared;

struct shk_slab {
    shk_segment *seg;
    slab_shared *sh;
    _Atomic uint64_t *bits;
    char *base;
    uint64_t slot_size, nslots, nwords, data;
};

static uint64_t bitmap_bytes(uint64_t nwords) { return shk_align_up(nwords * 8, SHK_ALIGN); }

int shk_slab_create_in(shk_segment *seg, uint64_t slot_size, uint64_t nslots, uint64_t *off)
{
    if (slot_size == 0 || nslots == 0 || slot_size > (1ull << 32) || nslots > (1ull << 32))
        return SHK_EINVAL;
    slot_size = shk_align_up(slot_size, SHK_ALIGN);
    uint64_t nwords = (nslots + 63) / 64;
    uint64_t hsz = shk_align_up(sizeof(slab_shared), SHK_ALIGN);
    uint64_t total = hsz + bitmap_bytes(nwords) + slot_size * nslots;
    uint64_t blk;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), total, &blk);
    if (rc != SHK_OK)
        return rc;
    char *base = shk_segment_base(seg);
    slab_shared *sh = (slab_shared *)(base + blk);
    memset(sh, 0, sizeof *sh);
    sh->magic = SLAB_MAGIC;
    sh->version = SLAB_VERSION;
    sh->slot_size = slot_size;
    sh->nslots = nslots;
    sh->nwords = nwords;
    sh->data = blk + hsz + bitmap_bytes(nwords);
    _Atomic uint64_t *bits = (_Atomic uint64_t *)(base + blk + hsz);
    for (uint64_t w = 0; w < nwords; w++)
        SHK_A(atomic_store_explicit(&bits[w], 0, memory_order_relaxed));
    if (nslots % 64)
        SHK_A(atomic_store_explicit(&bits[nwords - 1], ~0ull << (nslots % 64),
                                    memory_order_relaxed));
    SHK_A(atomic_store_explicit(&sh->free_slots, nslots, memory_order_relaxed));
    *off = blk;
    return SHK_OK;
}

/* SHK_OK if the header at `off` of `seg` is a sane slab (sizes in range,
 * bitmap and slots inside the mapping), else SHK_ECORRUPT. */
static int header_check(const shk_segment *seg, uint64_t off)
{
    /* Headers are heap blocks, 16-aligned: a misaligned offset (corrupt
     * directory entry) would be a misaligned atomic access. */
    if (off % SHK_ALIGN || !shk_segment_contains(seg, off, sizeof(slab_shared)))
        return SHK_ECORRUPT;
    const slab_shared *sh = (const slab_shared *)(shk_segment_base(seg) + off);
    uint64_t hsz = shk_align_up(sizeof(slab_shared), SHK_ALIGN);
    if (sh->magic != SLAB_MAGIC || sh->version != SLAB_VERSION || sh->slot_size == 0 ||
        sh->slot_size % SHK_ALIGN || sh->slot_size > (1ull << 32) || sh->nslots == 0 ||
        sh->nslots > (1ull << 32) || sh->nwords != (sh->nslots + 63) / 64 ||
        sh->data != off + hsz + bitmap_bytes(sh->nwords) ||
        !shk_segment_contains(seg, sh->data, sh->slot_size * sh->nslots))
        return SHK_ECORRUPT;
    return SHK_OK;
}

int shk_slab_open(shk_segment *seg, uint64_t off, shk_slab **out)
{
    if (header_check(seg, off) != SHK_OK)
        return SHK_ECORRUPT;
    char *base = shk_segment_base(seg);
    slab_shared *sh = (slab_shared *)(base + off);
    uint64_t hsz = shk_align_up(sizeof(slab_shared), SHK_ALIGN);
    shk_slab *s = calloc(1, sizeof *s);
    if (!s)
        return SHK_ESYS;
    s->seg = seg;
    s->sh = sh;
    s->base = base;
    s->bits = (_Atomic uint64_t *)(base + off + hsz);
    s->slot_size = sh->slot_size;
    s->nslots = sh->nslots;
    s->nwords = sh->nwords;
    s->data = sh->data;
    shk_segment_retain(seg);
    *out = s;
    return SHK_OK;
}

typedef struct {
    uint64_t slot_size, nslots;
} init_arg;

static int init_cb(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    const init_arg *ia = arg;
    *size = ia->slot_size * ia->nslots;
    return shk_slab_create_in(seg, ia->slot_size, ia->nslots, off);
}

int shk_slab_open_named(shk_segment *seg, const char *name, uint64_t slot_size, uint64_t nslots,
                        shk_slab **out, int *created)
{
    init_arg ia = {slot_size, nslots};
    uint64_t off;
    int rc = shk_segment_object(seg, name, SHK_TYPE_SLAB, nslots ? init_cb : NULL, &ia, &off,
                                created);
    if (rc != SHK_OK)
        return rc;
    return shk_slab_open(seg, off, out);
}

void shk_slab_close(shk_slab *s)
{
    if (!s)
        return;
    shk_segment_close(s->seg);
    free(s);
}

/* Lowest clear bit of w (w != ~0). */
static inline unsigned lowest_clear(uint64_t w)
{
    uint64_t x = ~w & (w + 1); /* isolates the lowest clear bit */
    return shk_log2_u64(x);
}

int shk_slab_alloc(shk_slab *s, uint64_t *off)
{
    /* relaxed: the hint only steers the search. */
    uint64_t start = SHK_A(atomic_load_explicit(&s->sh->hint, memory_order_relaxed));
    if (start >= s->nwords)
        start = 0;
    for (uint64_t i = 0; i < s->nwords; i++) {
        uint64_t w = start + i;
        if (w >= s->nwords)
            w -= s->nwords;
        /* Bits past nslots in the last word are set at creation and never
         * cleared; mask them anyway, so a corrupted bitmap can never hand
         * out a slot outside the slab (found by fuzz_segment_attach). */
        uint64_t pad = (w == s->nwords - 1 && s->nslots % 64) ? ~0ull << (s->nslots % 64) : 0;
        uint64_t cur = SHK_A(atomic_load_explicit(&s->bits[w], memory_order_relaxed)) | pad;
        while (cur != ~0ull) {
            uint64_t bit = 1ull << lowest_clear(cur);
            /* acquire: the slot's previous owner freed it with release, so
             * its last writes happen-before ours. */
            uint64_t prev = SHK_A(
                atomic_fetch_or_explicit(&s->bits[w], bit, memory_order_acquire));
            if (!(prev & bit)) {
                SHK_A(atomic_fetch_sub_explicit(&s->sh->free_slots, 1, memory_order_relaxed));
                if (w != start)
                    SHK_A(atomic_store_explicit(&s->sh->hint, w, memory_order_relaxed));
                *off = s->data + (w * 64 + shk_log2_u64(bit)) * s->slot_size;
                return SHK_OK;
            }
            cur = prev | bit | pad;
        }
    }
    return SHK_ENOMEM;
}

static int slot_index(const shk_slab *s, uint64_t off, uint64_t *idx)
{
    if (off < s->data || (off - s->data) % s->slot_size)
        return 0;
    uint64_t i = (off - s->data) / s->slot_size;
    if (i >= s->nslots)
        return 0;
    *idx = i;
    return 1;
}

int shk_slab_free(shk_slab *s, uint64_t off)
{
    uint64_t i;
    if (!slot_index(s, off, &i))
        return SHK_EBADOFF;
    uint64_t bit = 1ull << (i % 64);
    /* release: our writes to the slot happen-before its next owner's. */
    uint64_t prev = SHK_A(
        atomic_fetch_and_explicit(&s->bits[i / 64], ~bit, memory_order_release));
    if (!(prev & bit))
        return SHK_EBADOFF; /* was already free: nothing changed */
    SHK_A(atomic_fetch_add_explicit(&s->sh->free_slots, 1, memory_order_relaxed));
    return SHK_OK;
}

int shk_slab_is_live(const shk_slab *s, uint64_t off)
{
    uint64_t i;
    if (!slot_index(s, off, &i))
        return 0;
    uint64_t w = SHK_A(atomic_load_explicit(&s->bits[i / 64], memory_order_relaxed));
    return (w >> (i % 64)) & 1;
}

uint64_t shk_slab_available(const shk_slab *s)
{
    return SHK_A(atomic_load_explicit(&s->sh->free_slots, memory_order_relaxed)) * s->slot_size;
}

uint64_t shk_slab_slot_size(const shk_slab *s) { return s->slot_size; }
uint64_t shk_slab_slot_count(const shk_slab *s) { return s->nslots; }

void shk_slab_region(const shk_slab *s, uint64_t *start, uint64_t *end)
{
    *start = s->data;
    *end = s->data + s->slot_size * s->nslots;
}

int shk_slab_check(const shk_slab *s, shk_slab_stats *stats)
{
    uint64_t off = (uint64_t)((const char *)s->sh - s->base);
    /* The shared header must still say what this handle opened (its
     * bitmap and slots are where the handle reads and writes). */
    if (header_check(s->seg, off) != SHK_OK || s->sh->slot_size != s->slot_size ||
        s->sh->nslots != s->nslots || s->sh->data != s->data)
        return SHK_ECORRUPT;
    /* relaxed: counts only; a concurrent alloc/free moves them by one. */
    uint64_t hint = SHK_A(atomic_load_explicit(&s->sh->hint, memory_order_relaxed));
    uint64_t free_slots = SHK_A(atomic_load_explicit(&s->sh->free_slots, memory_order_relaxed));
    /* hint is only ever stored below nwords; free_slots never above nslots
     * (a slot's bit is set before the count drops and the count rises only
     * after its bit was cleared). */
    if (hint >= s->nwords || free_slots > s->nslots)
        return SHK_ECORRUPT;
    uint64_t live = 0;
    for (uint64_t w = 0; w < s->nwords; w++) {
        uint64_t v = SHK_A(atomic_load_explicit(&s->bits[w], memory_order_relaxed));
        if (w == s->nwords - 1 && s->nslots % 64) {
            uint64_t pad = ~0ull << (s->nslots % 64);
            if ((v & pad) != pad) /* bits past the last slot are always set */
                return SHK_ECORRUPT;
            v &= ~pad;
        }
        live += (uint64_t)__builtin_popcountll(v);
    }
    if (stats) {
        stats->slot_size = s->slot_size;
        stats->slot_count = s->nslots;
        stats->live_slots = live;
        stats->free_slots = s->nslots - live;
        stats->capacity = s->slot_size * s->nslots;
        stats->available_bytes = (s->nslots - live) * s->slot_size;
    }
    return SHK_OK;
}
