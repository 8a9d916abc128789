/*
 * hash.c -- shk_hash64, a wyhash-style seeded 64-bit hash (see hash.h).
 *
 * DESIGN
 *   mum(a, b): the full 128-bit product of two 64-bit words, returned as
 *   its low and high halves; mix(a, b) = low ^ high.  Every input word is
 *   first xored with a secret constant (odd, balanced bit counts) so that a
 *   zero input word cannot zero the product.  Keys up to 16 bytes are read
 *   as two (possibly overlapping) words; longer keys are consumed 16 bytes
 *   (or 3 x 16 bytes in parallel lanes above 48) per step, and the last 16
 *   bytes are always read as the final pair.  The length is folded in last.
 *
 *   Reads are little-endian byte loads through memcpy (no unaligned-pointer
 *   tricks; compilers turn them into single loads).  The 128-bit product
 *   uses unsigned __int128 where the compiler has it, and a portable
 *   four-partial-products fallback otherwise; both give identical results
 *   (tests/c/test_hash.c checks the fallback against the fast path).
 */
#include "hash.h"

#include <string.h>

static const uint64_t S0 = 0x2d358dccaa6c78a5ull;
static const uint64_t S1 = 0x8bb84b93962eacc9ull;
static const uint64_t S2 = 0x4b33a62ed433d4a3ull;
static const uint64_t S3 = 0x4d5a2da51de1aa47ull;

/* Portable 64x64 -> 128 product (exported for the test). */
void shk_hash_mum_portable(uint64_t *a, uint64_t *b);
void shk_hash_mum_portable(uint64_t *a, uint64_t *b)
{
    uint64_t x = *a, y = *b;
    uint64_t xl = x & 0xffffffffu, xh = x >> 32;
    uint64_t yl = y & 0xffffffffu, yh = y >> 32;
    uint64_t ll = xl * yl, lh = xl * yh, hl = xh * yl, hh = xh * yh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *a = (ll & 0xffffffffu) | (mid << 32);
    *b = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

static inline void mum(uint64_t *a, uint64_t *b)
{
#if defined(__SIZEOF_INT128__)
    unsigned __int128 r = (unsigned __int128)*a * *b;
    *a = (uint64_t)r;
    *b = (uint64_t)(r >> 64);
#else
    shk_hash_mum_portable(a, b);
#endif
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    mum(&a, &b);
    return a ^ b;
}

static inline uint64_t rd8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t rd4(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

/* 1..3 bytes: first, middle and last byte (they overlap for short keys). */
static inline uint64_t rd3(const unsigned char *p, size_t k)
{
    return ((uint64_t)p[0] << 16) | ((uint64_t)p[k >> 1] << 8) | p[k - 1];
}

uint64_t shk_hash64(const void *key, size_t len, uint64_t seed)
{
    const unsigned char *p = key;
    uint64_t a, b;
    seed ^= mix(seed ^ S0, S1);
    if (len <= 16) {
        if (len >= 4) {
            size_t q = (len >> 3) << 2; /* 0 for 4..7 bytes, 4 for 8..16 */
            a = (rd4(p) << 32) | rd4(p + q);
            b = (rd4(p + len - 4) << 32) | rd4(p + len - 4 - q);
        } else if (len > 0) {
            a = rd3(p, len);
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = len;
        if (i > 48) {
            uint64_t l1 = seed, l2 = seed;
            do {
                seed = mix(rd8(p) ^ S1, rd8(p + 8) ^ seed);
                l1 = mix(rd8(p + 16) ^ S2, rd8(p + 24) ^ l1);
                l2 = mix(rd8(p + 32) ^ S3, rd8(p + 40) ^ l2);
                p += 48;
                i -= 48;
            } while (i > 48);
            seed ^= l1 ^ l2;
        }
        while (i > 16) {
            seed = mix(rd8(p) ^ S1, rd8(p + 8) ^ seed);
            i -= 16;
            p += 16;
        }
        a = rd8(p + i - 16);
        b = rd8(p + i - 8);
    }
    a ^= S1;
    b ^= seed;
    mum(&a, &b);
    return mix(a ^ S0 ^ (uint64_t)len, b ^ S1);
}
