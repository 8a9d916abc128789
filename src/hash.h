/*
 * hash.h -- shk_hash64: the seeded 64-bit hash of dict keys.
 *
 * Written here from the published description of wyhash (final version 4,
 * Wang Yi, public domain): 64x64->128-bit "multiply and fold" mixing of
 * 16-byte (and, for long keys, three parallel 48-byte) chunks.  It is among
 * the fastest hashes that pass SMHasher, and short keys (the common dict
 * case) cost one or two multiplications.
 *
 * The seed is per segment (shk_segment_hash_seed, random at creation), so
 * every process attached to a segment computes the same hash for the same
 * key -- unlike Python's per-process randomised hash() -- while an outsider
 * who does not know the seed cannot pick keys that all collide.
 */
#ifndef SHMKIT_HASH_H
#define SHMKIT_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t shk_hash64(const void *key, size_t len, uint64_t seed);

#endif
