/*
 * fixture.h -- the segment every C test works in: created fresh under a
 * name unique to the process and test (check_name), dropped and unlinked at
 * the end, so a failed run never leaves a segment behind for the next one.
 *
 *   shk_segment *s = fixture_segment("tag", 0, 0);
 *   ...
 *   fixture_drop(s, "tag");
 */
#ifndef SHMKIT_FIXTURE_H
#define SHMKIT_FIXTURE_H

#include "check.h"
#include "shmkit.h"

/* Reservation of tests that fork: under valgrind a fork costs time in
 * proportion to the mapping (8 MiB: seconds; 64 GiB: forever). */
#define FIXTURE_FORK_MAX (1ull << 20)

/* A new segment check_name(tag) of `size` bytes (0 = the default) that may
 * grow to max_size (0 = the default reservation); a stale segment of that
 * name (from a killed run) is removed first.  A failure is a failed CHECK
 * and returns NULL. */
static inline shk_segment *fixture_segment(const char *tag, uint64_t size,
                                           uint64_t max_size)
{
    shk_segment *s = NULL;
    const char *n = check_name(tag);
    shk_segment_unlink(n);
    CHECK_EQ(shk_segment_create(n, size, max_size, 0600, &s), SHK_OK);
    return s;
}

/* Close the test's handle and unlink the segment. */
static inline void fixture_drop(shk_segment *s, const char *tag)
{
    shk_segment_close(s);
    shk_segment_unlink(check_name(tag));
}

#endif
