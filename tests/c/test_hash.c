/* Unit tests of shk_hash64: determinism, seeding, no trivial collisions,
 * avalanche, bucket spread, and the portable 128-bit product. */
#include "check.h"
#include "internal.h"
#include "hash.h"

void shk_hash_mum_portable(uint64_t *a, uint64_t *b);

TEST(deterministic_and_seeded)
{
    const char *k = "hello world";
    CHECK(shk_hash64(k, 11, 1) == shk_hash64(k, 11, 1));
    CHECK(shk_hash64(k, 11, 1) != shk_hash64(k, 11, 2));
    CHECK(shk_hash64(k, 11, 1) != shk_hash64(k, 10, 1));
    CHECK(shk_hash64("", 0, 0) != shk_hash64("", 0, 1));
    /* every length 0..200 gives a different value for a prefix family */
    unsigned char buf[256];
    for (int i = 0; i < 256; i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    uint64_t h[201];
    for (int n = 0; n <= 200; n++)
        h[n] = shk_hash64(buf, (size_t)n, 42);
    for (int i = 0; i <= 200; i++)
        for (int j = i + 1; j <= 200; j++)
            CHECK(h[i] != h[j]);
}

TEST(reads_only_its_bytes)
{
    /* bytes outside [p, p+len) never influence the hash */
    unsigned char a[300], b[300];
    for (int n = 0; n <= 100; n++) {
        memset(a, 0x11, sizeof a);
        memset(b, 0xee, sizeof b);
        for (int i = 0; i < n; i++)
            a[100 + i] = b[100 + i] = (unsigned char)(i ^ 0x5a);
        CHECK(shk_hash64(a + 100, (size_t)n, 9) == shk_hash64(b + 100, (size_t)n, 9));
    }
}

TEST(avalanche)
{
    /* flipping any one input bit flips about half the output bits */
    unsigned char k[64];
    for (int len = 1; len <= 64; len *= 2) {
        double total = 0;
        int trials = 0;
        for (int bit = 0; bit < len * 8; bit++) {
            for (int i = 0; i < len; i++)
                k[i] = (unsigned char)(i * 13 + len);
            uint64_t h0 = shk_hash64(k, (size_t)len, 7);
            k[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            uint64_t h1 = shk_hash64(k, (size_t)len, 7);
            total += __builtin_popcountll(h0 ^ h1);
            trials++;
        }
        double mean = total / trials;
        CHECK(mean > 24.0 && mean < 40.0);
    }
}

TEST(bucket_spread)
{
    /* sequential integer-like keys spread evenly over 1024 buckets */
    static unsigned counts[1024];
    memset(counts, 0, sizeof counts);
    for (uint32_t i = 0; i < 1024 * 64; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%u", i);
        counts[shk_hash64(key, (size_t)n, 3) >> 54]++;
    }
    unsigned lo = ~0u, hi = 0;
    for (int i = 0; i < 1024; i++) {
        if (counts[i] < lo) lo = counts[i];
        if (counts[i] > hi) hi = counts[i];
    }
    CHECK(lo > 30 && hi < 100);   /* mean 64, sd 8 */
}

TEST(mum_portable)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 1000; i++) {
        uint64_t a = x, b = x * 0xD1B54A32D192ED03ull + (uint64_t)i;
        uint64_t pa = a, pb = b;
        shk_hash_mum_portable(&pa, &pb);
#if defined(__SIZEOF_INT128__)
        unsigned __int128 r = (unsigned __int128)a * b;
        CHECK(pa == (uint64_t)r && pb == (uint64_t)(r >> 64));
#endif
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
    uint64_t a = UINT64_MAX, b = UINT64_MAX;
    shk_hash_mum_portable(&a, &b);
    CHECK(a == 1 && b == UINT64_MAX - 1);
}

int main(void)
{
    RUN(deterministic_and_seeded);
    RUN(reads_only_its_bytes);
    RUN(avalanche);
    RUN(bucket_spread);
    RUN(mum_portable);
    return check_summary();
}
