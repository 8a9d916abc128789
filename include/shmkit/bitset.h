/*
 * shmkit/bitset.h -- a fixed-size bitset in shared memory whose single-bit
 * operations are atomic.
 *
 *   shk_bitset *b;
 *   shk_bitset_open_named(seg, "flags", 1000000, &b, NULL);
 *   if (shk_bitset_set(b, 42) == 0)  ... we are the one who set bit 42 ...
 *
 * Bit i lives in 64-bit word i / 64 at bit position i % 64 (little-endian
 * word order): the words are exactly what shk_bitset_words() exposes and
 * what the Python layer's numpy view shows.
 *
 * Single-bit operations (set/clear/flip and their previous value) are one
 * atomic read-modify-write on one word: any number of processes may use
 * them at once.  They have acquire-release order, so a bit can hand data
 * over: what a process wrote before setting a bit is visible to a process
 * that sees the bit set (test acquires).  Whole-set operations (count, find,
 * any, all, set_all, clear_all) work word by word: each word is read or
 * written atomically, the set as a whole is not a snapshot.
 */
#ifndef SHMKIT_BITSET_H
#define SHMKIT_BITSET_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_bitset shk_bitset; /* process-local handle */

/* Most bits one bitset may hold (32 GiB of words: half the largest
 * segment). */
#define SHK_BITSET_MAX_BITS (1ull << 38)

/* Build a bitset of nbits bits (all clear) in the heap of `seg`; *off gets
 * the offset of its shared header.  SHK_EINVAL if nbits is 0 or above
 * SHK_BITSET_MAX_BITS, SHK_ENOMEM if the segment has no room. */
int shk_bitset_create_in(shk_segment *seg, uint64_t nbits, uint64_t *off);

/* Open a handle on the bitset whose header is at `off` (validated:
 * SHK_ECORRUPT if it is not a sane bitset lying inside a live heap block).
 * The handle holds a reference on the segment. */
int shk_bitset_open(shk_segment *seg, uint64_t off, shk_bitset **out);

/* Open the bitset called `name` in `seg`, creating it with nbits bits if it
 * does not exist and nbits > 0.  nbits == 0 only attaches (SHK_ENOENT if
 * absent).  SHK_EINVAL if it exists with another size than a non-zero
 * nbits, SHK_ETYPE if `name` is another kind of object. */
int shk_bitset_open_named(shk_segment *seg, const char *name, uint64_t nbits, shk_bitset **out,
                          int *created);

void shk_bitset_close(shk_bitset *b);

/* Number of bits. */
uint64_t shk_bitset_size(const shk_bitset *b);
/* Number of 64-bit words, and the words themselves (nwords x uint64_t, in
 * shared memory, 16-byte aligned).  Bits past size() in the last word are
 * always 0; writing them directly is a corruption check() reports. */
uint64_t shk_bitset_nwords(const shk_bitset *b);
void *shk_bitset_words(shk_bitset *b);
shk_segment *shk_bitset_segment(const shk_bitset *b);
/* Segment offset of the shared header. */
uint64_t shk_bitset_offset(const shk_bitset *b);

/* Atomic single-bit operations.  Each returns the bit's PREVIOUS value (0 or
 * 1), or SHK_EINVAL (nothing changed) if i >= size(). */
int shk_bitset_set(shk_bitset *b, uint64_t i);
int shk_bitset_clear(shk_bitset *b, uint64_t i);
int shk_bitset_flip(shk_bitset *b, uint64_t i);
/* Set the bit to v (0 or nonzero); returns the previous value. */
int shk_bitset_assign(shk_bitset *b, uint64_t i, int v);
/* The bit's value (0 or 1), or SHK_EINVAL if i >= size(). */
int shk_bitset_test(const shk_bitset *b, uint64_t i);

/* Whole-set operations (word by word, see above). */
uint64_t shk_bitset_count(const shk_bitset *b);
int shk_bitset_any(const shk_bitset *b); /* 1 if some bit is set   */
int shk_bitset_all(const shk_bitset *b); /* 1 if every bit is set  */
void shk_bitset_clear_all(shk_bitset *b);
void shk_bitset_set_all(shk_bitset *b);
/* Index of the first set (clear) bit at or after `from`, or -1 if none. */
int64_t shk_bitset_find_next_set(const shk_bitset *b, uint64_t from);
int64_t shk_bitset_find_next_clear(const shk_bitset *b, uint64_t from);

/* Validate the shared header: SHK_OK, or SHK_ECORRUPT (bad header, the
 * words out of the segment or out of their heap block, or bits set past
 * size() in the last word).  *count (may be NULL) gets the number of set
 * bits. */
int shk_bitset_check(const shk_bitset *b, uint64_t *count);

/* Validate a bitset header held in buf[0, len) that claims to sit at
 * segment offset `off` of a segment whose backed size is `file_size`.
 * Never reads outside buf.  Used by open and by the fuzzers. */
int shk_bitset_validate_header(const void *buf, size_t len, uint64_t off, uint64_t file_size);

/* Bytes of the shared header (what validate_header needs to see). */
size_t shk_bitset_header_size(void);

#ifdef __cplusplus
}
#endif
#endif
