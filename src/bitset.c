/*
 * bitset.c -- a fixed-size bitset in shared memory with atomic bit
 * operations.
 *
 * DESIGN
 *   The bits are an array of 64-bit words; bit i is bit (i % 64) of word
 *   (i / 64).  set/clear/flip are one atomic fetch_or / fetch_and /
 *   fetch_xor on the word that holds the bit, and return the bit's previous
 *   value from the word the RMW returned.  That is the whole algorithm, and
 *   it is why the bitset is lock-free (wait-free, even: every operation is a
 *   bounded number of atomic instructions, no retry loop): a process killed
 *   at any instant either did its RMW or did not, and nothing else is ever
 *   half-done.  No lock could be cheaper or safer than that.
 *
 *   Memory order: single-bit RMWs are acq_rel and test() is acquire, so a
 *   bit may be used as a flag that publishes data (a setter's earlier writes
 *   happen-before a tester's later reads once it sees the bit) or as a
 *   try-lock (set() returning 0 acquires; clear() releases).  On x86 this
 *   costs nothing over relaxed (every locked RMW is a full barrier, every
 *   load an acquire); on ARM it is one ldaxr/stlxr pair instead of ldxr/stxr,
 *   cheap next to the cache-line transfer a shared bitset pays anyway.
 *
 *   Whole-set operations (count, any, all, find_next_*, set_all, clear_all)
 *   go word by word: each word is read or written atomically, the set as a
 *   whole is not a snapshot.  That is what a lock-free bitset can promise,
 *   and it is enough for the usual uses (progress counts, "is anything left
 *   to do", finding a free slot then claiming it with set()).
 *
 * LAYOUT (a single heap block; `off` = offset of the header)
 *
 *   off +0   +---------------------------------------------+
 *            | magic "SHKBITS\x01"      u64                 |
 *            | version u32 | header_size u32 (= 64)         |
 *            | nbits   u64                                  |
 *            | nwords  u64 = ceil(nbits / 64)               |
 *            | words   u64 = off + 64 (segment offset)      |
 *            | reserved x3                                  |
 *   off +64  +---------------------------------------------+
 *            | word[0] word[1] ... word[nwords-1]           |
 *            |   (_Atomic uint64_t each)                    |
 *            +---------------------------------------------+
 *
 * INVARIANTS
 *   - The header is immutable after creation (written before the directory
 *     entry that makes it reachable is published with release order).
 *   - Bits at positions >= nbits in the last word are always 0: every
 *     operation that could set them masks them out (set_all) or is refused
 *     (index checks).  count/all/find mask them anyway, so a stray write
 *     through the raw words cannot make them lie; check() reports it.
 *   - The header and words lie inside one live block of the segment heap,
 *     which open() verifies, so a corrupt directory entry cannot make a
 *     handle read or write outside the object.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define BS_MAGIC 0x01535449424b4853ull /* "SHKBITS\x01" little-endian */
#define BS_VERSION 1u
#define BS_HEADER 64u

typedef struct bs_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t nbits;
    uint64_t nwords;
    uint64_t words; /* segment offset of word 0 */
    uint64_t reserved[3];
} bs_shared;
SHK_STATIC_ASSERT(sizeof(bs_shared) == BS_HEADER, "bitset header is 64 B");

struct shk_bitset {
    _Atomic uint64_t *w; /* first word (process-local pointer) */
    uint64_t nbits;
    uint64_t nwords;
    uint64_t tail; /* mask of the valid bits of the last word */
    uint64_t off;
    shk_segment *seg; /* retained */
};

/* ------------------------------------------------------------- helpers */

static inline unsigned popcount64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_popcountll(x);
#else
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* Index of the lowest set bit of x (x != 0). */
static inline unsigned lowest_set(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctzll(x);
#else
    return shk_log2_u64(x & (~x + 1));
#endif
}

static inline uint64_t tail_mask(uint64_t nbits)
{
    return (nbits % 64) ? (1ull << (nbits % 64)) - 1 : ~0ull;
}

/* Valid bits of word k: all of them except in the last word. */
static inline uint64_t word_mask(const shk_bitset *b, uint64_t k)
{
    return k + 1 == b->nwords ? b->tail : ~0ull;
}

static inline uint64_t load_word(const shk_bitset *b, uint64_t k)
{
    /* acquire: a whole-set reader that sees a bit set also sees what its
     * setter wrote before setting it (same contract as test()). */
    return SHK_A(atomic_load_explicit(&b->w[k], memory_order_acquire));
}

/* ----------------------------------------------------- create and open */

size_t shk_bitset_header_size(void) { return BS_HEADER; }

int shk_bitset_create_in(shk_segment *seg, uint64_t nbits, uint64_t *off)
{
    if (nbits == 0 || nbits > SHK_BITSET_MAX_BITS)
        return SHK_EINVAL;
    uint64_t nwords = (nbits + 63) / 64;
    uint64_t blk;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), BS_HEADER + nwords * 8, &blk);
    if (rc != SHK_OK)
        return rc;
    char *base = shk_segment_base(seg);
    bs_shared *sh = (bs_shared *)(base + blk);
    memset(sh, 0, sizeof *sh);
    sh->magic = BS_MAGIC;
    sh->version = BS_VERSION;
    sh->header_size = BS_HEADER;
    sh->nbits = nbits;
    sh->nwords = nwords;
    sh->words = blk + BS_HEADER;
    /* The block may be recycled memory: every bit starts clear.  Plain
     * memset is fine: nobody can reach the words before the directory entry
     * is published (release) by our caller. */
    memset(base + sh->words, 0, nwords * 8);
    *off = blk;
    return SHK_OK;
}

int shk_bitset_validate_header(const void *buf, size_t len, uint64_t off, uint64_t file_size)
{
    if (len < sizeof(bs_shared))
        return SHK_ECORRUPT;
    bs_shared h;
    memcpy(&h, buf, sizeof h); /* buf may be unaligned (fuzzers) */
    if (h.magic != BS_MAGIC || h.version != BS_VERSION || h.header_size != BS_HEADER)
        return SHK_ECORRUPT;
    if (h.nbits == 0 || h.nbits > SHK_BITSET_MAX_BITS || h.nwords != (h.nbits + 63) / 64)
        return SHK_ECORRUPT;
    if (off % SHK_ALIGN || h.words != shk_add_sat(off, BS_HEADER))
        return SHK_ECORRUPT;
    /* nwords <= 2^32, so nwords * 8 cannot wrap. */
    if (shk_add_sat(h.words, h.nwords * 8) > file_size)
        return SHK_ECORRUPT;
    return SHK_OK;
}

static uint64_t header_object_bytes(const void *hdr, uint64_t off)
{
    (void)off;
    return BS_HEADER + ((const bs_shared *)hdr)->nwords * 8;
}

/* Validate the header at `off` (copied into *h) and that header and words
 * lie in one live heap block. */
static int validate_at(shk_segment *seg, uint64_t off, bs_shared *h)
{
    return shk_object_header(seg, off, h, sizeof *h, shk_bitset_validate_header,
                             header_object_bytes);
}

int shk_bitset_open(shk_segment *seg, uint64_t off, shk_bitset **out)
{
    bs_shared h;
    int rc = validate_at(seg, off, &h);
    if (rc != SHK_OK)
        return rc;
    shk_bitset *b = calloc(1, sizeof *b);
    if (!b)
        return SHK_ESYS;
    b->w = (_Atomic uint64_t *)(shk_segment_base(seg) + h.words);
    b->nbits = h.nbits;
    b->nwords = h.nwords;
    b->tail = tail_mask(h.nbits);
    b->off = off;
    b->seg = seg;
    shk_segment_retain(seg);
    *out = b;
    return SHK_OK;
}

static int init_bitset(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    uint64_t nbits = *(const uint64_t *)arg;
    int rc = shk_bitset_create_in(seg, nbits, off);
    if (rc == SHK_OK)
        *size = BS_HEADER + (nbits + 63) / 64 * 8;
    return rc;
}

int shk_bitset_open_named(shk_segment *seg, const char *name, uint64_t nbits, shk_bitset **out,
                          int *created)
{
    if (nbits > SHK_BITSET_MAX_BITS)
        return SHK_EINVAL;
    uint64_t off;
    int made = 0;
    int rc = shk_segment_object(seg, name, SHK_TYPE_BITSET, nbits ? init_bitset : NULL, &nbits,
                                &off, &made);
    if (rc != SHK_OK)
        return rc;
    shk_bitset *b;
    rc = shk_bitset_open(seg, off, &b);
    if (rc != SHK_OK)
        return rc;
    if (nbits && b->nbits != nbits) {
        shk_bitset_close(b);
        return SHK_EINVAL;
    }
    if (created)
        *created = made;
    *out = b;
    return SHK_OK;
}

void shk_bitset_close(shk_bitset *b)
{
    if (!b)
        return;
    shk_segment_close(b->seg);
    free(b);
}

uint64_t shk_bitset_size(const shk_bitset *b) { return b->nbits; }
uint64_t shk_bitset_nwords(const shk_bitset *b) { return b->nwords; }
void *shk_bitset_words(shk_bitset *b) { return (void *)b->w; }
shk_segment *shk_bitset_segment(const shk_bitset *b) { return b->seg; }
uint64_t shk_bitset_offset(const shk_bitset *b) { return b->off; }

/* ---------------------------------------------------- single-bit ops */

int shk_bitset_set(shk_bitset *b, uint64_t i)
{
    if (SHK_UNLIKELY(i >= b->nbits))
        return SHK_EINVAL;
    uint64_t m = 1ull << (i % 64);
    /* acq_rel: see the top of the file (flag / try-lock semantics). */
    return (SHK_A(atomic_fetch_or_explicit(&b->w[i / 64], m, memory_order_acq_rel)) & m) != 0;
}

int shk_bitset_clear(shk_bitset *b, uint64_t i)
{
    if (SHK_UNLIKELY(i >= b->nbits))
        return SHK_EINVAL;
    uint64_t m = 1ull << (i % 64);
    /* acq_rel: a clear may release a bit used as a lock. */
    return (SHK_A(atomic_fetch_and_explicit(&b->w[i / 64], ~m, memory_order_acq_rel)) & m) != 0;
}

int shk_bitset_flip(shk_bitset *b, uint64_t i)
{
    if (SHK_UNLIKELY(i >= b->nbits))
        return SHK_EINVAL;
    uint64_t m = 1ull << (i % 64);
    /* acq_rel: as set and clear, whichever way the bit goes. */
    return (SHK_A(atomic_fetch_xor_explicit(&b->w[i / 64], m, memory_order_acq_rel)) & m) != 0;
}

int shk_bitset_assign(shk_bitset *b, uint64_t i, int v)
{
    return v ? shk_bitset_set(b, i) : shk_bitset_clear(b, i);
}

int shk_bitset_test(const shk_bitset *b, uint64_t i)
{
    if (SHK_UNLIKELY(i >= b->nbits))
        return SHK_EINVAL;
    /* acquire: pairs with the release half of set()'s acq_rel. */
    return (
        int)((SHK_A(atomic_load_explicit(&b->w[i / 64], memory_order_acquire)) >> (i % 64)) &
             1u);
}

/* ------------------------------------------------------- whole-set ops */

uint64_t shk_bitset_count(const shk_bitset *b)
{
    uint64_t n = 0;
    for (uint64_t k = 0; k < b->nwords; k++)
        n += popcount64(load_word(b, k) & word_mask(b, k));
    return n;
}

int shk_bitset_any(const shk_bitset *b)
{
    for (uint64_t k = 0; k < b->nwords; k++)
        if (load_word(b, k) & word_mask(b, k))
            return 1;
    return 0;
}

int shk_bitset_all(const shk_bitset *b)
{
    for (uint64_t k = 0; k < b->nwords; k++) {
        uint64_t m = word_mask(b, k);
        if ((load_word(b, k) & m) != m)
            return 0;
    }
    return 1;
}

void shk_bitset_clear_all(shk_bitset *b)
{
    /* release: what we wrote before clearing is visible to whoever later
     * sets a bit again and is seen by a reader (same as clear()). */
    for (uint64_t k = 0; k < b->nwords; k++)
        SHK_A(atomic_store_explicit(&b->w[k], 0, memory_order_release));
}

void shk_bitset_set_all(shk_bitset *b)
{
    /* release: as set(); the last word keeps its bits past nbits at 0. */
    for (uint64_t k = 0; k < b->nwords; k++)
        SHK_A(atomic_store_explicit(&b->w[k], word_mask(b, k), memory_order_release));
}

/* First index >= from whose bit, after XOR with `flip`, is 1. */
static int64_t find_next(const shk_bitset *b, uint64_t from, uint64_t flip)
{
    if (from >= b->nbits)
        return -1;
    uint64_t k = from / 64;
    uint64_t w = (load_word(b, k) ^ flip) & word_mask(b, k) & (~0ull << (from % 64));
    for (;;) {
        if (w)
            return (int64_t)(k * 64 + lowest_set(w));
        if (++k >= b->nwords)
            return -1;
        w = (load_word(b, k) ^ flip) & word_mask(b, k);
    }
}

int64_t shk_bitset_find_next_set(const shk_bitset *b, uint64_t from)
{
    return find_next(b, from, 0);
}

int64_t shk_bitset_find_next_clear(const shk_bitset *b, uint64_t from)
{
    return find_next(b, from, ~0ull);
}

/* ----------------------------------------------------------------- check */

int shk_bitset_check(const shk_bitset *b, uint64_t *count)
{
    bs_shared h;
    int rc = validate_at(b->seg, b->off, &h);
    if (rc != SHK_OK)
        return rc;
    /* The handle caches the geometry; it must still match the header. */
    if (h.nbits != b->nbits || h.nwords != b->nwords ||
        (const char *)b->w != shk_segment_base(b->seg) + h.words)
        return SHK_ECORRUPT;
    if (load_word(b, b->nwords - 1) & ~b->tail)
        return SHK_ECORRUPT;
    if (count)
        *count = shk_bitset_count(b);
    return SHK_OK;
}
