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

/* The usual segment of a test that forks (fixture_fork_segment). */
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

/* A segment for a test that forks: `bytes` backed at once and never more.
 * Under valgrind a fork costs time in proportion to the mappings (8 MiB:
 * seconds; 64 GiB: forever), so no idle reservation is copied. */
static inline shk_segment *fixture_fork_segment(const char *tag, uint64_t bytes)
{
    return fixture_segment(tag, bytes, bytes);
}

/* Close the test's handle and unlink the segment. */
static inline void fixture_drop(shk_segment *s, const char *tag)
{
    shk_segment_close(s);
    shk_segment_unlink(check_name(tag));
}

/* A structure's header validator (shk_<t>_validate_header). */
typedef int (*fixture_validate_fn)(const void *buf, size_t len, uint64_t off,
                                   uint64_t file_size);

/* What every header validator must refuse, around a valid header copy. */
typedef struct {
    fixture_validate_fn validate;
    const unsigned char *hdr;   /* a copy of a live, valid header */
    size_t len;                 /* its length */
    uint64_t off, file_size;    /* where it lives, in a file this big */
    size_t short_len;           /* a length too short to hold it */
    uint64_t bad_off;           /* an offset where it cannot be */
    uint64_t small_file;        /* a file size too small for it */
    size_t nfields;             /* leading bytes whose every change is caught */
} fixture_header;

/* The copy validates; a short buffer, a bad offset, a small file and any
 * one-byte change in the first nfields bytes are SHK_ECORRUPT. */
static inline void fixture_check_validator(const fixture_header *h)
{
    CHECK_EQ(h->validate(h->hdr, h->len, h->off, h->file_size), SHK_OK);
    CHECK_EQ(h->validate(h->hdr, h->short_len, h->off, h->file_size), SHK_ECORRUPT);
    CHECK_EQ(h->validate(h->hdr, h->len, h->bad_off, h->file_size), SHK_ECORRUPT);
    CHECK_EQ(h->validate(h->hdr, h->len, h->off, h->small_file), SHK_ECORRUPT);
    unsigned char c[256];
    if (h->len > sizeof c) {
        CHECK(!"fixture_check_validator: header larger than 256 bytes");
        return;
    }
    for (size_t i = 0; i < h->nfields; i++) {
        memcpy(c, h->hdr, h->len);
        c[i] ^= 0x5a;
        CHECK_EQ(h->validate(c, h->len, h->off, h->file_size), SHK_ECORRUPT);
    }
}

#endif
